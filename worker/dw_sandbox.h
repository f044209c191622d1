/* Sandbox for one run of an untrusted program (the coding agent, or the
 * hidden tests while grading): filesystem view, network, user, limits.
 *
 * Two backends. Bubblewrap (default) builds a mount namespace in which the
 * system directories are read-only and the workspace, a private home and
 * /tmp are the only writable trees. None of the worker's own files (data
 * dir, spool, keys, config, database socket) exist there. The network
 * namespace is empty, and an optional gateway socket directory is the only
 * way out. Podman runs tasks that name an image (see dw_container.h).
 * One sandbox serves one run.
 *
 * The sandbox plugs into the process runner: dw_sandbox_wrap turns the
 * program's argv into the full command line, dw_sandbox_pre_exec runs in the
 * child between fork and exec (rlimits, cgroup, host user), dw_sandbox_kill
 * ends every process of the attempt, dw_sandbox_destroy removes the cgroup
 * or container and checks that nothing survived.
 *
 * A watchdog thread, started by dw_sandbox_wrap, enforces the limits that
 * no kernel mechanism covers here: total size of the writable trees, total
 * CPU time of the group, and a backup wall-clock deadline.
 */
#ifndef DW_SANDBOX_H
#define DW_SANDBOX_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "dw_cgroup.h"

/* Bounds on the configuration lists. */
#define DW_SANDBOX_BINDS_MAX 16
#define DW_SANDBOX_ENV_MAX 64
#define DW_SANDBOX_ARGV_MAX 512

/* Default user and group inside the sandbox. */
#define DW_SANDBOX_UID 1000
#define DW_SANDBOX_GID 1000

/* Paths inside the sandbox. */
#define DW_SANDBOX_WORKSPACE "/workspace"
#define DW_SANDBOX_HOME "/home/agent"
#define DW_SANDBOX_GATEWAY "/run/driftwatch-gateway"

/* How often the watchdog measures the writable trees and CPU time. */
#define DW_SANDBOX_WATCH_MS 500

/* Extra seconds the watchdog grants past wall_seconds, so the process
 * runner's own timer (SIGTERM, then SIGKILL) normally acts first. */
#define DW_SANDBOX_WALL_GRACE_S 10

typedef enum {
    DW_SANDBOX_BWRAP = 0,
    DW_SANDBOX_PODMAN = 1
} dw_sandbox_backend_t;

typedef enum {
    /* The coding agent: may reach the gateway socket directory. */
    DW_SANDBOX_AGENT = 0,
    /* Hidden tests: never any way out. */
    DW_SANDBOX_GRADING = 1
} dw_sandbox_purpose_t;

/* Limits of one run. Zero means "no limit". */
typedef struct {
    uint64_t memory_bytes;
    uint64_t max_processes;
    uint64_t cpu_seconds;
    /* Total size of workspace + home + tmp directory. */
    uint64_t workspace_bytes;
    /* Enforced by the process runner's output caps; listed for the report. */
    uint64_t output_bytes;
    uint64_t wall_seconds;
    /* Largest open file descriptor number + 1 (0 = 1024). */
    uint64_t open_files;
} dw_sandbox_limits_t;

