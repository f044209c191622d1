/* dw_jobrun with agent kind "claude-code" end to end: the real Claude Code
 * CLI runs in the bubblewrap sandbox and reaches the scripted model server
 * (tests/modelserver, on loopback) only through the attempt's gateway.
 * Covers a solved and an unsolved demo task, an injected 529, a stalled
 * API killed at the wall limit, a hostile Bash command, and the harness
 * check. Exits 77 (skipped) without root, bubblewrap or the CLI
 * (DW_CLAUDE, else the default install path). */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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

/* Key the gateway adds; the model server rejects any other. */
#define API_KEY "sk-ant-test-jobrun-claude-secret"

static char root[256];
static char claude_path[512];
static char claude_dir[512];
static char pinned[64];
static char upstream[128];
static pid_t server_pid;
static json_t *python_task;

/* Agent stdout lines seen through on_event. */
static int events_seen;
static int result_events;

static void
s_on_event (void *arg, const char *line, size_t len, int truncated)
{
    (void) arg;
    (void) truncated;
    events_seen++;
    /* DW_TEST_VERBOSE=1 prints every event, for debugging a failing run. */
    if (getenv ("DW_TEST_VERBOSE"))
        fprintf (stderr, "event: %.*s\n", (int) (len < 1500 ? len : 1500), line);
    if (memmem (line, len, "\"type\":\"result\"", 15))
        result_events++;
}

static const char *
s_get (json_t *row, const char *key)
{
    const char *value = json_string_value (json_object_get (row, key));
    return value ? value : "";
}

static char **
s_strings (json_t *array, size_t *count)
{
    *count = json_array_size (array);
    char **items = calloc (*count + 1, sizeof *items);
    for (size_t i = 0; i < *count; i++)
        items[i] = (char *) json_string_value (json_array_get (array, i));
    return items;
}

typedef struct {
    const char *id;
    const char *model;
    /* Replaces the task's problem statement when set. */
    const char *statement;
    uint32_t wall_seconds;
} run_t;

static Driftwatch__V1__JobResult *
s_run (const run_t *run)
{
    json_t *row = python_task;
    char *repo_url = dw_strdup_printf ("%s/suite/%s", root, s_get (row, "repo_url"));
    Driftwatch__V1__TaskSpec task = DRIFTWATCH__V1__TASK_SPEC__INIT;
    task.instance_id = (char *) s_get (row, "instance_id");
    task.repo = (char *) s_get (row, "repo");
    task.repo_url = repo_url;
    task.base_commit = (char *) s_get (row, "base_commit");
    task.problem_statement = (char *) (run->statement ? run->statement
                                                      : s_get (row, "problem_statement"));
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

    Driftwatch__V1__AgentConfig agent = DRIFTWATCH__V1__AGENT_CONFIG__INIT;
    agent.kind = "claude-code";
    agent.model = (char *) run->model;
    agent.max_turns = 10;
    agent.cli_version = pinned;
    Driftwatch__V1__Limits limits = DRIFTWATCH__V1__LIMITS__INIT;
    limits.wall_seconds = run->wall_seconds ? run->wall_seconds : 90;
    limits.grade_wall_seconds = 60;
    limits.memory_bytes = 2ull << 30;
    limits.max_processes = 512;
    Driftwatch__V1__JobAssignment job = DRIFTWATCH__V1__JOB_ASSIGNMENT__INIT;
    job.run_id = "run-claude";
    job.job_id = (char *) run->id;
    job.attempt_id = (char *) run->id;
    job.task = &task;
    job.agent = &agent;
    job.limits = &limits;
    job.seed = 3;
    job.day = "2026-12-04";

    char *work = dw_strdup_printf ("%s/work", root);
    char *cache = dw_strdup_printf ("%s/cache", root);
    dw_jobrun_options_t options = {
        .work_root = work,
        .cache_dir = cache,
        .on_event = s_on_event,
        .sandbox = "bwrap",
        .claude_path = claude_path,
        .claude_dir = claude_dir,
        .upstream_url = upstream,
        .api_key = API_KEY,
        .cli_max_retries = 1,
    };
    events_seen = result_events = 0;
    uint8_t *packed = NULL;
    size_t len = 0;
    int rc = dw_jobrun_execute (&job, &options, &packed, &len);
    CHECK (rc == 0, "%s: dw_jobrun_execute returned %d", run->id, rc);
    Driftwatch__V1__JobResult *result
        = rc == 0 ? driftwatch__v1__job_result__unpack (NULL, len, packed) : NULL;
    CHECK (result != NULL, "%s: result does not unpack", run->id);
    if (result)
        fprintf (stderr, "%s: outcome=%d reason=%s detail=%s events=%d\n", run->id,
                 result->outcome, result->outcome_reason, result->detail, events_seen);
    free (packed);
    free (work);
    free (cache);
    free (task.fail_to_pass);
    free (task.pass_to_pass);
    free (task.selected_test_files);
    free (repo_url);
    return result;
}

