#!/bin/sh
# Hostile agent: ignore SIGTERM and leave a background process and a
# setsid'd daemon behind. Every process carries the marker in its
# environment (DW_TEST_MARKER) and argv.
trap '' TERM HUP INT
sh -c "trap '' TERM HUP; sleep 1000 # $DW_TEST_MARKER" &
setsid sh -c "trap '' TERM HUP; sleep 1000 # $DW_TEST_MARKER-daemon" </dev/null >/dev/null 2>&1 &
nohup sh -c "sleep 1000 # $DW_TEST_MARKER-nohup" >/dev/null 2>&1 &
echo READY
while :; do sleep 1; done
