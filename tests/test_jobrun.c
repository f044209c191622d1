/* dw_jobrun end to end: a throwaway git repository with a Python unittest
 * task (gold patch + hidden test_patch), agents written as shell commands,
 * real git, real processes, real grading. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dw_grade.h"
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
static char repo[300];
static char base_sha[64];
static char fix_sha[64];
static char *gold_patch;
static char *test_patch;
/* Mirror cache directory name under ROOT, and the cancel flag, used by the
 * next s_run calls. */
static const char *cache_name = "cache";
static volatile int cancel_flag;

static int
s_sh (const char *fmt, ...)
{
    char command[4096];
    va_list args;
    va_start (args, fmt);
    vsnprintf (command, sizeof command, fmt, args);
    va_end (args);
    int status = system (command);
    return WIFEXITED (status) ? WEXITSTATUS (status) : -1;
}

/* First line of a command's stdout. */
static void
s_capture (char *out, size_t size, const char *fmt, ...)
{
    char command[4096];
    va_list args;
    va_start (args, fmt);
    vsnprintf (command, sizeof command, fmt, args);
    va_end (args);
    out[0] = 0;
    FILE *pipe = popen (command, "r");
    if (!pipe)
        return;
    if (fgets (out, (int) size, pipe))
        out[strcspn (out, "\n")] = 0;
    pclose (pipe);
}

static char *
s_read (const char *path)
{
    return dw_read_file (path, 1 << 20, NULL);
}

/* Base commit: add() is wrong and only test_sub exists. The next commit
 * fixes add() (gold patch) and adds test_add (test_patch); a third adds a
 * file that must never reach a workspace either. */
static int
s_make_repo (void)
{
    snprintf (repo, sizeof repo, "%s/origin", root);
    int rc = s_sh (
        "set -e; mkdir -p %s/tests; cd %s; git init -q -b main .;"
        "git config user.name t; git config user.email t@e;"
        "printf 'def add(a, b):\\n    return a - b\\n\\n\\ndef sub(a, b):\\n    return a - b\\n' > calc.py;"
        "touch tests/__init__.py;"
        "printf 'import unittest\\nimport calc\\n\\n\\nclass CalcTest(unittest.TestCase):\\n"
        "    def test_sub(self):\\n        self.assertEqual(calc.sub(3, 1), 2)\\n' > tests/test_calc.py;"
        "git add -A; git commit -q -m base;"
        "sed -i 's/return a - b/return a + b/;t;' calc.py;"
        "python3 - <<'EOF'\n"
        "src = open('calc.py').read()\n"
        "src = src.replace('def sub(a, b):\\n    return a + b', 'def sub(a, b):\\n    return a - b')\n"
        "open('calc.py', 'w').write(src)\n"
        "EOF\n"
        "printf '\\n    def test_add(self):\\n        self.assertEqual(calc.add(2, 2), 4)\\n' >> tests/test_calc.py;"
        "git add -A; git commit -q -m fix;"
        "echo secret > future.txt; git add -A; git commit -q -m future",
        repo, repo);
    if (rc != 0)
        return -1;
    s_capture (base_sha, sizeof base_sha, "git -C %s rev-parse HEAD~2", repo);
    s_capture (fix_sha, sizeof fix_sha, "git -C %s rev-parse HEAD~1", repo);

    char path[512];
    snprintf (path, sizeof path, "%s/gold.patch", root);
    s_sh ("git -C %s diff %s %s -- calc.py > %s", repo, base_sha, fix_sha, path);
    gold_patch = s_read (path);
    snprintf (path, sizeof path, "%s/test.patch", root);
    s_sh ("git -C %s diff %s %s -- tests > %s", repo, base_sha, fix_sha, path);
    test_patch = s_read (path);
    return gold_patch && test_patch && strlen (base_sha) == 40 ? 0 : -1;
}

/* Agent stdout lines seen by on_event: all counted, the first 16 kept. */
typedef struct {
    int count;
    char lines[16][256];
} events_t;

static void
s_on_event (void *arg, const char *line, size_t len, int truncated)
{
    (void) truncated;
    events_t *events = arg;
    if (events->count < 16) {
        size_t copy = len < 255 ? len : 255;
        memcpy (events->lines[events->count], line, copy);
        events->lines[events->count][copy] = 0;
    }
    events->count++;
}

