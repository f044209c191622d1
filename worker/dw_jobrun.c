/* One attempt on a worker: workspace, agent, diff, grading; see dw_jobrun.h.
 *
 * Layout of work_root/<attempt_id>:
 *   ws/           the agent's checkout at base_commit
 *   home/ tmp/    the agent's HOME and TMPDIR
 *   input/        task.json and prompt.txt (outside the workspace)
 *   logs/         agent.stderr (capped by dw_proc)
 *   diff.git/     bare repository at base_commit for taking the agent's diff
 *   grade/        fresh checkout for grading
 *   grade-home/ grade-tmp/ scratch/   HOME, TMPDIR and patch files of grading
 *
 * Environment of the agent, built from scratch: PATH (the worker's),
 * HOME, TMPDIR, LANG=C.UTF-8, DW_TASK_FILE, DW_PROMPT_FILE, DW_WORKSPACE,
 * DW_ATTEMPT_ID, DW_SEED, DW_DAY, plus every DW_STUB_* variable of the
 * worker's own environment (knobs of the stub agent for tests and demos).
 * The sandbox hook then replaces PATH, HOME, TMPDIR and the DW_* paths
 * with their in-sandbox values (see dw_sandbox_hook.h).
 *
 * Outcomes decided here:
 *   CANCELLED      the cancel flag was set (no diff, no grading);
 *   TIMEOUT        the agent ran past limits.wall_seconds (diff kept, not
 *                  graded);
 *   AGENT_ERROR    the agent exited with a nonzero status or died from a
 *                  signal (diff kept, not graded: a crashed agent did not
 *                  finish its work, whatever it left behind);
 *   INFRA_ERROR    clone_failed, grade_checkout_failed, sandbox_failed, ...;
 *   HARNESS_ERROR  the worker cannot run this agent kind or the assignment
 *                  is malformed;
 *   otherwise      dw_grade decides RESOLVED or UNRESOLVED (a diff larger
 *                  than DW_JOBRUN_DIFF_MAX is UNRESOLVED "diff_too_large").
 */
#include "dw_jobrun.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dw_agent_claude.h"
#include "dw_gitcache.h"
#include "dw_grade.h"
#include "dw_log.h"
#include "dw_sandbox_hook.h"
#include "dw_util.h"
#include "dw_wire.h"

extern char **environ;

/* Most environment entries of the agent, including DW_STUB_* ones. */
#define DW_JOBRUN_ENV_MAX 64

typedef struct {
    const Driftwatch__V1__JobAssignment *job;
    const dw_jobrun_options_t *options;
    Driftwatch__V1__JobResult result;
    Driftwatch__V1__AgentMetrics metrics;
    char reason[64];
    char detail[DW_JOBRUN_DETAIL_MAX];

    char *attempt_dir;
    char *ws;
    char *home;
    char *tmp;
    char *input_dir;
    char *logs_dir;
    char *grade_dir;
    char *grade_home;
    char *grade_tmp;
    char *scratch;
    char *task_file;
    char *prompt_file;
    char *stderr_file;
    /* Bare repository used to take the diff (see s_take_diff). */
    char *diff_git_dir;
    char base_sha[41];

    /* Agent diff, at most DW_JOBRUN_DIFF_MAX bytes. */
    char *diff;
    size_t diff_len;
    int diff_truncated;

    /* Per-attempt state of the hooks. */
    void *agent_state;
    void *sandbox_state;
    int agent_prepared;
    int sandbox_prepared;

    uint64_t events;
    /* The agent process was started (so a diff may exist). */
    int agent_ran;
    char *log_tail;
    size_t log_tail_len;
    dw_grade_result_t grade;
    Driftwatch__V1__TestResult *tests;
    Driftwatch__V1__TestResult **test_ptrs;
} dw_attempt_t;

/* Set the outcome unless one is already set; the first failure explains
 * the attempt best. */
static void
s_outcome (dw_attempt_t *self, Driftwatch__V1__Outcome outcome, const char *reason,
           const char *fmt, ...)
{
    if (self->result.outcome != DRIFTWATCH__V1__OUTCOME__OUTCOME_UNSPECIFIED)
        return;
    self->result.outcome = outcome;
    snprintf (self->reason, sizeof self->reason, "%s", reason);
    va_list args;
    va_start (args, fmt);
    vsnprintf (self->detail, sizeof self->detail, fmt, args);
    va_end (args);
    self->result.outcome_reason = self->reason;
    self->result.detail = self->detail;
}

static int
s_cancelled (dw_attempt_t *self)
{
    volatile int *cancel = self->options->cancel;
    if (cancel && *cancel) {
        s_outcome (self, DRIFTWATCH__V1__OUTCOME__OUTCOME_CANCELLED, "cancelled",
                   "attempt cancelled");
        return 1;
    }
    return 0;
}

