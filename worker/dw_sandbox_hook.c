/* Sandbox hook of the job runner: see dw_sandbox_hook.h. */
#include "dw_sandbox_hook.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dw_log.h"
#include "dw_sandbox.h"
#include "dw_util.h"

/* Largest input file (task.json, prompt.txt) copied into the sandbox. */
#define DW_SANDBOX_HOOK_INPUT_MAX (16 * 1024 * 1024)

/* Environment names the sandbox sets itself; the runner's values are host
 * paths and are dropped. */
static const char *const s_sandbox_env_names[] = { "PATH", "HOME", "TMPDIR", "LANG", "USER",
                                                   NULL };

/* Directories the sandbox already shows read-only. */
static const char *const s_system_prefixes[] = { "/usr/", "/bin/", "/sbin/", "/lib", "/etc/",
                                                 NULL };

typedef struct {
    const dw_jobrun_options_t *options;
    const char *attempt_id;
    dw_sandbox_t *sandbox;
    char **wrapped;
    /* Environment of the bwrap or podman process itself, on the host. */
    char *wrapper_env[4];
    uint64_t memory_limit;
    /* Kill hook that was in the spec before (the agent hook's), called
     * before the sandbox's own. */
    dw_proc_kill_fn *inner_kill;
    void *inner_kill_arg;
    char reason[64];
    char detail[DW_JOBRUN_DETAIL_MAX];
} dw_sandbox_state_t;

const char *
dw_sandbox_hook_backend (const dw_jobrun_options_t *options, const char *image)
{
    if (dw_sandbox_hook_disabled (options))
        return "none";
    if (image && *image)
        return "podman";
    return options->sandbox && *options->sandbox ? options->sandbox : "bwrap";
}

int
dw_sandbox_hook_disabled (const dw_jobrun_options_t *options)
{
    return options->sandbox && strcmp (options->sandbox, "none") == 0;
}

static void
s_state_free (dw_sandbox_state_t *state)
{
    if (!state)
        return;
    dw_sandbox_argv_free (&state->wrapped);
    dw_sandbox_destroy (&state->sandbox);
    for (size_t i = 0; i < sizeof state->wrapper_env / sizeof state->wrapper_env[0]; i++)
        free (state->wrapper_env[i]);
    free (state);
}

/* Copy the host file SOURCE to DIR/NAME. */
static int
s_copy_file (const char *source, const char *dir, const char *name, char *err, size_t err_size)
{
    size_t len = 0;
    char *text = dw_read_file (source, DW_SANDBOX_HOOK_INPUT_MAX, &len);
    char *target = dw_strdup_printf ("%s/%s", dir, name);
    int rc = text && target ? dw_write_file_atomic (target, text, len, 0644) : -1;
    if (rc != 0)
        snprintf (err, err_size, "cannot copy %s into the sandbox home %s: %s", source, dir,
                  strerror (errno));
    free (text);
    free (target);
    return rc;
}

/* Put task.json and prompt.txt in the agent's home, where the sandbox
 * shows them at DW_SANDBOX_HOME/DW_SANDBOX_HOOK_INPUT_DIR. */
static int
s_copy_inputs (const dw_jobrun_paths_t *paths, char *err, size_t err_size)
{
    char *dir = dw_strdup_printf ("%s/%s", paths->home, DW_SANDBOX_HOOK_INPUT_DIR);
    if (!dir || dw_mkdir_p (dir, 0755) != 0) {
        snprintf (err, err_size, "cannot create the input directory in %s: %s", paths->home,
                  strerror (errno));
        free (dir);
        return -1;
    }
    int rc = s_copy_file (paths->task_file, dir, "task.json", err, err_size);
    if (rc == 0)
        rc = s_copy_file (paths->prompt_file, dir, "prompt.txt", err, err_size);
    free (dir);
    return rc;
}

static int
s_is_env_name (const char *entry, const char *name)
{
    size_t len = strlen (name);
    return strncmp (entry, name, len) == 0 && entry[len] == '=';
}

/* Translate the runner's environment into the sandbox's: drop what the
 * sandbox sets and point the path variables at in-sandbox paths. ENV gets
 * heap strings and a NULL terminator. */
