/* Coordinator broker: see dw_broker.h. */
#include "dw_broker.h"

#include <czmq.h>
#include <errno.h>
#include <libpq-fe.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dw_curve.h"
#include "dw_log.h"
#include "dw_util.h"
#include "dw_version.h"
#include "dw_wire.h"

/* Poll period of the loop: bounds timer and signal latency. */
#define LOOP_TICK_MS 100
/* Period of the lease expiry scan. */
#define LEASE_SCAN_MS 1000
/* At most one log line per this many ms for repeating peer errors. */
#define PEER_ERROR_LOG_MS 5000
/* Results held in memory while the database is unreachable. Past either
 * bound, results are not acknowledged, so workers keep them in their spools
 * and send them again later: nothing is lost, new work just stops. */
#define RESULT_BUFFER_MAX 1024
#define RESULT_BUFFER_BYTES_MAX (256u * 1024 * 1024)
#define DB_BACKOFF_MIN_MS 500
#define DB_BACKOFF_MAX_MS 30000

typedef struct {
    char identity[128];
    uint8_t *packed;            /* packed JobResult */
    size_t len;
} buffered_result_t;

typedef struct {
    zframe_t *routing_id;
    char routing_hex[64];
    char identity[128];
    char hostname[128];
    uint32_t slots;
    uint32_t credit;
    uint64_t last_seen_ms;
    uint64_t last_renew_ms;
    int harness_reported;
    int harness_ok;
} peer_t;

struct dw_broker_t {
    dw_broker_config_t config;
    dw_store_t *store;
    zsock_t *router;
    dw_curve_server_t *curve;
    char endpoint[256];
    zhashx_t *peers;               /* routing hex -> peer_t* */
    dw_wire_stats_t wire_stats;
    uint64_t sequence;
    uint64_t last_heartbeat_ms;
    uint64_t last_scan_ms;
    uint64_t last_progress_ms;
    uint64_t last_peer_error_log_ms;
    uint64_t peer_errors;
    size_t last_final;
    int progress_dirty;
    int run_complete;
    uint64_t messages_rejected;
    int db_down;
    uint64_t db_retry_at_ms;
    uint32_t db_backoff_ms;
    zlistx_t *result_buffer;       /* buffered_result_t*, oldest first */
    size_t result_buffer_bytes;
};

static volatile sig_atomic_t s_stop_requested = 0;

static void on_stop_signal (int sig)
{
    (void) sig;
    s_stop_requested = 1;
}

void dw_broker_handle_signals (void)
{
    /* CZMQ's own handler would make every poll return early; use a flag. */
    zsys_handler_set (NULL);
    struct sigaction action;
    memset (&action, 0, sizeof action);
    action.sa_handler = on_stop_signal;
    sigaction (SIGINT, &action, NULL);
    sigaction (SIGTERM, &action, NULL);
}

int dw_broker_stop_requested (void)
{
    return s_stop_requested;
}

static void buffered_result_destroy (void **item)
{
    if (!item || !*item)
        return;
    buffered_result_t *entry = *item;
    free (entry->packed);
    free (entry);
    *item = NULL;
}

/* After a failed store call: if the connection is gone, enter outage mode
 * (no dispatch, results buffered) until dw_store_reconnect succeeds. */
static void check_database (dw_broker_t *self)
{
    if (self->db_down || PQstatus (dw_store_conn (self->store)) == CONNECTION_OK)
        return;
    self->db_down = 1;
    self->db_backoff_ms = DB_BACKOFF_MIN_MS;
    self->db_retry_at_ms = dw_mono_ms () + self->db_backoff_ms;
    dw_error ("event=database_down action=buffering_results error=\"%s\"",
              dw_store_error (self->store));
}

static void peer_destroy (void **item)
{
    if (!item || !*item)
        return;
    peer_t *peer = *item;
    zframe_destroy (&peer->routing_id);
    free (peer);
    *item = NULL;
}

/* --- lifecycle ------------------------------------------------------------------- */

