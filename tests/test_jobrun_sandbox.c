/* dw_jobrun through the built-in sandbox hook: a throwaway git repository
 * with a Python unittest task and agents written as shell commands. Checks
 * the agent's view under bubblewrap (paths, uid, files of the worker), that
 * grading has no network, that a memory or workspace limit kill is an
 * AGENT_ERROR with its own reason, sandbox_uid, sandbox "none", a task with
 * a podman image (when podman and busybox-static exist), and the harness
 * check. Needs root and bubblewrap; exits 77 (skipped) otherwise. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
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
static char repo[300];
static char base_sha[64];

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

/* Base commit with a wrong add(); the hidden test_patch adds test_add. */
static const char test_patch[] =
    "diff --git a/tests/test_calc.py b/tests/test_calc.py\n"
    "--- a/tests/test_calc.py\n"
    "+++ b/tests/test_calc.py\n"
    "@@ -5,3 +5,6 @@ import calc\n"
    " class CalcTest(unittest.TestCase):\n"
    "     def test_sub(self):\n"
    "         self.assertEqual(calc.sub(3, 1), 2)\n"
    "+\n"
    "+    def test_add(self):\n"
    "+        self.assertEqual(calc.add(2, 2), 4)\n";

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
        "git add -A; git commit -q -m base",
        repo, repo);
    if (rc != 0)
        return -1;
    FILE *pipe = popen ("git -C \"$DW_TEST_REPO\" rev-parse HEAD", "r");
    if (!pipe || !fgets (base_sha, sizeof base_sha, pipe)) {
        if (pipe)
            pclose (pipe);
        return -1;
    }
    pclose (pipe);
    base_sha[strcspn (base_sha, "\n")] = 0;
    return strlen (base_sha) == 40 ? 0 : -1;
}

static char *f2p[] = { "tests.test_calc.CalcTest.test_add" };
static char *p2p[] = { "tests.test_calc.CalcTest.test_sub" };
static char *tap_f2p[] = { "test_add" };
static char *tap_p2p[] = { "test_sub" };

/* Fix add() the way an agent would. */
#define FIX "sed -i '0,/return a - b/s//return a + b/' calc.py"

typedef struct {
    const char *id;
    const char *command;
    const char *sandbox;
    const char *test_cmd;
    uint64_t memory_bytes;
    uint64_t workspace_bytes;
    uint32_t wall_seconds;
    uid_t sandbox_uid;
    int keep;
    /* Container image (podman backend); the task then uses TAP test names. */
    const char *image;
} run_t;

static Driftwatch__V1__JobResult *
s_run (const run_t *run)
{
    Driftwatch__V1__TaskSpec task = DRIFTWATCH__V1__TASK_SPEC__INIT;
    task.instance_id = "calc-add";
    task.repo = "example/calc";
    task.repo_url = repo;
    task.base_commit = base_sha;
    task.problem_statement = "add() subtracts.";
    task.requirements = "add(a, b) returns a + b.";
    task.interface = "No new interfaces introduced";
    task.test_patch = (char *) test_patch;
    task.fail_to_pass = f2p;
    task.n_fail_to_pass = 1;
    task.pass_to_pass = p2p;
    task.n_pass_to_pass = 1;
    task.test_cmd = (char *) (run->test_cmd ? run->test_cmd
                                             : "python3 -m unittest -v tests.test_calc");
    task.test_format = "unittest";
    if (run->image) {
        task.image = (char *) run->image;
        task.test_format = "tap";
        task.fail_to_pass = tap_f2p;
        task.pass_to_pass = tap_p2p;
    }

    Driftwatch__V1__AgentConfig agent = DRIFTWATCH__V1__AGENT_CONFIG__INIT;
    agent.kind = "command";
    agent.command = (char *) run->command;
    Driftwatch__V1__Limits limits = DRIFTWATCH__V1__LIMITS__INIT;
    limits.wall_seconds = run->wall_seconds ? run->wall_seconds : 60;
    limits.grade_wall_seconds = 60;
    limits.memory_bytes = run->memory_bytes;
    limits.workspace_bytes = run->workspace_bytes;
    limits.max_processes = 256;

    Driftwatch__V1__JobAssignment job = DRIFTWATCH__V1__JOB_ASSIGNMENT__INIT;
    job.run_id = "run-sbx";
    job.job_id = (char *) run->id;
    job.attempt_id = (char *) run->id;
    job.task = &task;
    job.agent = &agent;
    job.limits = &limits;
    job.seed = 1;
    job.day = "2026-12-04";

    char work[300], cache[300];
    snprintf (work, sizeof work, "%s/work", root);
    snprintf (cache, sizeof cache, "%s/cache", root);
    dw_jobrun_options_t options = {
        .work_root = work,
        .cache_dir = cache,
        .sandbox = run->sandbox,
        .sandbox_uid = run->sandbox_uid,
        .keep_workspace = run->keep,
    };
    uint8_t *packed = NULL;
    size_t len = 0;
    int rc = dw_jobrun_execute (&job, &options, &packed, &len);
    CHECK (rc == 0, "%s: dw_jobrun_execute returned %d", run->id, rc);
    Driftwatch__V1__JobResult *result
        = rc == 0 ? driftwatch__v1__job_result__unpack (NULL, len, packed) : NULL;
    free (packed);
    CHECK (result != NULL, "%s: result does not unpack", run->id);
    if (result)
        fprintf (stderr, "%s: outcome=%d reason=%s detail=%s\n", run->id, result->outcome,
                 result->outcome_reason, result->detail);
    return result;
}

