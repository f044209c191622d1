/* Tests for the Claude Code CLI runner (worker/dw_claude.c) and the model
 * gateway (worker/dw_gateway.c).
 *
 * Part 1 checks the outcome classification row by row against
 * docs/outcomes.md with synthetic stream-json transcripts. Part 2 checks
 * the command line and environment. Part 3 runs the real CLI (path in
 * DW_CLAUDE) through a real gateway on a unix socket against
 * driftwatch-modelserver, on a two-file git repository. Without DW_CLAUDE,
 * part 3 is skipped and the test exits 77.
 *
 * The tests run as root outside a sandbox and give the CLI IS_SANDBOX=1.
 * With the subprocess env scrub on, the CLI accepts root anyway, but without
 * the scrub it rejects --dangerously-skip-permissions for uid 0. Workers run
 * the CLI as a non-root uid inside bubblewrap instead.
 */
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dw_claude.h"
#include "dw_gateway.h"
#include "dw_log.h"
#include "dw_proc.h"
#include "dw_streamjson.h"
#include "dw_util.h"

static int s_failures = 0;

#define CHECK(cond, ...)                                                    \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf (stderr, "FAIL %s:%d: ", __FILE__, __LINE__);           \
            fprintf (stderr, __VA_ARGS__);                                  \
            fprintf (stderr, "\n");                                         \
            s_failures++;                                                   \
        }                                                                   \
    } while (0)

#define OUTCOME(x) DRIFTWATCH__V1__OUTCOME__OUTCOME_##x

/* --- part 1: classification table ---------------------------------------- */

#define INIT "{\"type\":\"system\",\"subtype\":\"init\",\"model\":\"m\"}"
#define ASSISTANT "{\"type\":\"assistant\",\"message\":{\"id\":\"a1\",\"model\":\"m\","\
                               "\"content\":[{\"type\":\"text\",\"text\":\"API Error: 529 I give "\
                               "up\"}]}}"
#define RETRY_429 "{\"type\":\"system\",\"subtype\":\"api_retry\",\"error_status\":429,"\
                               "\"error\":\"rate_limit\"}"
#define RETRY_DROP "{\"type\":\"system\",\"subtype\":\"api_retry\","\
                                "\"error_status\":null,\"error\":\"unknown\"}"

typedef struct {
    const char *name;
    const char *lines[6];
    int exit_status;
    int killed;
    /* Gateway evidence: 0 none, 1 a 529 seen, 2 a connection error,
     * 3 a request still open and silent at the end. */
    int gateway;
    Driftwatch__V1__Outcome outcome;
    const char *reason;
} row_t;