/* Attempt ids become directory names, so only a plain name is accepted. */
static int
s_valid_attempt_id (const char *id)
{
    if (!id || !*id || strlen (id) > 128 || strcmp (id, ".") == 0 || strcmp (id, "..") == 0)
        return 0;
    return strspn (id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
           == strlen (id);
}

static int
s_make_dirs (dw_attempt_t *self)
{
    const char *root = self->options->work_root;
    const char *id = self->job->attempt_id;
    self->attempt_dir = dw_strdup_printf ("%s/%s", root, id);
    self->ws = dw_strdup_printf ("%s/%s/ws", root, id);
    self->home = dw_strdup_printf ("%s/%s/home", root, id);
    self->tmp = dw_strdup_printf ("%s/%s/tmp", root, id);
    self->input_dir = dw_strdup_printf ("%s/%s/input", root, id);
    self->logs_dir = dw_strdup_printf ("%s/%s/logs", root, id);
    self->grade_dir = dw_strdup_printf ("%s/%s/grade", root, id);
    self->grade_home = dw_strdup_printf ("%s/%s/grade-home", root, id);
    self->grade_tmp = dw_strdup_printf ("%s/%s/grade-tmp", root, id);
    self->scratch = dw_strdup_printf ("%s/%s/scratch", root, id);
    self->task_file = dw_strdup_printf ("%s/%s/input/task.json", root, id);
    self->prompt_file = dw_strdup_printf ("%s/%s/input/prompt.txt", root, id);
    self->stderr_file = dw_strdup_printf ("%s/%s/logs/agent.stderr", root, id);
    self->diff_git_dir = dw_strdup_printf ("%s/%s/diff.git", root, id);
    if (!self->attempt_dir || !self->ws || !self->home || !self->tmp || !self->input_dir
        || !self->logs_dir || !self->grade_dir || !self->grade_home || !self->grade_tmp
        || !self->scratch || !self->task_file || !self->prompt_file || !self->stderr_file
        || !self->diff_git_dir)
        return -1;

    /* A retry of the same attempt id starts from nothing. The attempt
     * directory is world-traversable so that a sandbox running as another
     * uid can reach the trees it binds; home and tmp stay private until
     * the sandbox hands them over. */
    dw_rm_rf (self->attempt_dir);
    if (dw_mkdir_p (self->options->work_root, 0755) != 0
        || dw_mkdir_p (self->attempt_dir, 0755) != 0) {
        s_outcome (self, DRIFTWATCH__V1__OUTCOME__OUTCOME_INFRA_ERROR, "workdir_failed",
                   "cannot create %s: %s", self->attempt_dir, strerror (errno));
        return 1;
    }
    const char *dirs[] = { self->home, self->tmp, self->input_dir, self->logs_dir,
                           self->grade_home, self->grade_tmp, self->scratch };
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        mode_t mode = dirs[i] == self->input_dir ? 0755 : 0700;
        if (dw_mkdir_p (dirs[i], mode) != 0) {
            s_outcome (self, DRIFTWATCH__V1__OUTCOME__OUTCOME_INFRA_ERROR, "workdir_failed",
                       "cannot create %s: %s", dirs[i], strerror (errno));
            return 1;
        }
    }
    return 0;
}

/* Merge the fields of the task's extra_json object into TASK without
 * overriding the fields set from TaskSpec. */
static void
s_merge_extra (json_t *task, const char *extra_json)
{
    if (!extra_json || !*extra_json)
        return;
    json_t *extra = json_loads (extra_json, 0, NULL);
    if (!json_is_object (extra)) {
        json_decref (extra);
        return;
    }
    const char *key;
    json_t *value;
    json_object_foreach (extra, key, value) {
        if (!json_object_get (task, key))
            json_object_set (task, key, value);
    }
    json_decref (extra);
}

static int
s_write_inputs (dw_attempt_t *self, int is_stub)
{
    const Driftwatch__V1__TaskSpec *task = self->job->task;
    json_t *doc = json_object ();
    if (!doc)
        return -1;
    json_object_set_new (doc, "instance_id", json_string (task->instance_id));
    json_object_set_new (doc, "repo", json_string (task->repo));
    json_object_set_new (doc, "base_commit", json_string (self->base_sha));
    json_object_set_new (doc, "problem_statement", json_string (task->problem_statement));
    json_object_set_new (doc, "requirements", json_string (task->requirements));
    json_object_set_new (doc, "interface", json_string (task->interface));
    if (is_stub) {
        /* The stub replays the gold patch; a real agent never gets it. */
        json_object_set_new (doc, "patch", json_string (task->patch));
        json_object_set_new (doc, "extra_json", json_string (task->extra_json));
        s_merge_extra (doc, task->extra_json);
    }
    char *text = json_dumps (doc, JSON_INDENT (2) | JSON_ENSURE_ASCII);
    json_decref (doc);
    if (!text)
        return -1;
    int rc = dw_write_file_atomic (self->task_file, text, strlen (text), 0644);
    free (text);

    char *prompt = dw_strdup_printf ("%s\n\nRequirements:\n%s\n\nNew interfaces introduced:\n%s\n",
                                     task->problem_statement, task->requirements,
                                     task->interface);
    if (!prompt)
        return -1;
    if (rc == 0)
        rc = dw_write_file_atomic (self->prompt_file, prompt, strlen (prompt), 0644);
    free (prompt);
    if (rc != 0) {
        s_outcome (self, DRIFTWATCH__V1__OUTCOME__OUTCOME_INFRA_ERROR, "workdir_failed",
                   "cannot write the task file in %s: %s", self->input_dir, strerror (errno));
        return 1;
    }
    return 0;
}

typedef struct {
    char *items[DW_JOBRUN_ENV_MAX + 1];
    size_t count;
} dw_env_t;

static void
s_env_add (dw_env_t *env, char *entry)
{
    if (entry && env->count < DW_JOBRUN_ENV_MAX)
        env->items[env->count++] = entry;
    else
        free (entry);
    env->items[env->count] = NULL;
}

static void
s_env_free (dw_env_t *env)
{
    for (size_t i = 0; i < env->count; i++)
        free (env->items[i]);
    env->count = 0;
}

static void
s_agent_env (dw_attempt_t *self, dw_env_t *env)
{
    const char *path = getenv ("PATH");
    s_env_add (env, dw_strdup_printf ("PATH=%s", path && *path ? path : "/usr/local/bin:/usr/bin:/bin"));
    s_env_add (env, dw_strdup_printf ("HOME=%s", self->home));
    s_env_add (env, dw_strdup_printf ("TMPDIR=%s", self->tmp));
    s_env_add (env, dw_strdup_printf ("LANG=C.UTF-8"));
    s_env_add (env, dw_strdup_printf ("DW_TASK_FILE=%s", self->task_file));
    s_env_add (env, dw_strdup_printf ("DW_PROMPT_FILE=%s", self->prompt_file));
    s_env_add (env, dw_strdup_printf ("DW_WORKSPACE=%s", self->ws));
    s_env_add (env, dw_strdup_printf ("DW_ATTEMPT_ID=%s", self->job->attempt_id));
    s_env_add (env, dw_strdup_printf ("DW_SEED=%" PRIu64, (uint64_t) self->job->seed));
    s_env_add (env, dw_strdup_printf ("DW_DAY=%s", self->job->day ? self->job->day : ""));
    for (size_t i = 0; environ && environ[i]; i++)
        if (strncmp (environ[i], "DW_STUB_", 8) == 0)
            s_env_add (env, strdup (environ[i]));
}

static void
s_on_agent_line (void *arg, const char *line, size_t len, int truncated)
{
    dw_attempt_t *self = arg;
    self->events++;
    const dw_jobrun_hook_t *hook = self->options->agent_hook;
    if (hook && hook->on_line && self->agent_prepared)
        hook->on_line (self->agent_state, line, len, truncated);
    if (self->options->on_event)
        self->options->on_event (self->options->event_arg, line, len, truncated);
}

