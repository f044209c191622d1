/* Claude Code CLI runs: see dw_claude.h. */
#include "dw_claude.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dw_log.h"
#include "dw_proc.h"
#include "dw_util.h"

#define ARGV_MAX (32 + DW_CLAUDE_EXTRA_MAX)
#define ENVP_MAX (32 + DW_CLAUDE_EXTRA_MAX)
#define PREFLIGHT_PROMPT "Reply with the single word: ready"

/* --- command line -------------------------------------------------------- */

typedef struct {
    char **items;
    size_t count;
    size_t max;
    int failed;
} strv_t;

static void strv_add (strv_t *v, char *item)
{
    if (!item || v->count + 1 >= v->max) {
        free (item);
        v->failed = 1;
        return;
    }
    v->items[v->count++] = item;
    v->items[v->count] = NULL;
}

static void strv_addf (strv_t *v, const char *fmt, ...) __attribute__ ((format (printf, 2, 3)));

static void strv_addf (strv_t *v, const char *fmt, ...)
{
    va_list ap;
    va_start (ap, fmt);
    char *item = NULL;
    if (vasprintf (&item, fmt, ap) < 0)
        item = NULL;
    va_end (ap);
    strv_add (v, item);
}

/* Set NAME=VALUE in V, replacing an earlier entry for NAME. */
static void env_set (strv_t *v, const char *assignment)
{
    const char *eq = strchr (assignment, '=');
    size_t name_len = eq ? (size_t) (eq - assignment) : strlen (assignment);
    for (size_t i = 0; i < v->count; i++) {
        if (strncmp (v->items[i], assignment, name_len) == 0 && v->items[i][name_len] == '=') {
            char *copy = strdup (assignment);
            if (!copy) {
                v->failed = 1;
                return;
            }
            free (v->items[i]);
            v->items[i] = copy;
            return;
        }
    }
    strv_add (v, strdup (assignment));
}

static void strv_free (char **items)
{
    if (!items)
        return;
    for (size_t i = 0; items[i]; i++)
        free (items[i]);
    free (items);
}

void dw_claude_cmd_free (dw_claude_cmd_t *cmd)
{
    if (!cmd)
        return;
    strv_free (cmd->argv);
    strv_free (cmd->envp);
    cmd->argv = NULL;
    cmd->envp = NULL;
}

