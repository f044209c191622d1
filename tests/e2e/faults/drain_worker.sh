#!/usr/bin/env bash
# Graceful drain of workers: SIGTERM to a worker with --drain-seconds 0 hands
# its running job back at once (the attempt is "returned" and does not count
# as a failure); SIGTERM to a worker with time to drain finishes its job and
# delivers the result before it exits. Every job still ends exactly once.
. "$(dirname "$0")/lib.sh"
setup_database fault_drain_worker
setup_tmp fault-drain-worker
write_slow_agent
run_reference

# start_draining_worker NAME ENDPOINT DELAY DRAIN_SECONDS: like start_worker,
# with the worker's --drain-seconds set.
start_draining_worker () {
    local name=$1 endpoint=$2 delay=$3 drain=$4
    make_worker_key "$name"
    admit_worker "$name"
    DW_STUB_DELAY_SECONDS="$delay" "$WORKER" --coordinator "$endpoint" --slots 1 \
        --data-dir "$TEST_TMP/worker-$name" --id "$name" --heartbeat-ms "$HEARTBEAT_MS" \
        --exit-on-drain --stub-agent "$SLOW_AGENT" --server-key "$SERVER_KEY_FILE" \
        --drain-seconds "$drain" >"$TEST_TMP/worker-$name.log" 2>&1 &
    LAST_WORKER_PID=$!
    WORKER_PIDS+=("$LAST_WORKER_PID")
    say "worker $name started pid=$LAST_WORKER_PID drain=${drain}s"
}

# wait_exit PID SECONDS: wait for PID to exit and set EXIT_STATUS to its
# status, or to "timeout".
wait_exit () {
    local deadline=$((SECONDS + $2))
    while kill -0 "$1" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
        sleep 0.2
    done
    if kill -0 "$1" 2>/dev/null; then
        EXIT_STATUS=timeout
        return
    fi
    set +e
    wait "$1"
    EXIT_STATUS=$?
    set -e
}

endpoint="tcp://127.0.0.1:$(free_port)"
start_coordinator "$endpoint" 1

# 1. No time to drain: the job goes back to the queue.
start_draining_worker quick "$endpoint" 4 0
quick=$LAST_WORKER_PID
wait_for_job_of 60 quick || abort "worker quick never ran a job"
returned=$(leased_attempt_of quick 1)
say "SIGTERM to worker quick during attempt $returned"
kill -TERM "$quick"
wait_exit "$quick" 15
check_eq "exit status of the worker that handed its job back" 0 "$EXIT_STATUS"
wait_for_sql 10 "SELECT state <> 'leased' FROM attempts WHERE id = '$returned'" || true
check_eq "state of the handed-back attempt" returned \
    "$(sql "SELECT state FROM attempts WHERE id = '$returned'")"
check_eq "results of the handed-back attempt" 0 \
    "$(sql "SELECT count(*) FROM results WHERE attempt_id = '$returned'")"

# 2. Time to drain: the running job finishes and its result is delivered.
start_draining_worker patient "$endpoint" 3 60
patient=$LAST_WORKER_PID
wait_for_job_of 60 patient || abort "worker patient never ran a job"
finished=$(leased_attempt_of patient 1)
say "SIGTERM to worker patient during attempt $finished"
kill -TERM "$patient"
wait_exit "$patient" 60
check_eq "exit status of the worker that drained" 0 "$EXIT_STATUS"
check_eq "state of the drained attempt" finished \
    "$(sql "SELECT state FROM attempts WHERE id = '$finished'")"
check_eq "results of the drained attempt" 1 \
    "$(sql "SELECT count(*) FROM results WHERE attempt_id = '$finished'")"
check_eq "jobs given to the draining worker after SIGTERM" 1 \
    "$(sql "SELECT count(*) FROM attempts WHERE worker_id = '$(worker_key patient)'")"

# 3. A normal worker finishes the day, including the handed-back job.
start_worker rest "$endpoint" 0
wait_coordinator
wait_workers
check_eq "coordinator exit status" 0 "$COORDINATOR_STATUS"
check_eq "attempts used by the handed-back job" 1 \
    "$(sql "SELECT attempts FROM jobs j JOIN attempts a ON a.job_id = j.id
            WHERE a.id = '$returned'")"

check_exactly_once drain_worker
echo "$FAULT_SUMMARY"
finish