static int
s_prepare_hook (dw_attempt_t *self, const dw_jobrun_hook_t *hook, dw_jobrun_stage_t stage,
                const dw_jobrun_paths_t *paths, dw_proc_spec_t *spec, void **state,
                int *prepared, const char *reason)
{
    if (!hook || !hook->prepare)
        return 0;
    char err[512] = "";
    if (hook->prepare (hook->context, self->job, stage, paths, spec, state, err, sizeof err)
        != 0) {
        s_outcome (self, DRIFTWATCH__V1__OUTCOME__OUTCOME_INFRA_ERROR, reason, "%s",
                   err[0] ? err : "hook failed without a message");
        return -1;
    }
    *prepared = 1;
    return 0;
}

static void
s_read_log_tail (dw_attempt_t *self)
{
    size_t len = 0;
    char *text = dw_read_file (self->stderr_file, 2 * DW_PROC_STDERR_MAX, &len);
    if (!text)
        return;
    if (len > DW_JOBRUN_LOG_TAIL_MAX) {
        memmove (text, text + len - DW_JOBRUN_LOG_TAIL_MAX, DW_JOBRUN_LOG_TAIL_MAX);
        len = DW_JOBRUN_LOG_TAIL_MAX;
    }
    self->log_tail = text;
    self->log_tail_len = len;
}

static int
s_run_agent (dw_attempt_t *self)
{
    const Driftwatch__V1__JobAssignment *job = self->job;
    const char *kind = job->agent && job->agent->kind && *job->agent->kind ? job->agent->kind
                                                                         : "stub";
    const char *command = job->agent && job->agent->command ? job->agent->command : "";
    const dw_jobrun_hook_t *agent_hook = self->options->agent_hook;
    char *argv[4] = { NULL };
    char *stub_path = NULL;

    if (strcmp (kind, "stub") == 0 && !*command) {
        if (!self->options->stub_agent || !*self->options->stub_agent) {
            s_outcome (self, DRIFTWATCH__V1__OUTCOME__OUTCOME_HARNESS_ERROR, "agent_unsupported",
                       "agent kind \"stub\" needs a command or the worker's stub agent path");
            return 1;
        }
        stub_path = strdup (self->options->stub_agent);
        argv[0] = stub_path;
    }
    else if (strcmp (kind, "stub") == 0 || strcmp (kind, "command") == 0) {
        if (!*command) {
            s_outcome (self, DRIFTWATCH__V1__OUTCOME__OUTCOME_HARNESS_ERROR, "agent_unsupported",
                       "agent kind \"command\" needs agent.command");
            return 1;
        }
        argv[0] = "/bin/sh";
        argv[1] = "-c";
        argv[2] = (char *) command;
    }
    else if (strcmp (kind, "claude-code") == 0 && agent_hook && agent_hook->prepare) {
        /* The hook sets the real argv; "true" only fills the slot. */
        argv[0] = "true";
    }
    else {
        s_outcome (self, DRIFTWATCH__V1__OUTCOME__OUTCOME_HARNESS_ERROR, "agent_unsupported",
                   "this worker cannot run agent kind \"%s\"", kind);
        return 1;
    }

    dw_env_t env = { .count = 0 };
    s_agent_env (self, &env);
    const Driftwatch__V1__Limits *limits = job->limits;
    uint64_t wall_s = limits && limits->wall_seconds ? limits->wall_seconds
                                                     : DW_JOBRUN_WALL_DEFAULT_S;
    dw_proc_spec_t spec = {
        .argv = argv,
        .envp = env.items,
        .cwd = self->ws,
        .on_line = s_on_agent_line,
        .line_arg = self,
        .line_max = DW_EVENT_PAYLOAD_MAX,
        .stdout_max = limits && limits->output_bytes ? limits->output_bytes : 0,
        .stderr_path = self->stderr_file,
        .wall_ms = wall_s * 1000,
        .cancel = self->options->cancel,
    };
    dw_jobrun_paths_t paths = {
        .attempt_dir = self->attempt_dir,
        .workspace = self->ws,
        .home = self->home,
        .tmp = self->tmp,
        .input_dir = self->input_dir,
        .task_file = self->task_file,
        .prompt_file = self->prompt_file,
    };
    int rc = 0;
    if (s_prepare_hook (self, agent_hook, DW_JOBRUN_STAGE_AGENT, &paths, &spec,
                        &self->agent_state, &self->agent_prepared, "agent_prepare_failed")
            != 0
        || s_prepare_hook (self, self->options->sandbox_hook, DW_JOBRUN_STAGE_AGENT, &paths,
                           &spec, &self->sandbox_state, &self->sandbox_prepared,
                           "sandbox_failed")
               != 0) {
        rc = 1;
        goto done;
    }

    dw_info ("agent start attempt=%s kind=%s wall_s=%" PRIu64, job->attempt_id, kind, wall_s);
    dw_proc_result_t proc;
    int run_rc = dw_proc_run (&spec, &proc);
    self->agent_ran = run_rc == 0;
    self->result.agent_ms = proc.duration_ms;
    self->result.agent_exit_code = dw_proc_status (&proc);
    self->metrics.duration_ms = proc.duration_ms;
    if (proc.first_stdout_ms >= 0)
        self->metrics.time_to_first_event_ms = (uint64_t) proc.first_stdout_ms;
    dw_info ("agent end attempt=%s status=%d timed_out=%d cancelled=%d ms=%" PRIu64
             " events=%" PRIu64,
             job->attempt_id, self->result.agent_exit_code, proc.timed_out, proc.cancelled,
             proc.duration_ms, self->events);

    if (run_rc != 0)
        s_outcome (self, DRIFTWATCH__V1__OUTCOME__OUTCOME_HARNESS_ERROR, "agent_not_started",
                   "agent could not start: %s", proc.error);
    else if (proc.cancelled)
        s_outcome (self, DRIFTWATCH__V1__OUTCOME__OUTCOME_CANCELLED, "cancelled",
                   "attempt cancelled while the agent ran");
    else if (proc.timed_out)
        s_outcome (self, DRIFTWATCH__V1__OUTCOME__OUTCOME_TIMEOUT, "agent_timeout",
                   "agent ran past the %" PRIu64 " s wall limit and was killed", wall_s);
    else if (dw_proc_status (&proc) != 0)
        s_outcome (self, DRIFTWATCH__V1__OUTCOME__OUTCOME_AGENT_ERROR, "agent_exit_nonzero",
                   "agent exited with status %d", dw_proc_status (&proc));

    if (agent_hook && agent_hook->finish && self->agent_prepared)
        agent_hook->finish (self->agent_state, &proc, &self->result);
    const dw_jobrun_hook_t *sandbox_hook = self->options->sandbox_hook;
    if (sandbox_hook && sandbox_hook->finish && self->sandbox_prepared)
        sandbox_hook->finish (self->sandbox_state, &proc, &self->result);

done:
    s_env_free (&env);
    free (stub_path);
    return rc;
}

