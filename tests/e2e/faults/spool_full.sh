#!/usr/bin/env bash
# Fault: the disk under a worker's spool is full. A 64 KiB tmpfs is mounted
# over the worker's spool directory and filled. The worker must log that it
# could not write the result and must not send it, because the result has
# no durable copy. The attempt's lease expires and the job is retried. Once
# space is freed the worker works normally. Every job keeps exactly one final
# result.
. "$(dirname "$0")/lib.sh"

if [ "$(id -u)" != 0 ]; then
    echo "SKIP: needs root to mount a tmpfs" >&2
    exit 77
fi

setup_database fault_spool_full
setup_tmp fault-spool-full
write_slow_agent
run_reference

spool="$TEST_TMP/worker-w1/spool"
unmount_spool () {
    umount "$spool" 2>/dev/null
    true
}
CLEANUP_HOOKS+=(unmount_spool)
mkdir -p "$spool"
chmod 700 "$TEST_TMP/worker-w1" "$spool"
mount -t tmpfs -o size=64k,mode=0700 dwfault-spool "$spool" \
    || { echo "SKIP: cannot mount a tmpfs on $spool" >&2; exit 77; }
dd if=/dev/zero of="$spool/filler" bs=4k 2>/dev/null || true
check_eq "free bytes on the spool filesystem" 0 "$(df --output=avail -B1 "$spool" | tail -n 1 | tr -d ' ')"

endpoint="tcp://127.0.0.1:$(free_port)"
start_coordinator "$endpoint" 1
start_worker w1 "$endpoint" 1
start_worker w2 "$endpoint" 1

wait_for_log 60 "$TEST_TMP/worker-w1.log" "event=spool_write_failed attempt=" \
    || abort "w1 did not log a spool write failure"
fault_at=$(now_seconds)
attempt=$(sed -n 's/.*event=spool_write_failed attempt=\([0-9a-f-]*\).*/\1/p' \
    "$TEST_TMP/worker-w1.log" | head -n 1)
say "w1 could not spool the result of attempt $attempt; freeing the spool"
rm -f "$spool/filler"

wait_coordinator
wait_workers
check_eq "coordinator exit status" 0 "$COORDINATOR_STATUS"
recovery=$(seconds_since "$fault_at")

grep -q "event=spool_write_failed attempt=$attempt error=\"No space left on device\"" \
    "$TEST_TMP/worker-w1.log" || fail "the spool failure of $attempt was not logged as ENOSPC"
grep -q "event=result_sent attempt=$attempt" "$TEST_TMP/worker-w1.log" \
    && fail "w1 sent the result of attempt $attempt although it could not spool it"
check_eq "state of the attempt whose result could not be spooled" expired \
    "$(sql "SELECT state FROM attempts WHERE id = '$attempt'")"
check_eq "results of that attempt" 0 \
    "$(sql "SELECT count(*) FROM results WHERE attempt_id = '$attempt'")"
grep -q "lease expired job=.* attempt=$attempt" "$COORDINATOR_LOG.err" \
    || fail "coordinator log has no lease expiry for attempt $attempt"
grep -q "event=result_acknowledged" "$TEST_TMP/worker-w1.log" \
    || fail "w1 delivered no result after its spool had space again"
check_eq "entries left in w1's spool" "" "$(ls -A "$spool")"

job_recovery=$(job_final_after "$fault_at" "$attempt")
check_exactly_once spool_full
echo "$FAULT_SUMMARY affected_job_final_s=$job_recovery run_complete_s=$recovery"
finish
