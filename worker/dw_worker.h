/* The worker daemon: registers with the coordinator, heartbeats, runs jobs
 * (one thread each, up to its slot count), streams their agent events, and
 * spools every result until the coordinator acknowledges it.
 *
 * Connection life cycle (one DEALER socket): HELLO -> WELCOME -> READY
 * (credit = free slots) -> JOB / EVENTS / RESULT / HEARTBEAT ... If nothing
 * arrives from the coordinator for liveness x heartbeat interval, the worker
 * drops the socket, waits with exponential backoff and jitter, connects a new
 * socket and registers again, then resends spooled results and unacknowledged
 * events.
 */
#ifndef DW_WORKER_H
#define DW_WORKER_H

#include <stdint.h>
#include <sys/types.h>

/* Bounds on what the worker keeps for one connection. */
#define DW_WORKER_MAX_SLOTS 64
#define DW_WORKER_UNACKED_EVENTS_MAX 20000
#define DW_WORKER_BACKOFF_MIN_MS 500
#define DW_WORKER_BACKOFF_MAX_MS 32000

typedef struct {
    /* ZeroMQ endpoint of the coordinator, e.g. tcp://10.0.0.5:7555. */
    const char *coordinator;
    /* Jobs run at once. */
    int slots;
    /* State directory: worker id, spool, git cache, workspaces. */
    const char *data_dir;
    /* Stable worker id; NULL reads or creates DATA_DIR/worker-id. */
    const char *worker_id;
    /* Agent program for jobs of kind "stub" that name none. */
    const char *stub_agent;
    /* Exit once the coordinator sends DRAIN and nothing is left to deliver. */
    int exit_on_drain;
    /* Application heartbeat interval until the coordinator's WELCOME sets it. */
    uint32_t heartbeat_ms;
    /* Missed heartbeats after which the coordinator is considered lost. */
    uint32_t liveness;
    /* Seconds a SIGTERM'd worker waits for running jobs before handing them back. */
    uint32_t drain_seconds;
    int keep_workspaces;
    /* CURVE: this worker's secret certificate file and the coordinator's
     * public key (Z85 text or a certificate file). */
    const char *curve_secret_path;
    const char *server_key;
    /* Plain TCP without CURVE: refused unless the endpoint is loopback. */
    int insecure;
    /* Sandbox backend for agent and grading runs: "bwrap", "podman" or
     * "none" (development only). */
    const char *sandbox;
    /* Unprivileged host user sandboxed runs switch to when the worker is root. */
    uid_t sandbox_uid;
    /* Claude Code CLI, model API base URL and the real API key (never logged;
     * only the model gateway uses it). */
    const char *claude_path;
    const char *upstream_url;
    const char *api_key;
} dw_worker_config_t;

/* Run the worker until it is told to stop (SIGINT/SIGTERM or DRAIN with
 * exit_on_drain). Returns the process exit code. */
int dw_worker_run (const dw_worker_config_t *config);

#endif
