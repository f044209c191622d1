/* The coordinator's message broker: one ZeroMQ ROUTER socket that registers
 * workers, hands out jobs against their credit, renews leases from
 * heartbeats, stores events and results through dw_store, and acknowledges
 * them only after they are committed.
 *
 * All scheduling state lives in PostgreSQL (jobs, attempts, leases), so a
 * restarted coordinator continues where the previous one stopped. The
 * broker keeps only per-connection state in memory: routing ids, credit and
 * liveness of the connected workers.
 */
#ifndef DW_BROKER_H
#define DW_BROKER_H

#include <stdint.h>

#include "driftwatch.pb-c.h"
#include "dw_store.h"

typedef struct dw_broker_t dw_broker_t;

/* Bounds on what the broker keeps in memory. */
#define DW_BROKER_MAX_WORKERS 4096
#define DW_BROKER_DISPATCH_BATCH 64

typedef struct {
    /* ZeroMQ endpoint to bind, e.g. tcp://0.0.0.0:7555 or tcp://127.0.0.1:* */
    const char *bind;
    int64_t run_id;
    const char *day;
    const char *config_hash;
    /* Agent configuration and limits copied into every assignment. */
    const Driftwatch__V1__AgentConfig *agent;
    const Driftwatch__V1__Limits *limits;
    uint32_t heartbeat_ms;
    /* Missed heartbeats after which a worker is declared lost. */
    uint32_t liveness;
    /* Lease of an attempt; renewed by the worker's heartbeats. */
    uint32_t lease_ms;
    /* Attempts per job before an infrastructure failure is final. */
    int max_attempts;
    /* Seconds between progress lines on stdout (0 = only on change). */
    uint32_t progress_seconds;
    /* Seconds to wait for in-flight results after a stop signal. */
    uint32_t stop_grace_seconds;
    /* CURVE: the coordinator's secret certificate file and the directory of
     * admitted worker certificates. With CURVE, a worker's identity is its
     * authenticated public key, not the id it sends in Hello. */
    const char *curve_secret_path;
    const char *curve_allow_dir;
    /* Plain TCP without CURVE: refused unless the bind endpoint is loopback. */
    int insecure;
} dw_broker_config_t;

/* Create the broker and bind its socket. Returns NULL with the reason in ERR. */
dw_broker_t *dw_broker_new (dw_store_t *store, const dw_broker_config_t *config, char *err,
                            size_t errlen);

void dw_broker_destroy (dw_broker_t **self_p);

/* The bound endpoint with the real port (for tcp://...:* binds), suitable
 * for workers on this machine to connect to. */
const char *dw_broker_endpoint (const dw_broker_t *self);

typedef enum {
    DW_BROKER_COMPLETE = 0,         /* every job of the run has a final result */
    DW_BROKER_STOPPED = 1,          /* SIGINT/SIGTERM: the run can be resumed */
    DW_BROKER_HARNESS_FAILURE = 2,  /* every worker reported a broken harness */
    DW_BROKER_ERROR = -1
} dw_broker_status_t;

/* Make SIGINT and SIGTERM request a graceful stop instead of killing the
 * process. Call it first thing in main, so a stop during setup is seen too. */
void dw_broker_handle_signals (void);

/* Return nonzero once SIGINT or SIGTERM has arrived. */
int dw_broker_stop_requested (void);

/* Serve until the run is complete or a stop signal arrives. */
dw_broker_status_t dw_broker_run (dw_broker_t *self);

/* Print the run's progress line now (also used for the final summary). */
void dw_broker_print_progress (dw_broker_t *self);

#endif