/* Diff text of RESULT, NUL-terminated (static buffer). */
static const char *
s_diff (const Driftwatch__V1__JobResult *result)
{
    static char text[1 << 16];
    size_t len = result->agent_diff.len < sizeof text - 1 ? result->agent_diff.len
                                                          : sizeof text - 1;
    memcpy (text, result->agent_diff.data, len);
    text[len] = 0;
    return text;
}

/* The agent writes what it sees into probe.txt; the diff carries it out. */
static void
test_agent_view (void)
{
    char command[2048];
    snprintf (command, sizeof command,
              FIX "; {"
              " echo \"uid=$(id -u)\";"
              " echo \"ws=$DW_WORKSPACE pwd=$(pwd)\";"
              " echo \"home=$HOME tmp=$TMPDIR\";"
              " echo \"task=$DW_TASK_FILE\";"
              " test -r \"$DW_TASK_FILE\" && echo task_readable;"
              " test -r \"$DW_PROMPT_FILE\" && grep -q 'Requirements:' \"$DW_PROMPT_FILE\""
              " && echo prompt_readable;"
              " grep -q patch \"$DW_TASK_FILE\" && echo task_has_patch;"
              " test -e %s/cache && echo cache_visible;"
              " test -e %s/origin && echo origin_visible;"
              " touch /etc/dw-probe 2>/dev/null && echo etc_writable;"
              " touch /usr/dw-probe 2>/dev/null && echo usr_writable;"
              " touch \"$HOME/ok\" && echo home_writable;"
              " touch /tmp/ok && echo tmp_writable;"
              " } > probe.txt 2>&1",
              root, root);
    run_t run = { .id = "view", .command = command };
    Driftwatch__V1__JobResult *result = s_run (&run);
    if (!result)
        return;
    const char *diff = s_diff (result);
    CHECK (result->outcome == DRIFTWATCH__V1__OUTCOME__OUTCOME_RESOLVED,
           "view: a fixed add() must be RESOLVED under the sandbox, got %d", result->outcome);
    CHECK (strstr (diff, "+uid=1000") != NULL, "view: the agent must run as uid 1000:\n%s",
           diff);
    CHECK (strstr (diff, "+ws=/workspace pwd=/workspace") != NULL,
           "view: DW_WORKSPACE and the cwd must be /workspace:\n%s", diff);
    CHECK (strstr (diff, "+home=/home/agent tmp=/tmp") != NULL,
           "view: HOME and TMPDIR must be the sandbox's:\n%s", diff);
    CHECK (strstr (diff, "+task=/home/agent/.driftwatch/task.json") != NULL,
           "view: DW_TASK_FILE must be rewritten to the in-sandbox path:\n%s", diff);
    CHECK (strstr (diff, "+task_readable") && strstr (diff, "+prompt_readable"),
           "view: the task and prompt files must be readable inside:\n%s", diff);
    CHECK (!strstr (diff, "+task_has_patch"),
           "view: a command agent must not get the gold patch:\n%s", diff);
    CHECK (!strstr (diff, "cache_visible") && !strstr (diff, "origin_visible"),
           "view: the worker's cache and the origin must not be visible:\n%s", diff);
    CHECK (!strstr (diff, "etc_writable") && !strstr (diff, "usr_writable"),
           "view: /etc and /usr must be read-only:\n%s", diff);
    CHECK (strstr (diff, "+home_writable") && strstr (diff, "+tmp_writable"),
           "view: home and /tmp must be writable:\n%s", diff);
    driftwatch__v1__job_result__free_unpacked (result, NULL);
}