typedef struct {
    Driftwatch__V1__JobResult *result;
    events_t events;
    uint64_t wall_ms;
} attempt_t;

static char *f2p[] = { "tests.test_calc.CalcTest.test_add" };
static char *p2p[] = { "tests.test_calc.CalcTest.test_sub" };
static char *selected[] = { "tests/test_calc.py" };

static void
s_run (attempt_t *attempt, const char *id, const char *kind, const char *command,
       const char *repo_url, uint32_t wall_seconds, int keep)
{
    Driftwatch__V1__TaskSpec task = DRIFTWATCH__V1__TASK_SPEC__INIT;
    task.instance_id = "calc-add";
    task.repo = "example/calc";
    task.repo_url = (char *) repo_url;
    task.base_commit = base_sha;
    task.problem_statement = "add() subtracts.";
    task.requirements = "add(a, b) returns a + b.";
    task.interface = "No new interfaces introduced";
    task.patch = gold_patch;
    task.test_patch = test_patch;
    task.fail_to_pass = f2p;
    task.n_fail_to_pass = 1;
    task.pass_to_pass = p2p;
    task.n_pass_to_pass = 1;
    task.selected_test_files = selected;
    task.n_selected_test_files = 1;
    task.test_cmd = "python3 -m unittest -v tests.test_calc";
    task.test_format = "unittest";
    task.extra_json = "{\"stub_solve_rate\": 1.0}";

    Driftwatch__V1__AgentConfig agent = DRIFTWATCH__V1__AGENT_CONFIG__INIT;
    agent.kind = (char *) kind;
    agent.command = (char *) command;
    Driftwatch__V1__Limits limits = DRIFTWATCH__V1__LIMITS__INIT;
    limits.wall_seconds = wall_seconds;
    limits.grade_wall_seconds = 60;

    Driftwatch__V1__JobAssignment job = DRIFTWATCH__V1__JOB_ASSIGNMENT__INIT;
    job.run_id = "run-1";
    job.job_id = "job-1";
    job.attempt_id = (char *) id;
    job.task = &task;
    job.agent = &agent;
    job.limits = &limits;
    job.seed = 42;
    job.day = "2026-12-04";

    char work[300], cache[300];
    snprintf (work, sizeof work, "%s/work", root);
    snprintf (cache, sizeof cache, "%s/%s", root, cache_name);
    memset (&attempt->events, 0, sizeof attempt->events);
    dw_jobrun_options_t options = {
        .work_root = work,
        .cache_dir = cache,
        .keep_workspace = keep,
        .cancel = &cancel_flag,
        .worker_id = "w-test",
        .on_event = s_on_event,
        .event_arg = &attempt->events,
    };
    uint8_t *packed = NULL;
    size_t len = 0;
    uint64_t start = dw_mono_ms ();
    int rc = dw_jobrun_execute (&job, &options, &packed, &len);
    attempt->wall_ms = dw_mono_ms () - start;
    CHECK (rc == 0, "%s: dw_jobrun_execute returned %d", id, rc);
    attempt->result = rc == 0 ? driftwatch__v1__job_result__unpack (NULL, len, packed) : NULL;
    CHECK (attempt->result != NULL, "%s: result does not unpack", id);
    free (packed);
    if (attempt->result)
        fprintf (stderr, "%s: outcome=%d reason=%s detail=%s (%llu ms)\n", id,
                 attempt->result->outcome, attempt->result->outcome_reason,
                 attempt->result->detail, (unsigned long long) attempt->wall_ms);
}

static Driftwatch__V1__TestStatus
s_status (const Driftwatch__V1__JobResult *result, const char *name)
{
    for (size_t i = 0; i < result->n_tests; i++)
        if (strcmp (result->tests[i]->name, name) == 0)
            return result->tests[i]->status;
    return DRIFTWATCH__V1__TEST_STATUS__TEST_STATUS_UNSPECIFIED;
}

static void
s_free (attempt_t *attempt)
{
    driftwatch__v1__job_result__free_unpacked (attempt->result, NULL);
    attempt->result = NULL;
}

