#!/usr/bin/env bash
# Fault: a worker whose CURVE key is not in the coordinator's allow
# directory, and one that connects without CURVE, try to join the run. Both
# must fail the handshake: neither registers, gets a job or has anything
# stored, while an admitted worker completes the run.
. "$(dirname "$0")/lib.sh"

# Skip on a build without CURVE authentication.
require_curve () {
    if ! "$COORDINATOR" --help 2>&1 | grep -Eq -- "--curve|keygen"; then
        echo "SKIP: this coordinator has no CURVE authentication (no keygen in --help)" >&2
        exit 77
    fi
}
require_curve

setup_database fault_unlisted_key
setup_tmp fault-unlisted-key
write_slow_agent
run_reference

endpoint="tcp://127.0.0.1:$(free_port)"
start_coordinator "$endpoint" 1

# A key that was never admitted: start_worker admits only keys it creates.
make_worker_key intruder
start_worker intruder "$endpoint" 0
intruder_pid=$LAST_WORKER_PID
intruder=$(worker_key intruder)

# No CURVE at all: --insecure on a loopback endpoint is accepted by the
# worker, but the coordinator requires CURVE.
"$WORKER" --coordinator "$endpoint" --slots 1 --data-dir "$TEST_TMP/worker-plain" --id plain \
    --heartbeat-ms "$HEARTBEAT_MS" --exit-on-drain --stub-agent "$SLOW_AGENT" --insecure \
    >"$TEST_TMP/worker-plain.log" 2>&1 &
plain_pid=$!
WORKER_PIDS+=("$plain_pid")

# Let both try for a few reconnect rounds before the admitted worker joins.
sleep 5
check_eq "attempts before an admitted worker joined" 0 "$(sql "SELECT count(*) FROM attempts")"
start_worker w1 "$endpoint" 0
wait_coordinator
# The rejected workers never hear that the run is over.
kill_tree "$intruder_pid"
kill_tree "$plain_pid"
wait_workers
check_eq "coordinator exit status" 0 "$COORDINATOR_STATUS"

for name in intruder plain; do
    grep -q "event=registered" "$TEST_TMP/worker-$name.log" \
        && fail "worker $name registered although its key is not admitted"
    grep -q "event=job_started" "$TEST_TMP/worker-$name.log" \
        && fail "worker $name started a job"
    grep -q "event=disconnected reason=no_welcome" "$TEST_TMP/worker-$name.log" \
        || fail "worker $name did not log that it got no welcome"
done
check_eq "workers rows for the unlisted key" 0 \
    "$(sql "SELECT count(*) FROM workers WHERE id = '$intruder'")"
check_eq "workers rows" 1 "$(sql "SELECT count(*) FROM workers")"
check_eq "attempts of any worker but w1" 0 \
    "$(sql "SELECT count(*) FROM attempts WHERE worker_id <> '$(worker_key w1)'")"
check_eq "results of any worker but w1" 0 \
    "$(sql "SELECT count(*) FROM results WHERE worker_id <> '$(worker_key w1)'")"
grep -Fq -e "$intruder" "$COORDINATOR_LOG.err" \
    && fail "the coordinator log names the unlisted key: it got past the handshake"
grep -q "worker=plain" "$COORDINATOR_LOG.err" \
    && fail "the coordinator log names the worker without CURVE"

check_exactly_once unlisted_key
echo "$FAULT_SUMMARY"
finish