typedef struct {
    dw_attempt_t *attempt;
    uint64_t seen;
} dw_diff_sink_t;

static void
s_on_diff_line (void *arg, const char *line, size_t len, int truncated)
{
    dw_diff_sink_t *sink = arg;
    dw_attempt_t *self = sink->attempt;
    sink->seen += len + 1;
    if (truncated || self->diff_truncated || self->diff_len + len + 1 > DW_JOBRUN_DIFF_MAX) {
        self->diff_truncated = 1;
        return;
    }
    memcpy (self->diff + self->diff_len, line, len);
    self->diff[self->diff_len + len] = '\n';
    self->diff_len += len + 1;
}

/* Take the agent's diff without trusting the workspace's .git, which the
 * agent controls: its config could name a clean filter or fsmonitor
 * program, and a symlinked objects directory would make git write where
 * the agent chose. A fresh bare repository holding only the base commit
 * serves as the git dir instead, with the workspace as its work tree (git
 * never descends into the work tree's own .git). */
static void
s_take_diff (dw_attempt_t *self, const char *url)
{
    static const char exclude[] = "__pycache__/\n*.pyc\n.pytest_cache/\nnode_modules/\n";
    self->diff = malloc (DW_JOBRUN_DIFF_MAX);
    if (!self->diff)
        return;

    char err[512] = "";
    if (dw_gitcache_snapshot (self->options->cache_dir, url, self->base_sha, self->diff_git_dir,
                              self->options->cancel, err, sizeof err)
        != 0) {
        if (!s_cancelled (self))
            s_outcome (self, DRIFTWATCH__V1__OUTCOME__OUTCOME_INFRA_ERROR, "diff_failed",
                       "cannot create the repository for the agent's diff: %s", err);
        return;
    }

    /* Caches that test runs leave behind, for repositories whose
     * .gitignore does not cover them. */
    char *info_dir = dw_strdup_printf ("%s/info", self->diff_git_dir);
    char *exclude_path = dw_strdup_printf ("%s/info/exclude", self->diff_git_dir);
    int written = info_dir && exclude_path && dw_mkdir_p (info_dir, 0755) == 0
                  && dw_write_file_atomic (exclude_path, exclude, sizeof exclude - 1, 0644) == 0;
    free (info_dir);
    free (exclude_path);
    if (!written) {
        s_outcome (self, DRIFTWATCH__V1__OUTCOME__OUTCOME_INFRA_ERROR, "diff_failed",
                   "cannot write the exclude file in %s: %s", self->diff_git_dir,
                   strerror (errno));
        return;
    }

    char *git_dir_arg = dw_strdup_printf ("--git-dir=%s", self->diff_git_dir);
    char *work_tree_arg = dw_strdup_printf ("--work-tree=%s", self->ws);
    if (!git_dir_arg || !work_tree_arg)
        goto done;
    dw_git_options_t options = { .cwd = self->attempt_dir, .cancel = self->options->cancel };
    const char *read_tree[] = { git_dir_arg, work_tree_arg, "read-tree", self->base_sha, NULL };
    const char *add[] = { git_dir_arg, work_tree_arg, "add", "--all", NULL };
    if (dw_git_run (&options, read_tree, NULL, err, sizeof err) != 0
        || dw_git_run (&options, add, NULL, err, sizeof err) != 0) {
        s_outcome (self, DRIFTWATCH__V1__OUTCOME__OUTCOME_UNRESOLVED, "diff_failed",
                   "cannot stage the agent's changes: %s", err);
        goto done;
    }

    dw_diff_sink_t sink = { .attempt = self };
    options.on_line = s_on_diff_line;
    options.line_arg = &sink;
    options.line_max = DW_JOBRUN_DIFF_MAX;
    options.stdout_max = DW_JOBRUN_DIFF_MAX + 1;
    const char *diff[] = { git_dir_arg, work_tree_arg, "diff", "--cached", "--binary",
                           "--no-ext-diff", "--no-textconv", "--no-color", "--no-renames",
                           self->base_sha, "--", NULL };
    dw_proc_result_t proc;
    if (dw_git_run (&options, diff, &proc, err, sizeof err) != 0) {
        s_outcome (self, DRIFTWATCH__V1__OUTCOME__OUTCOME_UNRESOLVED, "diff_failed",
                   "cannot take the agent's diff: %s", err);
        goto done;
    }
    if (proc.stdout_truncated)
        self->diff_truncated = 1;
    if (self->diff_truncated)
        s_outcome (self, DRIFTWATCH__V1__OUTCOME__OUTCOME_UNRESOLVED, "diff_too_large",
                   "the agent's diff is larger than %d bytes", DW_JOBRUN_DIFF_MAX);

done:
    free (git_dir_arg);
    free (work_tree_arg);
}

static int
s_grade_prepare (void *arg, dw_proc_spec_t *spec, char *err, size_t err_size)
{
    dw_attempt_t *self = arg;
    const dw_jobrun_hook_t *hook = self->options->sandbox_hook;
    if (!hook || !hook->prepare)
        return 0;
    dw_jobrun_paths_t paths = {
        .attempt_dir = self->attempt_dir,
        .workspace = self->grade_dir,
        .home = self->grade_home,
        .tmp = self->grade_tmp,
        .input_dir = self->input_dir,
        .task_file = self->task_file,
        .prompt_file = self->prompt_file,
    };
    /* The agent stage is over: its sandbox state goes before grading's. */
    if (self->sandbox_prepared && hook->release) {
        hook->release (self->sandbox_state);
        self->sandbox_prepared = 0;
        self->sandbox_state = NULL;
    }
    if (hook->prepare (hook->context, self->job, DW_JOBRUN_STAGE_GRADE, &paths, spec,
                       &self->sandbox_state, err, err_size)
        != 0)
        return -1;
    self->sandbox_prepared = 1;
    return 0;
}