static const row_t ROWS[] = {
    {"completed",
     {INIT, ASSISTANT, "{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,"
                       "\"terminal_reason\":\"completed\",\"num_turns\":3}"},
     0, 0, 0, OUTCOME (UNSPECIFIED), "completed"},
    {"killed at time limit",
     {INIT, ASSISTANT}, 143, 1, 0, OUTCOME (TIMEOUT), "time_limit"},
    {"killed while API request silent",
     {INIT}, 143, 1, 3, OUTCOME (INFRA_ERROR), "api_stalled"},
    {"max turns",
     {INIT, "{\"type\":\"result\",\"subtype\":\"error_max_turns\",\"is_error\":true,"
            "\"terminal_reason\":\"max_turns\",\"num_turns\":4}"},
     1, 0, 0, OUTCOME (AGENT_ERROR), "max_turns"},
    {"budget exhausted",
     {INIT, "{\"type\":\"result\",\"subtype\":\"error_max_budget_usd\",\"is_error\":true,"
            "\"terminal_reason\":\"budget_exhausted\"}"},
     1, 0, 0, OUTCOME (AGENT_ERROR), "budget_exhausted"},
    {"crash without result",
     {INIT, ASSISTANT}, 1, 0, 0, OUTCOME (AGENT_ERROR), "crash"},
    {"killed by signal without result",
     {INIT}, 139, 0, 0, OUTCOME (AGENT_ERROR), "crash"},
    {"error result not from the API",
     {INIT, "{\"type\":\"result\",\"subtype\":\"error_during_execution\",\"is_error\":true,"
            "\"terminal_reason\":\"error\"}"},
     1, 0, 0, OUTCOME (AGENT_ERROR), "agent_error"},
    {"nonzero exit after success",
     {INIT, "{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false}"},
     2, 0, 0, OUTCOME (AGENT_ERROR), "crash"},
    {"rate limited",
     {INIT, RETRY_429, "{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":true,"
                       "\"terminal_reason\":\"api_error\",\"api_error_status\":429}"},
     1, 0, 0, OUTCOME (INFRA_ERROR), "api_rate_limited"},
    {"overloaded",
     {INIT, "{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":true,"
            "\"terminal_reason\":\"api_error\",\"api_error_status\":529}"},
     1, 0, 0, OUTCOME (INFRA_ERROR), "api_overloaded"},
    {"server error",
     {INIT, "{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":true,"
            "\"terminal_reason\":\"api_error\",\"api_error_status\":500}"},
     1, 0, 0, OUTCOME (INFRA_ERROR), "api_server_error"},
    {"invalid key",
     {INIT, "{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":true,"
            "\"terminal_reason\":\"api_error\",\"api_error_status\":401,"
            "\"result\":\"Invalid API key\"}"},
     1, 0, 0, OUTCOME (INFRA_ERROR), "api_auth"},
    {"connection dropped",
     {INIT, RETRY_DROP, "{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":true,"
                        "\"terminal_reason\":\"api_error\",\"api_error_status\":null,"
                        "\"result\":\"API Error: Connection dropped (ECONNRESET).\"}"},
     1, 0, 0, OUTCOME (INFRA_ERROR), "api_connection"},
    {"stream idle",
     {INIT, "{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":true,"
            "\"terminal_reason\":\"api_error\","
            "\"result\":\"API Error: stream idle: no bytes for 10000ms\"}"},
     1, 0, 0, OUTCOME (INFRA_ERROR), "api_stalled"},
    {"malformed stream",
     {INIT, "{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":true,"
            "\"terminal_reason\":\"api_error\",\"result\":\"API Error: API returned an empty "
            "or malformed response (HTTP 200)\"}"},
     1, 0, 0, OUTCOME (INFRA_ERROR), "api_malformed"},
    {"request timed out",
     {INIT, "{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":true,"
            "\"terminal_reason\":\"api_error\",\"result\":\"Request timed out.\"}"},
     1, 0, 0, OUTCOME (INFRA_ERROR), "api_timeout"},
    {"no result after gateway failures",
     {INIT, ASSISTANT}, 1, 0, 1, OUTCOME (INFRA_ERROR), "no_result_event"},
    {"no result after api retries",
     {INIT, RETRY_DROP}, 1, 0, 0, OUTCOME (INFRA_ERROR), "no_result_event"},
    {"no result after connection error",
     {INIT}, 1, 0, 2, OUTCOME (INFRA_ERROR), "no_result_event"},
    {"no output at all",
     {NULL}, 1, 0, 0, OUTCOME (AGENT_ERROR), "crash"},
    {"exit 0 without result",
     {INIT, ASSISTANT}, 0, 0, 0, OUTCOME (AGENT_ERROR), "no_result_event"},
    {"never started",
     {NULL}, -1, 0, 0, OUTCOME (INFRA_ERROR), "agent_not_started"},
    /* The agent's own words never decide: an assistant line saying "API
     * Error" with a clean result is a normal finish. */
    {"agent text mentions API error",
     {INIT, ASSISTANT, "{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,"
                       "\"terminal_reason\":\"completed\",\"result\":\"API Error: 529\"}"},
     0, 0, 1, OUTCOME (UNSPECIFIED), "completed"},
};

static void test_classify_table (void)
{
    for (size_t i = 0; i < sizeof ROWS / sizeof *ROWS; i++) {
        const row_t *row = &ROWS[i];
        dw_streamjson_t *parser = dw_streamjson_new (0);
        for (int j = 0; j < 6 && row->lines[j]; j++)
            dw_streamjson_feed (parser, row->lines[j], strlen (row->lines[j]), 0, 10);

        dw_gateway_stats_t gateway = {0};
        gateway.requests = 1;
        if (row->gateway == 1)
            gateway.status_529 = 1;
        else if (row->gateway == 2)
            gateway.upstream_errors = 1;
        else if (row->gateway == 3) {
            gateway.in_flight = 1;
            gateway.last_activity_ms = 1000;
        }

        dw_claude_run_t run = {0};
        run.exit_status = row->exit_status;
        run.killed_for_time = row->killed;
        run.stream = dw_streamjson_summary (parser);
        run.gateway = &gateway;
        run.ended_ms = 1000 + DW_CLAUDE_DEFAULT_STALL_MS;
        dw_claude_verdict_t verdict;
        dw_claude_classify (&run, &verdict);

        CHECK (verdict.outcome == row->outcome, "row '%s': expected outcome %d, got %d (%s)",
               row->name, row->outcome, verdict.outcome, verdict.detail);
        CHECK (strcmp (verdict.reason, row->reason) == 0, "row '%s': expected reason %s, got %s",
               row->name, row->reason, verdict.reason);
        CHECK (verdict.grade == (row->outcome == OUTCOME (UNSPECIFIED)),
               "row '%s': grade flag %d", row->name, verdict.grade);
        dw_streamjson_destroy (&parser);
    }

    dw_claude_run_t cancelled = {0};
    cancelled.cancelled = 1;
    cancelled.killed_for_time = 1;
    dw_claude_verdict_t verdict;
    dw_claude_classify (&cancelled, &verdict);
    CHECK (verdict.outcome == OUTCOME (CANCELLED), "cancelled run: outcome %d", verdict.outcome);
}