static const char solve_command[] =
    "echo '{\"type\":\"system\",\"subtype\":\"init\"}';"
    "python3 -c 'import json, os, sys; sys.stdout.write(json.load(open(os.environ[\"DW_TASK_FILE\"]))[\"patch\"])'"
    " > \"$TMPDIR/fix.patch\" && git apply \"$TMPDIR/fix.patch\" && echo '{\"type\":\"result\"}'";

static void
test_solve_resolved (void)
{
    attempt_t attempt;
    s_run (&attempt, "a-solve", "stub", solve_command, repo, 60, 0);
    Driftwatch__V1__JobResult *result = attempt.result;
    if (!result)
        return;
    CHECK (result->outcome == DRIFTWATCH__V1__OUTCOME__OUTCOME_RESOLVED,
           "solving agent: expected RESOLVED, got %d (%s)", result->outcome, result->detail);
    CHECK (strcmp (result->run_id, "run-1") == 0 && strcmp (result->attempt_id, "a-solve") == 0,
           "ids not copied");
    CHECK (strcmp (result->worker_id, "w-test") == 0, "worker_id not copied");
    CHECK (s_status (result, f2p[0]) == DRIFTWATCH__V1__TEST_STATUS__TEST_PASSED,
           "fail_to_pass test not PASSED");
    CHECK (s_status (result, p2p[0]) == DRIFTWATCH__V1__TEST_STATUS__TEST_PASSED,
           "pass_to_pass test not PASSED");
    CHECK (result->agent_diff.len > 0 && strstr ((char *) result->agent_diff.data, "a + b"),
           "agent diff missing the fix");
    CHECK (result->events_total == 2, "expected 2 events, got %llu",
           (unsigned long long) result->events_total);
    CHECK (attempt.events.count == 2, "on_event saw %d lines", attempt.events.count);
    CHECK (strstr (attempt.events.lines[0], "init") != NULL, "first event wrong: %s",
           attempt.events.lines[0]);
    CHECK (result->agent_exit_code == 0, "agent exit code %d", result->agent_exit_code);
    CHECK (result->finished_ms >= result->started_ms && result->started_ms > 0, "bad timestamps");
    char attempt_dir[400];
    snprintf (attempt_dir, sizeof attempt_dir, "%s/work/a-solve", root);
    struct stat info;
    CHECK (stat (attempt_dir, &info) != 0, "attempt directory not removed");
    s_free (&attempt);
}