static int
s_grade (dw_attempt_t *self, const char *url)
{
    const Driftwatch__V1__TaskSpec *task = self->job->task;
    uint64_t start = dw_mono_ms ();
    char err[512] = "";
    char sha[41];
    if (dw_gitcache_checkout (self->options->cache_dir, url, self->base_sha, self->grade_dir, 1,
                              self->options->cancel, sha, err, sizeof err)
        != 0) {
        if (!s_cancelled (self))
            s_outcome (self, DRIFTWATCH__V1__OUTCOME__OUTCOME_INFRA_ERROR,
                       "grade_checkout_failed", "cannot check out the base for grading: %s",
                       err);
        self->result.grade_ms = dw_mono_ms () - start;
        return 0;
    }

    dw_env_t env = { .count = 0 };
    const char *path = getenv ("PATH");
    s_env_add (&env, dw_strdup_printf ("PATH=%s", path && *path ? path : "/usr/local/bin:/usr/bin:/bin"));
    s_env_add (&env, dw_strdup_printf ("HOME=%s", self->grade_home));
    s_env_add (&env, dw_strdup_printf ("TMPDIR=%s", self->grade_tmp));
    s_env_add (&env, dw_strdup_printf ("LANG=C.UTF-8"));

    const Driftwatch__V1__Limits *limits = self->job->limits;
    uint64_t wall_s = limits && limits->grade_wall_seconds ? limits->grade_wall_seconds
                                                           : DW_JOBRUN_WALL_DEFAULT_S;
    dw_grade_input_t input = {
        .dir = self->grade_dir,
        .base_commit = self->base_sha,
        .scratch_dir = self->scratch,
        .agent_diff = self->diff,
        .agent_diff_len = self->diff_len,
        .test_patch = task->test_patch,
        .test_cmd = task->test_cmd,
        .test_format = task->test_format,
        .fail_to_pass = task->fail_to_pass,
        .fail_to_pass_count = task->n_fail_to_pass,
        .pass_to_pass = task->pass_to_pass,
        .pass_to_pass_count = task->n_pass_to_pass,
        .selected_tests = task->selected_test_files,
        .selected_tests_count = task->n_selected_test_files,
        .wall_ms = wall_s * 1000,
        .envp = env.items,
        .cancel = self->options->cancel,
        .prepare = s_grade_prepare,
        .prepare_arg = self,
    };
    int rc = dw_grade_run (&input, &self->grade);
    s_env_free (&env);
    self->result.grade_ms = dw_mono_ms () - start;
    if (rc != 0)
        return -1;

    s_outcome (self, (Driftwatch__V1__Outcome) self->grade.outcome, self->grade.reason, "%s",
               self->grade.detail);
    dw_info ("grade end attempt=%s outcome=%s tests=%zu exit=%d ms=%" PRIu64,
             self->job->attempt_id, self->grade.reason, self->grade.tests_count,
             self->grade.test_exit_code, self->result.grade_ms);
    return 0;
}

static int
s_fill_tests (dw_attempt_t *self)
{
    size_t count = self->grade.tests_count;
    if (count == 0)
        return 0;
    self->tests = calloc (count, sizeof *self->tests);
    self->test_ptrs = calloc (count, sizeof *self->test_ptrs);
    if (!self->tests || !self->test_ptrs)
        return -1;
    for (size_t i = 0; i < count; i++) {
        driftwatch__v1__test_result__init (&self->tests[i]);
        self->tests[i].name = self->grade.tests[i].name;
        self->tests[i].status = (Driftwatch__V1__TestStatus) self->grade.tests[i].status;
        self->test_ptrs[i] = &self->tests[i];
    }
    self->result.n_tests = count;
    self->result.tests = self->test_ptrs;
    return 0;
}

static int
s_pack (dw_attempt_t *self, uint8_t **packed, size_t *len)
{
    self->result.finished_ms = dw_now_ms ();
    self->result.agent_diff.data = (uint8_t *) self->diff;
    self->result.agent_diff.len = self->diff ? self->diff_len : 0;
    self->result.diff_truncated = self->diff_truncated;
    self->result.log_tail.data = (uint8_t *) self->log_tail;
    self->result.log_tail.len = self->log_tail_len;
    self->result.events_total = self->events;
    if (!self->result.metrics)
        self->result.metrics = &self->metrics;

    size_t size = driftwatch__v1__job_result__get_packed_size (&self->result);
    *packed = malloc (size ? size : 1);
    if (!*packed)
        return -1;
    *len = driftwatch__v1__job_result__pack (&self->result, *packed);
    return 0;
}

static void
s_release_hooks (dw_attempt_t *self)
{
    const dw_jobrun_hook_t *sandbox_hook = self->options->sandbox_hook;
    const dw_jobrun_hook_t *agent_hook = self->options->agent_hook;
    if (self->sandbox_prepared && sandbox_hook->release)
        sandbox_hook->release (self->sandbox_state);
    if (self->agent_prepared && agent_hook->release)
        agent_hook->release (self->agent_state);
    self->sandbox_prepared = self->agent_prepared = 0;
}

static void
s_attempt_free (dw_attempt_t *self)
{
    char **paths[] = { &self->attempt_dir, &self->ws, &self->home, &self->tmp,
                       &self->input_dir, &self->logs_dir, &self->grade_dir, &self->grade_home,
                       &self->grade_tmp, &self->scratch, &self->task_file, &self->prompt_file,
                       &self->stderr_file, &self->diff_git_dir };
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        free (*paths[i]);
        *paths[i] = NULL;
    }
    free (self->diff);
    free (self->log_tail);
    free (self->tests);
    free (self->test_ptrs);
    dw_grade_result_clear (&self->grade);
}

/* Steps after the directories exist; every failure sets the outcome.
 * Returns -1 only when out of memory. */
