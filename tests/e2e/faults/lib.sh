# Helpers for the fault-injection scripts, which start the coordinator and
# workers as separate processes and inject a fault. Afterwards every job must
# have exactly one final result and the same outcome as a fault-free run of
# the same day and configuration. The stub agent's outcome depends only on
# the job's seed, which does not change between attempts.

. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

STUB_AGENT="$DW_SOURCE_DIR/tests/fixtures/demo/stub-agent"
FAULT_DAY=2026-01-05
HEARTBEAT_MS=200
# The broker's default lease: heartbeat x liveness 5 x 3.
LEASE_SECONDS=3
# Upper bound for one run of the 12 demo jobs on 2 workers, faults included.
RUN_TIMEOUT_SECONDS=150

COORDINATOR_PID=""
WORKER_PIDS=()
CLEANUP_HOOKS=()

# Like finish in ../lib.sh, but after the cleanup, because the temporary
# directory may hold a mount or a running cluster.
finish () {
    cleanup_faults
    if [ "$failures" -gt 0 ]; then
        echo "$failures check(s) failed; logs kept in $TEST_TMP" >&2
        exit 1
    fi
    rm -rf "$TEST_TMP"
    echo "all checks passed"
}

# Print a timestamped progress line on stderr (ctest shows it on failure).
say () {
    echo "[$(date +%T)] $*" >&2
}

now_seconds () {
    date +%s.%N
}

# seconds_since START: elapsed seconds with one decimal.
seconds_since () {
    awk -v a="$1" -v b="$(now_seconds)" 'BEGIN { printf "%.1f", b - a }'
}

# Fail and stop at once, for a step that the rest of the script needs.
abort () {
    fail "$*"
    finish
}

# check_eq_known BUG WHAT EXPECTED ACTUAL: check_eq for a check that a known
# bug breaks. When tests/cmake/faults.cmake lists BUG in DW_FAULTS_KNOWN_BUGS
# for this test, a mismatch is reported as an expected failure, and a match
# fails so that the entry is removed once the bug is fixed.
check_eq_known () {
    local bug=$1
    shift
    case " ${DW_FAULTS_KNOWN_BUGS:-} " in
    *" $bug "*)
        if [ "$2" != "$3" ]; then
            echo "XFAIL ($bug, a known bug): $1: expected '$2', got '$3'" >&2
        else
            fail "$1 now holds: known bug $bug looks fixed; remove it from" \
                "DW_FAULTS_KNOWN_BUGS in tests/cmake/faults.cmake"
        fi
        ;;
    *)
        check_eq "$@"
        ;;
    esac
}

# Ask the kernel for a free TCP port on ADDRESS (default 127.0.0.1).
free_port () {
    python3 -c 'import socket, sys
s = socket.socket()
s.bind((sys.argv[1], 0))
print(s.getsockname()[1])' "${1:-127.0.0.1}"
}

# Every descendant of PID, children before grandchildren.
descendants () {
    local child
    for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do
        echo "$child"
        descendants "$child"
    done
}