int dw_claude_build (const dw_claude_options_t *opts, dw_claude_cmd_t *cmd, char *err,
                     size_t errlen)
{
    cmd->argv = NULL;
    cmd->envp = NULL;
    if (!opts->claude_path || !opts->prompt || !opts->home || !opts->tmpdir
        || !opts->gateway_socket) {
        snprintf (err, errlen, "claude options need claude_path, prompt, home, tmpdir and "
                               "gateway_socket");
        return -1;
    }

    strv_t argv = {calloc (ARGV_MAX + 1, sizeof (char *)), 0, ARGV_MAX, 0};
    strv_t envp = {calloc (ENVP_MAX + 1, sizeof (char *)), 0, ENVP_MAX, 0};
    if (!argv.items || !envp.items) {
        free (argv.items);
        free (envp.items);
        snprintf (err, errlen, "out of memory");
        return -1;
    }

    strv_add (&argv, strdup (opts->claude_path));
    strv_add (&argv, strdup ("-p"));
    strv_add (&argv, strdup (opts->prompt));
    strv_add (&argv, strdup ("--output-format"));
    strv_add (&argv, strdup ("stream-json"));
    /* stream-json without --verbose is rejected with exit code 1. */
    strv_add (&argv, strdup ("--verbose"));
    if (opts->max_turns > 0) {
        strv_add (&argv, strdup ("--max-turns"));
        strv_addf (&argv, "%u", opts->max_turns);
    }
    if (opts->model && *opts->model) {
        strv_add (&argv, strdup ("--model"));
        strv_add (&argv, strdup (opts->model));
    }
    strv_add (&argv, strdup ("--dangerously-skip-permissions"));
    strv_add (&argv, strdup ("--allowedTools"));
    strv_add (&argv, strdup (opts->allowed_tools ? opts->allowed_tools
                                                 : DW_CLAUDE_DEFAULT_ALLOWED_TOOLS));
    strv_add (&argv, strdup ("--no-session-persistence"));
    for (size_t i = 0; opts->extra_args && opts->extra_args[i]; i++)
        strv_add (&argv, strdup (opts->extra_args[i]));

    int retries = opts->max_retries < 0 ? DW_CLAUDE_DEFAULT_MAX_RETRIES : opts->max_retries;
    unsigned idle = opts->stream_idle_ms ? opts->stream_idle_ms : DW_CLAUDE_DEFAULT_STREAM_IDLE_MS;
    if (idle < DW_CLAUDE_MIN_STREAM_IDLE_MS)
        idle = DW_CLAUDE_MIN_STREAM_IDLE_MS;
    unsigned api_timeout = opts->api_timeout_ms ? opts->api_timeout_ms
                                                : DW_CLAUDE_DEFAULT_API_TIMEOUT_MS;

    strv_addf (&envp, "HOME=%s", opts->home);
    strv_addf (&envp, "TMPDIR=%s", opts->tmpdir);
    strv_addf (&envp, "CLAUDE_CONFIG_DIR=%s/.claude", opts->home);
    strv_addf (&envp, "CLAUDE_CODE_TMPDIR=%s", opts->tmpdir);
    strv_addf (&envp, "ANTHROPIC_UNIX_SOCKET=%s", opts->gateway_socket);
    /* NOTE: runs with only the socket set failed with "Unable to connect to
     * API (ENOENT)"; with this base URL added they work. The host name is not
     * resolved, because the request goes over the socket. */
    strv_add (&envp, strdup ("ANTHROPIC_BASE_URL=http://localhost"));
    strv_add (&envp, strdup ("ANTHROPIC_API_KEY=" DW_CLAUDE_PLACEHOLDER_KEY));
    strv_add (&envp, strdup ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1"));
    strv_add (&envp, strdup ("DISABLE_AUTOUPDATER=1"));
    strv_add (&envp, strdup ("CLAUDE_CODE_SUBPROCESS_ENV_SCRUB=1"));
    strv_addf (&envp, "CLAUDE_CODE_MAX_RETRIES=%d", retries);
    strv_addf (&envp, "CLAUDE_BYTE_STREAM_IDLE_TIMEOUT_MS=%u", idle);
    strv_addf (&envp, "API_TIMEOUT_MS=%u", api_timeout);
    strv_addf (&envp, "PATH=%s", opts->path ? opts->path : DW_CLAUDE_DEFAULT_PATH);
    strv_addf (&envp, "LANG=%s", opts->lang ? opts->lang : "C.UTF-8");
    for (size_t i = 0; opts->extra_env && opts->extra_env[i]; i++)
        env_set (&envp, opts->extra_env[i]);

    cmd->argv = argv.items;
    cmd->envp = envp.items;
    if (argv.failed || envp.failed) {
        dw_claude_cmd_free (cmd);
        snprintf (err, errlen, "cannot build the claude command: out of memory or more than "
                               "%d extra arguments or variables", DW_CLAUDE_EXTRA_MAX);
        return -1;
    }
    return 0;
}

/* --- version and preflight ----------------------------------------------- */

typedef struct {
    char *out;
    size_t n;
    int got;
} first_line_t;

static void on_version_line (void *arg, const char *line, size_t len, int truncated)
{
    (void) truncated;
    first_line_t *fl = arg;
    if (fl->got || len == 0)
        return;
    fl->got = 1;
    /* "2.1.332 (Claude Code)" -> "2.1.332" */
    size_t word = 0;
    while (word < len && line[word] != ' ')
        word++;
    snprintf (fl->out, fl->n, "%.*s", (int) word, line);
}

int dw_claude_version (const char *claude_path, char *out, size_t n)
{
    char *argv[] = {(char *) claude_path, "--version", NULL};
    /* --version reads no state, so HOME may point nowhere. */
    char *envp[] = {"PATH=" DW_CLAUDE_DEFAULT_PATH, "HOME=/nonexistent", "LANG=C.UTF-8", NULL};
    first_line_t fl = {out, n, 0};
    dw_proc_spec_t spec = {0};
    spec.argv = argv;
    spec.envp = envp;
    spec.on_line = on_version_line;
    spec.line_arg = &fl;
    spec.wall_ms = DW_CLAUDE_VERSION_TIMEOUT_MS;

    dw_proc_result_t result;
    if (n > 0)
        out[0] = '\0';
    if (dw_proc_run (&spec, &result) != 0) {
        snprintf (out, n, "cannot run %s --version: %s", claude_path, result.error);
        return -1;
    }
    int status = dw_proc_status (&result);
    if (result.timed_out || status != 0 || !fl.got) {
        snprintf (out, n, "%s --version failed (status %d%s)", claude_path, status,
                  result.timed_out ? ", timed out" : "");
        return -1;
    }
    return 0;
}

typedef struct {
    dw_streamjson_t *parser;
} preflight_t;

static void on_preflight_line (void *arg, const char *line, size_t len, int truncated)
{
    preflight_t *p = arg;
    dw_streamjson_feed (p->parser, line, len, truncated, dw_mono_ms ());
}

/* First non-empty line of the file at PATH into OUT ("" when none). */
static void read_first_line (const char *path, char *out, size_t n)
{
    out[0] = '\0';
    char *text = dw_read_file (path, 64 * 1024, NULL);
    if (!text)
        return;
    char *line = text + strspn (text, " \t\r\n");
    line[strcspn (line, "\r\n")] = '\0';
    snprintf (out, n, "%s", line);
    free (text);
}

int dw_claude_preflight (const dw_claude_options_t *opts, const char *workdir,
                         uint64_t timeout_ms, char *reason, size_t n)
{
    dw_claude_options_t trivial = *opts;
    trivial.prompt = PREFLIGHT_PROMPT;
    trivial.max_turns = 1;

    dw_claude_cmd_t cmd;
    if (dw_claude_build (&trivial, &cmd, reason, n) != 0)
        return -1;
    char *stderr_path = dw_strdup_printf ("%s/preflight.stderr", opts->tmpdir);
    preflight_t p = {dw_streamjson_new (dw_mono_ms ())};
    if (!stderr_path || !p.parser || dw_mkdir_p (opts->tmpdir, 0700) != 0
        || dw_mkdir_p (opts->home, 0700) != 0) {
        snprintf (reason, n, "cannot prepare the preflight directories under %s: %s",
                  opts->tmpdir, strerror (errno));
        free (stderr_path);
        dw_streamjson_destroy (&p.parser);
        dw_claude_cmd_free (&cmd);
        return -1;
    }

    dw_proc_spec_t spec = {0};
    spec.argv = cmd.argv;
    spec.envp = cmd.envp;
    spec.cwd = workdir;
    spec.on_line = on_preflight_line;
    spec.line_arg = &p;
    spec.stderr_path = stderr_path;
    spec.wall_ms = timeout_ms;
    dw_proc_result_t result;
    int rc = dw_proc_run (&spec, &result);
    const dw_streamjson_summary_t *s = dw_streamjson_summary (p.parser);
    int status = rc == 0 ? dw_proc_status (&result) : -1;

    char first_stderr[160];
    read_first_line (stderr_path, first_stderr, sizeof first_stderr);
    int ok = 0;
    if (rc != 0)
        snprintf (reason, n, "cannot start the CLI: %s", result.error);
    else if (result.timed_out)
        snprintf (reason, n, "no result within %llu ms", (unsigned long long) timeout_ms);
    else if (s->lines == 0)
        snprintf (reason, n, "no output (exit status %d): %s", status,
                  first_stderr[0] ? first_stderr : "stderr empty");
    else if (!s->result_seen)
        snprintf (reason, n, "no result event (exit status %d)", status);
    else if (s->is_error)
        snprintf (reason, n, "error result (terminal_reason %s, API status %d): %.120s",
                  s->terminal_reason[0] ? s->terminal_reason : "-", s->api_error_status,
                  s->result_text);
    else if (status != 0)
        snprintf (reason, n, "exit status %d after a successful result", status);
    else
        ok = 1;

    if (ok)
        dw_info ("claude preflight ok duration_ms=%llu", (unsigned long long) result.duration_ms);
    else
        dw_warn ("claude preflight failed reason=\"%s\"", reason);
    free (stderr_path);
    dw_streamjson_destroy (&p.parser);
    dw_claude_cmd_free (&cmd);
    return ok ? 0 : -1;
}

/* --- classification ------------------------------------------------------ */

static void verdict_set (dw_claude_verdict_t *v, Driftwatch__V1__Outcome outcome,
                         const char *reason, const char *fmt, ...)
    __attribute__ ((format (printf, 4, 5)));

static void verdict_set (dw_claude_verdict_t *v, Driftwatch__V1__Outcome outcome,
                         const char *reason, const char *fmt, ...)
{
    v->outcome = outcome;
    v->grade = outcome == DRIFTWATCH__V1__OUTCOME__OUTCOME_UNSPECIFIED;
    snprintf (v->reason, sizeof v->reason, "%s", reason);
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (v->detail, sizeof v->detail, fmt, ap);
    va_end (ap);
}

/* Reason for an HTTP error status of the Messages API, or NULL for 0. */
static const char *status_reason (int status)
{
    if (status == 429)
        return "api_rate_limited";
    if (status == 529)
        return "api_overloaded";
    if (status >= 500)
        return "api_server_error";
    if (status == 401 || status == 403)
        return "api_auth";
    if (status >= 400)
        return "api_client_error";
    return NULL;
}

/* Reason for an API error without a status. The texts matched here are the
 * CLI's own error messages (version 2.1.332), written into the result only
 * when it ends with terminal_reason "api_error", so the agent cannot
 * produce them. */
static const char *text_reason (const dw_streamjson_summary_t *s)
{
    if (strstr (s->result_text, "stream idle"))
        return "api_stalled";
    if (strstr (s->result_text, "timed out"))
        return "api_timeout";
    if (strstr (s->result_text, "malformed") || strstr (s->result_text, "stream_truncated"))
        return "api_malformed";
    if (strstr (s->result_text, "Connection") || strstr (s->result_text, "ECONNRESET")
        || strstr (s->result_text, "ECONNREFUSED") || strcmp (s->last_retry_error, "unknown") == 0)
        return "api_connection";
    return NULL;
}

/* Reason from the gateway's counters, or NULL when it saw no failure. */
static const char *gateway_reason (const dw_gateway_stats_t *g)
{
    if (!g)
        return NULL;
    if (g->status_429)
        return "api_rate_limited";
    if (g->status_529)
        return "api_overloaded";
    if (g->status_5xx)
        return "api_server_error";
    if (g->status_401_403)
        return "api_auth";
    if (g->upstream_errors)
        return "api_connection";
    if (g->unclean_streams)
        return "api_malformed";
    return NULL;
}

static int gateway_stalled (const dw_claude_run_t *run)
{
    const dw_gateway_stats_t *g = run->gateway;
    uint64_t stall_ms = run->stall_ms ? run->stall_ms : DW_CLAUDE_DEFAULT_STALL_MS;
    return g && g->in_flight > 0 && run->ended_ms >= g->last_activity_ms
           && run->ended_ms - g->last_activity_ms >= stall_ms;
}

static void classify_result (const dw_claude_run_t *run, dw_claude_verdict_t *v)
{
    const dw_streamjson_summary_t *s = run->stream;
    const char *terminal = s->terminal_reason;

    if (strcmp (terminal, "max_turns") == 0 || strcmp (s->subtype, "error_max_turns") == 0) {
        verdict_set (v, DRIFTWATCH__V1__OUTCOME__OUTCOME_AGENT_ERROR, "max_turns",
                     "turn limit reached after %u turns", s->turns);
        return;
    }
    if (strcmp (terminal, "budget_exhausted") == 0
        || strcmp (s->subtype, "error_max_budget_usd") == 0) {
        verdict_set (v, DRIFTWATCH__V1__OUTCOME__OUTCOME_AGENT_ERROR, "budget_exhausted",
                     "budget exhausted at %.4f USD", s->cost_usd);
        return;
    }
    if (s->is_error && (strcmp (terminal, "api_error") == 0 || s->api_error_status != 0)) {
        const char *reason = status_reason (s->api_error_status);
        if (!reason)
            reason = text_reason (s);
        if (!reason)
            reason = gateway_reason (run->gateway);
        verdict_set (v, DRIFTWATCH__V1__OUTCOME__OUTCOME_INFRA_ERROR, reason ? reason : "api_error",
                     "API error (status %d, %u retries): %.160s", s->api_error_status,
                     s->api_retries, s->result_text);
        return;
    }
    if (s->is_error) {
        verdict_set (v, DRIFTWATCH__V1__OUTCOME__OUTCOME_AGENT_ERROR, "agent_error",
                     "error result (subtype %s, terminal_reason %s, exit status %d)",
                     s->subtype, terminal[0] ? terminal : "-", run->exit_status);
        return;
    }
    if (run->exit_status != 0) {
        verdict_set (v, DRIFTWATCH__V1__OUTCOME__OUTCOME_AGENT_ERROR, "crash",
                     "exit status %d after a successful result", run->exit_status);
        return;
    }
    verdict_set (v, DRIFTWATCH__V1__OUTCOME__OUTCOME_UNSPECIFIED, "completed",
                 "finished after %u turns (terminal_reason %s)", s->turns,
                 terminal[0] ? terminal : "-");
}

void dw_claude_classify (const dw_claude_run_t *run, dw_claude_verdict_t *v)
{
    const dw_streamjson_summary_t *s = run->stream;
    memset (v, 0, sizeof *v);

    if (run->cancelled) {
        verdict_set (v, DRIFTWATCH__V1__OUTCOME__OUTCOME_CANCELLED, "cancelled",
                     "cancelled by the coordinator");
        return;
    }
    if (run->killed_for_time) {
        /* A run killed while its API request hung was waiting on the API,
         * not working: that is the API's failure, not the agent's. */
        if (gateway_stalled (run)) {
            verdict_set (v, DRIFTWATCH__V1__OUTCOME__OUTCOME_INFRA_ERROR, "api_stalled",
                         "killed at the time limit while an API request had been silent "
                         "for %llu ms",
                         (unsigned long long) (run->ended_ms - run->gateway->last_activity_ms));
            return;
        }
        verdict_set (v, DRIFTWATCH__V1__OUTCOME__OUTCOME_TIMEOUT, "time_limit",
                     "killed at the time limit (exit status %d)", run->exit_status);
        return;
    }
    if (run->exit_status < 0) {
        verdict_set (v, DRIFTWATCH__V1__OUTCOME__OUTCOME_INFRA_ERROR, "agent_not_started",
                     "the CLI could not be started");
        return;
    }
    if (s && s->result_seen) {
        classify_result (run, v);
        return;
    }

    /* No result event: the CLI died or was cut off before it could write one. */
    const char *reason = gateway_reason (run->gateway);
    if (reason || (s && s->api_retries > 0)) {
        verdict_set (v, DRIFTWATCH__V1__OUTCOME__OUTCOME_INFRA_ERROR, "no_result_event",
                     "no result event (exit status %d) after API failures (%s, %u retries)",
                     run->exit_status, reason ? reason : "api_retry events",
                     s ? s->api_retries : 0);
        return;
    }
    if (run->exit_status != 0) {
        verdict_set (v, DRIFTWATCH__V1__OUTCOME__OUTCOME_AGENT_ERROR, "crash",
                     "exit status %d without a result event (%llu output lines)",
                     run->exit_status, (unsigned long long) (s ? s->lines : 0));
        return;
    }
    verdict_set (v, DRIFTWATCH__V1__OUTCOME__OUTCOME_AGENT_ERROR, "no_result_event",
                 "exit status 0 without a result event (%llu output lines)",
                 (unsigned long long) (s ? s->lines : 0));
}