static uint32_t
s_tool_count (const Driftwatch__V1__AgentMetrics *metrics, const char *name)
{
    for (size_t i = 0; metrics && i < metrics->n_tool_calls; i++)
        if (strcmp (metrics->tool_calls[i]->tool, name) == 0)
            return metrics->tool_calls[i]->count;
    return 0;
}

static void
test_solved (void)
{
    run_t run = { .id = "solved", .model = "solver" };
    Driftwatch__V1__JobResult *result = s_run (&run);
    if (!result)
        return;
    const Driftwatch__V1__AgentMetrics *metrics = result->metrics;
    CHECK (result->outcome == DRIFTWATCH__V1__OUTCOME__OUTCOME_RESOLVED,
           "solved: expected RESOLVED, got %d (%s: %s)", result->outcome,
           result->outcome_reason, result->detail);
    CHECK (metrics && metrics->turns > 0, "solved: expected turns > 0");
    CHECK (s_tool_count (metrics, "Read") >= 1, "solved: expected a Read tool call");
    CHECK (s_tool_count (metrics, "Bash") >= 1, "solved: expected a Bash tool call");
    CHECK (metrics && metrics->input_tokens > 0 && metrics->output_tokens > 0,
           "solved: expected tokens from the result event");
    CHECK (metrics && metrics->result_event_seen, "solved: expected the result event seen");
    CHECK (metrics && strcmp (metrics->api_model, "solver") == 0,
           "solved: expected api_model solver, got %s", metrics ? metrics->api_model : "-");
    CHECK (metrics && strcmp (metrics->terminal_reason, "completed") == 0,
           "solved: expected terminal_reason completed, got %s",
           metrics ? metrics->terminal_reason : "-");
    CHECK (events_seen > 3 && result_events == 1,
           "solved: expected the stream-json lines forwarded as events (%d lines, %d results)",
           events_seen, result_events);
    CHECK (result->events_total == (uint64_t) events_seen,
           "solved: events_total %llu differs from the %d events seen",
           (unsigned long long) result->events_total, events_seen);
    CHECK (strcmp (result->cli_version_before, pinned) == 0,
           "solved: cli_version_before %s, expected %s", result->cli_version_before, pinned);
    CHECK (strcmp (result->cli_version_after, pinned) == 0,
           "solved: cli_version_after %s, expected %s", result->cli_version_after, pinned);
    driftwatch__v1__job_result__free_unpacked (result, NULL);
}

static void
test_unsolved (void)
{
    run_t run = { .id = "unsolved", .model = "misser" };
    Driftwatch__V1__JobResult *result = s_run (&run);
    if (!result)
        return;
    CHECK (result->outcome == DRIFTWATCH__V1__OUTCOME__OUTCOME_UNRESOLVED,
           "unsolved: expected UNRESOLVED, got %d (%s: %s)", result->outcome,
           result->outcome_reason, result->detail);
    CHECK (result->agent_diff.len > 0, "unsolved: expected the agent's edit in the diff");
    driftwatch__v1__job_result__free_unpacked (result, NULL);
}

static void
test_overloaded (void)
{
    char *statement = dw_strdup_printf ("%s\nDW_FAULT=529:0",
                                        s_get (python_task, "problem_statement"));
    run_t run = { .id = "overloaded", .model = "solver", .statement = statement };
    Driftwatch__V1__JobResult *result = s_run (&run);
    free (statement);
    if (!result)
        return;
    CHECK (result->outcome == DRIFTWATCH__V1__OUTCOME__OUTCOME_INFRA_ERROR,
           "overloaded: expected INFRA_ERROR, got %d (%s)", result->outcome,
           result->outcome_reason);
    CHECK (strcmp (result->outcome_reason, "api_overloaded") == 0,
           "overloaded: expected reason api_overloaded, got %s", result->outcome_reason);
    CHECK (result->n_tests == 0, "overloaded: an infrastructure error must not be graded");
    driftwatch__v1__job_result__free_unpacked (result, NULL);
}

