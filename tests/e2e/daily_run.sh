#!/usr/bin/env bash
# End to end: the coordinator with two local workers runs the demo suite,
# every job reaches one final outcome in PostgreSQL, the printed summary
# matches the rows, and running the same day again adds nothing.
. "$(dirname "$0")/lib.sh"
setup_database daily
setup_tmp daily

day=2026-01-05
run () {
    "$COORDINATOR" --date "$day" --suite demo --agent stub --repeats 2 --local-workers 2 \
        --data-dir "$TEST_TMP/data" --heartbeat-ms 200 "$@"
}

set +e
run >"$TEST_TMP/first.out" 2>"$TEST_TMP/first.err"
status=$?
set -e
cat "$TEST_TMP/first.out"
check_eq "first run exit status" 0 "$status"

tasks=$(sql "SELECT count(*) FROM tasks")
jobs=$(sql "SELECT count(*) FROM jobs")
final=$(sql "SELECT count(*) FROM jobs WHERE final_outcome IS NOT NULL")
check_eq "jobs = tasks x 2 repeats" "$((tasks * 2))" "$jobs"
check_eq "every job final" "$jobs" "$final"
[ "$tasks" -ge 12 ] || fail "demo suite has $tasks tasks, expected at least 12"

# Each final job points at exactly one stored result with disposition final.
orphans=$(sql "SELECT count(*) FROM jobs j LEFT JOIN results r ON r.attempt_id = j.final_attempt_id
               AND r.disposition = 'final' WHERE r.attempt_id IS NULL")
check_eq "final jobs without their final result" 0 "$orphans"
finals_per_job=$(sql "SELECT coalesce(max(c), 0) FROM (SELECT count(*) c FROM results
                      WHERE disposition = 'final' GROUP BY job_id) s")
check_eq "final results per job (max)" 1 "$finals_per_job"

# The summary's pass rate matches the database.
resolved=$(sql "SELECT count(*) FROM jobs WHERE final_outcome = 'resolved'")
valid=$(sql "SELECT count(*) FROM jobs WHERE final_outcome NOT IN
             ('infra_error', 'harness_error', 'cancelled')")
grep -q "pass rate: .* ($resolved/$valid)" "$TEST_TMP/first.out" \
    || fail "summary does not report $resolved/$valid resolved"
for outcome in resolved unresolved agent_error timeout infra_error; do
    count=$(sql "SELECT count(*) FROM jobs WHERE final_outcome = '$outcome'")
    grep -q "$outcome $count" "$TEST_TMP/first.out" \
        || fail "summary does not list '$outcome $count'"
done
[ "$resolved" -gt 0 ] || fail "no job was resolved: the stub agent should solve some tasks"
[ "$resolved" -lt "$valid" ] || fail "every job was resolved: the stub agent should fail some"

# Agent events were stored for the attempts.
events=$(sql "SELECT count(DISTINCT attempt_id) FROM events")
attempts=$(sql "SELECT count(*) FROM attempts")
check_eq "attempts with events" "$attempts" "$events"

# Running the same day again resumes the run and adds nothing.
before=$(sql "SELECT count(*) || '/' || (SELECT count(*) FROM attempts) || '/' ||
              (SELECT count(*) FROM results) || '/' || (SELECT count(*) FROM events) FROM jobs")
set +e
run >"$TEST_TMP/second.out" 2>"$TEST_TMP/second.err"
status=$?
set -e
cat "$TEST_TMP/second.out"
check_eq "second run exit status" 0 "$status"
grep -q "resuming run" "$TEST_TMP/second.out" || fail "second run did not resume"
grep -q ", 0 new jobs" "$TEST_TMP/second.out" || fail "second run created jobs"
after=$(sql "SELECT count(*) || '/' || (SELECT count(*) FROM attempts) || '/' ||
             (SELECT count(*) FROM results) || '/' || (SELECT count(*) FROM events) FROM jobs")
check_eq "jobs/attempts/results/events after the second run" "$before" "$after"
runs=$(sql "SELECT count(*) FROM runs")
check_eq "runs" 1 "$runs"

finish
