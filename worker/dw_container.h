/* Podman (or Docker) backend of the sandbox, driven through the CLI, for
 * tasks that name an image.
 *
 * The container gets the same limits as the bubblewrap sandbox: --memory
 * with equal --memory-swap, --pids-limit, --network none, a read-only root
 * with the workspace and home as the only writable binds and a tmpfs /tmp,
 * no capabilities, no-new-privileges, a non-root user, and the labels
 * driftwatch.run and driftwatch.attempt so that dw_container_reap can find
 * containers a crashed worker left behind.
 *
 * Some hosts need an explicit OCI runtime: on a hybrid cgroup layout crun
 * fails and podman works only with "--runtime runc" and explicit
 * --ulimit nofile / nproc values, which this module always passes.
 */
#ifndef DW_CONTAINER_H
#define DW_CONTAINER_H

#include <stddef.h>

#include "dw_sandbox.h"

/* Label keys set on every container. */
#define DW_CONTAINER_LABEL_RUN "driftwatch.run"
#define DW_CONTAINER_LABEL_ATTEMPT "driftwatch.attempt"

/* Time allowed for one CLI call (kill, rm, inspect, ps). */
#define DW_CONTAINER_CLI_TIMEOUT_MS 30000

/* Largest CLI output kept by dw_container_cli. */
#define DW_CONTAINER_OUTPUT_MAX 65536

typedef struct dw_container_t dw_container_t;

typedef struct {
    int exists;
    int running;
    int oom_killed;
    int exit_code;
} dw_container_state_t;

/* Return the container CLI to use: CLI if given, else "podman" or "docker"
 * (first found in PATH), else NULL. */
const char *dw_container_default_cli (const char *cli);

/* Prepare a container named NAME for CFG (image required). Nothing runs
 * until the argv from dw_container_argv is spawned. */
dw_container_t *dw_container_new (const dw_sandbox_config_t *cfg, const char *name, char *err,
                                  size_t errlen);

/* Build the "podman run ..." command line for ARGV into *OUT_ARGV
 * (NULL-terminated, heap strings). */
int dw_container_argv (dw_container_t *self, char *const argv[], char ***out_argv);

/* Send SIGKILL to the container. Returns 0 or -1 (e.g. not running). */
int dw_container_kill (dw_container_t *self);

/* Send SIGNAL (a number, e.g. SIGTERM) to the container's processes. */
int dw_container_signal (dw_container_t *self, int signal);

/* Read the container's state through inspect. */
int dw_container_state (dw_container_t *self, dw_container_state_t *state);

/* Name given at creation. */
const char *dw_container_name (const dw_container_t *self);

/* Remove the container (rm -f), check that it is gone, free SELF. Accepts
 * NULL. */
void dw_container_destroy (dw_container_t **self_p);

/* Remove every container carrying the driftwatch.attempt label, left by a
 * worker that crashed. Returns how many were removed, or -1 with ERR. */
int dw_container_reap (const char *cli, char *err, size_t errlen);

/* Run the CLI with ARGV (ARGV[0] is the CLI name), stdin from /dev/null,
 * collecting stdout and stderr into OUT (may be NULL). Returns the exit
 * status, or -1 if the program could not run or timed out. */
int dw_container_cli (char *const argv[], char *out, size_t outlen, int timeout_ms);

#endif
