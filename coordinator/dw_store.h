/* PostgreSQL store of the coordinator: suites, tasks, runs, jobs, attempts,
 * results, workers and agent events.
 *
 * The schema is created and upgraded by numbered migrations (see
 * dw_store_migrate). All SQL is parameterised. Every function returns 0 on
 * success and -1 on failure with the reason in dw_store_error(); functions
 * that look something up return 1 for "not found". Calls are synchronous.
 *
 * Scheduling rules kept here so they hold across coordinator restarts:
 *  - a job is final once it has a final result; it never gets a second one;
 *  - an attempt is leased to one worker until its lease expires;
 *  - an infrastructure error (or an expired lease) sends the job back to the
 *    queue until it has used max_attempts attempts; then that result is final;
 *  - any other outcome is final at once; when a second attempt of a final job
 *    also reports, its result is stored as superseded: the first committed
 *    non-infrastructure result wins.
 */
#ifndef DW_STORE_H
#define DW_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "driftwatch.pb-c.h"
#include "dw_suite.h"

typedef struct dw_store_t dw_store_t;

/* Length of an attempt id buffer (a UUID in text form plus NUL, rounded). */
#define DW_ATTEMPT_ID_MAX 64

/* Connect with a libpq connection string; NULL or "" uses the PG* environment
 * variables. Returns NULL and the libpq error in ERR on failure. */
dw_store_t *dw_store_connect (const char *conninfo, char *err, size_t errlen);

void dw_store_destroy (dw_store_t **self_p);

/* Last error text (never contains the password). */
const char *dw_store_error (const dw_store_t *self);

/* The libpq connection, for modules that run their own (parameterised)
 * queries. Owned by the store; do not close it or leave a transaction open. */
PGconn *dw_store_conn (dw_store_t *self);

/* Apply every migration newer than the database's schema version, each in
 * its own transaction, under an advisory lock so two coordinators cannot
 * race. Returns the number applied, or -1. */
int dw_store_migrate (dw_store_t *self);

/* Schema version of the database (0 for an empty database), or -1. */
int dw_store_schema_version (dw_store_t *self);

/* Re-establish a broken connection and re-prepare statements. */
int dw_store_reconnect (dw_store_t *self);

/* --- suites and tasks ------------------------------------------------------ */

/* Store SUITE under NAME in one transaction. A suite with the same name and
 * content hash is not stored again: *ALREADY is then 1 and *SUITE_ID the
 * existing id. */
int dw_store_import_suite (dw_store_t *self, const char *name, const dw_suite_t *suite,
                           int64_t *suite_id, int *already);

/* Newest suite stored under NAME: 0 found, 1 not found, -1 error. */
int dw_store_find_suite (dw_store_t *self, const char *name, int64_t *suite_id);

typedef struct {
    int64_t task_id;
    char *instance_id;
    char *repo;
    char *repo_language;
} dw_store_task_ref_t;

/* Tasks of a suite ordered by instance_id. Free with dw_store_task_refs_free. */
int dw_store_suite_tasks (dw_store_t *self, int64_t suite_id, dw_store_task_ref_t **tasks,
                          size_t *count);

void dw_store_task_refs_free (dw_store_task_ref_t **tasks, size_t count);

/* Full task specification of TASK_ID for a job assignment. Returns NULL on
 * error. Free with dw_store_task_spec_free. */
Driftwatch__V1__TaskSpec *dw_store_task_spec (dw_store_t *self, int64_t task_id);

void dw_store_task_spec_free (Driftwatch__V1__TaskSpec **spec_p);

/* --- runs and jobs ---------------------------------------------------------- */

/* Find or create the run for (DAY, CONFIG_HASH). *RESUMED is 1 when it
 * already existed. CONFIG_JSON describes the configuration for reports. */
int dw_store_open_run (dw_store_t *self, const char *day, const char *config_hash,
                       const char *config_json, int64_t suite_id, int64_t *run_id, int *resumed);

/* Insert one job per (task, repeat index 0..REPEATS-1) that does not exist yet.
 * *INSERTED (may be NULL) receives the number of new jobs. */
int dw_store_add_jobs (dw_store_t *self, int64_t run_id, const int64_t *task_ids, size_t ntasks,
                       int repeats, size_t *inserted);

