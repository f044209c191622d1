#!/usr/bin/env bash
# End to end: forty simulated days of the fast synthetic suite through the
# real coordinator, two local workers and the stub agent. From day 30 the
# stub's solve rate of four tasks drops by 40 points, so the panel's true
# pass rate drops by 10 points. Expected exit statuses: 0 on days 1-29, 10 on
# exactly one day from day 30 to day 37, and 0 on every later day. On day 40,
# 'coordinator detect --json' shows the degradation with its change day and
# the four degraded tasks at the top of the task table.
#
# Runs per day and expected delay:
#   The panel has 16 tasks with stub rates from 0.03 to 0.97 (make-fast-suite
#   RATES). Tasks t01, t05, t09 and t13 (rates 0.88-0.92) drop by 0.40, so
#   the mean drops from 0.623 to 0.523 without clipping. With 3 repeats there
#   are 48 runs a day, and the baseline is 14 days (672 runs).
#   The detector's statistic is Z = D / SE with
#     SE = sqrt(phi (V_pre / N_pre^2 + V_post / N_post^2)),
#   and the mean of p(1 - p) over the panel is 0.109. With the 29 unchanged
#   days before the change and k changed days after it, the expected Z is
#   0.10 / sqrt(0.109 / 48 x (1/29 + 1/k)): 3.9 for k = 4, 4.7 for k = 6 and
#   5.3 for k = 8. The calibrated threshold is about 10.9 on the -ln p scale.
#   That is Z > 4.1 while phi_hat <= 1, but about Z > 5.2 once phi_hat > 1,
#   because the Student t tail with nu of about 20-25 then applies.
#   In a simulation of this design with the detector's own code (400
#   replicates, threshold calibrated for this panel), no replicate alarmed
#   before day 30. 64% alarmed within 8 changed days, and the median delay
#   was 7 days.
#
# Why this configuration passes:
#   The stub's outcomes are deterministic. The seed of each job derives from
#   (day, configuration hash, instance id, repeat), and the configuration
#   hash covers the suite's id and name, the panel, repeats, agent settings,
#   limits and track. The track name therefore selects one draw of all 1,920
#   outcomes. Nine track names were replayed offline through the detector,
#   with the seeds and the stub's decisions reproduced exactly. They alarmed
#   on days 32, 32, 33, 34, 34, 36, 39, 39 and 40, with no false alarm.
#   This test uses track "drop-at-day-30". Before day 30, Z_down stays at or
#   below 2.90 (S_down 6.28 against a threshold of 10.99). The alarm comes on
#   day 34 (Z_down 4.58, S_down 12.96, phi_hat 0.79), a delay of 5 days, with
#   the change day estimated as day 30. Z_down then grows to 6.77 by day 40.
#   A change to anything in the configuration hash (for example a new
#   default limit) redraws every outcome and moves the alarm past day 37 with
#   a probability of about one in three without any bug. Then check the
#   kept day-by-day reports (z_down, phi_hat) for a plain late alarm, and
#   pick another track name. Do not widen the window.
#
# With 96 runs a day (6 repeats) the same simulation alarmed within 8 days in
# 95% of 300 replicates, so the alarm day would hardly depend on the seeds. But
# each job costs about 0.35 CPU seconds, mostly the worker's three git
# checkouts, so 40 days x 48 runs already need about 11 CPU minutes.
. "$(dirname "$0")/lib.sh"
setup_database detector40
setup_tmp detector40

TASKS=16
REPEATS=3
TRACK=drop-at-day-30
DAYS=40
CHANGE_DAY=30
MAX_DELAY_DAYS=8
DEGRADED="fast__t01-1,fast__t05-1,fast__t09-1,fast__t13-1"
BASELINE_DAYS=14
BASELINE_RUNS=$((BASELINE_DAYS * TASKS * REPEATS))
FIRST_DATE=2026-03-01

# The stub agent starts once per job: a version-manager shim in front of
# python3 (pyenv, asdf) costs ~0.2 s per start, so prefer the system's.
export PATH="/usr/bin:/bin:$PATH"

day_date () {
    date -u -d "$FIRST_DATE + $(($1 - 1)) days" +%F
}

"$DW_SOURCE_DIR/tests/fixtures/fast/make-fast-suite" "$TEST_TMP/suite" "$TASKS" >/dev/null
SUITE="$TEST_TMP/suite/suite.jsonl"

export DW_STUB_RATE_SHIFT=-0.40
export DW_STUB_SHIFT_FROM
DW_STUB_SHIFT_FROM=$(day_date "$CHANGE_DAY")
export DW_STUB_SHIFT_TASKS="$DEGRADED"

started=$(date +%s)
alarm_day=0
statuses=""
for day in $(seq 1 "$DAYS"); do
    date_text=$(day_date "$day")
    set +e
    "$COORDINATOR" --date "$date_text" --suite "$SUITE" --repeats "$REPEATS" --track "$TRACK" \
        --agent stub --local-workers 2 --data-dir "$TEST_TMP/data" --heartbeat-ms 200 \
        --baseline-days "$BASELINE_DAYS" --baseline-min-runs "$BASELINE_RUNS" \
        >"$TEST_TMP/day-$day.out" 2>"$TEST_TMP/day-$day.err"
    status=$?
    set -e
    statuses="$statuses $status"
    summary=$(grep -m1 "pass rate:" "$TEST_TMP/day-$day.out" || echo "no summary")
    echo "day $day ($date_text): exit $status, $summary"

    if [ "$day" -lt "$CHANGE_DAY" ]; then
        check_eq "exit status on day $day (before the change)" 0 "$status"
    elif [ "$status" = 10 ]; then
        if [ "$alarm_day" -ne 0 ]; then
            fail "second new alarm on day $day (first on day $alarm_day): an alarm must be reported once"
        fi
        alarm_day=$day
    else
        check_eq "exit status on day $day (after the change, no new alarm)" 0 "$status"
    fi
