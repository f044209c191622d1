#!/usr/bin/env bash
# Fault: kill -9 the coordinator in the middle of the run and start the same
# command again after the workers have finished jobs it never saw. The run
# must resume (same run id, no new jobs), the workers must reconnect and
# deliver their spooled results, and every job must end with exactly one
# final result.
. "$(dirname "$0")/lib.sh"
setup_database fault_kill_coordinator
setup_tmp fault-kill-coordinator
write_slow_agent
run_reference

endpoint="tcp://127.0.0.1:$(free_port)"
start_coordinator "$endpoint" 1
first_log=$COORDINATOR_LOG
start_worker w1 "$endpoint" 2
start_worker w2 "$endpoint" 2

wait_for_sql 60 "SELECT count(*) >= 2 FROM jobs WHERE final_outcome IS NOT NULL" \
    || fail "no job became final before the coordinator was killed"
wait_for_sql 30 "SELECT count(*) = 2 FROM attempts WHERE state = 'leased'
                 AND leased_at <= now() - interval '1 second'" \
    || fail "the workers were not both running a job"
run_id=$(sql "SELECT id FROM runs")
jobs_before=$(sql "SELECT count(*) FROM jobs")
in_flight=$(sql "SELECT string_agg(id::text, ' ') FROM attempts WHERE state = 'leased'")
say "killing the coordinator (pid $COORDINATOR_PID) with attempts $in_flight running"
fault_at=$(now_seconds)
kill_tree "$COORDINATOR_PID"
COORDINATOR_PID=""

# Stay down until the workers have finished those attempts and spooled
# their results.
for attempt in $in_flight; do
    wait_for_log 30 "$TEST_TMP/worker-w[12].log" "event=job_finished attempt=$attempt" \
        || fail "attempt $attempt did not finish while the coordinator was down"
done
down_for=$(seconds_since "$fault_at")
say "restarting the coordinator after ${down_for}s"
start_coordinator "$endpoint" 1
wait_coordinator
wait_workers
check_eq "restarted coordinator exit status" 0 "$COORDINATOR_STATUS"
recovery=$(seconds_since "$fault_at")

grep -q "resuming run $run_id" "$COORDINATOR_LOG.out" \
    || fail "the restarted coordinator did not resume run $run_id"
grep -q ", 0 new jobs" "$COORDINATOR_LOG.out" || fail "the restarted coordinator added jobs"
check_eq "jobs after the restart" "$jobs_before" "$(sql "SELECT count(*) FROM jobs")"
# Those attempts finished after the kill, so only the restarted coordinator
# can have stored their results: the workers kept them in their spools and
# sent them again.
for attempt in $in_flight; do
    check_eq "results of attempt $attempt, which finished while the coordinator was down" 1 \
        "$(sql "SELECT count(*) FROM results WHERE attempt_id = '$attempt'")"
    grep -q "event=result_stored .*attempt=$attempt" "$COORDINATOR_LOG.err" \
        || fail "the restarted coordinator did not store the result of attempt $attempt"
done
for name in w1 w2; do
    [ -z "$(ls -A "$TEST_TMP/worker-$name/spool" 2>/dev/null)" ] \
        || fail "worker $name's spool is not empty after the run"
done

check_exactly_once kill_coordinator
echo "$FAULT_SUMMARY down_s=$down_for run_complete_s=$recovery"
finish