dw_broker_t *dw_broker_new (dw_store_t *store, const dw_broker_config_t *config, char *err,
                            size_t errlen)
{
    dw_broker_t *self = calloc (1, sizeof *self);
    if (!self) {
        snprintf (err, errlen, "out of memory");
        return NULL;
    }
    self->config = *config;
    self->store = store;
    if (!self->config.heartbeat_ms)
        self->config.heartbeat_ms = 1000;
    if (!self->config.liveness)
        self->config.liveness = 5;
    if (!self->config.lease_ms)
        self->config.lease_ms = self->config.heartbeat_ms * self->config.liveness * 3;
    if (self->config.max_attempts < 1)
        self->config.max_attempts = 3;

    self->peers = zhashx_new ();
    zhashx_set_destructor (self->peers, peer_destroy);
    self->result_buffer = zlistx_new ();
    zlistx_set_destructor (self->result_buffer, buffered_result_destroy);

    self->router = zsock_new (ZMQ_ROUTER);
    if (!self->router) {
        snprintf (err, errlen, "cannot create the ROUTER socket");
        dw_broker_destroy (&self);
        return NULL;
    }
    dw_wire_configure_socket (self->router);
    /* Report unroutable and full peers as errors instead of dropping silently;
     * never block the loop on a slow peer. */
    zsock_set_router_mandatory (self->router, 1);
    zsock_set_sndtimeo (self->router, 0);
    zsock_set_router_handover (self->router, 1);

    /* CURVE options must be on the socket before it binds. */
    if (config->insecure) {
        if (!dw_curve_endpoint_is_loopback (config->bind)) {
            snprintf (err, errlen,
                      "refusing to serve %s without CURVE: unencrypted operation is allowed only "
                      "on a loopback endpoint; drop --insecure and give workers keys",
                      config->bind);
            dw_broker_destroy (&self);
            return NULL;
        }
        dw_warn ("event=curve_disabled endpoint=%s reason=insecure_flag", config->bind);
    }
    else {
        self->curve = dw_curve_server_new (self->router, config->curve_secret_path,
                                           config->curve_allow_dir, err, errlen);
        if (!self->curve) {
            dw_broker_destroy (&self);
            return NULL;
        }
        dw_info ("event=curve_enabled server_key=%s allow_dir=%s",
                 dw_curve_server_public_key (self->curve), config->curve_allow_dir);
    }

    int port = zsock_bind (self->router, "%s", config->bind);
    if (port < 0) {
        int code = zmq_errno ();
        snprintf (err, errlen, "cannot bind %s: %s; %s", config->bind, zmq_strerror (code),
                  code == ENODEV ? "use an IP address or * in --bind, not a host name"
                                 : "pick a free port with --bind");
        dw_broker_destroy (&self);
        return NULL;
    }
    char *last = zsock_last_endpoint (self->router);
    snprintf (self->endpoint, sizeof self->endpoint, "%s", last ? last : config->bind);
    zstr_free (&last);
    /* A wildcard bind address cannot be connected to: local workers use loopback. */
    char *wild = strstr (self->endpoint, "//0.0.0.0:");
    if (wild) {
        char port_text[16];
        snprintf (port_text, sizeof port_text, "%s", wild + strlen ("//0.0.0.0:"));
        snprintf (wild, sizeof self->endpoint - (size_t) (wild - self->endpoint),
                  "//127.0.0.1:%s", port_text);
    }
    return self;
}

void dw_broker_destroy (dw_broker_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dw_broker_t *self = *self_p;
    if (self->result_buffer && zlistx_size (self->result_buffer) > 0)
        dw_warn ("event=buffered_results_dropped count=%zu reason=\"workers still hold them in "
                 "their spools\"",
                 zlistx_size (self->result_buffer));
    zlistx_destroy (&self->result_buffer);
    zhashx_destroy (&self->peers);
    zsock_destroy (&self->router);
    dw_curve_server_destroy (&self->curve);
    free (self);
    *self_p = NULL;
}

const char *dw_broker_endpoint (const dw_broker_t *self)
{
    return self->endpoint;
}

/* --- sending ----------------------------------------------------------------------- */

static int send_to (dw_broker_t *self, zframe_t *routing_id, const char *who,
                    Driftwatch__V1__Envelope *env)
{
    env->sequence = ++self->sequence;
    if (dw_wire_send (self->router, routing_id, env) == 0)
        return 0;
    dw_warn ("event=send_failed peer=%s type=%s error=\"%s\"", who,
             dw_wire_body_name (env->body_case), strerror (errno));
    return -1;
}

static void send_reject (dw_broker_t *self, zframe_t *routing_id, const char *who,
                         const char *reason)
{
    Driftwatch__V1__Reject reject = DRIFTWATCH__V1__REJECT__INIT;
    reject.reason = (char *) reason;
    Driftwatch__V1__Envelope env = DRIFTWATCH__V1__ENVELOPE__INIT;
    env.body_case = DRIFTWATCH__V1__ENVELOPE__BODY_REJECT;
    env.reject = &reject;
    send_to (self, routing_id, who, &env);
}

/* --- progress ------------------------------------------------------------------------ */

static const char *outcome_label (int outcome)
{
    switch (outcome) {
    case DRIFTWATCH__V1__OUTCOME__OUTCOME_RESOLVED: return "resolved";
    case DRIFTWATCH__V1__OUTCOME__OUTCOME_UNRESOLVED: return "unresolved";
    case DRIFTWATCH__V1__OUTCOME__OUTCOME_AGENT_ERROR: return "agent_error";
    case DRIFTWATCH__V1__OUTCOME__OUTCOME_TIMEOUT: return "timeout";
    case DRIFTWATCH__V1__OUTCOME__OUTCOME_INFRA_ERROR: return "infra_error";
    case DRIFTWATCH__V1__OUTCOME__OUTCOME_HARNESS_ERROR: return "harness_error";
    case DRIFTWATCH__V1__OUTCOME__OUTCOME_CANCELLED: return "cancelled";
    default: return "unknown";
    }
}