static void
test_nothing_unresolved (void)
{
    attempt_t attempt;
    /* Also reports what the agent can see, checked below. */
    const char *command =
        "echo \"seed=$DW_SEED day=$DW_DAY knob=$DW_STUB_TEST_KNOB\";"
        "python3 -c 'import json, os; d = json.load(open(os.environ[\"DW_TASK_FILE\"]));"
        " print(\"has_patch=%s\" % (\"patch\" in d))';"
        "case \"$DW_TASK_FILE\" in \"$DW_WORKSPACE\"*) echo task_inside;; *) echo task_outside;; esac;"
        "[ \"$(pwd)\" = \"$DW_WORKSPACE\" ] && echo cwd_is_workspace;"
        "echo \"leaked=$(env | grep -c DW_TEST_NOT_PASSED)\";"
        "echo \"remotes=$(git remote | wc -l) commits=$(git log --all --format=%H | wc -l)\";"
        "git cat-file -e FIXSHA 2>/dev/null && echo fix_visible || echo fix_absent";
    static const char *const expected_lines[] = {
        "seed=42 day=2026-12-04 knob=on", "has_patch=False", "task_outside", "cwd_is_workspace",
        "leaked=0", "remotes=0 commits=1", "fix_absent",
    };
    char buffer[2048];
    const char *at = strstr (command, "FIXSHA");
    snprintf (buffer, sizeof buffer, "%.*s%s%s", (int) (at - command), command, fix_sha,
              at + 6);
    setenv ("DW_STUB_TEST_KNOB", "on", 1);
    setenv ("DW_TEST_NOT_PASSED", "secret", 1);
    s_run (&attempt, "b-nothing", "command", buffer, repo, 60, 1);
    Driftwatch__V1__JobResult *result = attempt.result;
    if (!result)
        return;
    CHECK (result->outcome == DRIFTWATCH__V1__OUTCOME__OUTCOME_UNRESOLVED,
           "idle agent: expected UNRESOLVED, got %d", result->outcome);
    CHECK (strcmp (result->outcome_reason, "tests_failed") == 0, "reason %s",
           result->outcome_reason);
    CHECK (s_status (result, f2p[0]) == DRIFTWATCH__V1__TEST_STATUS__TEST_FAILED,
           "fail_to_pass test should be FAILED, got %d", s_status (result, f2p[0]));
    CHECK (s_status (result, p2p[0]) == DRIFTWATCH__V1__TEST_STATUS__TEST_PASSED,
           "pass_to_pass test should be PASSED");
    CHECK (result->agent_diff.len == 0, "idle agent has a diff of %zu bytes",
           result->agent_diff.len);
    CHECK (attempt.events.count == 7, "expected 7 agent lines, got %d", attempt.events.count);
    for (int i = 0; i < 7 && i < attempt.events.count; i++)
        CHECK (strcmp (attempt.events.lines[i], expected_lines[i]) == 0,
               "agent line %d: expected '%s', got '%s'", i, expected_lines[i],
               attempt.events.lines[i]);

    /* The kept workspace shows what the agent could see. */
    char path[512], line[256];
    snprintf (path, sizeof path, "%s/work/b-nothing/ws", root);
    s_capture (line, sizeof line, "git -C %s log --all --format=%%H | wc -l", path);
    CHECK (atoi (line) == 1, "workspace history has %s commits, expected only the base", line);
    s_capture (line, sizeof line, "git -C %s rev-parse HEAD", path);
    CHECK (strcmp (line, base_sha) == 0, "workspace HEAD %s is not the base", line);
    CHECK (s_sh ("git -C %s cat-file -e %s 2>/dev/null", path, fix_sha) != 0,
           "the fix commit's objects are in the workspace");
    s_capture (line, sizeof line, "git -C %s remote | wc -l", path);
    CHECK (atoi (line) == 0, "workspace has %s remotes", line);
    s_capture (line, sizeof line, "git -C %s for-each-ref | wc -l", path);
    CHECK (atoi (line) == 0, "workspace has %s refs", line);
    s_capture (line, sizeof line, "git -C %s reflog | wc -l", path);
    CHECK (atoi (line) == 0, "workspace reflog has %s entries", line);
    s_capture (line, sizeof line, "git -C %s config user.email", path);
    CHECK (strcmp (line, "driftwatch@localhost") == 0, "user.email not set: %s", line);
    snprintf (path, sizeof path, "%s/work/b-nothing/ws/.git/FETCH_HEAD", root);
    CHECK (access (path, F_OK) != 0, "FETCH_HEAD left in the workspace");
    snprintf (path, sizeof path, "%s/work/b-nothing/ws/future.txt", root);
    CHECK (access (path, F_OK) != 0, "a later commit's file is in the workspace");
    snprintf (path, sizeof path, "%s/work/b-nothing", root);
    dw_rm_rf (path);
    s_free (&attempt);
}

static void
test_prompt_file (void)
{
    attempt_t attempt;
    const char *command = "head -n 1 \"$DW_PROMPT_FILE\"; grep -c -e '^Requirements:$' "
                          "-e '^New interfaces introduced:$' \"$DW_PROMPT_FILE\"";
    s_run (&attempt, "b-prompt", "command", command, repo, 60, 0);
    if (attempt.result) {
        CHECK (strcmp (attempt.events.lines[0], "add() subtracts.") == 0,
               "prompt starts with '%s'", attempt.events.lines[0]);
        CHECK (strcmp (attempt.events.lines[1], "2") == 0, "prompt headings found: %s",
               attempt.events.lines[1]);
    }
    s_free (&attempt);
}

