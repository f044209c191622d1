/* Running the Claude Code CLI headless for one attempt, and classifying how
 * the run ended.
 *
 * The CLI runs as
 *   claude -p PROMPT --output-format stream-json --verbose --max-turns N
 *          --model M --dangerously-skip-permissions --allowedTools LIST
 *          --no-session-persistence [extra args]
 * with stdin /dev/null, because with an open empty pipe the CLI waits 3 s for
 * input. The environment is built here and nothing is inherited: the
 * attempt's own HOME, TMPDIR and config directory, the gateway's unix socket
 * as the only route to the API, a placeholder API key (the gateway adds the
 * real one), no non-essential traffic, and few retries with short timeouts.
 * With the CLI's defaults (10 retries) an API outage keeps a run alive for
 * about three minutes.
 *
 * Facts about CLI 2.1.332 this module relies on (measured on Debian 12):
 * - CLAUDE_CODE_SUBPROCESS_ENV_SCRUB=1 removes the API key from the tools'
 *   environment, but it also forces the permission mode back to "default",
 *   which denies Bash and edits unless --allowedTools lists them. In that
 *   mode --dangerously-skip-permissions has no effect, and a root run
 *   without IS_SANDBOX is not rejected either.
 * - Without the scrub, --dangerously-skip-permissions exits 1 for uid 0
 *   unless IS_SANDBOX=1 or CLAUDE_CODE_BUBBLEWRAP is set. The flag stays in
 *   the command so that a run with CLAUDE_CODE_SUBPROCESS_ENV_SCRUB=0 in
 *   extra_env still runs its tools without prompts.
 * - On an API error the result event says subtype "success" together with
 *   is_error true and terminal_reason "api_error"; the exit code is 1.
 * - SIGTERM ends the CLI with status 143 and no result event.
 */
#ifndef DW_CLAUDE_H
#define DW_CLAUDE_H

#include <stddef.h>
#include <stdint.h>

#include "driftwatch.pb-c.h"
#include "dw_gateway.h"
#include "dw_streamjson.h"

/* Retries the CLI makes after a failed API request (its default is 10). */
#define DW_CLAUDE_DEFAULT_MAX_RETRIES 2
/* Stream idle timeout; the CLI raises values below 10000 ms to 10000 ms. */
#define DW_CLAUDE_MIN_STREAM_IDLE_MS 10000
#define DW_CLAUDE_DEFAULT_STREAM_IDLE_MS 120000
/* Time to response headers (the CLI's default is 600000 ms for streams). */
#define DW_CLAUDE_DEFAULT_API_TIMEOUT_MS 600000
/* Tools the agent may use without a prompt (see the scrub note above). */
#define DW_CLAUDE_DEFAULT_ALLOWED_TOOLS "Bash,Edit,Write,Read,Glob,Grep,NotebookEdit,TodoWrite"
#define DW_CLAUDE_DEFAULT_PATH "/usr/local/bin:/usr/bin:/bin"
/* Placeholder key in the agent's environment; the gateway replaces it. */
#define DW_CLAUDE_PLACEHOLDER_KEY "sk-ant-driftwatch-gateway-placeholder"
/* A killed run counts as an API stall when a request through the gateway
 * was still open and had moved no byte for this long. */
#define DW_CLAUDE_DEFAULT_STALL_MS 60000
#define DW_CLAUDE_VERSION_TIMEOUT_MS 15000
#define DW_CLAUDE_EXTRA_MAX 32