typedef struct {
    dw_sandbox_backend_t backend;
    dw_sandbox_purpose_t purpose;

    /* Host directories. WORKSPACE and HOME are required; TMP NULL gives a
     * size-limited tmpfs on /tmp. */
    const char *workspace_dir;
    const char *home_dir;
    const char *tmp_dir;
    /* Directory holding the gateway's Unix socket, bound read-only at
     * DW_SANDBOX_GATEWAY. Must be NULL for grading. */
    const char *gateway_dir;
    /* Host directories bound read-only at the same path (e.g. the Claude
     * Code install dir); NULL-terminated, at most DW_SANDBOX_BINDS_MAX. */
    const char *const *ro_binds;
    /* Host paths to cover with an empty tmpfs inside the sandbox, in
     * addition to the built-in list of secret paths; NULL-terminated. */
    const char *const *hidden_paths;

    /* User inside the sandbox (0 = DW_SANDBOX_UID / DW_SANDBOX_GID). The
     * agent is never allowed uid 0. */
    uid_t uid;
    gid_t gid;
    /* Unprivileged host user the sandbox runs as when the worker is root
     * (0 = stay root, which lets the sandbox read root-owned host files in
     * every bound directory). The writable trees are chowned to it. */
    uid_t host_uid;
    gid_t host_gid;

    dw_sandbox_limits_t limits;

    /* "NAME=value" strings, NULL-terminated; the sandbox starts from an
     * empty environment plus HOME, USER, PATH, TMPDIR, LANG. */
    const char *const *env;

    /* Identify the attempt in cgroup and container names and labels. */
    const char *run_id;
    const char *attempt_id;

    /* Podman backend: image to run, CLI ("podman" when NULL, or "docker")
     * and OCI runtime ("runc" when NULL and runc is installed). */
    const char *image;
    const char *container_cli;
    const char *container_runtime;

    /* Parent of the per-attempt cgroup (NULL = DW_CGROUP_PARENT); ignored
     * by podman. Set NO_CGROUP to run with rlimits only. */
    const char *cgroup_parent;
    int no_cgroup;
    /* Layout to use instead of detecting the host's (tests). */
    const dw_cgroup_layout_t *cgroup_layout;

    /* Bubblewrap binary (NULL = "bwrap" from PATH). */
    const char *bwrap_path;
} dw_sandbox_config_t;

typedef struct {
    uint64_t memory_peak_bytes;
    uint64_t oom_kills;
    uint64_t pids_current;
    uint64_t pids_rejected;
    uint64_t cpu_usage_usec;
    uint64_t workspace_bytes;
    /* Nonzero when the watchdog killed the run, with the limit's name. */
    int limit_exceeded;
    char exceeded_limit[32];
} dw_sandbox_usage_t;

typedef struct dw_sandbox_t dw_sandbox_t;

/* Validate CFG, copy it, and create the per-attempt cgroup (bwrap) or pick
 * the container name (podman). Returns NULL with a message in ERR. */
dw_sandbox_t *dw_sandbox_new (const dw_sandbox_config_t *cfg, char *err, size_t errlen);

/* Build the full command line that runs ARGV inside the sandbox into
 * *OUT_ARGV (NULL-terminated; free with dw_sandbox_argv_free), and start
 * the watchdog. Call it right before spawning. Returns 0 or -1. */
int dw_sandbox_wrap (dw_sandbox_t *self, char *const argv[], char ***out_argv);

void dw_sandbox_argv_free (char ***argv_p);

/* Child side, between fork and exec: join the cgroup, set rlimits, switch
 * to the host user. Async-signal-safe; calls _exit (126) if a step fails,
 * because running unconfined is never the fallback. SANDBOX is the
 * dw_sandbox_t (void * to match the runner's callback type). */
void dw_sandbox_pre_exec (void *sandbox);

/* Kill every process of the attempt: cgroup kill for bubblewrap, podman
 * kill for containers. Safe to call from any thread, more than once. */
void dw_sandbox_kill (void *sandbox);

/* Kill hook for the process runner (dw_proc_kill_fn): forwards SIGNAL to
 * every process of the attempt, including those that left the process
 * group (setsid); SIGKILL does a full dw_sandbox_kill. Bubblewrap does not
 * forward signals: a SIGTERM that reaches bwrap ends it, and its pid
 * namespace dies with it, so under bwrap a SIGTERM acts as an immediate
 * kill of the whole sandbox. */
void dw_sandbox_kill_hook (void *sandbox, pid_t pgid, int signal);

/* Read what the attempt used so far. Returns 0 or -1. */
int dw_sandbox_usage (dw_sandbox_t *self, dw_sandbox_usage_t *usage);

/* Pid list of the attempt's processes still alive (bubblewrap with a
 * cgroup only); returns the count or -1. */
int dw_sandbox_pids (dw_sandbox_t *self, pid_t *pids, size_t max);

/* Stop the watchdog, kill what is left, remove the cgroup or container,
 * and log an error if any process of the attempt survived. Accepts NULL. */
void dw_sandbox_destroy (dw_sandbox_t **self_p);

/* Total size in bytes of the files under PATH (not following symlinks,
 * not crossing mount points). */
uint64_t dw_sandbox_tree_size (const char *path);

#endif