static int
s_execute (dw_attempt_t *self)
{
    const Driftwatch__V1__TaskSpec *task = self->job->task;
    const char *kind = self->job->agent && self->job->agent->kind ? self->job->agent->kind : "";
    int is_stub = strcmp (kind, "stub") == 0 || !*kind;

    uint64_t setup_start = dw_mono_ms ();
    char *url = dw_gitcache_url (task->repo_url, task->repo);
    if (!url) {
        s_outcome (self, DRIFTWATCH__V1__OUTCOME__OUTCOME_INFRA_ERROR, "clone_failed",
                   "the task has neither repo_url nor repo");
        return 0;
    }
    char err[512] = "";
    int cloned = dw_gitcache_checkout (self->options->cache_dir, url, task->base_commit, self->ws,
                                       0, self->options->cancel, self->base_sha, err,
                                       sizeof err);
    self->result.setup_ms = dw_mono_ms () - setup_start;
    if (cloned != 0) {
        if (!s_cancelled (self))
            s_outcome (self, DRIFTWATCH__V1__OUTCOME__OUTCOME_INFRA_ERROR, "clone_failed",
                       "cannot prepare the workspace from %s at %s: %s", url, task->base_commit,
                       err);
        dw_warn ("workspace failed attempt=%s url=%s error=%s", self->job->attempt_id, url, err);
        free (url);
        return 0;
    }

    int rc = 0;
    if (s_write_inputs (self, is_stub) < 0) {
        rc = -1;
        goto done;
    }
    if (self->result.outcome || s_cancelled (self))
        goto done;

    if (s_run_agent (self) < 0) {
        rc = -1;
        goto done;
    }
    s_read_log_tail (self);
    if (!self->agent_ran || s_cancelled (self)
        || self->result.outcome == DRIFTWATCH__V1__OUTCOME__OUTCOME_CANCELLED)
        goto done;

    /* The diff is kept for every outcome the agent reached, graded or not. */
    s_take_diff (self, url);
    if (self->result.outcome || s_cancelled (self))
        goto done;
    rc = s_grade (self, url);

done:
    free (url);
    return rc;
}

int
dw_jobrun_execute (const Driftwatch__V1__JobAssignment *job, const dw_jobrun_options_t *opts,
                   uint8_t **packed, size_t *len)
{
    /* The built-in hooks fill what the caller left NULL; they read their
     * settings from the same options. */
    dw_jobrun_options_t effective = *opts;
    dw_jobrun_hook_t sandbox_hook;
    dw_jobrun_hook_t agent_hook;
    if (!effective.sandbox_hook) {
        dw_sandbox_hook_init (&sandbox_hook, &effective);
        effective.sandbox_hook = &sandbox_hook;
    }
    /* A worker without a key or a CLI cannot run claude-code at all: that
     * is a harness error, not a failure of this attempt. */
    const char *kind = job->agent && job->agent->kind ? job->agent->kind : "";
    char harness_problem[256] = "";
    if (!effective.agent_hook && strcmp (kind, "claude-code") == 0) {
        dw_agent_claude_hook_init (&agent_hook, &effective);
        effective.agent_hook = &agent_hook;
        const char *claude = effective.claude_path ? effective.claude_path
                                                   : DW_JOBRUN_CLAUDE_PATH;
        if (!effective.api_key || !*effective.api_key)
            snprintf (harness_problem, sizeof harness_problem,
                      "agent kind claude-code needs a model API key; set the worker's api_key");
        else if (access (claude, X_OK) != 0)
            snprintf (harness_problem, sizeof harness_problem,
                      "Claude Code CLI %s is missing or not executable; install it with "
                      "deploy/install-claude-code.sh or set claude_path", claude);
    }
    opts = &effective;

    dw_attempt_t self;
    memset (&self, 0, sizeof self);
    self.job = job;
    self.options = opts;
    driftwatch__v1__job_result__init (&self.result);
    driftwatch__v1__agent_metrics__init (&self.metrics);
    self.result.run_id = job->run_id;
    self.result.job_id = job->job_id;
    self.result.attempt_id = job->attempt_id;
    if (opts->worker_id)
        self.result.worker_id = (char *) opts->worker_id;
    self.result.started_ms = dw_now_ms ();
    self.result.agent_exit_code = -1;
    int rc = 0;

    if (!opts->work_root || !*opts->work_root || !opts->cache_dir || !*opts->cache_dir) {
        s_outcome (&self, DRIFTWATCH__V1__OUTCOME__OUTCOME_HARNESS_ERROR, "invalid_options",
                   "the worker set no work_root or cache_dir for jobs");
    }
    else if (!job->task || !job->task->base_commit || !*job->task->base_commit) {
        s_outcome (&self, DRIFTWATCH__V1__OUTCOME__OUTCOME_HARNESS_ERROR, "invalid_assignment",
                   "the assignment has no task or no base_commit");
    }
    else if (harness_problem[0]) {
        s_outcome (&self, DRIFTWATCH__V1__OUTCOME__OUTCOME_HARNESS_ERROR, "agent_unsupported",
                   "%s", harness_problem);
    }
    else if (!s_valid_attempt_id (job->attempt_id)) {
        s_outcome (&self, DRIFTWATCH__V1__OUTCOME__OUTCOME_HARNESS_ERROR, "invalid_assignment",
                   "attempt_id '%.64s' is not a plain name ([A-Za-z0-9._-], at most 128)",
                   job->attempt_id ? job->attempt_id : "");
    }
    else {
        int dirs_rc = s_make_dirs (&self);
        if (dirs_rc < 0)
            rc = -1;
        else if (dirs_rc == 0)
            rc = s_execute (&self);
    }

    if (rc == 0 && s_fill_tests (&self) != 0)
        rc = -1;
    if (rc == 0 && self.result.outcome == DRIFTWATCH__V1__OUTCOME__OUTCOME_UNSPECIFIED)
        s_outcome (&self, DRIFTWATCH__V1__OUTCOME__OUTCOME_HARNESS_ERROR, "no_outcome",
                   "the attempt ended without an outcome");
    if (rc == 0)
        rc = s_pack (&self, packed, len);
    dw_info ("attempt done attempt=%s job=%s outcome=%d reason=%s events=%" PRIu64,
             job->attempt_id, job->job_id, self.result.outcome,
             self.result.outcome_reason ? self.result.outcome_reason : "", self.events);

    s_release_hooks (&self);
    if (self.attempt_dir && !opts->keep_workspace)
        dw_rm_rf (self.attempt_dir);
    s_attempt_free (&self);
    return rc;
}

/* --- harness check ------------------------------------------------------- */

/* Wall limit of one harness check run. */
#define DW_JOBRUN_HARNESS_WALL_S 60
#define DW_JOBRUN_HARNESS_PROMPT "Reply with the single word: ready"