typedef struct {
    const char *claude_path;        /* the CLI binary */
    const char *prompt;
    const char *model;              /* NULL or "": the CLI's default model */
    unsigned max_turns;             /* 0: no limit */
    const char *home;               /* per-attempt HOME; CLAUDE_CONFIG_DIR is HOME/.claude */
    const char *tmpdir;             /* per-attempt TMPDIR and CLAUDE_CODE_TMPDIR */
    const char *gateway_socket;     /* ANTHROPIC_UNIX_SOCKET, the path inside the sandbox */
    int max_retries;                /* < 0: DW_CLAUDE_DEFAULT_MAX_RETRIES */
    unsigned stream_idle_ms;        /* 0: default; raised to the minimum */
    unsigned api_timeout_ms;        /* 0: default */
    const char *allowed_tools;      /* NULL: DW_CLAUDE_DEFAULT_ALLOWED_TOOLS */
    const char *path;               /* PATH; NULL: DW_CLAUDE_DEFAULT_PATH */
    const char *lang;               /* LANG; NULL: C.UTF-8 */
    const char *const *extra_args;  /* NULL-terminated, appended to argv; may be NULL */
    const char *const *extra_env;   /* NULL-terminated "NAME=VALUE", override the above */
} dw_claude_options_t;

/* A command line and environment, both NULL-terminated heap arrays. */
typedef struct {
    char **argv;
    char **envp;
} dw_claude_cmd_t;

/* Build the argv and envp of one CLI run from OPTS. Returns 0, or -1 with a
 * message in ERR (missing option, or out of memory). */
int dw_claude_build (const dw_claude_options_t *opts, dw_claude_cmd_t *cmd, char *err,
                     size_t errlen);

/* Free what dw_claude_build allocated; NULL is fine. */
void dw_claude_cmd_free (dw_claude_cmd_t *cmd);

/* Run `CLAUDE_PATH --version` with a timeout and store its first word (for
 * example "2.1.332") in OUT. Returns 0, or -1 with the reason in OUT. */
int dw_claude_version (const char *claude_path, char *out, size_t n);

/* Run a trivial prompt through the same CLI, options and gateway as an
 * attempt, in WORKDIR, and check that it ends with a successful result
 * event. Returns 0, or -1 with the reason in REASON (no output and the
 * CLI's first stderr line, an error result, or the exit status). */
int dw_claude_preflight (const dw_claude_options_t *opts, const char *workdir,
                         uint64_t timeout_ms, char *reason, size_t n);

/* How one attempt's agent run ended, as seen by the worker. */
typedef struct {
    /* Exit status in shell convention (128 + signal when killed); -1 when
     * the CLI never started. */
    int exit_status;
    int killed_for_time;
    int cancelled;
    /* Summary of the CLI's stdout; NULL when nothing was parsed. */
    const dw_streamjson_summary_t *stream;
    /* The attempt's gateway totals; NULL when there was no gateway. For a
     * run killed at the time limit, take them when the kill starts (the
     * dw_proc kill_hook), because once the CLI is gone its open requests
     * close and no longer show the stall. */
    const dw_gateway_stats_t *gateway;
    /* Monotonic time (dw_mono_ms) the gateway totals were taken. */
    uint64_t ended_ms;
    /* 0: DW_CLAUDE_DEFAULT_STALL_MS. */
    uint64_t stall_ms;
} dw_claude_run_t;

#define DW_CLAUDE_REASON_MAX 64
#define DW_CLAUDE_DETAIL_MAX 256

typedef struct {
    /* DRIFTWATCH__V1__OUTCOME__OUTCOME_UNSPECIFIED when the agent finished
     * normally: then `grade` is 1 and the hidden tests decide RESOLVED or
     * UNRESOLVED. */
    Driftwatch__V1__Outcome outcome;
    int grade;
    char reason[DW_CLAUDE_REASON_MAX];
    char detail[DW_CLAUDE_DETAIL_MAX];
} dw_claude_verdict_t;

/* Classify RUN by the rules in docs/outcomes.md. It reads only signals the
 * CLI and the gateway produce: exit status, result event fields, api_retry
 * events, gateway counters, and the result text only when the CLI marked the
 * result as an API error (the CLI writes that text, not the model). */
void dw_claude_classify (const dw_claude_run_t *run, dw_claude_verdict_t *verdict);

#endif
