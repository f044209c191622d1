#!/usr/bin/env bash
# Fault: kill -9 a worker in the middle of a job. Its attempt's lease must
# expire, the job must be retried as an infrastructure failure on another
# worker, and every job must end with exactly one final result.
. "$(dirname "$0")/lib.sh"
setup_database fault_kill_worker
setup_tmp fault-kill-worker
write_slow_agent
run_reference

endpoint="tcp://127.0.0.1:$(free_port)"
start_coordinator "$endpoint" 1
start_worker w1 "$endpoint" 2
victim=$LAST_WORKER_PID
start_worker w2 "$endpoint" 2

wait_for_job_of 60 w1 || abort "w1 never ran a job"
attempt=$(leased_attempt_of w1 1)
say "killing w1 (pid $victim) during attempt $attempt"
fault_at=$(now_seconds)
kill_tree "$victim"

# A replacement worker takes over w1's share.
start_worker w3 "$endpoint" 2
wait_coordinator
wait_workers
check_eq "coordinator exit status" 0 "$COORDINATOR_STATUS"
recovery=$(seconds_since "$fault_at")

check_eq "state of the killed attempt" expired \
    "$(sql "SELECT state FROM attempts WHERE id = '$attempt'")"
check_eq "results of the killed attempt" 0 \
    "$(sql "SELECT count(*) FROM results WHERE attempt_id = '$attempt'")"
check_eq "attempts of the killed attempt's job" 2 \
    "$(sql "SELECT attempts FROM jobs j JOIN attempts a ON a.job_id = j.id
            WHERE a.id = '$attempt'")"
check_eq "worker of the retried attempt is not w1" 0 \
    "$(sql "SELECT count(*) FROM jobs j JOIN attempts a ON a.id = j.final_attempt_id
            JOIN attempts k ON k.job_id = j.id WHERE k.id = '$attempt'
            AND a.worker_id = '$(worker_key w1)'")"
grep -q "lease expired job=.* attempt=$attempt" "$COORDINATOR_LOG.err" \
    || fail "coordinator log has no lease expiry for attempt $attempt"

job_recovery=$(job_final_after "$fault_at" "$attempt")
check_exactly_once kill_worker
echo "$FAULT_SUMMARY affected_job_final_s=$job_recovery run_complete_s=$recovery"
finish