void dw_broker_print_progress (dw_broker_t *self)
{
    dw_run_counts_t counts;
    if (self->db_down)
        return;
    if (dw_store_run_counts (self->store, self->config.run_id, &counts) != 0) {
        dw_warn ("event=progress_failed error=\"%s\"", dw_store_error (self->store));
        check_database (self);
        return;
    }
    char outcomes[256] = "";
    size_t used = 0;
    for (int i = 1; i < DW_OUTCOME_COUNT; i++) {
        if (!counts.final_by_outcome[i])
            continue;
        used += (size_t) snprintf (outcomes + used, sizeof outcomes - used, "%s%s %zu",
                                   used ? ", " : "", outcome_label (i),
                                   counts.final_by_outcome[i]);
        if (used >= sizeof outcomes)
            break;
    }
    printf ("progress: %zu/%zu jobs final%s%s%s, %zu running, %zu queued, %zu workers\n",
            counts.jobs_final, counts.jobs_total, used ? " (" : "", outcomes, used ? ")" : "",
            counts.jobs_leased, counts.jobs_pending, zhashx_size (self->peers));
    fflush (stdout);
    self->last_final = counts.jobs_final;
    self->last_progress_ms = dw_mono_ms ();
    if (counts.jobs_total > 0 && counts.jobs_final == counts.jobs_total)
        self->run_complete = 1;
}

/* --- dispatch ----------------------------------------------------------------------- */

static uint64_t job_seed (const char *day, const char *config_hash, const char *instance_id,
                          int repeat_index)
{
    char *text = dw_strdup_printf ("%s|%s|%s|%d", day, config_hash, instance_id, repeat_index);
    char hex[41];
    dw_sha1_hex (text, strlen (text), hex);
    free (text);
    uint64_t seed = 0;
    for (int i = 0; i < 16; i++) {
        char c = hex[i];
        seed = (seed << 4) | (uint64_t) (c <= '9' ? c - '0' : c - 'a' + 10);
    }
    return seed;
}

/* Lease one job to PEER and send the assignment. Returns 0 if sent, 1 if the
 * job was taken meanwhile, -1 on error. */
static int assign_job (dw_broker_t *self, peer_t *peer, const dw_store_job_ref_t *ref)
{
    char attempt_id[DW_ATTEMPT_ID_MAX];
    int attempt_number = 0;
    int rc = dw_store_lease_attempt (self->store, ref->job_id, peer->identity,
                                     self->config.lease_ms, attempt_id, &attempt_number);
    if (rc < 0)
        check_database (self);
    if (rc != 0)
        return rc;

    Driftwatch__V1__TaskSpec *task = dw_store_task_spec (self->store, ref->task_id);
    if (!task) {
        dw_error ("event=task_load_failed job=%" PRId64 " error=\"%s\"", ref->job_id,
                  dw_store_error (self->store));
        dw_store_return_attempt (self->store, attempt_id, peer->identity, "task_load_failed");
        return -1;
    }

    /* The gold patch only goes to the stub agent, which replays it. */
    char *gold_patch = task->patch;
    int is_stub = self->config.agent && strcmp (self->config.agent->kind, "stub") == 0;
    if (!is_stub)
        task->patch = "";

    char run_id[32], job_id[32];
    snprintf (run_id, sizeof run_id, "%" PRId64, self->config.run_id);
    snprintf (job_id, sizeof job_id, "%" PRId64, ref->job_id);
    Driftwatch__V1__JobAssignment job = DRIFTWATCH__V1__JOB_ASSIGNMENT__INIT;
    job.run_id = run_id;
    job.job_id = job_id;
    job.attempt_id = attempt_id;
    job.attempt_number = (uint32_t) attempt_number;
    job.task = task;
    job.agent = (Driftwatch__V1__AgentConfig *) self->config.agent;
    job.limits = (Driftwatch__V1__Limits *) self->config.limits;
    job.lease_ms = self->config.lease_ms;
    job.seed = job_seed (self->config.day, self->config.config_hash, task->instance_id,
                         ref->repeat_index);
    job.day = (char *) self->config.day;

    Driftwatch__V1__Envelope env = DRIFTWATCH__V1__ENVELOPE__INIT;
    env.body_case = DRIFTWATCH__V1__ENVELOPE__BODY_JOB;
    env.job = &job;
    rc = send_to (self, peer->routing_id, peer->identity, &env);
    if (rc == 0)
        dw_info ("event=job_assigned worker=%s job=%s attempt=%s attempt_number=%d task=%s",
                 peer->identity, job_id, attempt_id, attempt_number, task->instance_id);
    else
        /* Not delivered: give the job back now instead of waiting for the lease. */
        dw_store_return_attempt (self->store, attempt_id, peer->identity, "send_failed");

    task->patch = gold_patch;
    dw_store_task_spec_free (&task);
    return rc;
}

