/* Agent hook for kind "claude-code": see dw_agent_claude.h. */
#include "dw_agent_claude.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dw_claude.h"
#include "dw_gateway.h"
#include "dw_log.h"
#include "dw_sandbox.h"
#include "dw_sandbox_hook.h"
#include "dw_streamjson.h"
#include "dw_util.h"

/* Length of a formatted --max-budget-usd value. */
#define DW_AGENT_CLAUDE_NUMBER_MAX 32

typedef struct {
    const char *attempt_id;
    const char *claude_path;
    dw_gateway_t *gateway;
    dw_streamjson_t *parser;
    dw_claude_cmd_t cmd;
    /* NULL-terminated copy of the AgentConfig's extra_args plus
     * --max-budget-usd. */
    const char **extra_args;
    char budget[DW_AGENT_CLAUDE_NUMBER_MAX];
    Driftwatch__V1__AgentMetrics metrics;
    int metrics_filled;
    /* Gateway totals and time when the runner started to kill the CLI:
     * the open request closes once the CLI is gone, so a stall is only
     * visible at that moment. */
    int killed;
    dw_gateway_stats_t kill_stats;
    uint64_t kill_ms;
    char version_before[64];
    char version_after[64];
    char reason[DW_CLAUDE_REASON_MAX];
    char detail[DW_JOBRUN_DETAIL_MAX];
} dw_claude_state_t;

static void
s_state_free (dw_claude_state_t *state)
{
    if (!state)
        return;
    dw_gateway_destroy (&state->gateway);
    dw_streamjson_destroy (&state->parser);
    dw_claude_cmd_free (&state->cmd);
    free (state->extra_args);
    if (state->metrics_filled)
        dw_streamjson_metrics_free (&state->metrics);
    free (state);
}

/* Copy the AgentConfig's extra arguments and the budget flag into a
 * NULL-terminated list whose strings stay owned by AGENT and STATE. */
static int
s_extra_args (dw_claude_state_t *state, const Driftwatch__V1__AgentConfig *agent)
{
    size_t count = agent->n_extra_args;
    if (count + 2 > DW_CLAUDE_EXTRA_MAX)
        return -1;
    state->extra_args = calloc (count + 3, sizeof *state->extra_args);
    if (!state->extra_args)
        return -1;
    size_t used = 0;
    for (size_t i = 0; i < count; i++)
        state->extra_args[used++] = agent->extra_args[i];
    if (agent->max_budget_usd > 0) {
        snprintf (state->budget, sizeof state->budget, "%.4f", agent->max_budget_usd);
        state->extra_args[used++] = "--max-budget-usd";
        state->extra_args[used++] = state->budget;
    }
    state->extra_args[used] = NULL;
    return 0;
}

/* dw_proc_kill_fn: record the gateway's state at the first signal. */
static void
s_kill (void *arg, pid_t pgid, int signal)
{
    (void) pgid;
    (void) signal;
    dw_claude_state_t *state = arg;
    if (state->killed || !state->gateway)
        return;
    dw_gateway_stats (state->gateway, &state->kill_stats);
    state->kill_ms = dw_mono_ms ();
    state->killed = 1;
}