static void
test_exit3_agent_error (void)
{
    attempt_t attempt;
    s_run (&attempt, "c-exit3", "command",
           "echo partial >> calc.py; echo failing >&2; exit 3", repo, 60, 0);
    Driftwatch__V1__JobResult *result = attempt.result;
    if (!result)
        return;
    CHECK (result->outcome == DRIFTWATCH__V1__OUTCOME__OUTCOME_AGENT_ERROR,
           "exit 3: expected AGENT_ERROR, got %d", result->outcome);
    CHECK (result->agent_exit_code == 3, "agent_exit_code %d", result->agent_exit_code);
    CHECK (result->agent_diff.len > 0, "diff of a failed agent must be kept");
    CHECK (result->log_tail.len > 0 && memmem (result->log_tail.data, result->log_tail.len,
                                                "failing", 7),
           "log_tail lacks the agent's stderr");
    CHECK (result->n_tests == 0, "a failed agent must not be graded");
    s_free (&attempt);
}

static void
test_sleep_timeout (void)
{
    attempt_t attempt;
    s_run (&attempt, "d-sleep", "command", "echo x > new.txt; sleep 30", repo, 2, 0);
    Driftwatch__V1__JobResult *result = attempt.result;
    if (!result)
        return;
    CHECK (result->outcome == DRIFTWATCH__V1__OUTCOME__OUTCOME_TIMEOUT,
           "sleeping agent: expected TIMEOUT, got %d", result->outcome);
    CHECK (result->agent_ms >= 2000 && result->agent_ms < 5000, "agent ran %llu ms",
           (unsigned long long) result->agent_ms);
    CHECK (attempt.wall_ms < 15000, "attempt took %llu ms", (unsigned long long) attempt.wall_ms);
    CHECK (result->agent_diff.len > 0 && strstr ((char *) result->agent_diff.data, "new.txt"),
           "diff of a timed-out agent must be kept");
    s_free (&attempt);
}

static void
test_cheating_unresolved (void)
{
    attempt_t attempt;
    /* Rewrites the tests so everything passes, adds a test module the
     * hidden patch also creates, and leaves a fake report. */
    const char *command =
        "printf 'import unittest\\n\\n\\nclass CalcTest(unittest.TestCase):\\n"
        "    def test_add(self):\\n        pass\\n\\n    def test_sub(self):\\n        pass\\n'"
        " > tests/test_calc.py;"
        "echo '{\"tests\":[{\"name\":\"tests.test_calc.CalcTest.test_add\",\"status\":\"PASSED\"}]}'"
        " > output.json";
    s_run (&attempt, "e-cheat", "command", command, repo, 60, 0);
    Driftwatch__V1__JobResult *result = attempt.result;
    if (!result)
        return;
    CHECK (result->outcome == DRIFTWATCH__V1__OUTCOME__OUTCOME_UNRESOLVED,
           "test-editing agent: expected UNRESOLVED, got %d", result->outcome);
    CHECK (s_status (result, f2p[0]) == DRIFTWATCH__V1__TEST_STATUS__TEST_FAILED,
           "hidden test_add should fail, got %d", s_status (result, f2p[0]));
    CHECK (result->agent_diff.len > 0 && strstr ((char *) result->agent_diff.data, "output.json"),
           "diff should carry the agent's output.json");
    s_free (&attempt);
}

static void
test_bad_url_infra_error (void)
{
    attempt_t attempt;
    char url[400];
    snprintf (url, sizeof url, "%s/no-such-repo", root);
    s_run (&attempt, "f-badurl", "command", "true", url, 60, 0);
    Driftwatch__V1__JobResult *result = attempt.result;
    if (!result)
        return;
    CHECK (result->outcome == DRIFTWATCH__V1__OUTCOME__OUTCOME_INFRA_ERROR,
           "bad url: expected INFRA_ERROR, got %d", result->outcome);
    CHECK (strcmp (result->outcome_reason, "clone_failed") == 0, "reason %s",
           result->outcome_reason);
    CHECK (strstr (result->detail, "no-such-repo") != NULL, "detail lacks the url: %s",
           result->detail);
    CHECK (result->events_total == 0, "no agent should have run");
    s_free (&attempt);
}

