#!/bin/sh
# Hostile agent: try to write outside the workspace. Prints the outcome of
# each write; the test checks the host side.
for path in /usr/dw_pwn /etc/dw_pwn /dw_pwn "$DW_TEST_HOST_FILE" /workspace/inside /home/agent/inside; do
    if echo pwned > "$path" 2>/dev/null; then echo "WROTE $path"; else echo "DENIED $path"; fi
done
echo DONE