typedef struct {
    const dw_jobrun_hook_t *agent_hook;
    void *agent_state;
    uint64_t lines;
} dw_harness_sink_t;

static void
s_harness_line (void *arg, const char *line, size_t len, int truncated)
{
    dw_harness_sink_t *sink = arg;
    sink->lines++;
    if (sink->agent_hook && sink->agent_hook->on_line && sink->agent_state)
        sink->agent_hook->on_line (sink->agent_state, line, len, truncated);
}

/* First non-empty line of the file at PATH into OUT ("" when none). */
static void
s_first_line (const char *path, char *out, size_t size)
{
    out[0] = '\0';
    char *text = dw_read_file (path, 64 * 1024, NULL);
    if (!text)
        return;
    char *line = text + strspn (text, " \t\r\n");
    line[strcspn (line, "\r\n")] = '\0';
    snprintf (out, size, "%s", line);
    free (text);
}

/* What to do about a failed claude-code check with verdict REASON. */
static const char *
s_claude_fix (const char *reason, uint64_t lines)
{
    if (strncmp (reason, "api_", 4) == 0 || strcmp (reason, "no_result_event") == 0)
        return "check upstream_url and api_key, and that the model API is reachable from the "
               "worker";
    if (strcmp (reason, "agent_not_started") == 0)
        return "check claude_path";
    if (lines == 0)
        return "the CLI printed nothing, so its stderr line names the cause (a rejected flag "
               "means this CLI version does not accept driftwatch's arguments, or it ran as "
               "root: check the sandbox and sandbox_uid)";
    return "read the CLI's stderr in the worker log";
}

/* Scratch attempt directories of one check, under work_root. */
typedef struct {
    char *root, *ws, *home, *tmp, *input, *task_file, *prompt_file, *stderr_file;
} dw_harness_dirs_t;

static void
s_harness_dirs_free (dw_harness_dirs_t *dirs)
{
    if (dirs->root)
        dw_rm_rf (dirs->root);
    char **all[] = { &dirs->root, &dirs->ws, &dirs->home, &dirs->tmp, &dirs->input,
                     &dirs->task_file, &dirs->prompt_file, &dirs->stderr_file };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        free (*all[i]);
        *all[i] = NULL;
    }
}

static int
s_harness_dirs (dw_harness_dirs_t *dirs, const char *work_root, char *detail, size_t detail_len)
{
    static volatile int counter;
    int number = __sync_add_and_fetch (&counter, 1);
    dirs->root = dw_strdup_printf ("%s/harness-%d-%d", work_root, (int) getpid (), number);
    dirs->ws = dw_strdup_printf ("%s/ws", dirs->root);
    dirs->home = dw_strdup_printf ("%s/home", dirs->root);
    dirs->tmp = dw_strdup_printf ("%s/tmp", dirs->root);
    dirs->input = dw_strdup_printf ("%s/input", dirs->root);
    dirs->task_file = dw_strdup_printf ("%s/input/task.json", dirs->root);
    dirs->prompt_file = dw_strdup_printf ("%s/input/prompt.txt", dirs->root);
    dirs->stderr_file = dw_strdup_printf ("%s/agent.stderr", dirs->root);
    if (!dirs->root || !dirs->ws || !dirs->home || !dirs->tmp || !dirs->input
        || !dirs->task_file || !dirs->prompt_file || !dirs->stderr_file) {
        snprintf (detail, detail_len, "out of memory");
        return -1;
    }
    dw_rm_rf (dirs->root);
    const char *make[] = { dirs->ws, dirs->home, dirs->tmp, dirs->input };
    for (size_t i = 0; i < sizeof make / sizeof make[0]; i++) {
        mode_t mode = make[i] == dirs->ws || make[i] == dirs->input ? 0755 : 0700;
        if (dw_mkdir_p (make[i], mode) != 0) {
            snprintf (detail, detail_len, "cannot create %s: %s; check work_root", make[i],
                      strerror (errno));
            return -1;
        }
    }
    if (chmod (dirs->root, 0755) != 0
        || dw_write_file_atomic (dirs->task_file, "{}\n", 3, 0644) != 0
        || dw_write_file_atomic (dirs->prompt_file, DW_JOBRUN_HARNESS_PROMPT,
                                 strlen (DW_JOBRUN_HARNESS_PROMPT), 0644)
               != 0) {
        snprintf (detail, detail_len, "cannot write the check's input files in %s: %s",
                  dirs->input, strerror (errno));
        return -1;
    }
    return 0;
}

/* The agent program of kind KIND, checked for existence; 0 or -1. */
static int
s_harness_program (const char *kind, const Driftwatch__V1__AgentConfig *agent,
                   const dw_jobrun_options_t *opts, char *detail, size_t detail_len)
{
    const char *command = agent && agent->command && *agent->command ? agent->command : NULL;
    const char *program = NULL;
    const char *fix = "";
    if (strcmp (kind, "stub") == 0) {
        /* A stub with a command runs it through the shell, like kind command. */
        program = command ? "/bin/sh" : opts->stub_agent;
        fix = command ? "install a POSIX shell at /bin/sh" : "set the stub agent path";
    }
    else if (strcmp (kind, "command") == 0) {
        if (!command) {
            snprintf (detail, detail_len, "agent kind \"command\" needs agent.command");
            return -1;
        }
        program = "/bin/sh";
        fix = "install a POSIX shell at /bin/sh";
    }
    else if (strcmp (kind, "claude-code") == 0) {
        program = opts->claude_path ? opts->claude_path : DW_JOBRUN_CLAUDE_PATH;
        fix = "install the CLI with deploy/install-claude-code.sh or set claude_path";
    }
    else {
        snprintf (detail, detail_len, "this worker cannot run agent kind \"%s\"; use stub, "
                                      "command or claude-code", kind);
        return -1;
    }
    if (!program || access (program, X_OK) != 0) {
        snprintf (detail, detail_len, "agent program %s is missing or not executable (%s); %s",
                  program ? program : "(none)", program ? strerror (errno) : "not set", fix);
        return -1;
    }
    return 0;
}