static void
test_unknown_kind_and_bad_id (void)
{
    attempt_t attempt;
    s_run (&attempt, "g-kind", "claude-code", "", repo, 60, 0);
    if (attempt.result)
        CHECK (attempt.result->outcome == DRIFTWATCH__V1__OUTCOME__OUTCOME_HARNESS_ERROR,
               "claude-code without an API key: expected HARNESS_ERROR, got %d",
               attempt.result->outcome);
    s_free (&attempt);

    s_run (&attempt, "../escape", "command", "true", repo, 60, 0);
    if (attempt.result)
        CHECK (attempt.result->outcome == DRIFTWATCH__V1__OUTCOME__OUTCOME_HARNESS_ERROR,
               "attempt id with a slash: expected HARNESS_ERROR, got %d",
               attempt.result->outcome);
    s_free (&attempt);
}

static void
test_diff_too_large (void)
{
    attempt_t attempt;
    s_run (&attempt, "h-big", "command",
           "head -c 1200000 /dev/zero | tr '\\0' y | fold -w 100 > big.txt", repo, 60, 0);
    Driftwatch__V1__JobResult *result = attempt.result;
    if (!result)
        return;
    CHECK (result->outcome == DRIFTWATCH__V1__OUTCOME__OUTCOME_UNRESOLVED,
           "oversized diff: expected UNRESOLVED, got %d", result->outcome);
    CHECK (strcmp (result->outcome_reason, "diff_too_large") == 0, "reason %s",
           result->outcome_reason);
    CHECK (result->diff_truncated, "diff_truncated not set");
    CHECK (result->agent_diff.len > 0 && result->agent_diff.len <= DW_JOBRUN_DIFF_MAX,
           "kept diff has %zu bytes", result->agent_diff.len);
    s_free (&attempt);
}

static void *
s_cancel_later (void *arg)
{
    (void) arg;
    usleep (500 * 1000);
    cancel_flag = 1;
    return NULL;
}

static void
test_cancel (void)
{
    attempt_t attempt;
    pthread_t thread;
    cancel_flag = 0;
    pthread_create (&thread, NULL, s_cancel_later, NULL);
    s_run (&attempt, "i-cancel", "command", "sleep 30", repo, 60, 0);
    pthread_join (thread, NULL);
    cancel_flag = 0;
    Driftwatch__V1__JobResult *result = attempt.result;
    if (!result)
        return;
    CHECK (result->outcome == DRIFTWATCH__V1__OUTCOME__OUTCOME_CANCELLED,
           "cancelled attempt: expected CANCELLED, got %d", result->outcome);
    CHECK (attempt.wall_ms < 5000, "cancel took %llu ms", (unsigned long long) attempt.wall_ms);
    s_free (&attempt);
}

typedef struct {
    const char *id;
    attempt_t attempt;
} parallel_t;

static void *
s_parallel_run (void *arg)
{
    parallel_t *run = arg;
    s_run (&run->attempt, run->id, "stub", solve_command, repo, 60, 0);
    return NULL;
}

/* Two attempts start together on an empty cache: the mirror lock must let
 * one clone while the other waits, and both must solve the task. */
static void
test_parallel_shared_cache (void)
{
    cache_name = "cache-parallel";
    parallel_t runs[2] = { { .id = "j-par1" }, { .id = "j-par2" } };
    pthread_t threads[2];
    for (int i = 0; i < 2; i++)
        pthread_create (&threads[i], NULL, s_parallel_run, &runs[i]);
    for (int i = 0; i < 2; i++)
        pthread_join (threads[i], NULL);
    for (int i = 0; i < 2; i++) {
        Driftwatch__V1__JobResult *result = runs[i].attempt.result;
        CHECK (result && result->outcome == DRIFTWATCH__V1__OUTCOME__OUTCOME_RESOLVED,
               "parallel attempt %s: expected RESOLVED, got %d", runs[i].id,
               result ? (int) result->outcome : -1);
        s_free (&runs[i].attempt);
    }
    cache_name = "cache";
}

/* The agent owns the workspace's .git: settings there that name programs
 * must not run in the worker, and a deleted .git must not lose the diff. */