/* --- part 2: command line ------------------------------------------------ */

static const char *env_get (char **envp, const char *name)
{
    size_t len = strlen (name);
    for (size_t i = 0; envp[i]; i++)
        if (strncmp (envp[i], name, len) == 0 && envp[i][len] == '=')
            return envp[i] + len + 1;
    return NULL;
}

static int argv_has (char **argv, const char *flag, const char *value)
{
    for (size_t i = 0; argv[i]; i++)
        if (strcmp (argv[i], flag) == 0 && (!value || (argv[i + 1] && strcmp (argv[i + 1], value) == 0)))
            return 1;
    return 0;
}

static void test_build_command (void)
{
    const char *extra_args[] = {"--fallback-model", "x", NULL};
    const char *extra_env[] = {"LANG=en_US.UTF-8", "IS_SANDBOX=1", NULL};
    dw_claude_options_t opts = {0};
    opts.claude_path = "/opt/cc/claude";
    opts.prompt = "Fix it";
    opts.model = "claude-test";
    opts.max_turns = 7;
    opts.home = "/w/home";
    opts.tmpdir = "/w/tmp";
    opts.gateway_socket = "/run/api/api.sock";
    opts.max_retries = -1;
    opts.stream_idle_ms = 500;
    opts.extra_args = extra_args;
    opts.extra_env = extra_env;

    dw_claude_cmd_t cmd;
    char err[256];
    CHECK (dw_claude_build (&opts, &cmd, err, sizeof err) == 0, "build failed: %s", err);
    if (!cmd.argv)
        return;
    CHECK (strcmp (cmd.argv[0], "/opt/cc/claude") == 0, "argv[0] is %s", cmd.argv[0]);
    CHECK (argv_has (cmd.argv, "-p", "Fix it"), "expected -p PROMPT");
    CHECK (argv_has (cmd.argv, "--output-format", "stream-json"), "expected stream-json");
    CHECK (argv_has (cmd.argv, "--verbose", NULL), "expected --verbose");
    CHECK (argv_has (cmd.argv, "--max-turns", "7"), "expected --max-turns 7");
    CHECK (argv_has (cmd.argv, "--model", "claude-test"), "expected --model");
    CHECK (argv_has (cmd.argv, "--dangerously-skip-permissions", NULL), "expected skip flag");
    CHECK (argv_has (cmd.argv, "--no-session-persistence", NULL), "expected no persistence");
    CHECK (argv_has (cmd.argv, "--allowedTools", DW_CLAUDE_DEFAULT_ALLOWED_TOOLS),
           "expected the default allowed tools");
    CHECK (argv_has (cmd.argv, "--fallback-model", "x"), "expected the extra arguments");

    CHECK (strcmp (env_get (cmd.envp, "HOME"), "/w/home") == 0, "HOME");
    CHECK (strcmp (env_get (cmd.envp, "TMPDIR"), "/w/tmp") == 0, "TMPDIR");
    CHECK (strcmp (env_get (cmd.envp, "CLAUDE_CONFIG_DIR"), "/w/home/.claude") == 0,
           "CLAUDE_CONFIG_DIR");
    CHECK (strcmp (env_get (cmd.envp, "CLAUDE_CODE_TMPDIR"), "/w/tmp") == 0, "CLAUDE_CODE_TMPDIR");
    CHECK (strcmp (env_get (cmd.envp, "ANTHROPIC_UNIX_SOCKET"), "/run/api/api.sock") == 0,
           "ANTHROPIC_UNIX_SOCKET");
    CHECK (env_get (cmd.envp, "ANTHROPIC_BASE_URL") != NULL, "ANTHROPIC_BASE_URL set");
    CHECK (strcmp (env_get (cmd.envp, "ANTHROPIC_API_KEY"), DW_CLAUDE_PLACEHOLDER_KEY) == 0,
           "placeholder key");
    CHECK (strcmp (env_get (cmd.envp, "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"), "1") == 0,
           "traffic off");
    CHECK (strcmp (env_get (cmd.envp, "CLAUDE_CODE_SUBPROCESS_ENV_SCRUB"), "1") == 0, "scrub");
    CHECK (strcmp (env_get (cmd.envp, "DISABLE_AUTOUPDATER"), "1") == 0, "autoupdater off");
    CHECK (strcmp (env_get (cmd.envp, "CLAUDE_CODE_MAX_RETRIES"), "2") == 0, "default retries");
    CHECK (strcmp (env_get (cmd.envp, "CLAUDE_BYTE_STREAM_IDLE_TIMEOUT_MS"), "10000") == 0,
           "idle timeout raised to the CLI's minimum, got %s",
           env_get (cmd.envp, "CLAUDE_BYTE_STREAM_IDLE_TIMEOUT_MS"));
    CHECK (env_get (cmd.envp, "API_TIMEOUT_MS") != NULL, "API_TIMEOUT_MS set");
    CHECK (strcmp (env_get (cmd.envp, "PATH"), DW_CLAUDE_DEFAULT_PATH) == 0, "PATH");
    CHECK (strcmp (env_get (cmd.envp, "LANG"), "en_US.UTF-8") == 0, "extra_env overrides LANG");
    CHECK (strcmp (env_get (cmd.envp, "IS_SANDBOX"), "1") == 0, "extra_env adds IS_SANDBOX");
    dw_claude_cmd_free (&cmd);
    CHECK (cmd.argv == NULL && cmd.envp == NULL, "cmd_free resets the arrays");

    opts.prompt = NULL;
    CHECK (dw_claude_build (&opts, &cmd, err, sizeof err) == -1, "missing prompt is rejected");
}

