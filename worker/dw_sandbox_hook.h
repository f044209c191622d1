/* Sandbox hook of the job runner: every agent run and every grading run of
 * an attempt goes through dw_sandbox (bubblewrap, or podman for tasks that
 * name an image).
 *
 * Per run it builds a dw_sandbox_config_t from the assignment: the run's
 * checkout is the workspace, the run's home and tmp directories are the
 * private HOME and /tmp, the assignment's Limits become the sandbox limits,
 * and the environment the runner built is passed in with host paths
 * rewritten to in-sandbox ones (DW_WORKSPACE=/workspace, DW_TASK_FILE and
 * DW_PROMPT_FILE under the sandbox home, where the hook copies the inputs).
 * Agent runs of kind "claude-code" also get the attempt's gateway socket
 * directory (DW_SANDBOX_HOOK_GATEWAY_DIR under the attempt directory) and
 * the Claude Code install directory; grading never gets a socket, and both
 * backends give it no network.
 *
 * The hook wraps the argv, installs dw_sandbox_pre_exec and the sandbox's
 * kill hook in the process spec (a kill hook the agent hook set there runs
 * first), and after the agent ran turns an OOM kill
 * or a watchdog kill into AGENT_ERROR with reason "memory_limit",
 * "workspace_limit" or "cpu_limit" (TIMEOUT for the backup wall clock).
 * Git operations of the runner (clone, diff) never go through it.
 */
#ifndef DW_SANDBOX_HOOK_H
#define DW_SANDBOX_HOOK_H

#include <stddef.h>

#include "dw_jobrun.h"

/* Name of the gateway socket directory inside the attempt directory. */
#define DW_SANDBOX_HOOK_GATEWAY_DIR "gateway"
/* Directory under the sandbox home that receives task.json and prompt.txt. */
#define DW_SANDBOX_HOOK_INPUT_DIR ".driftwatch"

/* Fill HOOK with the sandbox hook. OPTIONS (the runner's options, with
 * sandbox, sandbox_uid, claude_path and claude_dir) is the hook's context
 * and must outlive every attempt that uses HOOK. */
void dw_sandbox_hook_init (dw_jobrun_hook_t *hook, const dw_jobrun_options_t *options);

/* Return the backend name for OPTIONS and an optional task image: "podman"
 * when IMAGE is set, else options->sandbox or "bwrap". */
const char *dw_sandbox_hook_backend (const dw_jobrun_options_t *options, const char *image);

/* Return 1 when OPTIONS select no sandbox ("none"). */
int dw_sandbox_hook_disabled (const dw_jobrun_options_t *options);

#endif
