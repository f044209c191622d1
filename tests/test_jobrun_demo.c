/* dw_jobrun on every task of the demo suite (tests/fixtures/demo) with the
 * demo's stub agent, agent and tests both inside the bubblewrap sandbox:
 * forced to solve, every task must be RESOLVED; forced to miss, a task of
 * each language must be UNRESOLVED. This checks the suite's test commands
 * and formats against the real grader and the sandbox's file system. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dw_jobrun.h"
#include "dw_util.h"

static int failures;

#define CHECK(cond, ...)                                                                \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf (stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                       \
            fprintf (stderr, __VA_ARGS__);                                              \
            fprintf (stderr, "\n");                                                     \
            failures++;                                                                 \
        }                                                                               \
    } while (0)

static char root[256];
static char stub_agent[512];

/* Copy a JSON array of strings into a NULL-padded heap array. */
static char **
s_strings (json_t *array, size_t *count)
{
    *count = json_array_size (array);
    char **items = calloc (*count + 1, sizeof *items);
    for (size_t i = 0; i < *count; i++)
        items[i] = (char *) json_string_value (json_array_get (array, i));
    return items;
}

static const char *
s_get (json_t *row, const char *key)
{
    const char *value = json_string_value (json_object_get (row, key));
    return value ? value : "";
}

/* Agent stdout lines of the last attempt. */
static int events_seen;
static int events_truncated;

static void
s_on_event (void *arg, const char *line, size_t len, int truncated)
{
    (void) arg;
    (void) line;
    (void) len;
    events_seen++;
    events_truncated += truncated;
}

static int
s_run_task (json_t *row, const char *attempt_id, const char *shift, const char *mode,
            uint32_t wall_seconds)
{
    char *repo_url = dw_strdup_printf ("%s/suite/%s", root, s_get (row, "repo_url"));
    char *extra = json_dumps (row, JSON_COMPACT);
    Driftwatch__V1__TaskSpec task = DRIFTWATCH__V1__TASK_SPEC__INIT;
    task.instance_id = (char *) s_get (row, "instance_id");
    task.repo = (char *) s_get (row, "repo");
    task.repo_url = repo_url;
    task.base_commit = (char *) s_get (row, "base_commit");
    task.problem_statement = (char *) s_get (row, "problem_statement");
    task.requirements = (char *) s_get (row, "requirements");
    task.interface = (char *) s_get (row, "interface");
    task.patch = (char *) s_get (row, "patch");
    task.test_patch = (char *) s_get (row, "test_patch");
    task.test_cmd = (char *) s_get (row, "test_cmd");
    task.test_format = (char *) s_get (row, "test_format");
    task.fail_to_pass = s_strings (json_object_get (row, "fail_to_pass"), &task.n_fail_to_pass);
    task.pass_to_pass = s_strings (json_object_get (row, "pass_to_pass"), &task.n_pass_to_pass);
    task.selected_test_files = s_strings (json_object_get (row, "selected_test_files_to_run"),
                                          &task.n_selected_test_files);
    task.extra_json = extra;

    Driftwatch__V1__AgentConfig agent = DRIFTWATCH__V1__AGENT_CONFIG__INIT;
    agent.kind = "stub";
    Driftwatch__V1__Limits limits = DRIFTWATCH__V1__LIMITS__INIT;
    limits.wall_seconds = wall_seconds;
    limits.grade_wall_seconds = 120;
    Driftwatch__V1__JobAssignment job = DRIFTWATCH__V1__JOB_ASSIGNMENT__INIT;
    job.run_id = "demo-run";
    job.job_id = (char *) attempt_id;
    job.attempt_id = (char *) attempt_id;
    job.task = &task;
    job.agent = &agent;
    job.limits = &limits;
    job.seed = 7;
    job.day = "2026-12-04";

    setenv ("DW_STUB_RATE_SHIFT", shift, 1);
    setenv ("DW_STUB_MODE", mode, 1);
    events_seen = events_truncated = 0;
    char *work = dw_strdup_printf ("%s/work", root);
    char *cache = dw_strdup_printf ("%s/cache", root);
    dw_jobrun_options_t options = {
        .work_root = work, .cache_dir = cache, .stub_agent = stub_agent, .on_event = s_on_event,
        .sandbox = "bwrap",
    };
    uint8_t *packed = NULL;
    size_t len = 0;
    int outcome = -1;
    if (dw_jobrun_execute (&job, &options, &packed, &len) == 0) {
        Driftwatch__V1__JobResult *result = driftwatch__v1__job_result__unpack (NULL, len, packed);
        if (result) {
            outcome = result->outcome;
            fprintf (stderr, "%s: outcome=%d reason=%s detail=%.300s\n", attempt_id,
                     result->outcome, result->outcome_reason, result->detail);
            driftwatch__v1__job_result__free_unpacked (result, NULL);
        }
    }
    free (packed);
    free (work);
    free (cache);
    free (task.fail_to_pass);
    free (task.pass_to_pass);
    free (task.selected_test_files);
    free (extra);
    free (repo_url);
    return outcome;
}