static void
test_git_tampering (void)
{
    char marker[400];
    snprintf (marker, sizeof marker, "%s/tamper-marker", root);
    char command[2048];
    snprintf (command, sizeof command,
              "%s; git config core.fsmonitor 'touch %s.fsmonitor';"
              "printf '* filter=evil diff=evil\\n' > .gitattributes;"
              "git config filter.evil.clean 'touch %s.clean; cat';"
              "git config diff.evil.textconv 'touch %s.textconv; cat'",
              solve_command, marker, marker, marker);
    attempt_t attempt;
    s_run (&attempt, "k-tamper", "stub", command, repo, 60, 0);
    if (attempt.result)
        CHECK (attempt.result->outcome == DRIFTWATCH__V1__OUTCOME__OUTCOME_RESOLVED,
               "tampered .git/config: expected RESOLVED, got %d (%s)", attempt.result->outcome,
               attempt.result->detail);
    s_free (&attempt);
    const char *suffixes[] = { ".fsmonitor", ".clean", ".textconv" };
    for (int i = 0; i < 3; i++) {
        char path[450];
        snprintf (path, sizeof path, "%s%s", marker, suffixes[i]);
        CHECK (access (path, F_OK) != 0, "program from the agent's git config ran: %s", path);
    }

    snprintf (command, sizeof command, "%s; rm -rf .git", solve_command);
    s_run (&attempt, "l-nogit", "stub", command, repo, 60, 0);
    if (attempt.result) {
        CHECK (attempt.result->outcome == DRIFTWATCH__V1__OUTCOME__OUTCOME_RESOLVED,
               "deleted .git: expected RESOLVED, got %d (%s)", attempt.result->outcome,
               attempt.result->detail);
        CHECK (attempt.result->agent_diff.len > 0
                   && !memmem (attempt.result->agent_diff.data, attempt.result->agent_diff.len,
                               ".git/", 5),
               "diff must hold the fix and nothing from .git");
    }
    s_free (&attempt);
}

static void
test_patch_paths (void)
{
    const char *patch = "diff --git a/tests/test_x.py b/tests/test_x.py\n"
                        "--- a/tests/test_x.py\n+++ b/tests/test_x.py\n@@ -1 +1 @@\n-a\n+b\n"
                        "diff --git a/new_test.py b/new_test.py\nnew file mode 100644\n"
                        "--- /dev/null\n+++ b/new_test.py\n@@ -0,0 +1 @@\n+x\n"
                        "diff --git a/img.png b/img.png\nGIT binary patch\nliteral 1\n"
                        "diff --git a/old.py b/moved.py\nrename from old.py\nrename to moved.py\n"
                        "--- \"a/sp ace\\tq.py\"\n+++ b/../evil.py\n";
    char *paths[16];
    size_t count = dw_grade_patch_paths (patch, paths, 16);
    const char *expected[] = { "tests/test_x.py", "new_test.py", "img.png", "old.py",
                               "moved.py", "sp ace\tq.py" };
    CHECK (count == 6, "expected 6 paths, got %zu", count);
    for (size_t i = 0; i < 6 && i < count; i++)
        CHECK (strcmp (paths[i], expected[i]) == 0, "path %zu: expected %s, got %s", i,
               expected[i], paths[i]);
    for (size_t i = 0; i < count; i++)
        free (paths[i]);
}

int
main (void)
{
    snprintf (root, sizeof root, "/tmp/dw-test-jobrun-%d", (int) getpid ());
    dw_rm_rf (root);
    dw_mkdir_p (root, 0700);
    if (s_make_repo () != 0) {
        fprintf (stderr, "FAIL: cannot build the test repository in %s\n", root);
        return 1;
    }

    test_patch_paths ();
    test_solve_resolved ();
    test_nothing_unresolved ();
    test_prompt_file ();
    test_exit3_agent_error ();
    test_sleep_timeout ();
    test_cheating_unresolved ();
    test_bad_url_infra_error ();
    test_unknown_kind_and_bad_id ();
    test_diff_too_large ();
    test_git_tampering ();
    test_cancel ();
    test_parallel_shared_cache ();

    free (gold_patch);
    free (test_patch);
    if (failures) {
        fprintf (stderr, "test_jobrun: %d check(s) failed (files kept in %s)\n", failures, root);
        return 1;
    }
    dw_rm_rf (root);
    printf ("test_jobrun: all checks passed\n");
    return 0;
}
