#!/bin/sh
# Hostile agent: fill the workspace. $1 = "big" writes one huge file (hits
# the per-file size limit), "many" writes 1 MiB files (hits the periodic
# total-size check).
echo START
if [ "$1" = big ]; then
    dd if=/dev/zero of=/workspace/big bs=1M count=500 2>&1
    echo "DD_EXIT $?"
else
    i=0
    while [ $i -lt 400 ]; do
        dd if=/dev/zero of=/workspace/chunk$i bs=1M count=1 2>/dev/null
        i=$((i + 1))
        sleep 0.02
    done
    echo "WROTE_ALL"
fi
