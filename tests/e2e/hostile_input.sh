#!/usr/bin/env bash
# Hostile input: a peer sends malformed, truncated, oversized, unexpected and
# replayed messages and a heartbeat flood while a real worker runs the day.
# Every message is rejected and counted, and the coordinator still completes
# the run with correct results.
. "$(dirname "$0")/lib.sh"
setup_database hostile
setup_tmp hostile

port=$(( 20000 + $$ % 20000 ))
endpoint="tcp://127.0.0.1:$port"
data="$TEST_TMP/data"
"$COORDINATOR" keygen --data-dir "$data" >/dev/null
"$WORKER" keygen --data-dir "$TEST_TMP/hostile" --id hostile >/dev/null
"$WORKER" keygen --data-dir "$TEST_TMP/worker" --id good >/dev/null
cp "$TEST_TMP/hostile/worker.cert" "$data/keys/workers/hostile.cert"
cp "$TEST_TMP/worker/worker.cert" "$data/keys/workers/good.cert"

"$COORDINATOR" --date 2026-02-01 --suite demo --agent stub --panel 4 --bind "$endpoint" \
    --data-dir "$data" --heartbeat-ms 200 >"$TEST_TMP/coordinator.out" \
    2>"$TEST_TMP/coordinator.err" &
coordinator=$!
trap 'kill $coordinator $worker 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
    grep -q "waiting for workers" "$TEST_TMP/coordinator.out" && break
    sleep 0.5
done

"$DW_BUILD_DIR/tests/hostile_peer" "$endpoint" "$data/keys/coordinator.cert" \
    "$TEST_TMP/hostile/worker.cert_secret" >"$TEST_TMP/hostile.out" 2>&1 \
    || fail "hostile peer checks failed: $(grep FAIL "$TEST_TMP/hostile.out" | tr '\n' ' ')"
cat "$TEST_TMP/hostile.out"

"$WORKER" --coordinator "$endpoint" --server-key "$data/keys/coordinator.cert" \
    --data-dir "$TEST_TMP/worker" --heartbeat-ms 200 --exit-on-drain \
    2>"$TEST_TMP/worker.err" &
worker=$!

for _ in $(seq 1 120); do
    kill -0 $coordinator 2>/dev/null || break
    sleep 1
done
if kill -0 $coordinator 2>/dev/null; then
    fail "coordinator did not finish within 120 s"
    kill $coordinator
fi
wait $coordinator || true
cat "$TEST_TMP/coordinator.out"

check_eq "jobs final" "4" "$(sql "SELECT count(*) FROM jobs WHERE final_outcome IS NOT NULL")"
grep -q "event=message_rejected" "$TEST_TMP/coordinator.err" \
    || fail "coordinator logged no rejected message"
grep -q "pass rate" "$TEST_TMP/coordinator.out" || fail "coordinator printed no summary"
hostile_key=$(grep -o 'public-key = "[^"]*"' "$TEST_TMP/hostile/worker.cert" | cut -d'"' -f2)
check_eq "results stored from the hostile peer" 0 \
    "$(sql "SELECT count(*) FROM results WHERE worker_id = '$hostile_key'")"

finish