/* --- part 3: the real CLI -------------------------------------------------- */

#define REAL_KEY "sk-ant-test-real-key-0123456789"

typedef struct {
    pid_t pid;
    int port;
    char log_path[512];
} modelserver_t;

static char s_root[256];
static char s_suite[512];
static const char *s_claude;

static int sh (const char *fmt, ...) __attribute__ ((format (printf, 1, 2)));

static int sh (const char *fmt, ...)
{
    va_list ap;
    va_start (ap, fmt);
    char *command = NULL;
    int n = vasprintf (&command, fmt, ap);
    va_end (ap);
    if (n < 0)
        return -1;
    int rc = system (command);
    free (command);
    return WIFEXITED (rc) ? WEXITSTATUS (rc) : -1;
}

/* A repository with a bug in add() and a suite row whose gold patch fixes it. */
static int make_fixture (void)
{
    if (sh ("set -e; cd %s && mkdir -p origin && cd origin && git init -q && "
            "printf 'def add(a, b):\\n    return a - b\\n' > calc.py && "
            "printf 'import sys\\nfrom calc import add\\nsys.exit(0 if add(2, 3) == 5 else 1)\\n'"
            " > test_calc.py && git add . && "
            "git -c user.email=t@example.com -c user.name=t commit -qm init && "
            "sed -i 's/a - b/a + b/' calc.py && git diff > ../gold.patch && git checkout -q calc.py",
            s_root) != 0)
        return -1;

    char *patch_path = dw_strdup_printf ("%s/gold.patch", s_root);
    char *patch = dw_read_file (patch_path, 1 << 20, NULL);
    free (patch_path);
    if (!patch)
        return -1;
    json_t *rows[2] = {
        json_pack ("{s:s,s:s,s:s,s:s,s:f}", "instance_id", "calc-solvable", "problem_statement",
                   "The add function in calc.py subtracts its arguments instead of adding them.",
                   "patch", patch, "test_cmd", "python3 test_calc.py", "stub_solve_rate", 1.0),
        json_pack ("{s:s,s:s,s:s,s:s,s:f}", "instance_id", "calc-hopeless", "problem_statement",
                   "Make add in calc.py return the sum (this model never manages it).", "patch",
                   patch, "test_cmd", "python3 test_calc.py", "stub_solve_rate", 0.0),
    };
    free (patch);
    snprintf (s_suite, sizeof s_suite, "%s/suite.jsonl", s_root);
    FILE *f = fopen (s_suite, "w");
    if (!f)
        return -1;
    for (int i = 0; i < 2; i++) {
        char *line = json_dumps (rows[i], JSON_COMPACT);
        fprintf (f, "%s\n", line);
        free (line);
        json_decref (rows[i]);
    }
    fclose (f);
    return 0;
}