done
elapsed=$(($(date +%s) - started))
echo "exit statuses by day:$statuses"
echo "alarm on day $alarm_day; $DAYS days took $elapsed s"

if [ "$alarm_day" -eq 0 ]; then
    fail "no degradation alarm by day $DAYS: expected one between day $CHANGE_DAY and day $((CHANGE_DAY + MAX_DELAY_DAYS - 1))"
elif [ "$alarm_day" -gt $((CHANGE_DAY + MAX_DELAY_DAYS - 1)) ]; then
    fail "alarm on day $alarm_day: expected by day $((CHANGE_DAY + MAX_DELAY_DAYS - 1)) ($MAX_DELAY_DAYS days after the change)"
fi

# Every job ran once and was graded: a harness problem would hide as
# missing or excluded runs and weaken the test without failing it.
jobs=$(sql "SELECT count(*) FROM jobs")
check_eq "jobs over $DAYS days" "$((DAYS * TASKS * REPEATS))" "$jobs"
graded=$(sql "SELECT count(*) FROM jobs WHERE final_outcome IN ('resolved', 'unresolved')")
check_eq "jobs graded resolved or unresolved" "$jobs" "$graded"
runs=$(sql "SELECT count(*) FROM runs WHERE track = '$TRACK'")
check_eq "runs of track $TRACK" "$DAYS" "$runs"

# The stub's shift shows in the data: the degraded tasks drop by about 40
# points, the other tasks stay where they were.
rate_of () {
    sql "SELECT round(100.0 * avg((j.final_outcome = 'resolved')::int))
         FROM jobs j JOIN runs r ON r.id = j.run_id JOIN tasks t ON t.id = j.task_id
         WHERE (t.instance_id = ANY (string_to_array('$DEGRADED', ','))) = $1
           AND (r.day >= '$DW_STUB_SHIFT_FROM') = $2"
}
degraded_before=$(rate_of true false)
degraded_after=$(rate_of true true)
others_before=$(rate_of false false)
others_after=$(rate_of false true)
echo "pass rate of the degraded tasks: $degraded_before% before day $CHANGE_DAY," \
     "$degraded_after% after; other tasks: $others_before% and $others_after%"
[ $((degraded_before - degraded_after)) -ge 25 ] \
    || fail "degraded tasks: expected a drop of about 40 points, got $degraded_before% -> $degraded_after%"
[ $((others_before - others_after)) -le 10 ] && [ $((others_after - others_before)) -le 10 ] \
    || fail "other tasks: expected no change, got $others_before% -> $others_after%"

# The last day's report names the alarm, its change day and the tasks.
last_date=$(day_date "$DAYS")
set +e
"$COORDINATOR" detect --track "$TRACK" --date "$last_date" --json \
    --baseline-days "$BASELINE_DAYS" --baseline-min-runs "$BASELINE_RUNS" \
    >"$TEST_TMP/detect.json" 2>"$TEST_TMP/detect.err"
status=$?
set -e
check_eq "detect exit status on day $DAYS (the alarm is not new)" 0 "$status"

python3 - "$TEST_TMP/detect.json" "$(day_date "$alarm_day")" "$DW_STUB_SHIFT_FROM" \
    "$DEGRADED" >"$TEST_TMP/report-checks.txt" <<'EOF' || fail "report checks did not run"
import datetime, json, sys

# The change-day estimate is noisy. A few days off is no error.
MAX_TAU_ERROR_DAYS = 3

path, alarm_date, change_date, degraded = sys.argv[1:5]
degraded = degraded.split(",")
doc = json.load(open(path))
report = doc["tracks"][0]["report"]
change = report["change"]
tasks = [row["task"] for row in report["tasks"]]
top = tasks[:len(degraded)]
print("status=%s alarm_day=%s tau_day=%s tau_range=%s effect_pp=%.1f z_down=%.2f h=%.2f "
      "phi_hat=%.2f" % (report["status"], report["alarm_day"], change["tau_day"],
                        change["tau_range"], change["effect_pp"], report["detector"]["z_down"],
                        report["detector"]["h_down"], report["detector"]["phi_hat"]))
print("top tasks: %s" % ", ".join(top))

def check(what, expected, actual):
    if expected != actual:
        print("FAIL: %s: expected %r, got %r" % (what, expected, actual))

check("report status", "degradation", report["status"])
check("alarm direction", 1, report["alarm_direction"])
check("alarm day", alarm_date, report["alarm_day"])
check("alarm new on the last day", False, report["alarm_down_new"])
lo, hi = change["tau_range"]
if not (lo is not None and hi is not None and lo <= change_date <= hi):
    print("FAIL: change day: expected %s inside the estimated range %s" % (change_date,
                                                                       change["tau_range"]))
tau = change["tau_day"]
offset = None if tau is None else (datetime.date.fromisoformat(tau)
                                   - datetime.date.fromisoformat(change_date)).days
if offset is None or abs(offset) > MAX_TAU_ERROR_DAYS:
    print("FAIL: change day: expected within %d days of %s, got %s" % (MAX_TAU_ERROR_DAYS,
                                                                     change_date, tau))
check("degraded tasks at the top of the task table", sorted(degraded), sorted(top))
if not change["effect_pp"] < 0:
    print("FAIL: effect: expected a negative change in points, got %r" % change["effect_pp"])
EOF
cat "$TEST_TMP/report-checks.txt"
while read -r line; do
    case "$line" in
        FAIL:*) fail "${line#FAIL: }" ;;
    esac
done <"$TEST_TMP/report-checks.txt"

finish