static void dispatch (dw_broker_t *self)
{
    size_t total_credit = 0;
    for (peer_t *peer = zhashx_first (self->peers); peer; peer = zhashx_next (self->peers))
        if (!peer->harness_reported || peer->harness_ok)
            total_credit += peer->credit;
    if (total_credit == 0 || s_stop_requested || self->db_down)
        return;

    dw_store_job_ref_t refs[DW_BROKER_DISPATCH_BATCH];
    size_t count = 0;
    size_t want = total_credit < DW_BROKER_DISPATCH_BATCH ? total_credit : DW_BROKER_DISPATCH_BATCH;
    if (dw_store_pending_jobs (self->store, self->config.run_id, refs, want, &count) != 0) {
        dw_error ("event=pending_jobs_failed error=\"%s\"", dw_store_error (self->store));
        check_database (self);
        return;
    }

    /* Round-robin over peers with credit so every worker gets work. */
    size_t next = 0;
    while (next < count) {
        int assigned_any = 0;
        for (peer_t *peer = zhashx_first (self->peers); peer && next < count;
             peer = zhashx_next (self->peers)) {
            if (peer->credit == 0 || (peer->harness_reported && !peer->harness_ok)
                || self->db_down)
                continue;
            int rc = assign_job (self, peer, &refs[next]);
            next++;
            if (rc == 0) {
                peer->credit--;
                assigned_any = 1;
                self->progress_dirty = 1;
            }
        }
        if (!assigned_any)
            break;
    }
}

static void log_peer_error (dw_broker_t *self, const char *who, const char *what)
{
    self->peer_errors++;
    uint64_t now = dw_mono_ms ();
    if (now - self->last_peer_error_log_ms < PEER_ERROR_LOG_MS)
        return;
    self->last_peer_error_log_ms = now;
    dw_warn ("event=message_rejected peer=%s reason=\"%s\" rejected_total=%" PRIu64
             " malformed=%" PRIu64 " oversized=%" PRIu64 " bad_version=%" PRIu64,
             who, what, self->peer_errors, self->wire_stats.malformed, self->wire_stats.oversized,
             self->wire_stats.bad_version);
}

/* --- message handlers ----------------------------------------------------------------- */

static void handle_hello (dw_broker_t *self, zframe_t *routing_id, const char *routing_hex,
                          const char *key, Driftwatch__V1__Hello *hello)
{
    if (!hello->worker_id || !*hello->worker_id || strlen (hello->worker_id) >= 128
        || hello->slots == 0 || hello->slots > 1024) {
        send_reject (self, routing_id, routing_hex,
                     "invalid hello: worker_id must be 1-127 characters and slots 1-1024");
        return;
    }

    /* With CURVE the authenticated key is the identity; the id the worker
     * claims is only a label. */
    const char *identity = key ? key : hello->worker_id;

    /* The same worker on a new connection replaces its old entry. */
    for (peer_t *old = zhashx_first (self->peers); old; old = zhashx_next (self->peers))
        if (strcmp (old->identity, identity) == 0
            && strcmp (old->routing_hex, routing_hex) != 0) {
            dw_info ("event=worker_reconnected worker=%s", old->identity);
            zhashx_delete (self->peers, old->routing_hex);
            break;
        }
    if (!zhashx_lookup (self->peers, routing_hex)
        && zhashx_size (self->peers) >= DW_BROKER_MAX_WORKERS) {
        send_reject (self, routing_id, routing_hex, "too many workers connected");
        return;
    }

    peer_t *peer = zhashx_lookup (self->peers, routing_hex);
    if (!peer) {
        peer = calloc (1, sizeof *peer);
        if (!peer)
            return;
        peer->routing_id = zframe_dup (routing_id);
        snprintf (peer->routing_hex, sizeof peer->routing_hex, "%s", routing_hex);
        zhashx_insert (self->peers, routing_hex, peer);
    }
    snprintf (peer->identity, sizeof peer->identity, "%s", identity);
    snprintf (peer->hostname, sizeof peer->hostname, "%s", hello->hostname);
    peer->slots = hello->slots;
    peer->credit = 0;
    peer->last_seen_ms = dw_mono_ms ();

    if (!self->db_down && dw_store_upsert_worker (self->store, peer->identity, hello) != 0) {
        dw_error ("event=worker_store_failed worker=%s error=\"%s\"", peer->identity,
                  dw_store_error (self->store));
        check_database (self);
    }
    if (hello->n_running_attempt_ids > 0)
        dw_store_renew_leases (self->store, peer->identity, hello->running_attempt_ids,
                               hello->n_running_attempt_ids, self->config.lease_ms);

    char run_id[32];
    snprintf (run_id, sizeof run_id, "%" PRId64, self->config.run_id);
    Driftwatch__V1__Welcome welcome = DRIFTWATCH__V1__WELCOME__INIT;
    welcome.worker_id = peer->identity;
    welcome.heartbeat_interval_ms = self->config.heartbeat_ms;
    welcome.liveness = self->config.liveness;
    welcome.run_id = run_id;
    welcome.coordinator_version = (char *) dw_version_string ();
    welcome.agent = (Driftwatch__V1__AgentConfig *) self->config.agent;
    welcome.limits = (Driftwatch__V1__Limits *) self->config.limits;
    Driftwatch__V1__Envelope env = DRIFTWATCH__V1__ENVELOPE__INIT;
    env.body_case = DRIFTWATCH__V1__ENVELOPE__BODY_WELCOME;
    env.welcome = &welcome;
    send_to (self, routing_id, peer->identity, &env);

    /* Show which limits the worker's host really enforces. */
    char limits[512] = "";
    size_t used = 0;
    for (size_t i = 0; i < hello->n_limits && used < sizeof limits; i++) {
        const Driftwatch__V1__LimitSupport *limit = hello->limits[i];
        used += (size_t) snprintf (limits + used, sizeof limits - used, "%s%s=%s", used ? " " : "",
                                   limit->name, limit->enforced ? "enforced" : "NOT-enforced");
    }
    char capabilities[128] = "";
    size_t cap_used = 0;
    for (size_t i = 0; i < hello->n_capabilities && cap_used < sizeof capabilities; i++)
        cap_used += (size_t) snprintf (capabilities + cap_used, sizeof capabilities - cap_used,
                                       "%s%s", cap_used ? " " : "", hello->capabilities[i]);
    printf ("worker %s (%s) registered: %u slots, sandbox [%s], limits: %s\n", hello->worker_id,
            hello->hostname, hello->slots, cap_used ? capabilities : "none",
            used ? limits : "not reported");
    fflush (stdout);

    dw_info ("event=worker_registered worker=%s name=%s host=%s slots=%u version=\"%s\" "
             "spooled=%zu running=%zu",
             peer->identity, hello->worker_id, peer->hostname, peer->slots, hello->worker_version,
             hello->n_spooled_attempt_ids, hello->n_running_attempt_ids);
    self->progress_dirty = 1;
}