static int modelserver_start (modelserver_t *ms)
{
    const char *build = getenv ("DW_BUILD_DIR");
    char *program = dw_strdup_printf ("%s/driftwatch-modelserver", build ? build : ".");
    snprintf (ms->log_path, sizeof ms->log_path, "%s/modelserver.log", s_root);

    int fds[2];
    if (!program || pipe (fds) != 0)
        return -1;
    ms->pid = fork ();
    if (ms->pid == 0) {
        dup2 (fds[1], 1);
        close (fds[0]);
        execl (program, program, "--suite", s_suite, "--expect-key", REAL_KEY, "--log",
               ms->log_path, (char *) NULL);
        _exit (127);
    }
    close (fds[1]);
    free (program);
    char line[128] = "";
    FILE *out = fdopen (fds[0], "r");
    if (!out || !fgets (line, sizeof line, out)) {
        if (out)
            fclose (out);
        return -1;
    }
    fclose (out);
    return sscanf (line, "listening port=%d", &ms->port) == 1 ? 0 : -1;
}

static void modelserver_stop (modelserver_t *ms)
{
    if (ms->pid > 0) {
        kill (ms->pid, SIGTERM);
        waitpid (ms->pid, NULL, 0);
    }
}

typedef struct {
    dw_streamjson_t *parser;
    dw_gateway_t *gateway;
    /* Gateway totals taken when the kill started. */
    int killed;
    uint64_t killed_ms;
    dw_gateway_stats_t at_kill;
} sink_t;

static void on_kill (void *arg, pid_t pgid, int signal)
{
    (void) pgid;
    (void) signal;
    sink_t *sink = arg;
    if (sink->killed)
        return;
    sink->killed = 1;
    sink->killed_ms = dw_mono_ms ();
    dw_gateway_stats (sink->gateway, &sink->at_kill);
}

static void on_line (void *arg, const char *line, size_t len, int truncated)
{
    sink_t *sink = arg;
    dw_streamjson_feed (sink->parser, line, len, truncated, dw_mono_ms ());
}

typedef struct {
    const char *prompt;
    unsigned max_turns;
    uint64_t wall_ms;
    uint64_t stall_ms;
    int as_root_without_override;
} attempt_spec_t;

typedef struct {
    dw_claude_verdict_t verdict;
    dw_streamjson_summary_t summary;
    dw_gateway_stats_t gateway;
    int exit_status;
    char workspace[512];
} attempt_t;

static int s_attempt_seq;

