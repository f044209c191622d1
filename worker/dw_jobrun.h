/* Execution of one job on a worker: workspace, agent, grading.
 *
 * dw_jobrun_execute runs in its own thread and blocks until the attempt is
 * over. It never touches ZeroMQ: agent events go to a callback and the
 * result comes back as a packed Driftwatch__V1__JobResult, ready for the
 * spool and the wire.
 *
 * Steps: (1) workspace: clone the task's repository through a local mirror
 * cache (one mirror per repository, shared by concurrent jobs under a file
 * lock), check out base_commit, and remove every ref and object after it so
 * the fix cannot be looked up; (2) agent: run the configured agent command in
 * the workspace with a wall-clock limit, killing its whole process group;
 * (3) grading, in a fresh checkout: apply the agent's diff, restore the files
 * that test_patch touches, apply test_patch, run test_cmd, parse the
 * per-test statuses, and decide resolved only if every fail_to_pass and
 * pass_to_pass test passed.
 */
#ifndef DW_JOBRUN_H
#define DW_JOBRUN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "driftwatch.pb-c.h"
#include "dw_proc.h"

/* Bounds on what one attempt sends back. */
#define DW_JOBRUN_DIFF_MAX (1024 * 1024)
#define DW_JOBRUN_LOG_TAIL_MAX (16 * 1024)
#define DW_JOBRUN_DETAIL_MAX 1024

/* Called from the job's thread for each line the agent prints on stdout
 * (without the newline), truncated to DW_EVENT_PAYLOAD_MAX bytes. */
typedef void (dw_jobrun_event_fn) (void *arg, const char *line, size_t len, int truncated);

/* Default wall limit of the agent and of the tests when Limits has 0. */
#define DW_JOBRUN_WALL_DEFAULT_S 1800

/* Process runs of one attempt that hooks can adjust. */
typedef enum {
    DW_JOBRUN_STAGE_AGENT = 0,
    DW_JOBRUN_STAGE_GRADE = 1
} dw_jobrun_stage_t;

/* Host paths of one attempt, all under work_root/<attempt_id>. */
typedef struct {
    const char *attempt_dir;
    /* The agent's checkout (stage AGENT) or the grading checkout (GRADE). */
    const char *workspace;
    /* HOME and TMPDIR of the run: fresh ones for grading, so nothing the
     * agent left in its home (a usercustomize.py, say) reaches the tests. */
    const char *home;
    const char *tmp;
    /* Directory with task.json and prompt.txt (outside the workspace). */
    const char *input_dir;
    const char *task_file;
    const char *prompt_file;
} dw_jobrun_paths_t;

/* Hook into the process runs of an attempt. This is where the Claude Code
 * runner (stage AGENT: sets argv and envp, parses stream-json into
 * AgentMetrics) and the sandbox (both stages: wraps argv, sets pre_exec and
 * kill_hook) plug in. Every member but prepare may be NULL.
 *
 * prepare: called before the run with the spec jobrun built (argv "sh -c
 *   COMMAND" or the stub agent, envp as documented in dw_jobrun.c, cwd,
 *   limits). It may replace any field; memory it points the spec at must
 *   stay valid until release. *STATE is per-attempt state for the calls
 *   below. Returns 0, or -1 with ERR set after freeing what it allocated
 *   (release is not called then): the attempt ends with INFRA_ERROR,
 *   reason "agent_prepare_failed" or "sandbox_failed".
 * on_line: each agent stdout line (stage AGENT only), before on_event.
 * finish: after the agent ran (stage AGENT only), with RESULT's outcome
 *   already set from the process status: UNSPECIFIED means "finished
 *   normally, grade it". The hook may fill RESULT->metrics and the CLI
 *   versions and may change outcome, outcome_reason and detail (strings
 *   it sets must stay valid until release); any outcome other than
 *   UNSPECIFIED skips grading.
 * release: after the attempt's result is packed.
 *
 * Order: agent_hook runs before sandbox_hook in prepare (so the sandbox
 * wraps the final argv) and in finish (so the sandbox can explain a kill,
 * e.g. a memory limit). For stage GRADE only prepare and release are
 * called. */
