#!/bin/sh
# Hostile agent: look for the worker's private files from inside the sandbox.
# Prints FOUND <path> for each one it can read, MISSING <path> otherwise.
for path in /var/lib/driftwatch-test/keys/secret /var/lib/driftwatch-test/spool/job1 \
            /etc/driftwatch-sbxtest/secret /etc/shadow /root /var/lib "$DW_TEST_WORK_ROOT" \
            /run/postgresql /etc/driftwatch; do
    if [ -e "$path" ] && cat "$path" >/dev/null 2>&1 || ls "$path" >/dev/null 2>&1; then
        echo "FOUND $path"
        cat "$path" 2>/dev/null
        ls -a "$path" 2>/dev/null
    else
        echo "MISSING $path"
    fi
done
echo "UID $(id -u)"
grep '^CapEff' /proc/self/status
echo DONE