static void run_attempt (const modelserver_t *ms, const attempt_spec_t *spec, attempt_t *out)
{
    memset (out, 0, sizeof *out);
    int n = ++s_attempt_seq;
    char home[512], tmp[512], sock[512], upstream[128], err[256];
    snprintf (out->workspace, sizeof out->workspace, "%s/a%d/ws", s_root, n);
    snprintf (home, sizeof home, "%s/a%d/home", s_root, n);
    snprintf (tmp, sizeof tmp, "%s/a%d/tmp", s_root, n);
    snprintf (sock, sizeof sock, "%s/a%d/sock/api.sock", s_root, n);
    snprintf (upstream, sizeof upstream, "http://127.0.0.1:%d", ms->port);
    dw_mkdir_p (home, 0700);
    dw_mkdir_p (tmp, 0700);
    sh ("git clone -q %s/origin %s", s_root, out->workspace);

    dw_gateway_t *gateway = dw_gateway_new (sock, upstream, REAL_KEY, "test", err, sizeof err);
    CHECK (gateway != NULL, "gateway_new failed: %s", err);
    if (!gateway)
        return;

    const char *extra_env[] = {"IS_SANDBOX=1", NULL};
    dw_claude_options_t opts = {0};
    opts.claude_path = s_claude;
    opts.prompt = spec->prompt;
    opts.max_turns = spec->max_turns ? spec->max_turns : 10;
    opts.home = home;
    opts.tmpdir = tmp;
    opts.gateway_socket = sock;
    opts.max_retries = 1;
    opts.stream_idle_ms = 10000;
    opts.api_timeout_ms = 10000;
    opts.extra_env = spec->as_root_without_override ? NULL : extra_env;
    dw_claude_cmd_t cmd;
    if (dw_claude_build (&opts, &cmd, err, sizeof err) != 0) {
        CHECK (0, "build failed: %s", err);
        dw_gateway_destroy (&gateway);
        return;
    }

    sink_t sink = {dw_streamjson_new (dw_mono_ms ()), gateway, 0, 0, {0}};
    char stderr_path[600];
    snprintf (stderr_path, sizeof stderr_path, "%s/a%d/stderr", s_root, n);
    dw_proc_spec_t proc = {0};
    proc.argv = cmd.argv;
    proc.envp = cmd.envp;
    proc.cwd = out->workspace;
    proc.on_line = on_line;
    proc.line_arg = &sink;
    proc.stderr_path = stderr_path;
    proc.wall_ms = spec->wall_ms ? spec->wall_ms : 60000;
    proc.kill_hook = on_kill;
    proc.kill_arg = &sink;
    dw_proc_result_t result;
    int rc = dw_proc_run (&proc, &result);
    CHECK (rc == 0, "dw_proc_run failed: %s", result.error);

    dw_gateway_stats (gateway, &out->gateway);
    uint64_t stats_ms = dw_mono_ms ();
    if (sink.killed) {
        out->gateway = sink.at_kill;
        stats_ms = sink.killed_ms;
    }
    dw_claude_run_t run = {0};
    run.exit_status = rc == 0 ? dw_proc_status (&result) : -1;
    run.killed_for_time = result.timed_out;
    run.stream = dw_streamjson_summary (sink.parser);
    run.gateway = &out->gateway;
    run.ended_ms = stats_ms;
    run.stall_ms = spec->stall_ms;
    dw_claude_classify (&run, &out->verdict);
    out->summary = *run.stream;
    out->exit_status = run.exit_status;
    printf ("attempt %d: exit=%d outcome=%d reason=%s detail=%s\n", n, out->exit_status,
            out->verdict.outcome, out->verdict.reason, out->verdict.detail);
    fflush (stdout);

    dw_streamjson_destroy (&sink.parser);
    dw_claude_cmd_free (&cmd);
    dw_gateway_destroy (&gateway);
    struct stat st;
    CHECK (stat (sock, &st) != 0, "gateway socket removed after destroy");
}

/* Count log lines of the model server containing NEEDLE. */
static int log_count (const modelserver_t *ms, const char *needle)
{
    char *text = dw_read_file (ms->log_path, 64 << 20, NULL);
    if (!text)
        return 0;
    int count = 0;
    for (char *p = text; (p = strstr (p, needle)); p++)
        count++;
    free (text);
    return count;
}

static void test_real_solved (const modelserver_t *ms)
{
    attempt_t a;
    attempt_spec_t spec = {.prompt = "The add function in calc.py subtracts its arguments instead "
                                     "of adding them. DW_CHECK_ENV"};
    run_attempt (ms, &spec, &a);
    CHECK (a.verdict.grade, "solved run: expected a normal finish, got %s (%s)", a.verdict.reason,
           a.verdict.detail);
    CHECK (a.exit_status == 0, "solved run: exit status %d", a.exit_status);
    CHECK (a.summary.result_seen, "solved run: result event seen");
    CHECK (a.summary.turns >= 5, "solved run: expected >= 5 turns, got %u", a.summary.turns);
    CHECK (a.summary.tool_calls_total >= 4, "solved run: expected >= 4 tool calls, got %llu",
           (unsigned long long) a.summary.tool_calls_total);
    uint32_t reads = 0, bashes = 0;
    for (size_t i = 0; i < a.summary.n_tools; i++) {
        if (strcmp (a.summary.tools[i].name, "Read") == 0)
            reads = a.summary.tools[i].count;
        if (strcmp (a.summary.tools[i].name, "Bash") == 0)
            bashes = a.summary.tools[i].count;
    }
    CHECK (reads == 1, "solved run: expected 1 Read call, got %u", reads);
    CHECK (bashes == 3, "solved run: expected 3 Bash calls (env, git apply, tests), got %u",
           bashes);
    CHECK (a.summary.model[0] != '\0', "solved run: model name recorded");
    CHECK (a.summary.permission_denials == 0, "solved run: %u permission denials",
           a.summary.permission_denials);
    CHECK (a.summary.input_tokens > 0, "solved run: input tokens counted");
    CHECK (a.gateway.requests >= 5 && a.gateway.status_2xx == a.gateway.requests,
           "solved run: gateway saw %u requests, %u 2xx", a.gateway.requests,
           a.gateway.status_2xx);
    CHECK (sh ("cd %s && git diff --quiet calc.py", a.workspace) == 1,
           "solved run: calc.py changed on disk");
    CHECK (sh ("cd %s && python3 test_calc.py", a.workspace) == 0,
           "solved run: the task's tests pass");

    /* The model server rejects any key but the real one, so every request
     * must have carried it; the agent's `env` output must show no key. */
    CHECK (log_count (ms, "\"key_ok\":false") == 0, "every request carried the gateway's key");
    CHECK (log_count (ms, "\"env_checked\":true") == 1, "the agent ran `env`");
    CHECK (log_count (ms, "\"env_leak\":false") == 1,
           "the agent's Bash environment shows no API key");
}

