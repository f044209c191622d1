/* Grading one attempt with the task's hidden tests.
 *
 * Runs in a fresh checkout at the base commit, never in the agent's
 * workspace:
 *   1. apply the agent's diff with "git apply --binary"; failure gives
 *      UNRESOLVED, reason "patch_apply_failed";
 *   2. for every file that test_patch touches, restore the base version
 *      ("git checkout BASE -- FILE") or delete it when the base has none,
 *      so the agent cannot change the hidden tests;
 *   3. apply test_patch; failure gives INFRA_ERROR, reason
 *      "test_patch_apply_failed";
 *   4. delete output.json in the checkout root (format "json" reads it),
 *      then run test_cmd with /bin/sh -c, stderr merged into stdout, the
 *      selected test files comma-joined in DW_SELECTED_TESTS, under the
 *      wall limit; a timeout gives UNRESOLVED, reason "tests_timed_out";
 *   5. parse the output with dw_testlog (format "json" reads output.json
 *      from the checkout root when the command wrote one, else stdout);
 *   6. RESOLVED iff every fail_to_pass and pass_to_pass test is PASSED
 *      (exact name match; a listed test absent from the output is
 *      MISSING). An empty fail_to_pass list means only pass_to_pass
 *      counts; when both lists are empty the task cannot be graded and the
 *      outcome is INFRA_ERROR, reason "no_tests_listed".
 */
#ifndef DW_GRADE_H
#define DW_GRADE_H

#include <stddef.h>
#include <stdint.h>

#include "dw_proc.h"
#include "dw_testlog.h"

/* Test output kept for parsing; the rest is dropped (the run goes on). */
#define DW_GRADE_LOG_MAX (64ULL * 1024 * 1024)
/* Tests reported beyond the listed ones. */
#define DW_GRADE_EXTRA_TESTS_MAX 1000
/* Size of the human-readable detail. */
#define DW_GRADE_DETAIL_MAX 1024

/* Optional hook that may rewrite the test command's spec before it runs
 * (a sandbox wraps argv and sets pre_exec and kill_hook). Returns 0, or -1
 * with ERR set, which makes the outcome INFRA_ERROR "sandbox_failed". */
typedef int (dw_grade_prepare_fn) (void *arg, dw_proc_spec_t *spec, char *err, size_t err_size);

typedef struct {
    /* Fresh checkout at base_commit, made by the caller. */
    const char *dir;
    const char *base_commit;
    /* Directory for the patch files and the test log (not inside DIR). */
    const char *scratch_dir;
    const char *agent_diff;
    size_t agent_diff_len;
    const char *test_patch;
    const char *test_cmd;
    const char *test_format;
    char *const *fail_to_pass;
    size_t fail_to_pass_count;
    char *const *pass_to_pass;
    size_t pass_to_pass_count;
    char *const *selected_tests;
    size_t selected_tests_count;
    /* Wall limit for test_cmd in ms; 0 means none. */
    uint64_t wall_ms;
    /* Environment of test_cmd (NULL-terminated); DW_SELECTED_TESTS is added. */
    char *const *envp;
    volatile int *cancel;
    dw_grade_prepare_fn *prepare;
    void *prepare_arg;
} dw_grade_input_t;

typedef struct {
    char *name;
    dw_test_status_t status;
} dw_grade_test_t;

typedef struct {
    /* A driftwatch.v1.Outcome value. */
    int outcome;
    char reason[64];
    char detail[DW_GRADE_DETAIL_MAX];
    /* Listed tests first (in list order), then up to
     * DW_GRADE_EXTRA_TESTS_MAX others from the output. */
    dw_grade_test_t *tests;
    size_t tests_count;
    /* Status of test_cmd in shell convention, -1 when it did not run. */
    int test_exit_code;
    uint64_t test_ms;
} dw_grade_result_t;

/* Grade INPUT into RESULT (which the caller later clears). Returns 0, or
 * -1 only when out of memory; every other failure is an outcome. */
int dw_grade_run (const dw_grade_input_t *input, dw_grade_result_t *result);

/* Free what dw_grade_run allocated in RESULT. */
void dw_grade_result_clear (dw_grade_result_t *result);

/* Collect every path that PATCH (a git diff) creates, modifies, deletes
 * or renames into PATHS, without duplicates and at most MAX of them (heap
 * strings, caller frees). Absolute paths and paths with a ".." component
 * are skipped. Returns the number of paths stored. */
size_t dw_grade_patch_paths (const char *patch, char **paths, size_t max);

#endif
