#!/bin/sh
# Hostile agent: allocate and touch far more memory than allowed.
exec python3 -c '
import sys
chunks = []
for i in range(64):
    chunks.append(bytearray(64 << 20))
    print("ALLOCATED", (i + 1) * 64, "MiB", flush=True)
print("SURVIVED", flush=True)
'