static int
s_build_env (char *const *envp, char **env, size_t max)
{
    size_t count = 0;
    for (size_t i = 0; envp && envp[i]; i++) {
        const char *entry = envp[i];
        int skip = !strchr (entry, '=');
        for (size_t n = 0; !skip && s_sandbox_env_names[n]; n++)
            skip = s_is_env_name (entry, s_sandbox_env_names[n]);
        if (skip)
            continue;
        if (count + 1 >= max)
            return -1;

        char *value;
        if (s_is_env_name (entry, "DW_WORKSPACE"))
            value = strdup ("DW_WORKSPACE=" DW_SANDBOX_WORKSPACE);
        else if (s_is_env_name (entry, "DW_TASK_FILE"))
            value = strdup ("DW_TASK_FILE=" DW_SANDBOX_HOME "/" DW_SANDBOX_HOOK_INPUT_DIR
                            "/task.json");
        else if (s_is_env_name (entry, "DW_PROMPT_FILE"))
            value = strdup ("DW_PROMPT_FILE=" DW_SANDBOX_HOME "/" DW_SANDBOX_HOOK_INPUT_DIR
                            "/prompt.txt");
        else
            value = strdup (entry);
        if (!value)
            return -1;
        env[count++] = value;
    }
    env[count] = NULL;
    return 0;
}

static void
s_env_free (char **env)
{
    for (size_t i = 0; env[i]; i++)
        free (env[i]);
}

/* Directory to bind read-only so that the agent program PROGRAM is visible
 * inside, or NULL when it lives in a system directory or is looked up in
 * PATH. Heap string. */
static char *
s_program_dir (const char *program)
{
    if (!program || program[0] != '/')
        return NULL;
    for (size_t i = 0; s_system_prefixes[i]; i++)
        if (strncmp (program, s_system_prefixes[i], strlen (s_system_prefixes[i])) == 0)
            return NULL;
    char *dir = strdup (program);
    char *slash = dir ? strrchr (dir, '/') : NULL;
    if (!slash || slash == dir) {
        free (dir);
        return NULL;
    }
    *slash = '\0';
    return dir;
}

/* dw_proc_kill_fn: let the agent hook see the kill first (it records the
 * gateway's state while the request is still open), then kill the whole
 * sandbox. */
static void
s_kill (void *arg, pid_t pgid, int signal)
{
    dw_sandbox_state_t *state = arg;
    if (state->inner_kill)
        state->inner_kill (state->inner_kill_arg, pgid, signal);
    dw_sandbox_kill_hook (state->sandbox, pgid, signal);
}

/* Install directory of the Claude Code CLI to bind read-only: claude_dir,
 * else the part of claude_path before "/node_modules/", else the default.
 * Heap string. */
static char *
s_claude_dir (const dw_jobrun_options_t *options)
{
    if (options->claude_dir && *options->claude_dir)
        return strdup (options->claude_dir);
    const char *path = options->claude_path;
    const char *modules = path ? strstr (path, "/node_modules/") : NULL;
    if (modules && modules > path)
        return strndup (path, (size_t) (modules - path));
    return strdup (DW_JOBRUN_CLAUDE_DIR);
}