static void test_real_recovery (const modelserver_t *ms)
{
    /* One 529, then the API recovers: the CLI retries and finishes. */
    attempt_t a;
    attempt_spec_t spec = {.prompt = "The add function in calc.py subtracts its arguments instead "
                                     "of adding them. DW_FAULT=529:1"};
    run_attempt (ms, &spec, &a);
    CHECK (a.verdict.grade, "recovered run: expected a normal finish, got %s (%s)",
           a.verdict.reason, a.verdict.detail);
    CHECK (a.summary.api_retries == 1, "recovered run: expected 1 api_retry event, got %u",
           a.summary.api_retries);
    CHECK (a.gateway.status_529 == 1, "recovered run: gateway saw 1 529, got %u",
           a.gateway.status_529);
    CHECK (sh ("cd %s && python3 test_calc.py", a.workspace) == 0,
           "recovered run: the task's tests pass");
}

static void test_real_unsolved (const modelserver_t *ms)
{
    attempt_t a;
    attempt_spec_t spec = {.prompt = "Make add in calc.py return the sum (this model never "
                                     "manages it)."};
    run_attempt (ms, &spec, &a);
    CHECK (a.verdict.grade, "unsolved run: expected a normal finish, got %s", a.verdict.reason);
    CHECK (sh ("cd %s && python3 test_calc.py", a.workspace) != 0,
           "unsolved run: the task's tests still fail");
}

typedef struct {
    const char *marker;
    Driftwatch__V1__Outcome outcome;
    const char *reason;
    uint64_t wall_ms;
} fault_case_t;

static void test_real_faults (const modelserver_t *ms)
{
    static const fault_case_t cases[] = {
        {"DW_FAULT=429", OUTCOME (INFRA_ERROR), "api_rate_limited", 0},
        {"DW_FAULT=529", OUTCOME (INFRA_ERROR), "api_overloaded", 0},
        {"DW_FAULT=500", OUTCOME (INFRA_ERROR), "api_server_error", 0},
        {"DW_FAULT=401", OUTCOME (INFRA_ERROR), "api_auth", 0},
        {"DW_FAULT=drop", OUTCOME (INFRA_ERROR), "api_connection", 0},
        {"DW_FAULT=malformed", OUTCOME (INFRA_ERROR), "api_malformed", 0},
        /* message_start, then silence: the runner's wall limit (shorter than
         * the CLI's 10 s idle timeout) kills the CLI while the silent
         * request is still open in the gateway. */
        {"DW_FAULT=stall", OUTCOME (INFRA_ERROR), "api_stalled", 8000},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char prompt[256];
        snprintf (prompt, sizeof prompt, "The add function in calc.py subtracts its arguments "
                                         "instead of adding them. %s", cases[i].marker);
        attempt_spec_t spec = {.prompt = prompt, .wall_ms = cases[i].wall_ms, .stall_ms = 4000};
        attempt_t a;
        run_attempt (ms, &spec, &a);
        CHECK (a.verdict.outcome == cases[i].outcome, "%s: expected outcome %d, got %d (%s: %s)",
               cases[i].marker, cases[i].outcome, a.verdict.outcome, a.verdict.reason,
               a.verdict.detail);
        CHECK (strcmp (a.verdict.reason, cases[i].reason) == 0, "%s: expected reason %s, got %s",
               cases[i].marker, cases[i].reason, a.verdict.reason);
    }
}