static void
test_stalled_timeout (void)
{
    char *statement = dw_strdup_printf ("%s\nDW_FAULT=stall:0",
                                        s_get (python_task, "problem_statement"));
    run_t run = { .id = "stalled", .model = "solver", .statement = statement,
                  .wall_seconds = 6 };
    uint64_t start = dw_mono_ms ();
    Driftwatch__V1__JobResult *result = s_run (&run);
    uint64_t took = dw_mono_ms () - start;
    free (statement);
    if (!result)
        return;
    CHECK (result->outcome == DRIFTWATCH__V1__OUTCOME__OUTCOME_TIMEOUT,
           "stalled: expected TIMEOUT, got %d (%s)", result->outcome, result->outcome_reason);
    CHECK (took < 30000, "stalled: the kill took %llu ms", (unsigned long long) took);
    driftwatch__v1__job_result__free_unpacked (result, NULL);
}

/* The model server runs the hostile task's test_cmd through the Bash tool:
 * it writes what it could do into probe.txt, which the diff carries out. */
static void
test_hostile (void)
{
    run_t run = { .id = "hostile", .model = "solver",
                  .statement = "Hostile probe task: report what the sandbox allows." };
    Driftwatch__V1__JobResult *result = s_run (&run);
    if (!result)
        return;
    char diff[1 << 15];
    size_t len = result->agent_diff.len < sizeof diff - 1 ? result->agent_diff.len
                                                          : sizeof diff - 1;
    memcpy (diff, result->agent_diff.data, len);
    diff[len] = 0;
    CHECK (result->outcome == DRIFTWATCH__V1__OUTCOME__OUTCOME_UNRESOLVED
               || result->outcome == DRIFTWATCH__V1__OUTCOME__OUTCOME_RESOLVED,
           "hostile: the attempt must be graded normally, got %d (%s: %s)", result->outcome,
           result->outcome_reason, result->detail);
    CHECK (strstr (diff, "+uid=1000") != NULL, "hostile: expected uid 1000 in probe.txt:\n%s",
           diff);
    CHECK (strstr (diff, "+read=failed") != NULL && !strstr (diff, "worker-secret-data"),
           "hostile: reading the worker's data dir must fail:\n%s", diff);
    CHECK (strstr (diff, "+connect=failed") != NULL,
           "hostile: connecting to a loopback port must fail:\n%s", diff);
    CHECK (strstr (diff, "+model_port=failed") != NULL,
           "hostile: connecting to the model server directly must fail:\n%s", diff);
    CHECK (strstr (diff, "+resolve=failed") != NULL,
           "hostile: resolving a hostname must fail:\n%s", diff);
    CHECK (strstr (diff, "+key_seen=0") != NULL && !strstr (diff, API_KEY),
           "hostile: the real API key must not reach the agent:\n%s", diff);
    driftwatch__v1__job_result__free_unpacked (result, NULL);
}

static void
test_harness_check (void)
{
    char work[300];
    snprintf (work, sizeof work, "%s/work", root);
    Driftwatch__V1__AgentConfig agent = DRIFTWATCH__V1__AGENT_CONFIG__INIT;
    agent.kind = "claude-code";
    agent.model = "solver";
    /* No claude_dir: the runner derives the install directory from
     * claude_path. */
    dw_jobrun_options_t options = {
        .work_root = work,
        .sandbox = "bwrap",
        .claude_path = claude_path,
        .upstream_url = upstream,
        .api_key = API_KEY,
        .cli_max_retries = 1,
    };
    char detail[1024];
    char version[64];
    int rc = dw_jobrun_harness_check (&agent, &options, detail, sizeof detail, version,
                                      sizeof version);
    CHECK (rc == 0, "harness: expected the claude-code check to pass: %s", detail);
    CHECK (strcmp (version, pinned) == 0, "harness: version %s, expected %s", version, pinned);

    /* As an unprivileged host user the CLI must still reach the gateway
     * socket and its install directory. */
    options.sandbox_uid = 65534;
    rc = dw_jobrun_harness_check (&agent, &options, detail, sizeof detail, version,
                                  sizeof version);
    CHECK (rc == 0, "harness: the check with sandbox_uid 65534 must pass: %s", detail);
    options.sandbox_uid = 0;

    options.api_key = "sk-ant-wrong-key";
    rc = dw_jobrun_harness_check (&agent, &options, detail, sizeof detail, version,
                                  sizeof version);
    CHECK (rc == -1, "harness: a wrong key must fail the check");
    CHECK (strstr (detail, "api_key") != NULL, "harness: the detail must name api_key: %s",
           detail);

    options.api_key = API_KEY;
    options.claude_path = "/nonexistent/claude";
    rc = dw_jobrun_harness_check (&agent, &options, detail, sizeof detail, version,
                                  sizeof version);
    CHECK (rc == -1 && strstr (detail, "claude_path"),
           "harness: a missing CLI must fail and name claude_path: %s", detail);

    Driftwatch__V1__AgentConfig command = DRIFTWATCH__V1__AGENT_CONFIG__INIT;
    command.kind = "command";
    command.command = "true";
    options.claude_path = claude_path;
    rc = dw_jobrun_harness_check (&command, &options, detail, sizeof detail, NULL, 0);
    CHECK (rc == 0, "harness: kind command must pass: %s", detail);
}

