#!/usr/bin/env bash
# Fault: SIGSTOP a worker in the middle of a job for longer than its lease,
# then SIGCONT it. The attempt expires and another worker finishes the job.
# The stopped worker reconnects and delivers its late result, which must be
# stored as superseded. Every job keeps exactly one final result.
. "$(dirname "$0")/lib.sh"
setup_database fault_stop_worker
setup_tmp fault-stop-worker
write_slow_agent
run_reference

endpoint="tcp://127.0.0.1:$(free_port)"
start_coordinator "$endpoint" 1
start_worker w1 "$endpoint" 2
victim=$LAST_WORKER_PID
start_worker w2 "$endpoint" 2

wait_for_job_of 60 w1 || abort "w1 never ran a job"
attempt=$(leased_attempt_of w1 1)
say "stopping w1 (pid $victim) during attempt $attempt"
fault_at=$(now_seconds)
kill -STOP "$victim"

# Keep w1 stopped until another attempt has made the job final.
wait_for_sql 60 "SELECT j.final_attempt_id IS NOT NULL AND j.final_attempt_id <> '$attempt'
                 FROM jobs j JOIN attempts a ON a.job_id = j.id WHERE a.id = '$attempt'" \
    || fail "the job of attempt $attempt did not become final while w1 was stopped"
stopped_for=$(seconds_since "$fault_at")
say "continuing w1 after ${stopped_for}s"
kill -CONT "$victim"

wait_for_sql 60 "SELECT EXISTS (SELECT 1 FROM results WHERE attempt_id = '$attempt')" \
    || fail "w1 never delivered the late result of attempt $attempt"
wait_coordinator
wait_workers
check_eq "coordinator exit status" 0 "$COORDINATOR_STATUS"
recovery=$(seconds_since "$fault_at")

check_eq "disposition of the late result" superseded \
    "$(sql "SELECT disposition FROM results WHERE attempt_id = '$attempt'")"
grep -q "lease expired job=.* attempt=$attempt" "$COORDINATOR_LOG.err" \
    || fail "coordinator log has no lease expiry for attempt $attempt"
grep -Fq "event=worker_lost worker=$(worker_key w1)" "$COORDINATOR_LOG.err" \
    || fail "coordinator did not notice that w1 went silent"
grep -q "event=result_acknowledged attempt=$attempt disposition=superseded" \
    "$TEST_TMP/worker-w1.log" || fail "w1 did not get the superseded acknowledgement"
[ -z "$(ls -A "$TEST_TMP/worker-w1/spool" 2>/dev/null)" ] \
    || fail "w1's spool is not empty after the run"

job_recovery=$(job_final_after "$fault_at" "$attempt")
check_exactly_once stop_worker
echo "$FAULT_SUMMARY affected_job_final_s=$job_recovery stopped_s=$stopped_for run_complete_s=$recovery"
finish
