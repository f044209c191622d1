#!/usr/bin/env bash
# Graceful stop of the coordinator: SIGTERM mid-run stops dispatch, waits for
# the results in flight, exits with status 4 and leaves the run resumable; the
# same command then completes it with exactly one final result per job.
. "$(dirname "$0")/lib.sh"
setup_database fault_drain_coordinator
setup_tmp fault-drain-coordinator
write_slow_agent
run_reference

# start_daemon_worker NAME ENDPOINT DELAY: a worker as a long-running daemon
# (no --exit-on-drain): it outlives the coordinator's drain and reconnects.
start_daemon_worker () {
    local name=$1 endpoint=$2 delay=$3
    make_worker_key "$name"
    admit_worker "$name"
    DW_STUB_DELAY_SECONDS="$delay" "$WORKER" --coordinator "$endpoint" --slots 1 \
        --data-dir "$TEST_TMP/worker-$name" --id "$name" --heartbeat-ms "$HEARTBEAT_MS" \
        --stub-agent "$SLOW_AGENT" --server-key "$SERVER_KEY_FILE" \
        >"$TEST_TMP/worker-$name.log" 2>&1 &
    LAST_WORKER_PID=$!
    WORKER_PIDS+=("$LAST_WORKER_PID")
    say "daemon worker $name started pid=$LAST_WORKER_PID delay=${delay}s"
}

endpoint="tcp://127.0.0.1:$(free_port)"
start_coordinator "$endpoint" 1
start_daemon_worker w1 "$endpoint" 2
start_daemon_worker w2 "$endpoint" 2
wait_for_job_of 60 w1 || abort "w1 never ran a job"

in_flight=$(sql "SELECT count(*) FROM attempts WHERE state = 'leased'")
say "SIGTERM to the coordinator with $in_flight attempts in flight"
kill -TERM "$COORDINATOR_PID"
wait_coordinator 60
check_eq "coordinator exit status after SIGTERM" 4 "$COORDINATOR_STATUS"
grep -q "run the same command again to resume" "$COORDINATOR_LOG.out" \
    || fail "the coordinator did not say how to resume"
check_eq "attempts still leased after the graceful stop" 0 \
    "$(sql "SELECT count(*) FROM attempts WHERE state = 'leased'")"
final_before=$(sql "SELECT count(*) FROM jobs WHERE final_outcome IS NOT NULL")
[ "$final_before" -lt "$(sql "SELECT count(*) FROM jobs")" ] \
    || fail "the run was already complete when the coordinator stopped"

# The daemon workers reconnect to the restarted coordinator and finish.
start_coordinator "$endpoint" 1
wait_coordinator
check_eq "coordinator exit status after resuming" 0 "$COORDINATOR_STATUS"
grep -q "resuming run" "$COORDINATOR_LOG.out" || fail "the second start did not resume the run"
for pid in "${WORKER_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
done
wait_workers

check_exactly_once drain_coordinator
echo "$FAULT_SUMMARY"
finish