/* Set the run's status: "running", "complete", "harness_failure", "stopped". */
int dw_store_set_run_status (dw_store_t *self, int64_t run_id, const char *status);

typedef struct {
    int64_t job_id;
    int64_t task_id;
    int repeat_index;
    int attempts;          /* attempts made so far */
} dw_store_job_ref_t;

/* Up to MAX jobs of RUN_ID that are not final and have no live attempt,
 * in job id order. */
int dw_store_pending_jobs (dw_store_t *self, int64_t run_id, dw_store_job_ref_t *out, size_t max,
                           size_t *count);

/* Create the next attempt of JOB_ID leased to WORKER_ID for LEASE_MS.
 * Returns 1 (and creates nothing) if the job is final or has a live attempt. */
int dw_store_lease_attempt (dw_store_t *self, int64_t job_id, const char *worker_id,
                            uint32_t lease_ms, char attempt_id[DW_ATTEMPT_ID_MAX],
                            int *attempt_number);

/* Extend the leases of the listed attempts, if they belong to WORKER_ID and
 * are still live. */
int dw_store_renew_leases (dw_store_t *self, const char *worker_id, char **attempt_ids, size_t n,
                           uint32_t lease_ms);

/* Expire every live attempt of RUN_ID whose lease has passed. Each expiry
 * counts as an infrastructure failure of the job (rules above); a job that
 * reaches MAX_ATTEMPTS this way becomes final as infra_error with the expired
 * attempt as final_attempt_id and no results row. *EXPIRED receives the
 * number of attempts expired. */
int dw_store_expire_leases (dw_store_t *self, int64_t run_id, int max_attempts, size_t *expired);

/* End a live attempt that a worker handed back unfinished (drain, goodbye);
 * the job returns to the queue without using up an attempt. Returns 1 when
 * WORKER_ID has no live attempt with that id. */
int dw_store_return_attempt (dw_store_t *self, const char *attempt_id, const char *worker_id,
                             const char *reason);

typedef enum {
    DW_STORE_STORED = 0,
    DW_STORE_DUPLICATE = 1,
    DW_STORE_SUPERSEDED = 2,
    DW_STORE_UNKNOWN_ATTEMPT = 3
} dw_store_disposition_t;

/* Name of a disposition for logs and acknowledgements ("stored", ...). */
const char *dw_store_disposition_name (dw_store_disposition_t disposition);

/* Store RESULT in one transaction, idempotently by attempt id, applying the
 * finality rules above. An attempt that does not exist or was not leased to
 * WORKER_ID yields DW_STORE_UNKNOWN_ATTEMPT and stores nothing. */
int dw_store_record_result (dw_store_t *self, const Driftwatch__V1__JobResult *result,
                            const char *worker_id, int max_attempts,
                            dw_store_disposition_t *disposition);

/* Store a batch of agent events, idempotently by (attempt id, seq).
 * *THROUGH_SEQ receives the highest seq such that every event 1..seq of the
 * attempt is stored. Events of an unknown attempt are rejected (-1). */
int dw_store_record_events (dw_store_t *self, const Driftwatch__V1__JobEvents *batch,
                            const char *worker_id, uint64_t *through_seq);

/* --- workers ---------------------------------------------------------------- */

/* Record a worker's registration (insert or update) under IDENTITY, the id
 * the coordinator authenticated or assigned. */
int dw_store_upsert_worker (dw_store_t *self, const char *identity,
                            const Driftwatch__V1__Hello *hello);

/* Mark a worker seen now, or lost. STATUS is "active", "lost" or "gone".
 * Returns 1 for an unknown worker. */
int dw_store_set_worker_status (dw_store_t *self, const char *identity, const char *status);

/* --- progress and summaries ------------------------------------------------- */

/* Indexed by Driftwatch__V1__Outcome. */
#define DW_OUTCOME_COUNT 8

typedef struct {
    size_t jobs_total;
    size_t jobs_final;
    size_t jobs_leased;      /* not final, with a live attempt */
    size_t jobs_pending;     /* not final, no live attempt */
    size_t attempts;
    size_t final_by_outcome[DW_OUTCOME_COUNT];
    size_t superseded;
} dw_run_counts_t;

int dw_store_run_counts (dw_store_t *self, int64_t run_id, dw_run_counts_t *out);

#endif