static int
s_prepare (void *context, const Driftwatch__V1__JobAssignment *job, dw_jobrun_stage_t stage,
           const dw_jobrun_paths_t *paths, dw_proc_spec_t *spec, void **state_p, char *err,
           size_t err_size)
{
    const dw_jobrun_options_t *options = context;
    *state_p = NULL;
    const char *image = job->task && job->task->image ? job->task->image : "";
    const char *backend = dw_sandbox_hook_backend (options, image);
    if (strcmp (backend, "none") == 0) {
        if (stage == DW_JOBRUN_STAGE_AGENT)
            dw_warn ("sandbox disabled attempt=%s: agent and tests run unconfined "
                     "(sandbox \"none\" is for tests and development only)",
                     job->attempt_id);
        return 0;
    }
    if (strcmp (backend, "bwrap") != 0 && strcmp (backend, "podman") != 0) {
        snprintf (err, err_size, "unknown sandbox \"%s\"; use bwrap, podman or none", backend);
        return -1;
    }
    if (strcmp (backend, "podman") == 0 && !*image) {
        snprintf (err, err_size, "sandbox \"podman\" needs a task with an image; this task "
                                 "names none (use bwrap)");
        return -1;
    }

    const char *kind = job->agent && job->agent->kind ? job->agent->kind : "";
    int claude = stage == DW_JOBRUN_STAGE_AGENT && strcmp (kind, "claude-code") == 0;
    if (stage == DW_JOBRUN_STAGE_AGENT && s_copy_inputs (paths, err, err_size) != 0)
        return -1;

    dw_sandbox_state_t *state = calloc (1, sizeof *state);
    char *env[DW_SANDBOX_ENV_MAX + 1] = { NULL };
    char *program_dir = NULL;
    char *gateway_dir = NULL;
    if (!state) {
        snprintf (err, err_size, "out of memory");
        return -1;
    }
    state->options = options;
    state->attempt_id = job->attempt_id;
    if (s_build_env (spec->envp, env, DW_SANDBOX_ENV_MAX + 1) != 0) {
        snprintf (err, err_size, "the agent environment has more than %d entries or memory "
                                 "ran out", DW_SANDBOX_ENV_MAX);
        goto fail;
    }

    /* Read-only binds: the Claude Code install for claude-code, else the
     * directory of an agent program outside the system directories (the
     * stub agent, say). */
    const char *binds[2] = { NULL, NULL };
    if (claude) {
        program_dir = s_claude_dir (options);
        binds[0] = program_dir;
    }
    else if (stage == DW_JOBRUN_STAGE_AGENT && spec->argv && spec->argv[0]) {
        program_dir = s_program_dir (spec->argv[0]);
        binds[0] = program_dir;
    }
    if (claude) {
        gateway_dir = dw_strdup_printf ("%s/%s", paths->attempt_dir,
                                        DW_SANDBOX_HOOK_GATEWAY_DIR);
        if (!gateway_dir) {
            snprintf (err, err_size, "out of memory");
            goto fail;
        }
    }

    const Driftwatch__V1__Limits *limits = job->limits;
    uint64_t wall_s = 0;
    if (stage == DW_JOBRUN_STAGE_AGENT)
        wall_s = limits && limits->wall_seconds ? limits->wall_seconds : DW_JOBRUN_WALL_DEFAULT_S;
    else
        wall_s = limits && limits->grade_wall_seconds ? limits->grade_wall_seconds
                                                      : DW_JOBRUN_WALL_DEFAULT_S;
    dw_sandbox_config_t cfg = {
        .backend = strcmp (backend, "podman") == 0 ? DW_SANDBOX_PODMAN : DW_SANDBOX_BWRAP,
        .purpose = stage == DW_JOBRUN_STAGE_AGENT ? DW_SANDBOX_AGENT : DW_SANDBOX_GRADING,
        .workspace_dir = paths->workspace,
        .home_dir = paths->home,
        .tmp_dir = paths->tmp,
        .gateway_dir = gateway_dir,
        .ro_binds = binds,
        .host_uid = options->sandbox_uid,
        .host_gid = options->sandbox_uid,
        .limits = {
            .memory_bytes = limits ? limits->memory_bytes : 0,
            .max_processes = limits ? limits->max_processes : 0,
            .cpu_seconds = limits ? limits->cpu_seconds : 0,
            .workspace_bytes = limits ? limits->workspace_bytes : 0,
            .output_bytes = limits ? limits->output_bytes : 0,
            .wall_seconds = wall_s,
        },
        .env = (const char *const *) env,
        .run_id = job->run_id,
        .attempt_id = job->attempt_id,
        .image = *image ? image : NULL,
        /* Only root can create the per-attempt cgroup; an unprivileged
         * worker (tests, development) gets the rlimits alone. */
        .no_cgroup = geteuid () != 0,
    };
    state->memory_limit = cfg.limits.memory_bytes;
    state->sandbox = dw_sandbox_new (&cfg, err, err_size);
    if (!state->sandbox)
        goto fail;
    if (dw_sandbox_wrap (state->sandbox, spec->argv, &state->wrapped) != 0) {
        snprintf (err, err_size, "cannot build the %s command line for attempt %s", backend,
                  job->attempt_id);
        goto fail;
    }

    const char *path = getenv ("PATH");
    const char *home = getenv ("HOME");
    state->wrapper_env[0] = dw_strdup_printf ("PATH=%s", path && *path ? path
                                                                     : "/usr/local/bin:/usr/bin:/bin");
    state->wrapper_env[1] = dw_strdup_printf ("HOME=%s", home && *home ? home : "/");
    state->wrapper_env[2] = strdup ("LANG=C.UTF-8");
    if (!state->wrapper_env[0] || !state->wrapper_env[1] || !state->wrapper_env[2]) {
        snprintf (err, err_size, "out of memory");
        goto fail;
    }
    spec->argv = state->wrapped;
    spec->envp = state->wrapper_env;
    spec->pre_exec = dw_sandbox_pre_exec;
    spec->pre_exec_arg = state->sandbox;
    state->inner_kill = spec->kill_hook;
    state->inner_kill_arg = spec->kill_arg;
    spec->kill_hook = s_kill;
    spec->kill_arg = state;

    s_env_free (env);
    free (program_dir);
    free (gateway_dir);
    *state_p = state;
    return 0;

fail:
    s_env_free (env);
    free (program_dir);
    free (gateway_dir);
    s_state_free (state);
    return -1;
}

/* Replace the outcome the process status gave with the limit that killed
 * the agent. */
