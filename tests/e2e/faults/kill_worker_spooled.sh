#!/usr/bin/env bash
# Fault: a worker finishes a job while the coordinator is down, then is
# killed with kill -9 before anything is acknowledged. Its result and the
# attempt's events are in its spool; after both restart, the result is stored
# once and every event of the attempt arrives.
. "$(dirname "$0")/lib.sh"
setup_database fault_kill_worker_spooled
setup_tmp fault-kill-worker-spooled
write_slow_agent
run_reference

endpoint="tcp://127.0.0.1:$(free_port)"
start_coordinator "$endpoint" 1
start_worker w1 "$endpoint" 3
victim=$LAST_WORKER_PID
wait_for_job_of 60 w1 || abort "w1 never ran a job"
attempt=$(leased_attempt_of w1 1)

say "kill -9 of the coordinator during attempt $attempt"
kill -KILL "$COORDINATOR_PID"
wait "$COORDINATOR_PID" 2>/dev/null || true
COORDINATOR_PID=""

spool="$TEST_TMP/worker-w1/spool"
for _ in $(seq 1 100); do
    [ -f "$spool/$attempt.result" ] && break
    sleep 0.2
done
[ -f "$spool/$attempt.result" ] || abort "the finished result never reached the spool"
[ -f "$spool/$attempt.events" ] || fail "the attempt's events were not spooled with its result"

say "kill -9 of worker w1 with attempt $attempt spooled"
kill_tree "$victim"
fault_at=$(now_seconds)

start_coordinator "$endpoint" 1
start_worker w1 "$endpoint" 0
wait_coordinator
wait_workers
check_eq "coordinator exit status" 0 "$COORDINATOR_STATUS"
recovery=$(seconds_since "$fault_at")

check_eq "results of the spooled attempt" 1 \
    "$(sql "SELECT count(*) FROM results WHERE attempt_id = '$attempt'")"
check_eq "stored events of the spooled attempt equal its events_total" t \
    "$(sql "SELECT r.events_total = (SELECT count(*) FROM events e WHERE e.attempt_id =
            r.attempt_id) AND r.events_total > 0 FROM results r WHERE r.attempt_id = '$attempt'")"
[ ! -e "$spool/$attempt.events" ] || fail "spooled events were not removed after delivery"

check_exactly_once kill_worker_spooled
echo "$FAULT_SUMMARY run_complete_s=$recovery"
finish