/* The stub agent's failure modes on one task. */
static void
s_check_modes (json_t *row, const char *id)
{
    char attempt_id[128];
    snprintf (attempt_id, sizeof attempt_id, "%s-crash", id);
    int outcome = s_run_task (row, attempt_id, "1", "crash", 60);
    CHECK (outcome == DRIFTWATCH__V1__OUTCOME__OUTCOME_AGENT_ERROR,
           "%s: crash mode must be AGENT_ERROR, got %d", id, outcome);

    snprintf (attempt_id, sizeof attempt_id, "%s-edit-tests", id);
    outcome = s_run_task (row, attempt_id, "1", "edit-tests", 60);
    CHECK (outcome == DRIFTWATCH__V1__OUTCOME__OUTCOME_UNRESOLVED,
           "%s: edit-tests mode must be UNRESOLVED, got %d", id, outcome);

    snprintf (attempt_id, sizeof attempt_id, "%s-huge-line", id);
    outcome = s_run_task (row, attempt_id, "1", "huge-line", 60);
    CHECK (outcome == DRIFTWATCH__V1__OUTCOME__OUTCOME_RESOLVED,
           "%s: huge-line mode still solves, expected RESOLVED, got %d", id, outcome);
    CHECK (events_truncated == 1, "%s: expected 1 truncated event, got %d", id,
           events_truncated);

    snprintf (attempt_id, sizeof attempt_id, "%s-hang", id);
    uint64_t start = dw_mono_ms ();
    outcome = s_run_task (row, attempt_id, "1", "hang", 2);
    uint64_t took = dw_mono_ms () - start;
    CHECK (outcome == DRIFTWATCH__V1__OUTCOME__OUTCOME_TIMEOUT,
           "%s: hang mode must be TIMEOUT, got %d", id, outcome);
    CHECK (took < 10000, "%s: hang took %llu ms to stop", id, (unsigned long long) took);
    unsetenv ("DW_STUB_MODE");
}

int
main (void)
{
    const char *source = getenv ("DW_SOURCE_DIR");
    if (!source) {
        fprintf (stderr, "FAIL: DW_SOURCE_DIR is not set\n");
        return 1;
    }
    snprintf (stub_agent, sizeof stub_agent, "%s/tests/fixtures/demo/stub-agent", source);
    snprintf (root, sizeof root, "/tmp/dw-test-jobrun-demo-%d", (int) getpid ());
    dw_rm_rf (root);
    dw_mkdir_p (root, 0700);

    char *command = dw_strdup_printf ("%s/tests/fixtures/demo/make-demo-suite %s/suite > /dev/null",
                                      source, root);
    int status = system (command);
    free (command);
    if (status != 0) {
        fprintf (stderr, "FAIL: make-demo-suite exited with %d\n", status);
        return 1;
    }

    char *suite_path = dw_strdup_printf ("%s/suite/suite.jsonl", root);
    FILE *suite = fopen (suite_path, "r");
    CHECK (suite != NULL, "cannot open %s", suite_path);
    free (suite_path);
    char line[1 << 16];
    int tasks = 0;
    int missed_languages = 0;
    int modes_done = 0;
    char seen_languages[8][32] = { { 0 } };
    while (suite && fgets (line, sizeof line, suite)) {
        json_t *row = json_loads (line, 0, NULL);
        CHECK (row != NULL, "suite line is not JSON");
        if (!row)
            continue;
        const char *id = s_get (row, "instance_id");
        char attempt_id[128];
        snprintf (attempt_id, sizeof attempt_id, "%s-solve", id);
        int outcome = s_run_task (row, attempt_id, "1", "", 60);
        CHECK (outcome == DRIFTWATCH__V1__OUTCOME__OUTCOME_RESOLVED,
               "%s: the gold patch must be RESOLVED, got %d", id, outcome);

        /* One forced miss per language is enough to show the tests bite. */
        const char *language = s_get (row, "repo_language");
        int seen = 0;
        for (int i = 0; i < missed_languages; i++)
            seen |= strcmp (seen_languages[i], language) == 0;
        if (!seen && missed_languages < 8) {
            snprintf (seen_languages[missed_languages++], 32, "%s", language);
            snprintf (attempt_id, sizeof attempt_id, "%s-miss", id);
            outcome = s_run_task (row, attempt_id, "-1", "", 60);
            CHECK (outcome == DRIFTWATCH__V1__OUTCOME__OUTCOME_UNRESOLVED,
                   "%s: a missed attempt must be UNRESOLVED, got %d", id, outcome);
        }
        if (strcmp (language, "python") == 0 && !modes_done) {
            modes_done = 1;
            s_check_modes (row, id);
        }
        json_decref (row);
        tasks++;
    }
    if (suite)
        fclose (suite);
    CHECK (tasks >= 3, "expected demo tasks, found %d", tasks);
    CHECK (missed_languages >= 3, "expected 3 languages, found %d", missed_languages);

    if (failures) {
        fprintf (stderr, "test_jobrun_demo: %d check(s) failed (files kept in %s)\n", failures,
                 root);
        return 1;
    }
    dw_rm_rf (root);
    printf ("test_jobrun_demo: %d tasks passed\n", tasks);
    return 0;
}
