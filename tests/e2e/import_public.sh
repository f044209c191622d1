#!/usr/bin/env bash
# `coordinator import` stores the 731-task public SWE-Bench-Pro list and
# prints tasks per repository and language; importing it again stores nothing.
. "$(dirname "$0")/lib.sh"
setup_database import
setup_tmp import

suite="$DW_SOURCE_DIR/tests/data/swebench-pro/swebench_pro_public_instances.jsonl"
"$COORDINATOR" import "$suite" --name swebench-pro >"$TEST_TMP/out" 2>"$TEST_TMP/err"
cat "$TEST_TMP/out"
grep -q "731 tasks in 11 repositories" "$TEST_TMP/out" || fail "summary line missing"
grep -Eq "ansible/ansible +96" "$TEST_TMP/out" || fail "ansible/ansible count missing"
grep -Eq "go +280" "$TEST_TMP/out" || fail "go count missing"
check_eq "tasks stored" 731 "$(sql "SELECT count(*) FROM tasks")"

"$COORDINATOR" import "$suite" --name swebench-pro >"$TEST_TMP/out2" 2>&1
grep -q "was already stored" "$TEST_TMP/out2" || fail "second import stored the suite again"
check_eq "suites after a second import" 1 "$(sql "SELECT count(*) FROM suites")"

# A malformed file is rejected with its line and field, and stores nothing.
printf '{"instance_id":"a","repo":"o/r","base_commit":"abc","fail_to_pass":7}\n' \
    >"$TEST_TMP/bad.jsonl"
set +e
"$COORDINATOR" import "$TEST_TMP/bad.jsonl" >"$TEST_TMP/out3" 2>&1
status=$?
set -e
cat "$TEST_TMP/out3"
check_eq "exit status for a malformed suite" 1 "$status"
grep -q "bad.jsonl:1: field fail_to_pass" "$TEST_TMP/out3" || fail "error lacks file:line: field"
check_eq "suites after the malformed import" 1 "$(sql "SELECT count(*) FROM suites")"

finish