static void handle_events (dw_broker_t *self, peer_t *peer, Driftwatch__V1__JobEvents *batch)
{
    uint64_t through = 0;
    if (batch->n_events > DW_EVENTS_BATCH_MAX) {
        dw_warn ("event=events_rejected worker=%s attempt=%s reason=batch_too_large count=%zu",
                 peer->identity, batch->attempt_id, batch->n_events);
        return;
    }
    if (self->db_down)
        return;
    if (dw_store_record_events (self->store, batch, peer->identity, &through) != 0) {
        dw_warn ("event=events_rejected worker=%s attempt=%s error=\"%s\"", peer->identity,
                 batch->attempt_id, dw_store_error (self->store));
        check_database (self);
        return;
    }
    Driftwatch__V1__EventsAck ack = DRIFTWATCH__V1__EVENTS_ACK__INIT;
    ack.attempt_id = batch->attempt_id;
    ack.through_seq = through;
    Driftwatch__V1__Envelope env = DRIFTWATCH__V1__ENVELOPE__INIT;
    env.body_case = DRIFTWATCH__V1__ENVELOPE__BODY_EVENTS_ACK;
    env.events_ack = &ack;
    send_to (self, peer->routing_id, peer->identity, &env);
}

static void send_result_ack (dw_broker_t *self, peer_t *peer, const char *attempt_id,
                             dw_store_disposition_t disposition)
{
    Driftwatch__V1__ResultAck ack = DRIFTWATCH__V1__RESULT_ACK__INIT;
    ack.attempt_id = (char *) attempt_id;
    ack.stored = disposition != DW_STORE_UNKNOWN_ATTEMPT;
    ack.disposition = (char *) dw_store_disposition_name (disposition);
    Driftwatch__V1__Envelope env = DRIFTWATCH__V1__ENVELOPE__INIT;
    env.body_case = DRIFTWATCH__V1__ENVELOPE__BODY_RESULT_ACK;
    env.result_ack = &ack;
    send_to (self, peer->routing_id, peer->identity, &env);
}

static peer_t *find_peer_by_identity (dw_broker_t *self, const char *identity)
{
    for (peer_t *peer = zhashx_first (self->peers); peer; peer = zhashx_next (self->peers))
        if (strcmp (peer->identity, identity) == 0)
            return peer;
    return NULL;
}

/* Store one result. Returns 0 when committed (PEER, if not NULL, gets the
 * acknowledgement), -1 when not. */
static int store_result (dw_broker_t *self, const char *identity,
                         const Driftwatch__V1__JobResult *result)
{
    dw_store_disposition_t disposition = DW_STORE_UNKNOWN_ATTEMPT;
    if (dw_store_record_result (self->store, result, identity, self->config.max_attempts,
                                &disposition)
        != 0) {
        dw_error ("event=result_store_failed worker=%s attempt=%s error=\"%s\"", identity,
                  result->attempt_id, dw_store_error (self->store));
        check_database (self);
        return -1;
    }
    dw_info ("event=result_stored worker=%s job=%s attempt=%s outcome=%s reason=%s "
             "disposition=%s",
             identity, result->job_id, result->attempt_id, outcome_label (result->outcome),
             result->outcome_reason, dw_store_disposition_name (disposition));
    peer_t *peer = find_peer_by_identity (self, identity);
    if (peer)
        send_result_ack (self, peer, result->attempt_id, disposition);
    self->progress_dirty = 1;
    return 0;
}