# Kill PID and everything it started with SIGKILL. The job runner puts each
# agent in its own session, so the process group alone would miss it.
kill_tree () {
    local pid=$1 tree
    [ -n "$pid" ] || return 0
    tree=$(descendants "$pid")
    kill -KILL "$pid" $tree 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# Stop every process this script started, then run the cleanup hooks
# (unmount, delete the namespace, stop the cluster). Runs once.
cleanup_faults () {
    local pid hook
    for pid in "${WORKER_PIDS[@]}"; do
        kill -CONT "$pid" 2>/dev/null || true
        kill_tree "$pid"
    done
    WORKER_PIDS=()
    kill_tree "$COORDINATOR_PID"
    COORDINATOR_PID=""
    for hook in "${CLEANUP_HOOKS[@]}"; do
        $hook || true
    done
    CLEANUP_HOOKS=()
}
on_exit () {
    local status=$?
    set +e
    cleanup_faults
    return "$status"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

# Write an agent wrapper that sleeps DW_STUB_DELAY_SECONDS (taken from the
# worker's environment, which passes DW_STUB_* variables on) and then runs
# the stub agent, so a fault can hit a worker in the middle of a job. The
# wrapper runs on the worker side, so the run's configuration hash and the
# job seeds stay those of a plain stub run. The sandbox makes only the
# agent program's own directory visible, so a copy of the stub agent sits
# next to the wrapper.
write_slow_agent () {
    local dir="$TEST_TMP/agent"
    mkdir -p "$dir"
    chmod 755 "$dir"
    cp "$STUB_AGENT" "$dir/stub-agent"
    SLOW_AGENT="$dir/slow-stub-agent"
    cat >"$SLOW_AGENT" <<'EOF_AGENT'
#!/bin/sh
sleep "${DW_STUB_DELAY_SECONDS:-0}"
exec "$(dirname "$0")/stub-agent" "$@"
EOF_AGENT
    chmod 755 "$SLOW_AGENT" "$dir/stub-agent"
}

# Create the coordinator's CURVE key in its data directory. Workers get
# their own keys from start_worker, so every connection is authenticated as
# in production.
setup_keys () {
    "$COORDINATOR" keygen --data-dir "$TEST_TMP/coordinator" >"$TEST_TMP/keygen.out"
    SERVER_KEY_FILE="$TEST_TMP/coordinator/keys/coordinator.cert"
    ALLOW_DIR="$TEST_TMP/coordinator/keys/workers"
}

# make_worker_key NAME: create worker NAME's key pair in its data directory.
make_worker_key () {
    "$WORKER" keygen --data-dir "$TEST_TMP/worker-$1" --id "$1" >>"$TEST_TMP/keygen.out"
}

# admit_worker NAME: copy worker NAME's public certificate into the allow
# directory, under a dot name first because zauth skips hidden files.
admit_worker () {
    cp "$TEST_TMP/worker-$1/worker.cert" "$ALLOW_DIR/.$1.cert"
    mv "$ALLOW_DIR/.$1.cert" "$ALLOW_DIR/$1.cert"
}

# Run the fault-free reference of FAULT_DAY with REPEATS in database
# REF_DATABASE (created here) and two local workers.
run_reference () {
    local repeats=${1:-1}
    setup_keys
    REF_DATABASE="${PGDATABASE}_ref"
    psql -X -q -d postgres -c "CREATE DATABASE $REF_DATABASE" >/dev/null
    say "reference run in database $REF_DATABASE"
    if ! PGDATABASE="$REF_DATABASE" timeout "$RUN_TIMEOUT_SECONDS" "$COORDINATOR" \
            --date "$FAULT_DAY" --suite demo --agent stub --repeats "$repeats" --local-workers 2 \
            --data-dir "$TEST_TMP/coordinator" --heartbeat-ms "$HEARTBEAT_MS" \
            >"$TEST_TMP/reference.out" 2>"$TEST_TMP/reference.err"; then
        fail "reference run failed; see $TEST_TMP/reference.err"
        finish
    fi
}

# Start the coordinator in the background on ENDPOINT with REPEATS; more
# options may follow. Output goes to $TEST_TMP/coordinator-N.{out,err}.
COORDINATOR_STARTS=0
start_coordinator () {
    local endpoint=$1 repeats=$2
    shift 2
    COORDINATOR_STARTS=$((COORDINATOR_STARTS + 1))
    COORDINATOR_LOG="$TEST_TMP/coordinator-$COORDINATOR_STARTS"
    "$COORDINATOR" --date "$FAULT_DAY" --suite demo --agent stub --repeats "$repeats" \
        --bind "$endpoint" \
        --data-dir "$TEST_TMP/coordinator" --heartbeat-ms "$HEARTBEAT_MS" \
        "$@" >"$COORDINATOR_LOG.out" 2>"$COORDINATOR_LOG.err" &
    COORDINATOR_PID=$!
    say "coordinator started pid=$COORDINATOR_PID endpoint=$endpoint"
}

# start_worker NAME ENDPOINT DELAY_SECONDS [PREFIX...]: start a worker with
# one slot whose agent sleeps DELAY_SECONDS first. Its key is created and
# admitted unless it exists. PREFIX (for example "nsenter --net=FILE") runs
# the worker inside something. Sets LAST_WORKER_PID.
start_worker () {
    local name=$1 endpoint=$2 delay=$3
    shift 3
    if [ ! -f "$TEST_TMP/worker-$name/worker.cert" ]; then
        make_worker_key "$name"
        admit_worker "$name"
    fi
    DW_STUB_DELAY_SECONDS="$delay" "$@" "$WORKER" --coordinator "$endpoint" --slots 1 \
        --data-dir "$TEST_TMP/worker-$name" --id "$name" --heartbeat-ms "$HEARTBEAT_MS" \
        --exit-on-drain --stub-agent "$SLOW_AGENT" --server-key "$SERVER_KEY_FILE" \
        >"$TEST_TMP/worker-$name.log" 2>&1 &
    LAST_WORKER_PID=$!
    WORKER_PIDS+=("$LAST_WORKER_PID")
    say "worker $name started pid=$LAST_WORKER_PID delay=${delay}s"
}

# wait_for_sql TIMEOUT_SECONDS QUERY: wait until QUERY returns 't'.
wait_for_sql () {
    local deadline=$((SECONDS + $1))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if [ "$(sql "$2" 2>/dev/null)" = "t" ]; then
            return 0
        fi
        sleep 0.2
    done
    return 1
}

# wait_for_log TIMEOUT_SECONDS FILES PATTERN: wait until one of FILES (a
# glob pattern without spaces) has a line matching the extended regular
# expression PATTERN.
wait_for_log () {
    local deadline=$((SECONDS + $1))
    while [ "$SECONDS" -lt "$deadline" ]; do
        # shellcheck disable=SC2086
        if grep -Eq "$3" $2 2>/dev/null; then
            return 0
        fi
        sleep 0.2
    done
    return 1
}

# Wait for the coordinator to finish the run; sets COORDINATOR_STATUS.
wait_coordinator () {
    local deadline=$((SECONDS + ${1:-$RUN_TIMEOUT_SECONDS}))
    while kill -0 "$COORDINATOR_PID" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
        sleep 0.2
    done
    if kill -0 "$COORDINATOR_PID" 2>/dev/null; then
        fail "coordinator still running after ${1:-$RUN_TIMEOUT_SECONDS} s"
        kill_tree "$COORDINATOR_PID"
        COORDINATOR_STATUS=timeout
    else
        set +e
        wait "$COORDINATOR_PID"
        COORDINATOR_STATUS=$?
        set -e
    fi
    COORDINATOR_PID=""
}

# Wait for every worker still running to exit after the run's drain.
wait_workers () {
    local pid deadline=$((SECONDS + 20))
    for pid in "${WORKER_PIDS[@]}"; do
        while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
            sleep 0.2
        done
    done
}

# worker_key NAME: worker NAME's public key in Z85 text. With CURVE the
# coordinator identifies a worker by this key, so attempts.worker_id contains it.
worker_key () {
    sed -n 's/^ *public-key = "\(.*\)"$/\1/p' "$TEST_TMP/worker-$1/worker.cert"
}

# The leased attempt of worker NAME that has run for at least MIN_AGE
# seconds, or nothing.
leased_attempt_of () {
    sql "SELECT id FROM attempts WHERE worker_id = '$(worker_key "$1")' AND state = 'leased'
         AND leased_at <= now() - interval '${2:-0} seconds' ORDER BY leased_at LIMIT 1"
}

# wait_for_job_of TIMEOUT NAME: wait until worker NAME is one second into a
# job, so its agent is running.
wait_for_job_of () {
    wait_for_sql "$1" "SELECT EXISTS (SELECT 1 FROM attempts
                       WHERE worker_id = '$(worker_key "$2")' AND state = 'leased'
                       AND leased_at <= now() - interval '1 second')"
}

# Seconds from the epoch time START to the moment the job of ATTEMPT got its
# final result (or was made final by lease expiry).
job_final_after () {
    sql "SELECT round((extract(epoch FROM coalesce(
             (SELECT r.stored_at FROM results r WHERE r.attempt_id = j.final_attempt_id),
             (SELECT a.ended_at FROM attempts a WHERE a.id = j.final_attempt_id)))
             - $1)::numeric, 1)
         FROM jobs j JOIN attempts a ON a.job_id = j.id WHERE a.id = '$2'"
}

