/* Parsing test runner output into per-test statuses.
 *
 * Formats (the task's test_format):
 *   tap      TAP 13/14, including node:test's tap reporter with indented
 *            subtests. The name is the description after "ok N - ". A
 *            "# SKIP" or "# TODO" directive gives SKIPPED. YAML blocks are
 *            ignored.
 *   unittest python -m unittest -v. "test_x (module.Class.test_x)" (Python
 *            3.11+) and "test_x (module.Class)" (3.10 and older) both give
 *            "module.Class.test_x". ok -> PASSED, FAIL -> FAILED, ERROR ->
 *            ERROR, skipped -> SKIPPED, "expected failure" -> PASSED,
 *            "unexpected success" -> FAILED. The result may come lines
 *            after the test's header when the test prints output, and the
 *            "FAIL: name (...)" / "ERROR: name (...)" sections count too.
 *   pytest   "-rA" summary lines ("PASSED path::test") and "-v" lines
 *            ("path::test PASSED [ 50%]"). XFAIL and XPASS count as
 *            PASSED because pytest does not fail the run for them.
 *   gotest   "--- PASS: TestX (0.00s)", subtests "TestX/sub", "--- FAIL:",
 *            "--- SKIP:".
 *   json     {"tests":[{"name":..., "status":"PASSED|FAILED|SKIPPED|ERROR"}]},
 *            the output of SWE-Bench-Pro's per-repository parsers.
 *
 * A name reported twice keeps its last status, except that FAILED and
 * ERROR stick, so a later PASSED does not hide an earlier failure. pytest
 * reports a passing test again as ERROR when its teardown fails, and a
 * test that a runner retried still failed once.
 */
#ifndef DW_TESTLOG_H
#define DW_TESTLOG_H

#include <stddef.h>

/* Most tests kept from one log; later ones are counted and dropped. */
#define DW_TESTLOG_MAX_TESTS 200000
/* Maximum length of a test name; longer names are dropped. */
#define DW_TESTLOG_NAME_MAX 4096

/* Same numbers as driftwatch.v1.TestStatus. */
typedef enum {
    DW_TEST_UNKNOWN = 0,
    DW_TEST_PASSED = 1,
    DW_TEST_FAILED = 2,
    DW_TEST_SKIPPED = 3,
    DW_TEST_ERROR = 4,
    DW_TEST_MISSING = 5
} dw_test_status_t;

typedef struct dw_testlog dw_testlog_t;

dw_testlog_t *dw_testlog_new (void);
void dw_testlog_destroy (dw_testlog_t **self_p);

/* Parse TEXT (LEN bytes, need not be NUL-terminated) in FORMAT and add its
 * tests. Returns 0, or -1 with ERR set for an unknown format, invalid JSON
 * or out-of-memory. A log in which nothing matches is not an error. */
int dw_testlog_parse (dw_testlog_t *self, const char *format, const char *text, size_t len,
                      char *err, size_t err_size);

/* Record one result, applying the duplicate rule above. Returns 0 or -1. */
int dw_testlog_add (dw_testlog_t *self, const char *name, size_t name_len,
                    dw_test_status_t status);

/* Number of distinct tests, in first-seen order for the accessors below. */
size_t dw_testlog_size (const dw_testlog_t *self);
const char *dw_testlog_name (const dw_testlog_t *self, size_t index);
dw_test_status_t dw_testlog_status (const dw_testlog_t *self, size_t index);

/* Status of NAME, or DW_TEST_MISSING when the log never reported it. */
dw_test_status_t dw_testlog_lookup (const dw_testlog_t *self, const char *name);

/* Tests dropped because of DW_TESTLOG_MAX_TESTS or DW_TESTLOG_NAME_MAX. */
size_t dw_testlog_dropped (const dw_testlog_t *self);

/* "PASSED", "FAILED", "SKIPPED", "ERROR", "MISSING" or "UNKNOWN". */
const char *dw_test_status_name (dw_test_status_t status);

/* 1 when FORMAT is one of the names above. */
int dw_testlog_format_known (const char *format);

#endif