static void buffer_result (dw_broker_t *self, const char *identity,
                           const Driftwatch__V1__JobResult *result)
{
    size_t len = driftwatch__v1__job_result__get_packed_size (result);
    if (zlistx_size (self->result_buffer) >= RESULT_BUFFER_MAX
        || self->result_buffer_bytes + len > RESULT_BUFFER_BYTES_MAX) {
        /* Not acknowledged: the worker keeps it in its spool and resends. */
        dw_warn ("event=result_buffer_full worker=%s attempt=%s buffered=%zu", identity,
                 result->attempt_id, zlistx_size (self->result_buffer));
        return;
    }
    buffered_result_t *entry = calloc (1, sizeof *entry);
    if (!entry || !(entry->packed = malloc (len ? len : 1))) {
        free (entry);
        return;
    }
    snprintf (entry->identity, sizeof entry->identity, "%s", identity);
    entry->len = driftwatch__v1__job_result__pack (result, entry->packed);
    zlistx_add_end (self->result_buffer, entry);
    self->result_buffer_bytes += len;
}

static void handle_result (dw_broker_t *self, peer_t *peer, Driftwatch__V1__JobResult *result)
{
    /* A result that can never be stored is rejected in its acknowledgement
     * at once, so the worker drops it instead of resending it forever. */
    if (result->outcome <= DRIFTWATCH__V1__OUTCOME__OUTCOME_UNSPECIFIED
        || result->outcome > DRIFTWATCH__V1__OUTCOME__OUTCOME_CANCELLED
        || !result->attempt_id || !*result->attempt_id) {
        log_peer_error (self, peer->identity, "result without a valid outcome or attempt id");
        Driftwatch__V1__ResultAck ack = DRIFTWATCH__V1__RESULT_ACK__INIT;
        ack.attempt_id = result->attempt_id;
        ack.stored = 0;
        ack.disposition = "invalid";
        Driftwatch__V1__Envelope env = DRIFTWATCH__V1__ENVELOPE__INIT;
        env.body_case = DRIFTWATCH__V1__ENVELOPE__BODY_RESULT_ACK;
        env.result_ack = &ack;
        send_to (self, peer->routing_id, peer->identity, &env);
        return;
    }

    /* While the database is down, or while older results wait, keep order. */
    if (self->db_down || zlistx_size (self->result_buffer) > 0) {
        buffer_result (self, peer->identity, result);
        return;
    }
    if (store_result (self, peer->identity, result) != 0 && self->db_down)
        buffer_result (self, peer->identity, result);
}

/* Commit buffered results in arrival order until one fails. */
static void flush_result_buffer (dw_broker_t *self)
{
    buffered_result_t *entry;
    while (!self->db_down && (entry = zlistx_first (self->result_buffer))) {
        Driftwatch__V1__JobResult *result =
            driftwatch__v1__job_result__unpack (NULL, entry->len, entry->packed);
        int rc = result ? store_result (self, entry->identity, result) : 0;
        if (result)
            driftwatch__v1__job_result__free_unpacked (result, NULL);
        if (rc != 0 && self->db_down)
            break;
        self->result_buffer_bytes -= entry->len;
        zlistx_delete (self->result_buffer, zlistx_cursor (self->result_buffer));
    }
}

static void handle_goodbye (dw_broker_t *self, peer_t *peer, Driftwatch__V1__Goodbye *goodbye)
{
    for (size_t i = 0; i < goodbye->n_returned_attempt_ids; i++)
        if (dw_store_return_attempt (self->store, goodbye->returned_attempt_ids[i],
                                     peer->identity, "handed back by worker")
            != 0)
            dw_warn ("event=return_failed worker=%s attempt=%s error=\"%s\"", peer->identity,
                     goodbye->returned_attempt_ids[i], dw_store_error (self->store));
    dw_info ("event=worker_left worker=%s reason=\"%s\" returned=%zu", peer->identity,
             goodbye->reason, goodbye->n_returned_attempt_ids);
    if (goodbye->n_returned_attempt_ids == 0)
        dw_store_set_worker_status (self->store, peer->identity, "gone");
    else
        peer->credit = 0;
    if (goodbye->n_returned_attempt_ids == 0 || s_stop_requested)
        zhashx_delete (self->peers, peer->routing_hex);
    self->progress_dirty = 1;
}