typedef struct {
    int (*prepare) (void *context, const Driftwatch__V1__JobAssignment *job,
                    dw_jobrun_stage_t stage, const dw_jobrun_paths_t *paths, dw_proc_spec_t *spec,
                    void **state, char *err, size_t err_size);
    void (*on_line) (void *state, const char *line, size_t len, int truncated);
    void (*finish) (void *state, const dw_proc_result_t *proc, Driftwatch__V1__JobResult *result);
    void (*release) (void *state);
    void *context;
} dw_jobrun_hook_t;

typedef struct {
    /* Directory for this attempt's workspaces; created and removed here. */
    const char *work_root;
    /* Directory of git mirrors shared by all jobs of this worker. */
    const char *cache_dir;
    /* Agent program for kind "stub" when the assignment names none. */
    const char *stub_agent;
    /* Set to nonzero from another thread to cancel; checked every 100 ms. */
    volatile int *cancel;
    /* Keep workspaces after the attempt (debugging). */
    int keep_workspace;
    dw_jobrun_event_fn *on_event;
    void *event_arg;
    /* Agent runner, or a wrapper for the other kinds; NULL means none, and
     * for kind "claude-code" the built-in runner (dw_agent_claude.h). See
     * dw_jobrun_hook_t. */
    const dw_jobrun_hook_t *agent_hook;
    /* Sandbox for the agent and the tests; NULL means the built-in one
     * (dw_sandbox_hook.h) with the backend named by `sandbox` below. */
    const dw_jobrun_hook_t *sandbox_hook;
    /* Copied into JobResult.worker_id when set. */
    const char *worker_id;

    /* Sandbox backend of agent and grading runs when sandbox_hook is NULL:
     * "bwrap" (NULL means bwrap), "podman", or "none" (tests and
     * development only: runs unconfined, with a warning per attempt).
     * Tasks that name an image always use podman unless this is "none". */
    const char *sandbox;
    /* Unprivileged host user that sandboxed runs switch to when the worker
     * is root (dw_sandbox_config_t.host_uid); 0 keeps root on the host,
     * which bubblewrap still maps to an unprivileged uid inside. */
    uid_t sandbox_uid;
    /* Claude Code CLI for kind "claude-code" (NULL means
     * DW_JOBRUN_CLAUDE_PATH) and its install directory, bound read-only
     * into the sandbox. NULL claude_dir means the part of claude_path
     * before "/node_modules/", else DW_JOBRUN_CLAUDE_DIR. */
    const char *claude_path;
    const char *claude_dir;
    /* Model API base URL the gateway forwards to (NULL means
     * https://api.anthropic.com). */
    const char *upstream_url;
    /* The real API key. Only the gateway has it: it is never logged and
     * never put in a child's environment. */
    const char *api_key;
    /* Retries the CLI makes after a failed API request (0 means
     * DW_CLAUDE_DEFAULT_MAX_RETRIES). */
    uint32_t cli_max_retries;
} dw_jobrun_options_t;

/* Default install of the Claude Code CLI (deploy/install-claude-code.sh). */
#define DW_JOBRUN_CLAUDE_DIR "/opt/driftwatch/claude-code"
#define DW_JOBRUN_CLAUDE_PATH DW_JOBRUN_CLAUDE_DIR "/node_modules/.bin/claude"

/* Check that this worker can run AGENT with OPTS before it requests jobs.
 * Kinds "stub" and "command": the agent program exists and is executable,
 * and `true` runs through the configured sandbox. Kind "claude-code": a
 * trivial prompt runs through the same sandbox, gateway and CLI options as
 * an attempt and must end with a successful result event; the CLI version
 * goes to CLI_VERSION. Returns 0 when the harness works, -1 with DETAIL
 * saying what failed and how to fix it. Takes up to a minute; uses a
 * scratch directory under opts->work_root. */
int dw_jobrun_harness_check (const Driftwatch__V1__AgentConfig *agent,
                             const dw_jobrun_options_t *opts, char *detail, size_t detail_len,
                             char *cli_version, size_t version_len);

/* Run JOB and return its result, packed, in *PACKED (malloc'd, caller
 * frees) and *LEN. Every failure of the job itself becomes a result with an
 * outcome; -1 only for out-of-memory. */
int dw_jobrun_execute (const Driftwatch__V1__JobAssignment *job, const dw_jobrun_options_t *opts,
                       uint8_t **packed, size_t *len);

#endif
