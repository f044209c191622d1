#!/usr/bin/env bash
# Fault: restart PostgreSQL (fast shutdown, start again a few seconds later)
# in the middle of the run. The coordinator must buffer the results that
# arrive meanwhile, reconnect and commit them, and nothing may be lost. This
# script runs its own throwaway cluster, because it stops it.
. "$(dirname "$0")/lib.sh"
setup_tmp fault-restart-postgres

pg_dir="$TEST_TMP/pg"
pg_bindir=$(pg_config --bindir 2>/dev/null || echo /usr/lib/postgresql/15/bin)
[ -x "$pg_bindir/pg_ctl" ] || pg_bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
if [ "$(id -u)" = 0 ]; then as_postgres="runuser -u postgres --"; else as_postgres=""; fi

stop_cluster () {
    "$DW_SOURCE_DIR/tests/pg_fixture.sh" stop "$pg_dir"
}
CLEANUP_HOOKS+=(stop_cluster)

# The options of tests/pg_fixture.sh, so the restarted server is the same.
start_server () {
    (cd /tmp && $as_postgres "$pg_bindir/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" \
        -w -t 30 -o "-c listen_addresses='' -k $pg_dir -p 5432 -c fsync=off \
        -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" start \
        >/dev/null)
}

"$DW_SOURCE_DIR/tests/pg_fixture.sh" start "$pg_dir"
export PGHOST="$pg_dir" PGPORT=5432 PGUSER=postgres
unset DATABASE_URL
setup_database fault_restart_postgres
write_slow_agent
run_reference

endpoint="tcp://127.0.0.1:$(free_port)"
start_coordinator "$endpoint" 1
start_worker w1 "$endpoint" 2
start_worker w2 "$endpoint" 2

wait_for_sql 60 "SELECT count(*) >= 2 FROM jobs WHERE final_outcome IS NOT NULL" \
    || fail "no job became final before the restart"
wait_for_sql 30 "SELECT count(*) = 2 FROM attempts WHERE state = 'leased'
                 AND leased_at <= now() - interval '1 second'" \
    || fail "the workers were not both running a job"
in_flight=$(sql "SELECT string_agg(id::text, ' ') FROM attempts WHERE state = 'leased'")
say "stopping PostgreSQL with attempts $in_flight running"
fault_at=$(now_seconds)
(cd /tmp && $as_postgres "$pg_bindir/pg_ctl" -D "$pg_dir/data" -m fast -w stop >/dev/null)

# Stay down until both in-flight results reached the coordinator.
for attempt in $in_flight; do
    wait_for_log 30 "$TEST_TMP/worker-w[12].log" "event=result_sent attempt=$attempt" \
        || fail "attempt $attempt did not send its result while PostgreSQL was down"
done
sleep 1
down_for=$(seconds_since "$fault_at")
say "starting PostgreSQL again after ${down_for}s"
start_server
wait_coordinator
wait_workers
check_eq "coordinator exit status" 0 "$COORDINATOR_STATUS"
recovery=$(seconds_since "$fault_at")

grep -q "event=database_down" "$COORDINATOR_LOG.err" \
    || fail "the coordinator did not notice the database outage"
grep -q "event=database_reconnected" "$COORDINATOR_LOG.err" \
    || fail "the coordinator did not reconnect to the database"
for attempt in $in_flight; do
    check_eq "results of attempt $attempt, which finished during the outage" 1 \
        "$(sql "SELECT count(*) FROM results WHERE attempt_id = '$attempt'")"
done
committed_after=$(sql "SELECT round((extract(epoch FROM max(stored_at)) - $fault_at)::numeric, 1)
                       FROM results WHERE attempt_id::text IN
                       ($(printf "'%s'," $in_flight | sed 's/,$//'))")

check_exactly_once restart_postgres
echo "$FAULT_SUMMARY down_s=$down_for buffered_results_committed_s=$committed_after run_complete_s=$recovery"
finish