static void
s_set_outcome (dw_sandbox_state_t *state, Driftwatch__V1__JobResult *result,
               Driftwatch__V1__Outcome outcome, const char *reason, const char *detail)
{
    snprintf (state->reason, sizeof state->reason, "%s", reason);
    snprintf (state->detail, sizeof state->detail, "%s", detail);
    result->outcome = outcome;
    result->outcome_reason = state->reason;
    result->detail = state->detail;
}

static void
s_finish (void *state_p, const dw_proc_result_t *proc, Driftwatch__V1__JobResult *result)
{
    dw_sandbox_state_t *state = state_p;
    if (!state || !state->sandbox)
        return;
    dw_sandbox_usage_t usage;
    if (dw_sandbox_usage (state->sandbox, &usage) != 0)
        return;
    uint64_t peak_mib = usage.memory_peak_bytes >> 20;
    dw_info ("sandbox usage attempt=%s memory_peak_mib=%" PRIu64 " oom_kills=%" PRIu64
             " pids_rejected=%" PRIu64 " cpu_ms=%" PRIu64 " workspace_bytes=%" PRIu64
             " limit=%s",
             state->attempt_id, peak_mib, usage.oom_kills, usage.pids_rejected,
             usage.cpu_usage_usec / 1000, usage.workspace_bytes,
             usage.limit_exceeded ? usage.exceeded_limit : "-");

    Driftwatch__V1__Outcome outcome = result->outcome;
    if (outcome == DRIFTWATCH__V1__OUTCOME__OUTCOME_CANCELLED)
        return;
    char detail[DW_JOBRUN_DETAIL_MAX];
    if (usage.limit_exceeded && strcmp (usage.exceeded_limit, "workspace_size") == 0) {
        snprintf (detail, sizeof detail, "the agent's files (workspace, home, tmp) grew to %"
                  PRIu64 " bytes, past the workspace limit, and the sandbox was killed",
                  usage.workspace_bytes);
        s_set_outcome (state, result, DRIFTWATCH__V1__OUTCOME__OUTCOME_AGENT_ERROR,
                       "workspace_limit", detail);
    }
    else if (usage.limit_exceeded && strcmp (usage.exceeded_limit, "cpu_time") == 0) {
        snprintf (detail, sizeof detail, "the agent used %" PRIu64 " s of CPU time, past the "
                  "cpu limit, and the sandbox was killed", usage.cpu_usage_usec / 1000000);
        s_set_outcome (state, result, DRIFTWATCH__V1__OUTCOME__OUTCOME_AGENT_ERROR, "cpu_limit",
                       detail);
    }
    else if (usage.limit_exceeded && strcmp (usage.exceeded_limit, "wall_time") == 0
             && outcome != DRIFTWATCH__V1__OUTCOME__OUTCOME_TIMEOUT) {
        snprintf (detail, sizeof detail, "the sandbox watchdog killed the agent %d s past its "
                  "wall limit", DW_SANDBOX_WALL_GRACE_S);
        s_set_outcome (state, result, DRIFTWATCH__V1__OUTCOME__OUTCOME_TIMEOUT, "agent_timeout",
                       detail);
    }
    else if (usage.oom_kills > 0 && outcome != DRIFTWATCH__V1__OUTCOME__OUTCOME_UNSPECIFIED
             && outcome != DRIFTWATCH__V1__OUTCOME__OUTCOME_TIMEOUT) {
        /* Only an agent that failed is blamed on memory: a tool process
         * the kernel killed while the agent itself finished is graded. */
        snprintf (detail, sizeof detail, "the OOM killer ended %" PRIu64 " process(es) at the %"
                  PRIu64 " MiB memory limit (peak %" PRIu64 " MiB); agent exit status %d",
                  usage.oom_kills, state->memory_limit >> 20, peak_mib, dw_proc_status (proc));
        s_set_outcome (state, result, DRIFTWATCH__V1__OUTCOME__OUTCOME_AGENT_ERROR,
                       "memory_limit", detail);
    }
    else if (usage.pids_rejected > 0 && outcome == DRIFTWATCH__V1__OUTCOME__OUTCOME_AGENT_ERROR) {
        snprintf (detail, sizeof detail, "the process limit rejected %" PRIu64 " fork(s); agent "
                  "exit status %d", usage.pids_rejected, dw_proc_status (proc));
        s_set_outcome (state, result, DRIFTWATCH__V1__OUTCOME__OUTCOME_AGENT_ERROR,
                       "process_limit", detail);
    }
}

static void
s_release (void *state_p)
{
    s_state_free (state_p);
}

void
dw_sandbox_hook_init (dw_jobrun_hook_t *hook, const dw_jobrun_options_t *options)
{
    memset (hook, 0, sizeof *hook);
    hook->prepare = s_prepare;
    hook->finish = s_finish;
    hook->release = s_release;
    hook->context = (void *) options;
}