int
dw_jobrun_harness_check (const Driftwatch__V1__AgentConfig *agent,
                         const dw_jobrun_options_t *opts, char *detail, size_t detail_len,
                         char *cli_version, size_t version_len)
{
    const char *kind = agent && agent->kind && *agent->kind ? agent->kind : "stub";
    int claude = strcmp (kind, "claude-code") == 0;
    detail[0] = '\0';
    if (cli_version && version_len)
        cli_version[0] = '\0';
    if (!opts->work_root || !*opts->work_root) {
        snprintf (detail, detail_len, "the worker set no work_root for the harness check");
        return -1;
    }
    if (s_harness_program (kind, agent, opts, detail, detail_len) != 0)
        return -1;

    dw_harness_dirs_t dirs;
    memset (&dirs, 0, sizeof dirs);
    if (s_harness_dirs (&dirs, opts->work_root, detail, detail_len) != 0) {
        s_harness_dirs_free (&dirs);
        return -1;
    }

    /* A stand-in assignment: one turn for the CLI, no repository. */
    Driftwatch__V1__AgentConfig config = DRIFTWATCH__V1__AGENT_CONFIG__INIT;
    if (agent)
        config = *agent;
    config.kind = (char *) kind;
    if (claude)
        config.max_turns = 1;
    Driftwatch__V1__TaskSpec task = DRIFTWATCH__V1__TASK_SPEC__INIT;
    task.instance_id = "harness-check";
    Driftwatch__V1__Limits limits = DRIFTWATCH__V1__LIMITS__INIT;
    limits.wall_seconds = DW_JOBRUN_HARNESS_WALL_S;
    Driftwatch__V1__JobAssignment job = DRIFTWATCH__V1__JOB_ASSIGNMENT__INIT;
    job.run_id = "harness";
    job.job_id = "harness";
    job.attempt_id = "harness";
    job.task = &task;
    job.agent = &config;
    job.limits = &limits;

    dw_jobrun_options_t effective = *opts;
    dw_jobrun_hook_t sandbox_hook;
    dw_jobrun_hook_t claude_hook;
    if (!effective.sandbox_hook) {
        dw_sandbox_hook_init (&sandbox_hook, &effective);
        effective.sandbox_hook = &sandbox_hook;
    }
    if (!effective.agent_hook && claude) {
        dw_agent_claude_hook_init (&claude_hook, &effective);
        effective.agent_hook = &claude_hook;
    }
    const dw_jobrun_hook_t *hooks[2] = { effective.agent_hook, effective.sandbox_hook };
    void *states[2] = { NULL, NULL };
    int prepared[2] = { 0, 0 };

    const char *path = getenv ("PATH");
    char *path_env = dw_strdup_printf ("PATH=%s", path && *path ? path : "/usr/bin:/bin");
    char *envp[] = { path_env, NULL };
    char *argv[] = { "true", NULL };
    dw_harness_sink_t sink = { .agent_hook = effective.agent_hook };
    dw_proc_spec_t spec = {
        .argv = argv,
        .envp = envp,
        .cwd = dirs.ws,
        .on_line = s_harness_line,
        .line_arg = &sink,
        .line_max = DW_EVENT_PAYLOAD_MAX,
        .stderr_path = dirs.stderr_file,
        .wall_ms = DW_JOBRUN_HARNESS_WALL_S * 1000ull,
    };
    dw_jobrun_paths_t paths = {
        .attempt_dir = dirs.root,
        .workspace = dirs.ws,
        .home = dirs.home,
        .tmp = dirs.tmp,
        .input_dir = dirs.input,
        .task_file = dirs.task_file,
        .prompt_file = dirs.prompt_file,
    };

    int rc = -1;
    for (int i = 0; i < 2; i++) {
        char err[512] = "";
        if (!hooks[i] || !hooks[i]->prepare)
            continue;
        if (hooks[i]->prepare (hooks[i]->context, &job, DW_JOBRUN_STAGE_AGENT, &paths, &spec,
                               &states[i], err, sizeof err)
            != 0) {
            snprintf (detail, detail_len, "%s setup failed: %s", i == 0 ? "agent" : "sandbox",
                      err);
            goto done;
        }
        prepared[i] = 1;
    }
    sink.agent_state = states[0];

    dw_proc_result_t proc;
    if (dw_proc_run (&spec, &proc) != 0) {
        snprintf (detail, detail_len, "cannot start %s: %s", spec.argv[0], proc.error);
        goto done;
    }
    Driftwatch__V1__JobResult result = DRIFTWATCH__V1__JOB_RESULT__INIT;
    for (int i = 0; i < 2; i++)
        if (prepared[i] && hooks[i]->finish)
            hooks[i]->finish (states[i], &proc, &result);

    char first_stderr[200];
    s_first_line (dirs.stderr_file, first_stderr, sizeof first_stderr);
    const char *backend = dw_sandbox_hook_backend (&effective, NULL);
    if (claude) {
        if (cli_version && version_len && result.cli_version_before)
            snprintf (cli_version, version_len, "%s", result.cli_version_before);
        if (result.outcome != DRIFTWATCH__V1__OUTCOME__OUTCOME_UNSPECIFIED) {
            const char *reason = result.outcome_reason ? result.outcome_reason : "unknown";
            snprintf (detail, detail_len,
                      "Claude Code check through sandbox %s failed: %s (%s); stderr: %s; %s",
                      backend, reason, result.detail ? result.detail : "",
                      first_stderr[0] ? first_stderr : "empty", s_claude_fix (reason, sink.lines));
            goto done;
        }
    }
    else if (dw_proc_status (&proc) != 0) {
        snprintf (detail, detail_len,
                  "the sandbox (%s) could not run `true`: exit status %d, stderr: %s; run the "
                  "worker's preflight checks (bubblewrap, user namespaces, cgroups)",
                  backend, dw_proc_status (&proc), first_stderr[0] ? first_stderr : "empty");
        goto done;
    }
    snprintf (detail, detail_len, "agent kind %s runs through sandbox %s%s%s", kind, backend,
              claude ? " with CLI " : "", claude && cli_version ? cli_version : "");
    rc = 0;

done:
    for (int i = 1; i >= 0; i--)
        if (prepared[i] && hooks[i]->release)
            hooks[i]->release (states[i]);
    if (rc == 0)
        dw_info ("harness check ok kind=%s detail=\"%s\"", kind, detail);
    else
        dw_warn ("harness check failed kind=%s detail=\"%s\"", kind, detail);
    free (path_env);
    s_harness_dirs_free (&dirs);
    return rc;
}