static int
s_prepare (void *context, const Driftwatch__V1__JobAssignment *job, dw_jobrun_stage_t stage,
           const dw_jobrun_paths_t *paths, dw_proc_spec_t *spec, void **state_p, char *err,
           size_t err_size)
{
    const dw_jobrun_options_t *options = context;
    const Driftwatch__V1__AgentConfig *agent = job->agent;
    *state_p = NULL;
    if (stage != DW_JOBRUN_STAGE_AGENT)
        return 0;
    if (!agent || !agent->kind || strcmp (agent->kind, "claude-code") != 0)
        return 0;
    if (!options->api_key || !*options->api_key) {
        snprintf (err, err_size, "no model API key configured for agent kind claude-code; "
                                 "set the worker's api_key");
        return -1;
    }

    dw_claude_state_t *state = calloc (1, sizeof *state);
    char *prompt = NULL;
    char *gateway_dir = NULL;
    char *socket_path = NULL;
    if (!state) {
        snprintf (err, err_size, "out of memory");
        return -1;
    }
    state->attempt_id = job->attempt_id;
    state->claude_path = options->claude_path ? options->claude_path : DW_JOBRUN_CLAUDE_PATH;

    /* A CLI that cannot print its version cannot run the attempt either. */
    if (dw_claude_version (state->claude_path, state->version_before,
                           sizeof state->version_before)
        != 0) {
        snprintf (err, err_size, "%s; install the CLI with deploy/install-claude-code.sh or "
                                 "set claude_path", state->version_before);
        goto fail;
    }
    if (agent->cli_version && *agent->cli_version
        && strcmp (agent->cli_version, state->version_before) != 0) {
        snprintf (err, err_size, "Claude Code CLI %s at %s differs from the run's pinned "
                                 "version %s; install the pinned version",
                  state->version_before, state->claude_path, agent->cli_version);
        goto fail;
    }

    prompt = dw_read_file (paths->prompt_file, DW_AGENT_CLAUDE_PROMPT_MAX, NULL);
    gateway_dir = dw_strdup_printf ("%s/%s", paths->attempt_dir, DW_SANDBOX_HOOK_GATEWAY_DIR);
    socket_path = dw_strdup_printf ("%s/%s/%s", paths->attempt_dir, DW_SANDBOX_HOOK_GATEWAY_DIR,
                                    DW_AGENT_CLAUDE_SOCKET);
    if (!prompt || !gateway_dir || !socket_path) {
        snprintf (err, err_size, "cannot read the prompt %s: %s", paths->prompt_file,
                  strerror (errno));
        goto fail;
    }
    /* Traversable but not listable, so the sandbox user reaches only the
     * socket. */
    if (dw_mkdir_p (gateway_dir, 0711) != 0 || chmod (gateway_dir, 0711) != 0) {
        snprintf (err, err_size, "cannot create the gateway directory %s: %s", gateway_dir,
                  strerror (errno));
        goto fail;
    }
    state->gateway = dw_gateway_new (socket_path, options->upstream_url, options->api_key,
                                     job->attempt_id, err, err_size);
    if (!state->gateway)
        goto fail;

    if (s_extra_args (state, agent) != 0) {
        snprintf (err, err_size, "agent config has more than %d extra arguments",
                  DW_CLAUDE_EXTRA_MAX - 2);
        goto fail;
    }
    int sandboxed = !dw_sandbox_hook_disabled (options);
    /* The scrub only hides the placeholder key from the tools here. With
     * the scrub on, CLI 2.1.332 falls back to permission mode "default"
     * and wraps each Bash command in its own bubblewrap sandbox. That
     * sandbox cannot nest inside ours, which disables user namespaces, so
     * every Bash call failed with ENOSPC until the scrub was turned off. */
    static const char *const extra_env[] = { "CLAUDE_CODE_SUBPROCESS_ENV_SCRUB=0", NULL };
    dw_claude_options_t claude = {
        .claude_path = state->claude_path,
        .prompt = prompt,
        .model = agent->model,
        .max_turns = agent->max_turns,
        .home = sandboxed ? DW_SANDBOX_HOME : paths->home,
        .tmpdir = sandboxed ? "/tmp" : paths->tmp,
        .gateway_socket = sandboxed ? DW_SANDBOX_GATEWAY "/" DW_AGENT_CLAUDE_SOCKET : socket_path,
        .max_retries = options->cli_max_retries ? (int) options->cli_max_retries : -1,
        .extra_args = state->extra_args,
        .extra_env = sandboxed ? extra_env : NULL,
    };
    if (dw_claude_build (&claude, &state->cmd, err, err_size) != 0)
        goto fail;
    state->parser = dw_streamjson_new (dw_mono_ms ());
    if (!state->parser) {
        snprintf (err, err_size, "out of memory");
        goto fail;
    }

    spec->argv = state->cmd.argv;
    spec->envp = state->cmd.envp;
    spec->kill_hook = s_kill;
    spec->kill_arg = state;
    dw_info ("claude prepare attempt=%s cli=%s model=%s max_turns=%u sandboxed=%d",
             job->attempt_id, state->version_before,
             agent->model && *agent->model ? agent->model : "default", agent->max_turns,
             sandboxed);
    free (prompt);
    free (gateway_dir);
    free (socket_path);
    *state_p = state;
    return 0;

fail:
    free (prompt);
    free (gateway_dir);
    free (socket_path);
    s_state_free (state);
    return -1;
}