# Check the exactly-once properties against the reference database and print
# one summary line "faults: NAME jobs=... lost=... duplicated=... ...".
check_exactly_once () {
    local name=$1

    local jobs not_final
    jobs=$(sql "SELECT count(*) FROM jobs")
    not_final=$(sql "SELECT count(*) FROM jobs WHERE final_outcome IS NULL")
    check_eq "jobs without a final outcome" 0 "$not_final"
    check_eq "jobs in the run and in the reference" \
        "$(PGDATABASE=$REF_DATABASE sql "SELECT count(*) FROM jobs")" "$jobs"
    check_eq "configuration hash of the run and the reference" \
        "$(PGDATABASE=$REF_DATABASE sql "SELECT config_hash FROM runs")" \
        "$(sql "SELECT config_hash FROM runs")"
    check_eq "runs" 1 "$(sql "SELECT count(*) FROM runs")"

    # A job made final by lease expiry at max attempts has no results row.
    # Every other final job has exactly one final result, the one it names.
    local expired_final wrong_final
    expired_final=$(sql "SELECT count(*) FROM jobs j JOIN attempts a ON a.id = j.final_attempt_id
                         WHERE j.final_outcome = 'infra_error' AND a.state = 'expired'
                         AND NOT EXISTS (SELECT 1 FROM results r WHERE r.job_id = j.id
                                         AND r.disposition = 'final')")
    wrong_final=$(sql "SELECT count(*) FROM jobs j WHERE j.final_outcome IS NOT NULL
                       AND (SELECT count(*) FROM results r WHERE r.job_id = j.id
                            AND r.disposition = 'final') <> 1
                       AND NOT (j.final_outcome = 'infra_error' AND EXISTS
                                (SELECT 1 FROM attempts a WHERE a.id = j.final_attempt_id
                                 AND a.state = 'expired'))")
    check_eq "final jobs without exactly one final result" 0 "$wrong_final"
    check_eq "final results naming another attempt than jobs.final_attempt_id" 0 \
        "$(sql "SELECT count(*) FROM results r JOIN jobs j ON j.id = r.job_id
                WHERE r.disposition = 'final' AND r.attempt_id <> j.final_attempt_id")"
    check_eq "final results whose outcome differs from jobs.final_outcome" 0 \
        "$(sql "SELECT count(*) FROM results r JOIN jobs j ON j.id = r.job_id
                WHERE r.disposition = 'final' AND r.outcome <> j.final_outcome")"
    check_eq "jobs made final by lease expiry at max attempts" 0 "$expired_final"

    # No duplicates: one result per attempt (the primary key), every
    # attempt's events numbered 1..n without gaps, and every result's events
    # all stored.
    local duplicated
    duplicated=$(sql "SELECT (SELECT count(*) FROM (SELECT attempt_id FROM results
                              GROUP BY attempt_id HAVING count(*) > 1) d)
                           + (SELECT count(*) FROM (SELECT job_id FROM results
                              WHERE disposition = 'final' GROUP BY job_id
                              HAVING count(*) > 1) f)")
    check_eq "duplicated results" 0 "$duplicated"
    check_eq "attempts whose events are not numbered 1..n" 0 \
        "$(sql "SELECT count(*) FROM (SELECT attempt_id FROM events GROUP BY attempt_id
                HAVING min(seq) <> 1 OR max(seq) <> count(*)) e")"
    check_eq_known events_lost_in_db_outage \
        "results whose events_total differs from the stored events" 0 \
        "$(sql "SELECT count(*) FROM results r WHERE r.events_total <>
                (SELECT count(*) FROM events e WHERE e.attempt_id = r.attempt_id)")"
    check_eq "results of attempts that are not finished" 0 \
        "$(sql "SELECT count(*) FROM results r JOIN attempts a ON a.id = r.attempt_id
                WHERE a.state <> 'finished'")"

    # Same outcome per job as the fault-free reference, infra_error excluded.
    local outcomes="SELECT t.instance_id || ' ' || j.repeat_index || ' ' || j.final_outcome
                    FROM jobs j JOIN tasks t ON t.id = j.task_id
                    WHERE j.final_outcome IS DISTINCT FROM 'infra_error' ORDER BY 1"
    PGDATABASE=$REF_DATABASE sql "$outcomes" >"$TEST_TMP/outcomes.reference"
    sql "$outcomes" >"$TEST_TMP/outcomes.run"
    local lost
    lost=$(comm -23 "$TEST_TMP/outcomes.reference" "$TEST_TMP/outcomes.run" | wc -l)
    if ! diff -u "$TEST_TMP/outcomes.reference" "$TEST_TMP/outcomes.run" >&2; then
        fail "per-task outcomes differ from the fault-free reference (diff above)"
    fi
    local rate="SELECT count(*) FILTER (WHERE final_outcome = 'resolved') || '/' ||
                count(*) FILTER (WHERE final_outcome NOT IN
                                 ('infra_error', 'harness_error', 'cancelled')) FROM jobs"
    local ref_rate run_rate
    ref_rate=$(PGDATABASE=$REF_DATABASE sql "$rate")
    run_rate=$(sql "$rate")
    check_eq "resolved/valid jobs compared with the reference" "$ref_rate" "$run_rate"
    check_eq "jobs that ended as infra_error" 0 \
        "$(sql "SELECT count(*) FROM jobs WHERE final_outcome = 'infra_error'")"

    local attempts superseded retried expired
    attempts=$(sql "SELECT count(*) FROM attempts")
    superseded=$(sql "SELECT count(*) FROM results WHERE disposition = 'superseded'")
    retried=$(sql "SELECT count(*) FROM results WHERE disposition = 'retried'")
    expired=$(sql "SELECT count(*) FROM attempts WHERE state = 'expired'")
    FAULT_SUMMARY="faults: $name jobs=$jobs attempts=$attempts expired=$expired"
    FAULT_SUMMARY+=" superseded=$superseded retried=$retried lost=$((lost + not_final))"
    FAULT_SUMMARY+=" duplicated=$duplicated pass_rate=$run_rate reference=$ref_rate"
    FAULT_SUMMARY+=" final_by_expiry=$expired_final"
}