static void handle_message (dw_broker_t *self)
{
    zmsg_t *msg = zmsg_recv (self->router);
    if (!msg)
        return;
    zframe_t *routing_id = zmsg_pop (msg);
    zframe_t *payload = zmsg_pop (msg);
    char *routing_hex = routing_id ? zframe_strhex (routing_id) : NULL;

    /* Name the peer by its authenticated key in every log line. */
    char key[DW_CURVE_KEY_TEXT_SIZE] = "";
    int authenticated = self->curve && payload && dw_curve_peer_key (payload, key) == 0;
    const char *who = "?";
    if (authenticated)
        who = key;
    else if (routing_hex)
        who = routing_hex;

    if (!routing_id || !payload || zmsg_size (msg) != 0) {
        log_peer_error (self, who, "expected exactly one frame");
        goto cleanup;
    }
    if (self->curve && !authenticated) {
        /* zauth admitted the connection, so this should not happen; never
         * fall back to the claimed id. */
        log_peer_error (self, who, "message without an authenticated key");
        goto cleanup;
    }

    char err[256];
    Driftwatch__V1__Envelope *env = dw_wire_decode (zframe_data (payload), zframe_size (payload),
                                                    &self->wire_stats, err, sizeof err);
    if (!env) {
        log_peer_error (self, who, err);
        goto cleanup;
    }

    peer_t *peer = zhashx_lookup (self->peers, routing_hex);
    if (env->body_case == DRIFTWATCH__V1__ENVELOPE__BODY_HELLO) {
        handle_hello (self, routing_id, routing_hex, authenticated ? key : NULL, env->hello);
        dw_wire_free (&env);
        goto cleanup;
    }
    if (!peer) {
        log_peer_error (self, who, "message from an unregistered peer");
        send_reject (self, routing_id, routing_hex, "not registered: send hello first");
        dw_wire_free (&env);
        goto cleanup;
    }
    peer->last_seen_ms = dw_mono_ms ();

    switch (env->body_case) {
    case DRIFTWATCH__V1__ENVELOPE__BODY_HEARTBEAT: {
        Driftwatch__V1__Heartbeat *beat = env->heartbeat;
        /* Renew leases a few times per lease period, not on every beat. */
        if (beat->n_running_attempt_ids > 0 && !self->db_down
            && peer->last_seen_ms - peer->last_renew_ms >= self->config.lease_ms / 4) {
            dw_store_renew_leases (self->store, peer->identity, beat->running_attempt_ids,
                                   beat->n_running_attempt_ids, self->config.lease_ms);
            peer->last_renew_ms = peer->last_seen_ms;
        }
        break;
    }
    case DRIFTWATCH__V1__ENVELOPE__BODY_READY: {
        uint32_t credit = peer->credit + env->ready->credit;
        peer->credit = credit > peer->slots ? peer->slots : credit;
        break;
    }
    case DRIFTWATCH__V1__ENVELOPE__BODY_EVENTS:
        handle_events (self, peer, env->events);
        break;
    case DRIFTWATCH__V1__ENVELOPE__BODY_RESULT:
        handle_result (self, peer, env->result);
        break;
    case DRIFTWATCH__V1__ENVELOPE__BODY_GOODBYE:
        handle_goodbye (self, peer, env->goodbye);
        break;
    case DRIFTWATCH__V1__ENVELOPE__BODY_HARNESS:
        peer->harness_reported = 1;
        peer->harness_ok = env->harness->ok;
        if (env->harness->ok)
            dw_info ("event=harness_ok worker=%s cli_version=\"%s\"", peer->identity,
                     env->harness->cli_version);
        else
            dw_error ("event=harness_broken worker=%s detail=\"%s\"", peer->identity,
                      env->harness->detail);
        break;
    default:
        log_peer_error (self, peer->identity, "unexpected message type from a worker");
        break;
    }
    dw_wire_free (&env);

cleanup:
    free (routing_hex);
    zframe_destroy (&routing_id);
    zframe_destroy (&payload);
    zmsg_destroy (&msg);
}

/* --- timers ---------------------------------------------------------------------------- */

static void send_heartbeats (dw_broker_t *self)
{
    Driftwatch__V1__Heartbeat beat = DRIFTWATCH__V1__HEARTBEAT__INIT;
    beat.time_ms = dw_now_ms ();
    Driftwatch__V1__Envelope env = DRIFTWATCH__V1__ENVELOPE__INIT;
    env.body_case = DRIFTWATCH__V1__ENVELOPE__BODY_HEARTBEAT;
    env.heartbeat = &beat;
    for (peer_t *peer = zhashx_first (self->peers); peer; peer = zhashx_next (self->peers))
        send_to (self, peer->routing_id, peer->identity, &env);
}

static void reap_lost_workers (dw_broker_t *self)
{
    uint64_t now = dw_mono_ms ();
    uint64_t limit = (uint64_t) self->config.heartbeat_ms * self->config.liveness;
    zlist_t *lost = zlist_new ();
    for (peer_t *peer = zhashx_first (self->peers); peer; peer = zhashx_next (self->peers))
        if (now - peer->last_seen_ms > limit)
            zlist_append (lost, peer);
    for (peer_t *peer = zlist_first (lost); peer; peer = zlist_next (lost)) {
        /* Its attempts keep their leases until they expire, so a worker that
         * was only slow can still deliver. */
        dw_warn ("event=worker_lost worker=%s silent_ms=%" PRIu64, peer->identity,
                 now - peer->last_seen_ms);
        if (!self->db_down)
            dw_store_set_worker_status (self->store, peer->identity, "lost");
        zhashx_delete (self->peers, peer->routing_hex);
        self->progress_dirty = 1;
    }
    zlist_destroy (&lost);
}

static void send_drain (dw_broker_t *self, const char *reason)
{
    Driftwatch__V1__Drain drain = DRIFTWATCH__V1__DRAIN__INIT;
    drain.reason = (char *) reason;
    Driftwatch__V1__Envelope env = DRIFTWATCH__V1__ENVELOPE__INIT;
    env.body_case = DRIFTWATCH__V1__ENVELOPE__BODY_DRAIN;
    env.drain = &drain;
    for (peer_t *peer = zhashx_first (self->peers); peer; peer = zhashx_next (self->peers))
        send_to (self, peer->routing_id, peer->identity, &env);
}