static void
s_on_line (void *state_p, const char *line, size_t len, int truncated)
{
    dw_claude_state_t *state = state_p;
    if (state && state->parser)
        dw_streamjson_feed (state->parser, line, len, truncated, dw_mono_ms ());
}

static void
s_finish (void *state_p, const dw_proc_result_t *proc, Driftwatch__V1__JobResult *result)
{
    dw_claude_state_t *state = state_p;
    if (!state)
        return;

    /* The gateway goes first: its totals are final once the CLI is gone. */
    dw_gateway_stats_t stats;
    memset (&stats, 0, sizeof stats);
    if (state->gateway)
        dw_gateway_stats (state->gateway, &stats);
    uint64_t ended_ms = dw_mono_ms ();
    /* The runner also signals the group after a normal exit, to reap
     * leftovers, so the snapshot counts only for a run killed for time. */
    if (state->killed && proc->timed_out) {
        stats = state->kill_stats;
        ended_ms = state->kill_ms;
    }
    dw_gateway_destroy (&state->gateway);

    if (dw_claude_version (state->claude_path, state->version_after,
                           sizeof state->version_after)
        != 0)
        dw_warn ("claude version after the attempt failed attempt=%s error=\"%s\"",
                 state->attempt_id, state->version_after);
    result->cli_version_before = state->version_before;
    result->cli_version_after = state->version_after;

    const dw_streamjson_summary_t *summary = dw_streamjson_summary (state->parser);
    driftwatch__v1__agent_metrics__init (&state->metrics);
    if (dw_streamjson_fill_metrics (state->parser, &state->metrics) == 0) {
        state->metrics_filled = 1;
        result->metrics = &state->metrics;
    }

    dw_claude_run_t run = {
        .exit_status = dw_proc_status (proc),
        .killed_for_time = proc->timed_out,
        .cancelled = proc->cancelled,
        .stream = summary,
        .gateway = &stats,
        .ended_ms = ended_ms,
    };
    dw_claude_verdict_t verdict;
    dw_claude_classify (&run, &verdict);
    dw_info ("claude finish attempt=%s exit=%d timed_out=%d lines=%" PRIu64 " turns=%u "
             "requests=%u status_2xx=%u status_429=%u status_529=%u status_5xx=%u "
             "upstream_errors=%u in_flight=%u verdict=%s",
             state->attempt_id, run.exit_status, proc->timed_out, summary->lines,
             summary->turns, stats.requests, stats.status_2xx, stats.status_429,
             stats.status_529, stats.status_5xx, stats.upstream_errors, stats.in_flight,
             verdict.reason);

    if (result->outcome == DRIFTWATCH__V1__OUTCOME__OUTCOME_CANCELLED)
        return;
    snprintf (state->reason, sizeof state->reason, "%s", verdict.reason);
    snprintf (state->detail, sizeof state->detail, "%s", verdict.detail);
    result->outcome = verdict.outcome;
    if (verdict.grade) {
        result->outcome = DRIFTWATCH__V1__OUTCOME__OUTCOME_UNSPECIFIED;
        return;
    }
    result->outcome_reason = state->reason;
    result->detail = state->detail;
}

static void
s_release (void *state_p)
{
    s_state_free (state_p);
}

void
dw_agent_claude_hook_init (dw_jobrun_hook_t *hook, const dw_jobrun_options_t *options)
{
    memset (hook, 0, sizeof *hook);
    hook->prepare = s_prepare;
    hook->on_line = s_on_line;
    hook->finish = s_finish;
    hook->release = s_release;
    hook->context = (void *) options;
}