/* The hidden tests pass only when the grading sandbox cannot reach a
 * loopback port of the host; the listener also counts connections. */
static void
test_grading_offline (void)
{
    int listener = socket (AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    socklen_t addr_len = sizeof addr;
    if (listener < 0 || bind (listener, (struct sockaddr *) &addr, sizeof addr) != 0
        || listen (listener, 8) != 0
        || getsockname (listener, (struct sockaddr *) &addr, &addr_len) != 0) {
        CHECK (0, "grading: cannot listen on loopback: %s", strerror (errno));
        return;
    }
    char test_cmd[512];
    snprintf (test_cmd, sizeof test_cmd,
              "if bash -c 'echo hi > /dev/tcp/127.0.0.1/%d' 2>/dev/null; then"
              " echo network reachable; exit 1; fi;"
              " python3 -m unittest -v tests.test_calc",
              ntohs (addr.sin_port));
    run_t run = { .id = "grade-offline", .command = FIX, .test_cmd = test_cmd };
    Driftwatch__V1__JobResult *result = s_run (&run);
    int accepted = accept (listener, NULL, NULL);
    CHECK (accepted < 0, "grading: the tests reached a host loopback port");
    if (accepted >= 0)
        close (accepted);
    close (listener);
    if (!result)
        return;
    CHECK (result->outcome == DRIFTWATCH__V1__OUTCOME__OUTCOME_RESOLVED,
           "grading: expected RESOLVED (no network from the tests), got %d (%s)",
           result->outcome, result->detail);
    driftwatch__v1__job_result__free_unpacked (result, NULL);
}

static void
test_memory_limit (void)
{
    run_t run = { .id = "memory",
                  .command = "python3 -c \"b = b'x' * (512 << 20); print(len(b))\"",
                  .memory_bytes = 96ull << 20 };
    Driftwatch__V1__JobResult *result = s_run (&run);
    if (!result)
        return;
    CHECK (result->outcome == DRIFTWATCH__V1__OUTCOME__OUTCOME_AGENT_ERROR,
           "memory: expected AGENT_ERROR, got %d", result->outcome);
    CHECK (strcmp (result->outcome_reason, "memory_limit") == 0,
           "memory: expected reason memory_limit, got %s (%s)", result->outcome_reason,
           result->detail);
    driftwatch__v1__job_result__free_unpacked (result, NULL);
}

static void
test_workspace_limit (void)
{
    run_t run = { .id = "disk",
                  .command = "for i in 1 2 3 4; do head -c 20000000 /dev/zero > big$i; done;"
                             " sleep 20",
                  .workspace_bytes = 40ull << 20,
                  .wall_seconds = 30 };
    uint64_t start = dw_mono_ms ();
    Driftwatch__V1__JobResult *result = s_run (&run);
    uint64_t took = dw_mono_ms () - start;
    if (!result)
        return;
    CHECK (result->outcome == DRIFTWATCH__V1__OUTCOME__OUTCOME_AGENT_ERROR,
           "disk: expected AGENT_ERROR, got %d", result->outcome);
    CHECK (strcmp (result->outcome_reason, "workspace_limit") == 0,
           "disk: expected reason workspace_limit, got %s (%s)", result->outcome_reason,
           result->detail);
    CHECK (took < 15000, "disk: the watchdog took %llu ms to stop the agent",
           (unsigned long long) took);
    driftwatch__v1__job_result__free_unpacked (result, NULL);
}

/* With sandbox_uid the sandbox runs as that host user; the runner must
 * still take the diff from and grade a workspace that user owns. */
static void
test_sandbox_uid (void)
{
    run_t run = { .id = "uid", .command = FIX "; echo written > probe.txt",
                  .sandbox_uid = 65534, .keep = 1 };
    Driftwatch__V1__JobResult *result = s_run (&run);
    if (!result)
        return;
    CHECK (result->outcome == DRIFTWATCH__V1__OUTCOME__OUTCOME_RESOLVED,
           "uid: expected RESOLVED with sandbox_uid 65534, got %d (%s: %s)", result->outcome,
           result->outcome_reason, result->detail);
    char path[400];
    snprintf (path, sizeof path, "%s/work/uid/ws/probe.txt", root);
    struct stat st;
    CHECK (stat (path, &st) == 0 && st.st_uid == 65534,
           "uid: a file the agent wrote must belong to host uid 65534 (%s)", path);
    driftwatch__v1__job_result__free_unpacked (result, NULL);
}

/* Image that the container tests import from busybox-static. */
#define TEST_IMAGE "localhost/driftwatch-test-busybox:1"

/* Import a busybox root filesystem as TEST_IMAGE unless it exists; 0 when
 * the image is there. */
static int
s_ensure_image (void)
{
    if (s_sh ("podman image exists " TEST_IMAGE " 2>/dev/null") == 0)
        return 0;
    if (access ("/bin/busybox", X_OK) != 0)
        return -1;
    return s_sh ("set -e; d=%s/rootfs; mkdir -p $d/bin $d/etc $d/tmp $d/workspace $d/home/agent;"
                 " cp /bin/busybox $d/bin/; for a in $(/bin/busybox --list); do"
                 " [ $a = busybox ] || ln -sf busybox $d/bin/$a; done;"
                 " echo 'root:x:0:0::/root:/bin/sh' > $d/etc/passwd;"
                 " tar -C $d -cf %s/rootfs.tar . ; podman import -q %s/rootfs.tar " TEST_IMAGE
                 " >/dev/null",
                 root, root, root) == 0 ? 0 : -1;
}

/* A task naming an image runs agent and tests in podman with the same
 * paths. Busybox has no Python, so the hidden "tests" are a TAP script,
 * and test_sub fails if the tests can fetch a web page. */
static void
test_podman_image (void)
{
    if (system ("podman --version > /dev/null 2>&1") != 0 || s_ensure_image () != 0) {
        fprintf (stderr, "podman: skipped (needs podman and busybox-static)\n");
        return;
    }
    run_t run = {
        .id = "podman",
        .command = "sed -i '2s/a - b/a + b/' calc.py; { id -u; echo \"$DW_WORKSPACE\";"
                   " test -r \"$DW_TASK_FILE\" && echo task_readable; } > probe.txt",
        .test_cmd = "if grep -q 'return a + b' calc.py; then echo 'ok 1 - test_add';"
                    " else echo 'not ok 1 - test_add'; fi;"
                    " if wget -q -T 2 -O /dev/null http://example.com; then"
                    " echo 'not ok 2 - test_sub';"
                    " else echo 'ok 2 - test_sub'; fi; echo 1..2",
        .image = TEST_IMAGE,
    };
    Driftwatch__V1__JobResult *result = s_run (&run);
    if (!result)
        return;
    const char *diff = s_diff (result);
    CHECK (result->outcome == DRIFTWATCH__V1__OUTCOME__OUTCOME_RESOLVED,
           "podman: expected RESOLVED, got %d (%s: %s)", result->outcome,
           result->outcome_reason, result->detail);
    CHECK (strstr (diff, "+1000\n+/workspace\n+task_readable") != NULL,
           "podman: the agent must run as uid 1000 in /workspace with its task file:\n%s",
           diff);
    driftwatch__v1__job_result__free_unpacked (result, NULL);
}

/* sandbox "none" runs on the host: the agent sees host paths. */
static void
test_sandbox_none (void)
{
    run_t run = { .id = "none",
                  .command = FIX "; echo \"ws=$DW_WORKSPACE\" > probe.txt",
                  .sandbox = "none" };
    Driftwatch__V1__JobResult *result = s_run (&run);
    if (!result)
        return;
    CHECK (result->outcome == DRIFTWATCH__V1__OUTCOME__OUTCOME_RESOLVED,
           "none: expected RESOLVED, got %d", result->outcome);
    char expected[400];
    snprintf (expected, sizeof expected, "+ws=%s/work/none/ws", root);
    CHECK (strstr (s_diff (result), expected) != NULL,
           "none: DW_WORKSPACE must stay the host path %s:\n%s", expected + 4, s_diff (result));
    driftwatch__v1__job_result__free_unpacked (result, NULL);
}

static void
test_unknown_sandbox (void)
{
    run_t run = { .id = "unknown", .command = FIX, .sandbox = "chroot" };
    Driftwatch__V1__JobResult *result = s_run (&run);
    if (!result)
        return;
    CHECK (result->outcome == DRIFTWATCH__V1__OUTCOME__OUTCOME_INFRA_ERROR
               && strcmp (result->outcome_reason, "sandbox_failed") == 0,
           "unknown: expected INFRA_ERROR sandbox_failed, got %d %s", result->outcome,
           result->outcome_reason);
    driftwatch__v1__job_result__free_unpacked (result, NULL);
}

static void
test_harness_check (void)
{
    const char *source = getenv ("DW_SOURCE_DIR");
    char work[300], stub[600], detail[1024];
    snprintf (work, sizeof work, "%s/work", root);
    snprintf (stub, sizeof stub, "%s/tests/fixtures/demo/stub-agent", source ? source : ".");
    Driftwatch__V1__AgentConfig agent = DRIFTWATCH__V1__AGENT_CONFIG__INIT;
    agent.kind = "stub";
    dw_jobrun_options_t options = { .work_root = work, .stub_agent = stub };

    int rc = dw_jobrun_harness_check (&agent, &options, detail, sizeof detail, NULL, 0);
    CHECK (rc == 0, "harness: the stub through bwrap must pass: %s", detail);

    options.stub_agent = NULL;
    rc = dw_jobrun_harness_check (&agent, &options, detail, sizeof detail, NULL, 0);
    CHECK (rc == -1 && strstr (detail, "stub agent path"),
           "harness: a stub without a path must fail and say so: %s", detail);

    options.stub_agent = stub;
    options.sandbox = "chroot";
    rc = dw_jobrun_harness_check (&agent, &options, detail, sizeof detail, NULL, 0);
    CHECK (rc == -1 && strstr (detail, "unknown sandbox"),
           "harness: an unknown sandbox must fail and say so: %s", detail);

    agent.kind = "telepathy";
    options.sandbox = NULL;
    rc = dw_jobrun_harness_check (&agent, &options, detail, sizeof detail, NULL, 0);
    CHECK (rc == -1 && strstr (detail, "telepathy"),
           "harness: an unknown kind must fail and name it: %s", detail);
}

int
main (void)
{
    if (geteuid () != 0 || system ("bwrap --version > /dev/null 2>&1") != 0) {
        fprintf (stderr, "SKIP: needs root and bubblewrap\n");
        return 77;
    }
    snprintf (root, sizeof root, "/tmp/dw-test-jobrun-sandbox-%d", (int) getpid ());
    dw_rm_rf (root);
    dw_mkdir_p (root, 0755);
    char repo_env[400];
    snprintf (repo_env, sizeof repo_env, "%s/origin", root);
    setenv ("DW_TEST_REPO", repo_env, 1);
    if (s_make_repo () != 0) {
        fprintf (stderr, "FAIL: cannot create the test repository\n");
        return 1;
    }

    test_agent_view ();
    test_grading_offline ();
    test_memory_limit ();
    test_workspace_limit ();
    test_sandbox_uid ();
    test_sandbox_none ();
    test_podman_image ();
    test_unknown_sandbox ();
    test_harness_check ();

    if (failures) {
        fprintf (stderr, "test_jobrun_sandbox: %d check(s) failed (files kept in %s)\n",
                 failures, root);
        return 1;
    }
    dw_rm_rf (root);
    printf ("test_jobrun_sandbox: all checks passed\n");
    return 0;
}