/* Start the model server on loopback PORT with SUITE; returns 0 once it
 * listens, -1 otherwise. */
static int
s_start_server (int port, const char *suite, const char *log)
{
    const char *build = getenv ("DW_BUILD_DIR");
    char *server = dw_strdup_printf ("%s/driftwatch-modelserver", build ? build : ".");
    char port_text[16];
    snprintf (port_text, sizeof port_text, "%d", port);
    int fds[2];
    if (!server || pipe (fds) != 0)
        return -1;
    server_pid = fork ();
    if (server_pid == 0) {
        dup2 (fds[1], 1);
        close (fds[0]);
        close (fds[1]);
        execl (server, server, "--port", port_text, "--suite", suite, "--model-rate",
               "solver=2", "--model-rate", "misser=-2", "--expect-key", API_KEY, "--log", log,
               (char *) NULL);
        _exit (127);
    }
    close (fds[1]);
    free (server);
    char line[128] = "";
    FILE *out = fdopen (fds[0], "r");
    int listening = out && fgets (line, sizeof line, out) && strstr (line, "listening") != NULL;
    if (out)
        fclose (out);
    return listening ? 0 : -1;
}

/* Bind a loopback TCP socket to a free port; returns the socket and sets
 * *PORT, or -1. */
static int
s_listen_loopback (int *port)
{
    int fd = socket (AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in addr = { .sin_family = AF_INET,
                                .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    socklen_t addr_len = sizeof addr;
    if (fd < 0 || bind (fd, (struct sockaddr *) &addr, sizeof addr) != 0 || listen (fd, 8) != 0
        || getsockname (fd, (struct sockaddr *) &addr, &addr_len) != 0) {
        if (fd >= 0)
            close (fd);
        return -1;
    }
    *port = ntohs (addr.sin_port);
    return fd;
}

/* Suite for the model server: the Python demo task plus the hostile task,
 * whose test_cmd the server runs through the Bash tool. */
static int
s_write_suite (const char *path, int listener_port, int server_port)
{
    char *hostile_cmd = dw_strdup_printf (
        "{ echo uid=$(id -u);"
        " if cat %s/data/worker.key >/dev/null 2>&1; then echo read=ok; else echo read=failed; fi;"
        " if bash -c 'echo hi > /dev/tcp/127.0.0.1/%d' 2>/dev/null; then echo connect=ok;"
        " else echo connect=failed; fi;"
        " if bash -c 'echo hi > /dev/tcp/127.0.0.1/%d' 2>/dev/null; then echo model_port=ok;"
        " else echo model_port=failed; fi;"
        " if getent hosts example.com >/dev/null 2>&1; then echo resolve=ok;"
        " else echo resolve=failed; fi;"
        " echo key_seen=$(env | grep -c '%s');"
        " } > probe.txt 2>&1",
        root, listener_port, server_port, API_KEY);
    json_t *hostile = json_pack ("{s:s, s:s, s:s, s:s, s:f}", "instance_id", "hostile",
                                 "problem_statement",
                                 "Hostile probe task: report what the sandbox allows.",
                                 "patch", "", "test_cmd", hostile_cmd, "stub_solve_rate", 1.0);
    free (hostile_cmd);
    FILE *out = fopen (path, "w");
    if (!out || !hostile)
        return -1;
    char *first = json_dumps (python_task, JSON_COMPACT);
    char *second = json_dumps (hostile, JSON_COMPACT);
    fprintf (out, "%s\n%s\n", first, second);
    free (first);
    free (second);
    json_decref (hostile);
    return fclose (out) == 0 ? 0 : -1;
}

static int
s_read_pinned (const char *source)
{
    char *path = dw_strdup_printf ("%s/deploy/install-claude-code.sh", source);
    char *text = dw_read_file (path, 1 << 20, NULL);
    free (path);
    const char *line = text ? strstr (text, "CLAUDE_CODE_VERSION=") : NULL;
    if (line)
        snprintf (pinned, sizeof pinned, "%.*s", (int) strcspn (line + 20, "\n \""),
                  line + 20);
    free (text);
    return pinned[0] ? 0 : -1;
}

int
main (void)
{
    const char *source = getenv ("DW_SOURCE_DIR");
    const char *env_claude = getenv ("DW_CLAUDE");
    snprintf (claude_path, sizeof claude_path, "%s",
              env_claude && *env_claude ? env_claude : DW_JOBRUN_CLAUDE_PATH);
    if (geteuid () != 0 || system ("bwrap --version > /dev/null 2>&1") != 0
        || access (claude_path, X_OK) != 0) {
        fprintf (stderr, "SKIP: needs root, bubblewrap and the Claude Code CLI at %s\n",
                 claude_path);
        return 77;
    }
    if (!source || s_read_pinned (source) != 0) {
        fprintf (stderr, "FAIL: cannot read the pinned CLI version from DW_SOURCE_DIR\n");
        return 1;
    }
    /* The CLI's install directory: two levels above node_modules/.bin. */
    const char *install = getenv ("DW_CLAUDE_DIR");
    char *bin = strstr (claude_path, "/node_modules/.bin/");
    if (install && *install)
        snprintf (claude_dir, sizeof claude_dir, "%s", install);
    else if (bin)
        snprintf (claude_dir, sizeof claude_dir, "%.*s", (int) (bin - claude_path), claude_path);
    else
        snprintf (claude_dir, sizeof claude_dir, "%s", DW_JOBRUN_CLAUDE_DIR);

    snprintf (root, sizeof root, "/tmp/dw-test-jobrun-claude-%d", (int) getpid ());
    dw_rm_rf (root);
    dw_mkdir_p (root, 0755);
    char *data = dw_strdup_printf ("%s/data", root);
    char *secret = dw_strdup_printf ("%s/data/worker.key", root);
    dw_mkdir_p (data, 0700);
    dw_write_file_atomic (secret, "worker-secret-data\n", 19, 0600);
    free (data);
    free (secret);

    char *command = dw_strdup_printf ("%s/tests/fixtures/demo/make-demo-suite %s/suite > /dev/null",
                                      source, root);
    int status = system (command);
    free (command);
    char *suite_path = dw_strdup_printf ("%s/suite/suite.jsonl", root);
    FILE *suite = status == 0 ? fopen (suite_path, "r") : NULL;
    free (suite_path);
    char line[1 << 16];
    while (suite && !python_task && fgets (line, sizeof line, suite)) {
        json_t *row = json_loads (line, 0, NULL);
        if (row && strcmp (s_get (row, "repo_language"), "python") == 0)
            python_task = row;
        else
            json_decref (row);
    }
    if (suite)
        fclose (suite);
    if (!python_task) {
        fprintf (stderr, "FAIL: no Python task in the demo suite (make-demo-suite status %d)\n",
                 status);
        return 1;
    }

    /* A host loopback listener the hostile command tries to reach, and a
     * free port for the model server, which the hostile task also names. */
    int listener_port = 0;
    int server_port = 0;
    int listener = s_listen_loopback (&listener_port);
    int probe = s_listen_loopback (&server_port);
    if (listener < 0 || probe < 0) {
        fprintf (stderr, "FAIL: cannot listen on loopback: %s\n", strerror (errno));
        return 1;
    }
    close (probe);
    char *suite_file = dw_strdup_printf ("%s/modelserver-suite.jsonl", root);
    char *log_file = dw_strdup_printf ("%s/modelserver.log", root);
    int started = s_write_suite (suite_file, listener_port, server_port) == 0
                  && s_start_server (server_port, suite_file, log_file) == 0;
    free (suite_file);
    if (!started) {
        fprintf (stderr, "FAIL: the model server did not start on port %d\n", server_port);
        return 1;
    }
    int port = server_port;
    snprintf (upstream, sizeof upstream, "http://127.0.0.1:%d", port);

    test_solved ();
    test_unsolved ();
    test_overloaded ();
    test_stalled_timeout ();
    test_hostile ();
    int accepted = accept (listener, NULL, NULL);
    CHECK (accepted < 0, "hostile: the agent reached a host loopback port");
    if (accepted >= 0)
        close (accepted);
    close (listener);
    test_harness_check ();

    kill (server_pid, SIGTERM);
    waitpid (server_pid, NULL, 0);
    json_decref (python_task);
    if (failures) {
        fprintf (stderr, "test_jobrun_claude: %d check(s) failed (files kept in %s, model "
                         "server log %s)\n", failures, root, log_file);
        free (log_file);
        return 1;
    }
    free (log_file);
    dw_rm_rf (root);
    printf ("test_jobrun_claude: all checks passed\n");
    return 0;
}