static int all_harnesses_broken (dw_broker_t *self)
{
    size_t peers = 0, broken = 0;
    for (peer_t *peer = zhashx_first (self->peers); peer; peer = zhashx_next (self->peers)) {
        peers++;
        if (peer->harness_reported && !peer->harness_ok)
            broken++;
    }
    return peers > 0 && broken == peers;
}

static void try_database_reconnect (dw_broker_t *self)
{
    uint64_t now = dw_mono_ms ();
    if (now < self->db_retry_at_ms)
        return;
    if (dw_store_reconnect (self->store) != 0) {
        self->db_backoff_ms = self->db_backoff_ms * 2 > DB_BACKOFF_MAX_MS
                                  ? DB_BACKOFF_MAX_MS
                                  : self->db_backoff_ms * 2;
        self->db_retry_at_ms = now + self->db_backoff_ms;
        dw_warn ("event=database_reconnect_failed retry_in_ms=%u buffered=%zu error=\"%s\"",
                 self->db_backoff_ms, zlistx_size (self->result_buffer),
                 dw_store_error (self->store));
        return;
    }
    self->db_down = 0;
    dw_info ("event=database_reconnected buffered=%zu", zlistx_size (self->result_buffer));
    /* Workers could not renew leases during the outage: give their next
     * heartbeats a full lease period before expiring anything. */
    self->last_scan_ms = now + self->config.lease_ms;
    for (peer_t *peer = zhashx_first (self->peers); peer; peer = zhashx_next (self->peers))
        peer->last_renew_ms = 0;
    flush_result_buffer (self);
}

static void on_timers (dw_broker_t *self)
{
    uint64_t now = dw_mono_ms ();
    if (self->db_down)
        try_database_reconnect (self);
    if (now - self->last_heartbeat_ms >= self->config.heartbeat_ms) {
        send_heartbeats (self);
        reap_lost_workers (self);
        self->last_heartbeat_ms = now;
    }
    if (!self->db_down && now > self->last_scan_ms
        && now - self->last_scan_ms >= LEASE_SCAN_MS) {
        size_t expired = 0;
        if (dw_store_expire_leases (self->store, self->config.run_id, self->config.max_attempts,
                                    &expired)
            != 0) {
            dw_error ("event=lease_scan_failed error=\"%s\"", dw_store_error (self->store));
            check_database (self);
        }
        else if (expired > 0) {
            dw_warn ("event=leases_expired count=%zu", expired);
            self->progress_dirty = 1;
        }
        self->last_scan_ms = now;
    }
    int periodic = self->config.progress_seconds
                   && now - self->last_progress_ms >= self->config.progress_seconds * 1000ull;
    if ((self->progress_dirty && now - self->last_progress_ms >= 1000) || periodic) {
        dw_broker_print_progress (self);
        self->progress_dirty = 0;
    }
}

/* --- main loop ------------------------------------------------------------------------- */

dw_broker_status_t dw_broker_run (dw_broker_t *self)
{
    dw_broker_handle_signals ();

    dw_info ("event=broker_started endpoint=%s run=%" PRId64 " day=%s", self->endpoint,
             self->config.run_id, self->config.day);
    dw_broker_print_progress (self);
    /* After a restart, workers need a moment to reconnect and deliver the
     * results they spooled meanwhile: give them one lease period before the
     * first expiry scan, as after a database outage. */
    self->last_scan_ms = dw_mono_ms () + self->config.lease_ms;

    zpoller_t *poller = zpoller_new (self->router, NULL);
    uint64_t stop_deadline = 0;
    dw_broker_status_t status = DW_BROKER_COMPLETE;

    while (!self->run_complete) {
        if (s_stop_requested && !stop_deadline) {
            stop_deadline = dw_mono_ms () + self->config.stop_grace_seconds * 1000ull;
            dw_info ("event=stop_requested grace_seconds=%u", self->config.stop_grace_seconds);
            send_drain (self, "coordinator stopping");
        }
        if (stop_deadline && dw_mono_ms () >= stop_deadline) {
            status = DW_BROKER_STOPPED;
            break;
        }
        if (stop_deadline && !self->db_down) {
            dw_run_counts_t counts;
            if (dw_store_run_counts (self->store, self->config.run_id, &counts) == 0
                && counts.jobs_leased == 0) {
                status = DW_BROKER_STOPPED;
                break;
            }
        }
        if (all_harnesses_broken (self)) {
            status = DW_BROKER_HARNESS_FAILURE;
            break;
        }

        void *which = zpoller_wait (poller, LOOP_TICK_MS);
        if (which == self->router) {
            /* Drain what is queued before doing timer work. */
            for (int i = 0; i < 256 && (zsock_events (self->router) & ZMQ_POLLIN); i++)
                handle_message (self);
        }
        on_timers (self);
        dispatch (self);
    }

    if (self->run_complete)
        send_drain (self, "run complete");
    zpoller_destroy (&poller);
    return status;
}