static void test_real_timeout_and_turns (const modelserver_t *ms)
{
    /* The model keeps calling tools; the wall limit ends the run. */
    attempt_t a;
    attempt_spec_t spec = {.prompt = "Keep working forever. DW_LOOP", .max_turns = 1000,
                           .wall_ms = 4000, .stall_ms = 4000};
    run_attempt (ms, &spec, &a);
    CHECK (a.verdict.outcome == OUTCOME (TIMEOUT), "killed run: expected TIMEOUT, got %d (%s)",
           a.verdict.outcome, a.verdict.reason);
    CHECK (!a.summary.result_seen, "killed run: no result event");

    attempt_spec_t turns = {.prompt = "Keep working forever. DW_LOOP", .max_turns = 2};
    run_attempt (ms, &turns, &a);
    CHECK (a.verdict.outcome == OUTCOME (AGENT_ERROR), "max turns: expected AGENT_ERROR, got %d",
           a.verdict.outcome);
    CHECK (strcmp (a.verdict.reason, "max_turns") == 0, "max turns: reason %s", a.verdict.reason);
}

static void test_real_preflight_and_version (const modelserver_t *ms)
{
    char version[128];
    CHECK (dw_claude_version (s_claude, version, sizeof version) == 0, "version failed: %s",
           version);
    CHECK (version[0] >= '0' && version[0] <= '9' && strchr (version, '.'),
           "version looks like a version number, got '%s'", version);

    char home[512], tmp[512], sock[512], upstream[128], err[256], reason[512];
    snprintf (home, sizeof home, "%s/pre/home", s_root);
    snprintf (tmp, sizeof tmp, "%s/pre/tmp", s_root);
    snprintf (sock, sizeof sock, "%s/pre/sock/api.sock", s_root);
    snprintf (upstream, sizeof upstream, "http://127.0.0.1:%d", ms->port);
    dw_gateway_t *gateway = dw_gateway_new (sock, upstream, REAL_KEY, "preflight", err, sizeof err);
    CHECK (gateway != NULL, "gateway_new failed: %s", err);
    if (!gateway)
        return;

    const char *extra_env[] = {"IS_SANDBOX=1", NULL};
    dw_claude_options_t opts = {0};
    opts.claude_path = s_claude;
    opts.prompt = "unused";
    opts.home = home;
    opts.tmpdir = tmp;
    opts.gateway_socket = sock;
    opts.max_retries = 1;
    opts.extra_env = extra_env;
    CHECK (dw_claude_preflight (&opts, s_root, 30000, reason, sizeof reason) == 0,
           "preflight failed: %s", reason);

    /* An upstream that refuses connections makes the preflight fail with
     * the CLI's error result as the reason. */
    dw_gateway_destroy (&gateway);
    gateway = dw_gateway_new (sock, "http://127.0.0.1:1", REAL_KEY, "preflight", err, sizeof err);
    CHECK (gateway != NULL, "gateway_new failed: %s", err);
    if (!gateway)
        return;
    CHECK (dw_claude_preflight (&opts, s_root, 30000, reason, sizeof reason) == -1,
           "preflight against a dead upstream must fail");
    CHECK (strstr (reason, "error result") != NULL, "preflight reason names the error result: %s",
           reason);
    dw_gateway_destroy (&gateway);
}

int main (void)
{
    dw_log_init ("test_claude", DW_LOG_WARN);
    signal (SIGPIPE, SIG_IGN);

    test_classify_table ();
    test_build_command ();

    s_claude = getenv ("DW_CLAUDE");
    if (!s_claude || access (s_claude, X_OK) != 0) {
        if (s_failures) {
            fprintf (stderr, "%d check(s) failed\n", s_failures);
            return 1;
        }
        printf ("SKIP real CLI tests: set DW_CLAUDE to the claude binary\n");
        return 77;
    }

    snprintf (s_root, sizeof s_root, "/tmp/dw-claude-test-XXXXXX");
    if (!mkdtemp (s_root) || make_fixture () != 0) {
        fprintf (stderr, "cannot create the test fixture under /tmp: %s\n", strerror (errno));
        return 1;
    }
    modelserver_t ms = {0};
    if (modelserver_start (&ms) != 0) {
        fprintf (stderr, "cannot start driftwatch-modelserver (DW_BUILD_DIR=%s)\n",
                 getenv ("DW_BUILD_DIR") ? getenv ("DW_BUILD_DIR") : "unset");
        modelserver_stop (&ms);
        return 1;
    }

    test_real_solved (&ms);
    test_real_unsolved (&ms);
    test_real_recovery (&ms);
    test_real_faults (&ms);
    test_real_timeout_and_turns (&ms);
    test_real_preflight_and_version (&ms);

    modelserver_stop (&ms);
    if (s_failures) {
        fprintf (stderr, "%d check(s) failed; files kept in %s\n", s_failures, s_root);
        return 1;
    }
    dw_rm_rf (s_root);
    printf ("all claude checks passed\n");
    return 0;
}
