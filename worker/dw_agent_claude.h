/* Agent hook of the job runner for kind "claude-code": one run of the real
 * Claude Code CLI per attempt, headless, through a private model gateway.
 *
 * prepare starts a dw_gateway on a unix socket in the attempt's gateway
 * directory (DW_SANDBOX_HOOK_GATEWAY_DIR, which the sandbox hook binds at
 * DW_SANDBOX_GATEWAY), forwarding to options.upstream_url with
 * options.api_key. It reads `claude --version`, and builds the CLI's argv
 * and environment with dw_claude_build: the prompt as SWE-Bench-Pro builds
 * it (problem statement, "Requirements:", "New interfaces introduced:"),
 * --max-turns, --model and --max-budget-usd from the AgentConfig, its
 * extra_args, a placeholder key, the in-sandbox socket path, HOME and
 * TMPDIR of the sandbox, and options.cli_max_retries.
 *
 * Every stdout line goes to dw_streamjson (the runner still forwards it as
 * an event). finish reads the version again, fills AgentMetrics from the
 * stream-json summary, and replaces the outcome with dw_claude_classify's
 * verdict, which uses the exit status, the killed-for-time flag, the
 * summary and the gateway's request counts (see docs/outcomes.md).
 */
#ifndef DW_AGENT_CLAUDE_H
#define DW_AGENT_CLAUDE_H

#include <stddef.h>

#include "dw_jobrun.h"

/* File name of the gateway socket inside the gateway directory. */
#define DW_AGENT_CLAUDE_SOCKET "api.sock"
/* Bytes of the prompt file read at most. */
#define DW_AGENT_CLAUDE_PROMPT_MAX (1024 * 1024)

/* Fill HOOK with the claude-code agent hook. OPTIONS is the hook's context
 * (claude_path, upstream_url, api_key, cli_max_retries, sandbox) and must
 * outlive every attempt that uses HOOK. */
void dw_agent_claude_hook_init (dw_jobrun_hook_t *hook, const dw_jobrun_options_t *options);

#endif
