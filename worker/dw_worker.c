/* Worker daemon: see dw_worker.h.
 *
 * Threads: the main thread owns the DEALER socket, the spool and all protocol
 * state. Each job runs dw_jobrun_execute in its own thread and talks to the
 * main thread over an inproc PAIR socket: "E" + line for an agent event,
 * "R" + packed JobResult when it is over. The PAIR's high-water mark makes a
 * chatty agent wait instead of growing memory.
 */
#include "dw_worker.h"

#include <czmq.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dw_container.h"
#include "dw_curve.h"
#include "dw_jobrun.h"
#include "dw_preflight.h"
#include "dw_log.h"
#include "dw_spool.h"
#include "dw_util.h"
#include "dw_version.h"
#include "dw_wire.h"

/* Poll period of the main loop: bounds the latency of timers and signals. */
#define LOOP_TICK_MS 100
/* An unacknowledged result or event batch is sent again after this long: an
 * acknowledgement can be lost, or the coordinator may not have committed it
 * (for example while its database was down). */
#define RESEND_INTERVAL_MS 10000
/* Consecutive attempts that failed in the worker's own setup (sandbox or
 * agent preparation) after which the worker reports its harness as broken
 * instead of failing every job it is given. */
#define SETUP_FAILURES_MAX 3
/* After its result is acknowledged, a job waits this long for the
 * acknowledgement of its remaining events before the worker forgets them. */
#define EVENTS_AFTER_RESULT_MS (3 * RESEND_INTERVAL_MS)

typedef struct {
    uint64_t seq;
    uint64_t time_ms;
    uint8_t *payload;
    size_t len;
    int truncated;
} event_t;

typedef struct {
    char attempt_id[64];
    char job_id[64];
    pthread_t thread;
    int thread_started;
    zsock_t *pipe;              /* main thread's end */
    zsock_t *thread_pipe;       /* job thread's end */
    uint8_t *assignment;        /* packed JobAssignment, read by the thread */
    size_t assignment_len;
    volatile int cancel;
    int done;                   /* the thread sent its result */
    int result_acked;           /* the coordinator committed the result */
    uint64_t retire_at_ms;      /* forget unacknowledged events after this */
    int returned;               /* handed back to the coordinator: drop its result */
    uint64_t next_seq;
    zlistx_t *unacked;          /* event_t*, ordered by seq; sent or not */
    uint64_t sent_through;      /* highest seq already sent on this connection */
    uint64_t acked_through;
    uint64_t last_events_sent_ms;
    int paused;                 /* pipe removed from the poller (too many unacked events) */
    const dw_worker_config_t *config;
    char work_root[PATH_MAX + 80];
    char cache_dir[PATH_MAX];
    const char *worker_id;
} job_t;

typedef enum { STATE_DISCONNECTED, STATE_WAIT_WELCOME, STATE_ACTIVE } conn_state_t;

/* The harness check of one agent configuration, run in its own thread
 * because it can take up to a minute. */
typedef enum { HARNESS_UNKNOWN, HARNESS_CHECKING, HARNESS_OK, HARNESS_BROKEN } harness_state_t;

typedef struct {
    pthread_t thread;
    zsock_t *pipe;
    zsock_t *thread_pipe;
    uint8_t *agent;             /* packed AgentConfig */
    size_t agent_len;
    const dw_worker_config_t *config;
    char work_root[PATH_MAX + 16];
    char cache_dir[PATH_MAX];
} harness_check_t;

typedef struct {
    const dw_worker_config_t *config;
    char worker_id[128];
    char hostname[256];
    zsock_t *dealer;
    zpoller_t *poller;
    conn_state_t state;
    uint64_t last_rx_ms;
    uint64_t last_tx_ms;
    uint64_t hello_sent_ms;
    uint64_t reconnect_at_ms;
    uint32_t backoff_ms;
    uint32_t unanswered_hellos; /* connections in a row that got no Welcome */
    uint32_t heartbeat_ms;
    uint32_t liveness;
    uint64_t sequence;
    dw_spool_t *spool;
    uint64_t last_resend_ms;
    zhashx_t *jobs;             /* attempt id -> job_t* */
    int draining;
    uint64_t drain_deadline_ms;
    dw_wire_stats_t wire_stats;
    char spool_dir[PATH_MAX];
    char cache_dir[PATH_MAX];
    char work_dir[PATH_MAX];
    dw_preflight_report_t preflight;
    harness_state_t harness;
    char harness_config[64];    /* config_hash the harness state is about */
    char harness_detail[512];
    char harness_version[64];
    harness_check_t *harness_check;
    int setup_failures;         /* consecutive attempts lost to the worker's own setup */
} worker_t;

static volatile sig_atomic_t s_stop_requested = 0;

static void on_stop_signal (int sig)
{
    (void) sig;
    s_stop_requested = 1;
}

/* --- events --------------------------------------------------------------- */

static void event_destroy (void **item)
{
    if (!item || !*item)
        return;
    event_t *event = *item;
    free (event->payload);
    free (event);
    *item = NULL;
}

/* --- job threads ------------------------------------------------------------ */

static void job_on_event (void *arg, const char *line, size_t len, int truncated)
{
    job_t *job = arg;
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, truncated ? "T" : "E");
    zmsg_addmem (msg, line, len);
    /* Blocks when the main thread is behind: back-pressure on the agent. */
    zmsg_send (&msg, job->thread_pipe);
}

static void *job_thread (void *arg)
{
    job_t *job = arg;
    uint8_t *packed = NULL;
    size_t len = 0;

    Driftwatch__V1__JobAssignment *assignment =
        driftwatch__v1__job_assignment__unpack (NULL, job->assignment_len, job->assignment);
    if (assignment) {
        dw_jobrun_options_t opts = {
            .work_root = job->work_root,
            .cache_dir = job->cache_dir,
            .stub_agent = job->config->stub_agent,
            .cancel = &job->cancel,
            .keep_workspace = job->config->keep_workspaces,
            .on_event = job_on_event,
            .event_arg = job,
            .worker_id = job->worker_id,
            .sandbox = job->config->sandbox,
            .sandbox_uid = job->config->sandbox_uid,
            .claude_path = job->config->claude_path,
            .upstream_url = job->config->upstream_url,
            .api_key = job->config->api_key,
        };
        if (dw_jobrun_execute (assignment, &opts, &packed, &len) != 0)
            packed = NULL;
        driftwatch__v1__job_assignment__free_unpacked (assignment, NULL);
    }

    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, "R");
    if (packed)
        zmsg_addmem (msg, packed, len);
    zmsg_send (&msg, job->thread_pipe);
    free (packed);
    return NULL;
}

static void job_destroy (void **item)
{
    if (!item || !*item)
        return;
    job_t *job = *item;
    if (job->thread_started) {
        job->cancel = 1;
        /* Drain the pipe so a thread blocked on a full pipe can finish. */
        while (!job->done) {
            zmsg_t *msg = zmsg_recv (job->pipe);
            if (!msg)
                break;
            char *kind = zmsg_popstr (msg);
            if (kind && kind[0] == 'R')
                job->done = 1;
            free (kind);
            zmsg_destroy (&msg);
        }
        pthread_join (job->thread, NULL);
    }
    zsock_destroy (&job->pipe);
    zsock_destroy (&job->thread_pipe);
    zlistx_destroy (&job->unacked);
    free (job->assignment);
    free (job);
    *item = NULL;
}

/* --- sending ---------------------------------------------------------------- */

static int send_envelope (worker_t *self, Driftwatch__V1__Envelope *env)
{
    if (!self->dealer)
        return -1;
    env->sequence = ++self->sequence;
    if (dw_wire_send (self->dealer, NULL, env) != 0) {
        dw_warn ("event=send_failed type=%s error=\"%s\"", dw_wire_body_name (env->body_case),
                 strerror (errno));
        return -1;
    }
    self->last_tx_ms = dw_mono_ms ();
    return 0;
}

static int count_running (worker_t *self)
{
    int running = 0;
    for (job_t *job = zhashx_first (self->jobs); job; job = zhashx_next (self->jobs))
        if (!job->done)
            running++;
    return running;
}

static void send_ready (worker_t *self, uint32_t credit)
{
    if (credit == 0 || self->draining || self->state != STATE_ACTIVE
        || self->harness != HARNESS_OK)
        return;
    Driftwatch__V1__Ready ready = DRIFTWATCH__V1__READY__INIT;
    ready.credit = credit;
    Driftwatch__V1__Envelope env = DRIFTWATCH__V1__ENVELOPE__INIT;
    env.body_case = DRIFTWATCH__V1__ENVELOPE__BODY_READY;
    env.ready = &ready;
    send_envelope (self, &env);
}

/* Collect the attempt ids of running jobs into a new array (caller frees the array). */
static char **running_ids (worker_t *self, size_t *count)
{
    size_t n = zhashx_size (self->jobs), used = 0;
    char **ids = calloc (n ? n : 1, sizeof *ids);
    for (job_t *job = zhashx_first (self->jobs); ids && job; job = zhashx_next (self->jobs))
        if (!job->done)
            ids[used++] = job->attempt_id;
    *count = used;
    return ids;
}

static void send_hello (worker_t *self)
{
    Driftwatch__V1__Hello hello = DRIFTWATCH__V1__HELLO__INIT;
    hello.worker_id = self->worker_id;
    hello.hostname = self->hostname;
    hello.slots = (uint32_t) self->config->slots;
    hello.worker_version = (char *) dw_version_string ();
    hello.pid = (uint32_t) getpid ();

    zlist_t *spooled = dw_spool_list (self->spool);
    size_t nspooled = zlist_size (spooled), i = 0;
    char **spooled_ids = calloc (nspooled ? nspooled : 1, sizeof *spooled_ids);
    for (char *id = zlist_first (spooled); spooled_ids && id; id = zlist_next (spooled))
        spooled_ids[i++] = id;
    hello.n_spooled_attempt_ids = spooled_ids ? i : 0;
    hello.spooled_attempt_ids = spooled_ids;

    size_t nrunning = 0;
    char **running = running_ids (self, &nrunning);
    hello.n_running_attempt_ids = running ? nrunning : 0;
    hello.running_attempt_ids = running;

    /* What this host can sandbox and which limits it really enforces. */
    char *capabilities[4];
    size_t ncapabilities = 0;
    if (self->preflight.bwrap_ok)
        capabilities[ncapabilities++] = "bwrap";
    if (self->preflight.container_ok)
        capabilities[ncapabilities++] = "container";
    if (self->preflight.cgroup_ok)
        capabilities[ncapabilities++] = "cgroup";
    hello.n_capabilities = ncapabilities;
    hello.capabilities = capabilities;
    Driftwatch__V1__LimitSupport limits[DW_LIMIT_COUNT];
    Driftwatch__V1__LimitSupport *limit_pointers[DW_LIMIT_COUNT];
    for (int i = 0; i < DW_LIMIT_COUNT; i++) {
        const dw_limit_entry_t *entry = &self->preflight.limits.entries[i];
        driftwatch__v1__limit_support__init (&limits[i]);
        limits[i].name = (char *) (entry->limit ? entry->limit : "unknown");
        limits[i].enforced = entry->enforced;
        limits[i].mechanism = (char *) entry->mechanism;
        limit_pointers[i] = &limits[i];
    }
    hello.n_limits = DW_LIMIT_COUNT;
    hello.limits = limit_pointers;

    Driftwatch__V1__Envelope env = DRIFTWATCH__V1__ENVELOPE__INIT;
    env.body_case = DRIFTWATCH__V1__ENVELOPE__BODY_HELLO;
    env.hello = &hello;
    send_envelope (self, &env);
    self->hello_sent_ms = dw_mono_ms ();

    dw_info ("event=hello_sent worker=%s slots=%d spooled=%zu running=%zu", self->worker_id,
             self->config->slots, nspooled, nrunning);
    free (running);
    free (spooled_ids);
    zlist_destroy (&spooled);
}

static void send_heartbeat (worker_t *self)
{
    Driftwatch__V1__Heartbeat heartbeat = DRIFTWATCH__V1__HEARTBEAT__INIT;
    heartbeat.time_ms = dw_now_ms ();
    size_t nrunning = 0;
    char **running = running_ids (self, &nrunning);
    heartbeat.n_running_attempt_ids = running ? nrunning : 0;
    heartbeat.running_attempt_ids = running;
    int free_slots = self->config->slots - count_running (self);
    heartbeat.free_slots = free_slots > 0 ? (uint32_t) free_slots : 0;

    Driftwatch__V1__Envelope env = DRIFTWATCH__V1__ENVELOPE__INIT;
    env.body_case = DRIFTWATCH__V1__ENVELOPE__BODY_HEARTBEAT;
    env.heartbeat = &heartbeat;
    send_envelope (self, &env);
    free (running);
}

/* Send every event of JOB not yet sent on this connection, in batches. */
static void flush_events (worker_t *self, job_t *job)
{
    if (self->state != STATE_ACTIVE)
        return;

    Driftwatch__V1__JobEvent items[DW_EVENTS_BATCH_MAX];
    Driftwatch__V1__JobEvent *pointers[DW_EVENTS_BATCH_MAX];
    size_t count = 0, bytes = 0;

    for (event_t *event = zlistx_first (job->unacked); event;
         event = zlistx_next (job->unacked)) {
        if (event->seq <= job->sent_through)
            continue;
        Driftwatch__V1__JobEvent *item = &items[count];
        driftwatch__v1__job_event__init (item);
        item->seq = event->seq;
        item->time_ms = event->time_ms;
        item->kind = "agent";
        item->payload.data = event->payload;
        item->payload.len = event->len;
        item->truncated = event->truncated;
        pointers[count++] = item;
        bytes += event->len;

        /* Keep each batch well below the message size limit. */
        if (count == DW_EVENTS_BATCH_MAX || bytes > DW_WIRE_MAX_MESSAGE / 2) {
            Driftwatch__V1__JobEvents batch = DRIFTWATCH__V1__JOB_EVENTS__INIT;
            batch.attempt_id = job->attempt_id;
            batch.n_events = count;
            batch.events = pointers;
            Driftwatch__V1__Envelope env = DRIFTWATCH__V1__ENVELOPE__INIT;
            env.body_case = DRIFTWATCH__V1__ENVELOPE__BODY_EVENTS;
            env.events = &batch;
            if (send_envelope (self, &env) != 0)
                return;
            job->sent_through = items[count - 1].seq;
            job->last_events_sent_ms = dw_mono_ms ();
            count = 0;
            bytes = 0;
        }
    }
    if (count > 0) {
        Driftwatch__V1__JobEvents batch = DRIFTWATCH__V1__JOB_EVENTS__INIT;
        batch.attempt_id = job->attempt_id;
        batch.n_events = count;
        batch.events = pointers;
        Driftwatch__V1__Envelope env = DRIFTWATCH__V1__ENVELOPE__INIT;
        env.body_case = DRIFTWATCH__V1__ENVELOPE__BODY_EVENTS;
        env.events = &batch;
        if (send_envelope (self, &env) == 0) {
            job->sent_through = items[count - 1].seq;
            job->last_events_sent_ms = dw_mono_ms ();
        }
    }
}

static void send_spooled_result (worker_t *self, const char *attempt_id)
{
    size_t len = 0;
    uint8_t *data = dw_spool_get (self->spool, attempt_id, &len);
    if (!data) {
        dw_error ("event=spool_read_failed attempt=%s error=\"%s\"", attempt_id, strerror (errno));
        return;
    }
    Driftwatch__V1__JobResult *result = driftwatch__v1__job_result__unpack (NULL, len, data);
    free (data);
    if (!result) {
        /* A spool entry that does not decode can never be delivered: keep the
         * file for inspection under another name and stop resending it. */
        dw_spool_quarantine (self->spool, attempt_id);
        dw_error ("event=spool_entry_corrupt attempt=%s action=quarantined", attempt_id);
        return;
    }

    Driftwatch__V1__Envelope env = DRIFTWATCH__V1__ENVELOPE__INIT;
    env.body_case = DRIFTWATCH__V1__ENVELOPE__BODY_RESULT;
    env.result = result;
    if (send_envelope (self, &env) == 0)
        dw_info ("event=result_sent attempt=%s job=%s outcome=%d", attempt_id, result->job_id,
                 (int) result->outcome);
    driftwatch__v1__job_result__free_unpacked (result, NULL);
}

/* After (re)registration: deliver everything the coordinator may not have. */
static void resend_pending (worker_t *self)
{
    for (job_t *job = zhashx_first (self->jobs); job; job = zhashx_next (self->jobs)) {
        job->sent_through = job->acked_through;
        flush_events (self, job);
    }
    zlist_t *spooled = dw_spool_list (self->spool);
    for (char *id = zlist_first (spooled); id; id = zlist_next (spooled))
        send_spooled_result (self, id);
    zlist_destroy (&spooled);
}

/* --- connection ------------------------------------------------------------- */

static void disconnect (worker_t *self, const char *reason)
{
    if (self->dealer) {
        zpoller_remove (self->poller, self->dealer);
        zsock_destroy (&self->dealer);
    }
    self->state = STATE_DISCONNECTED;

    /* Exponential backoff with jitter, so a restarted coordinator is not hit
     * by every worker in the same millisecond. */
    uint32_t jitter = (uint32_t) (randof (self->backoff_ms / 2 + 1));
    self->reconnect_at_ms = dw_mono_ms () + self->backoff_ms / 2 + jitter;
    dw_warn ("event=disconnected reason=%s retry_in_ms=%u", reason,
             (unsigned) (self->reconnect_at_ms - dw_mono_ms ()));
    self->backoff_ms = self->backoff_ms * 2 > DW_WORKER_BACKOFF_MAX_MS ? DW_WORKER_BACKOFF_MAX_MS
                                                                       : self->backoff_ms * 2;
}

static int connect_dealer (worker_t *self)
{
    self->dealer = zsock_new (ZMQ_DEALER);
    if (!self->dealer)
        return -1;
    dw_wire_configure_socket (self->dealer);
    /* Reconnection is handled here with fresh sockets, not by libzmq. */
    zsock_set_reconnect_ivl (self->dealer, 1000);
    if (!self->config->insecure) {
        char err[512];
        if (dw_curve_client_apply (self->dealer, self->config->curve_secret_path,
                                   self->config->server_key, err, sizeof err)
            != 0) {
            dw_error ("event=curve_setup_failed error=\"%s\"", err);
            zsock_destroy (&self->dealer);
            return -1;
        }
    }
    if (zsock_connect (self->dealer, "%s", self->config->coordinator) != 0) {
        dw_error ("event=connect_failed endpoint=%s error=\"%s\"", self->config->coordinator,
                  zmq_strerror (zmq_errno ()));
        zsock_destroy (&self->dealer);
        return -1;
    }
    zpoller_add (self->poller, self->dealer);
    self->state = STATE_WAIT_WELCOME;
    self->last_rx_ms = dw_mono_ms ();
    send_hello (self);
    return 0;
}

/* --- harness check ------------------------------------------------------------ */

static void *harness_thread (void *arg)
{
    harness_check_t *check = arg;
    char detail[512] = "", version[64] = "";
    int ok = 0;
    Driftwatch__V1__AgentConfig *agent =
        driftwatch__v1__agent_config__unpack (NULL, check->agent_len, check->agent);
    if (agent) {
        dw_jobrun_options_t opts = {
            .work_root = check->work_root,
            .cache_dir = check->cache_dir,
            .stub_agent = check->config->stub_agent,
            .sandbox = check->config->sandbox,
            .sandbox_uid = check->config->sandbox_uid,
            .claude_path = check->config->claude_path,
            .upstream_url = check->config->upstream_url,
            .api_key = check->config->api_key,
        };
        ok = dw_jobrun_harness_check (agent, &opts, detail, sizeof detail, version,
                                      sizeof version)
             == 0;
        /* Running another CLI version than the run pins would mix two
         * configurations in one day's results. */
        if (ok && agent->cli_version && *agent->cli_version && *version
            && strncmp (version, agent->cli_version, strlen (agent->cli_version)) != 0) {
            ok = 0;
            snprintf (detail, sizeof detail,
                      "the agent CLI is version %s but the run pins %s; install the pinned "
                      "version (deploy/install-claude-code.sh) or start the run with "
                      "--cli-version %s",
                      version, agent->cli_version, version);
        }
        driftwatch__v1__agent_config__free_unpacked (agent, NULL);
    }
    else
        snprintf (detail, sizeof detail, "the agent configuration could not be decoded");
    zsock_send (check->thread_pipe, "iss", ok, detail, version);
    return NULL;
}

static void harness_check_destroy (worker_t *self)
{
    harness_check_t *check = self->harness_check;
    if (!check)
        return;
    zpoller_remove (self->poller, check->pipe);
    pthread_join (check->thread, NULL);
    zsock_destroy (&check->pipe);
    zsock_destroy (&check->thread_pipe);
    free (check->agent);
    free (check);
    self->harness_check = NULL;
}

static void send_harness_status (worker_t *self)
{
    Driftwatch__V1__HarnessStatus status = DRIFTWATCH__V1__HARNESS_STATUS__INIT;
    status.ok = self->harness == HARNESS_OK;
    status.detail = self->harness_detail;
    status.cli_version = self->harness_version;
    Driftwatch__V1__Envelope env = DRIFTWATCH__V1__ENVELOPE__INIT;
    env.body_case = DRIFTWATCH__V1__ENVELOPE__BODY_HARNESS;
    env.harness = &status;
    send_envelope (self, &env);
}

/* Check the harness for AGENT unless it was checked for this configuration. */
static void start_harness_check (worker_t *self, const Driftwatch__V1__AgentConfig *agent)
{
    if (strcmp (self->harness_config, agent->config_hash) == 0
        && self->harness != HARNESS_UNKNOWN)
        return;
    if (self->harness_check)
        return;

    harness_check_t *check = calloc (1, sizeof *check);
    if (!check)
        return;
    check->config = self->config;
    snprintf (check->work_root, sizeof check->work_root, "%s", self->work_dir);
    snprintf (check->cache_dir, sizeof check->cache_dir, "%s", self->cache_dir);
    dw_mkdir_p (check->work_root, 0711);
    check->agent_len = driftwatch__v1__agent_config__get_packed_size (agent);
    check->agent = malloc (check->agent_len ? check->agent_len : 1);
    driftwatch__v1__agent_config__pack (agent, check->agent);
    char endpoint[64];
    snprintf (endpoint, sizeof endpoint, "inproc://harness-%p", (void *) check);
    check->pipe = zsock_new_pair (NULL);
    zsock_bind (check->pipe, "%s", endpoint);
    check->thread_pipe = zsock_new_pair (NULL);
    zsock_connect (check->thread_pipe, "%s", endpoint);
    if (pthread_create (&check->thread, NULL, harness_thread, check) != 0) {
        zsock_destroy (&check->pipe);
        zsock_destroy (&check->thread_pipe);
        free (check->agent);
        free (check);
        return;
    }
    self->harness_check = check;
    self->harness = HARNESS_CHECKING;
    snprintf (self->harness_config, sizeof self->harness_config, "%s", agent->config_hash);
    zpoller_add (self->poller, check->pipe);
    dw_info ("event=harness_check_started agent=%s config=%.12s", agent->kind, agent->config_hash);
}

static void handle_harness_result (worker_t *self)
{
    int ok = 0;
    char *detail = NULL, *version = NULL;
    if (zsock_recv (self->harness_check->pipe, "iss", &ok, &detail, &version) != 0)
        return;
    self->harness = ok ? HARNESS_OK : HARNESS_BROKEN;
    snprintf (self->harness_detail, sizeof self->harness_detail, "%s", detail ? detail : "");
    snprintf (self->harness_version, sizeof self->harness_version, "%s", version ? version : "");
    zstr_free (&detail);
    zstr_free (&version);
    harness_check_destroy (self);

    if (ok)
        dw_info ("event=harness_ok cli_version=\"%s\"", self->harness_version);
    else
        dw_error ("event=harness_broken detail=\"%s\" action=taking_no_jobs",
                  self->harness_detail);
    if (self->state != STATE_ACTIVE)
        return;
    send_harness_status (self);
    int free_slots = self->config->slots - count_running (self);
    if (ok)
        send_ready (self, free_slots > 0 ? (uint32_t) free_slots : 0);
}

/* --- handling coordinator messages ------------------------------------------ */

static void start_job (worker_t *self, Driftwatch__V1__JobAssignment *assignment)
{
    if (!dw_spool_valid_id (assignment->attempt_id) || !assignment->task) {
        dw_warn ("event=job_rejected reason=invalid_assignment attempt=%s",
                 assignment->attempt_id);
        return;
    }
    if (zhashx_lookup (self->jobs, assignment->attempt_id)) {
        dw_info ("event=job_duplicate attempt=%s", assignment->attempt_id);
        return;
    }
    if (count_running (self) >= self->config->slots)
        /* Credit can briefly disagree after a reconnect; run it anyway rather
         * than lose the assignment, and say so. */
        dw_warn ("event=job_over_credit attempt=%s running=%d slots=%d", assignment->attempt_id,
                 count_running (self), self->config->slots);

    job_t *job = calloc (1, sizeof *job);
    if (!job)
        return;
    snprintf (job->attempt_id, sizeof job->attempt_id, "%s", assignment->attempt_id);
    snprintf (job->job_id, sizeof job->job_id, "%s", assignment->job_id);
    job->config = self->config;
    job->unacked = zlistx_new ();
    zlistx_set_destructor (job->unacked, event_destroy);
    /* The runner makes its own work_root/<attempt id> directory. */
    snprintf (job->work_root, sizeof job->work_root, "%s", self->work_dir);
    snprintf (job->cache_dir, sizeof job->cache_dir, "%s", self->cache_dir);
    job->worker_id = self->worker_id;

    job->assignment_len = driftwatch__v1__job_assignment__get_packed_size (assignment);
    job->assignment = malloc (job->assignment_len ? job->assignment_len : 1);
    driftwatch__v1__job_assignment__pack (assignment, job->assignment);

    char endpoint[128];
    snprintf (endpoint, sizeof endpoint, "inproc://job-%s", job->attempt_id);
    job->pipe = zsock_new_pair (NULL);
    zsock_set_rcvhwm (job->pipe, 256);
    zsock_bind (job->pipe, "%s", endpoint);
    job->thread_pipe = zsock_new_pair (NULL);
    zsock_set_sndhwm (job->thread_pipe, 256);
    zsock_set_linger (job->thread_pipe, -1);
    zsock_connect (job->thread_pipe, "%s", endpoint);

    if (pthread_create (&job->thread, NULL, job_thread, job) != 0) {
        dw_error ("event=job_thread_failed attempt=%s error=\"%s\"", job->attempt_id,
                  strerror (errno));
        void *item = job;
        job_destroy (&item);
        return;
    }
    job->thread_started = 1;
    zhashx_insert (self->jobs, job->attempt_id, job);
    zpoller_add (self->poller, job->pipe);
    dw_info ("event=job_started attempt=%s job=%s task=%s attempt_number=%u", job->attempt_id,
             job->job_id, assignment->task->instance_id, assignment->attempt_number);
}

/* Forget a finished job once its result and all its events are acknowledged. */
static void maybe_retire_job (worker_t *self, job_t *job)
{
    if (!job->done || !job->result_acked)
        return;
    if (zlistx_size (job->unacked) > 0 && dw_mono_ms () < job->retire_at_ms)
        return;
    if (zlistx_size (job->unacked) > 0)
        dw_warn ("event=events_unacknowledged attempt=%s count=%zu", job->attempt_id,
                 zlistx_size (job->unacked));
    dw_spool_remove_events (self->spool, job->attempt_id);
    if (job->pipe)
        zpoller_remove (self->poller, job->pipe);
    zhashx_delete (self->jobs, job->attempt_id);
}

static void handle_events_ack (worker_t *self, Driftwatch__V1__EventsAck *ack)
{
    job_t *job = zhashx_lookup (self->jobs, ack->attempt_id);
    if (!job)
        return;
    if (ack->through_seq > job->acked_through)
        job->acked_through = ack->through_seq;
    event_t *event;
    while ((event = zlistx_first (job->unacked)) && event->seq <= job->acked_through)
        zlistx_delete (job->unacked, zlistx_cursor (job->unacked));

    if (job->paused && zlistx_size (job->unacked) < DW_WORKER_UNACKED_EVENTS_MAX / 2) {
        zpoller_add (self->poller, job->pipe);
        job->paused = 0;
    }
    maybe_retire_job (self, job);
}

static void handle_result_ack (worker_t *self, Driftwatch__V1__ResultAck *ack)
{
    if (!dw_spool_valid_id (ack->attempt_id))
        return;
    if (ack->stored)
        dw_info ("event=result_acknowledged attempt=%s disposition=%s", ack->attempt_id,
                 ack->disposition);
    else
        /* The coordinator will never accept it (for example an attempt it does
         * not know); resending forever would not help. */
        dw_error ("event=result_rejected attempt=%s disposition=%s action=dropped",
                  ack->attempt_id, ack->disposition);
    dw_spool_remove (self->spool, ack->attempt_id);

    job_t *job = zhashx_lookup (self->jobs, ack->attempt_id);
    if (!job)
        return;
    job->result_acked = 1;
    job->retire_at_ms = dw_mono_ms () + EVENTS_AFTER_RESULT_MS;
    /* Events that arrived while the coordinator could not store them (its
     * database was down) were not acknowledged: send them again now rather
     * than forget them with the job. */
    if (zlistx_size (job->unacked) > 0) {
        job->sent_through = job->acked_through;
        flush_events (self, job);
    }
    maybe_retire_job (self, job);
}

static void handle_message (worker_t *self)
{
    zmsg_t *msg = zmsg_recv (self->dealer);
    if (!msg)
        return;
    self->last_rx_ms = dw_mono_ms ();

    zframe_t *frame = zmsg_first (msg);
    char err[256];
    Driftwatch__V1__Envelope *env =
        frame ? dw_wire_decode (zframe_data (frame), zframe_size (frame), &self->wire_stats, err,
                                sizeof err)
              : NULL;
    if (!env) {
        dw_warn ("event=message_rejected peer=coordinator reason=\"%s\"",
                 frame ? err : "empty message");
        zmsg_destroy (&msg);
        return;
    }

    switch (env->body_case) {
    case DRIFTWATCH__V1__ENVELOPE__BODY_WELCOME: {
        Driftwatch__V1__Welcome *welcome = env->welcome;
        if (welcome->heartbeat_interval_ms >= 100 && welcome->heartbeat_interval_ms <= 60000)
            self->heartbeat_ms = welcome->heartbeat_interval_ms;
        if (welcome->liveness >= 2 && welcome->liveness <= 100)
            self->liveness = welcome->liveness;
        self->state = STATE_ACTIVE;
        self->backoff_ms = DW_WORKER_BACKOFF_MIN_MS;
        self->unanswered_hellos = 0;
        /* A drain ends with the connection it came on: a new coordinator
         * (or the same one restarted) may hand out work again. */
        if (!s_stop_requested)
            self->draining = 0;
        dw_info ("event=registered worker=%s coordinator_version=\"%s\" heartbeat_ms=%u",
                 self->worker_id, welcome->coordinator_version, self->heartbeat_ms);
        resend_pending (self);
        self->last_resend_ms = dw_mono_ms ();
        /* Jobs are requested only once the harness for this run's agent
         * configuration is known to work. */
        if (welcome->agent)
            start_harness_check (self, welcome->agent);
        if (self->harness == HARNESS_OK || self->harness == HARNESS_BROKEN)
            send_harness_status (self);
        int free_slots = self->config->slots - count_running (self);
        send_ready (self, free_slots > 0 ? (uint32_t) free_slots : 0);
        break;
    }
    case DRIFTWATCH__V1__ENVELOPE__BODY_REJECT:
        dw_error ("event=registration_rejected reason=\"%s\"", env->reject->reason);
        disconnect (self, "rejected");
        break;
    case DRIFTWATCH__V1__ENVELOPE__BODY_HEARTBEAT:
        break;
    case DRIFTWATCH__V1__ENVELOPE__BODY_JOB:
        if (self->state == STATE_ACTIVE)
            start_job (self, env->job);
        break;
    case DRIFTWATCH__V1__ENVELOPE__BODY_EVENTS_ACK:
        handle_events_ack (self, env->events_ack);
        break;
    case DRIFTWATCH__V1__ENVELOPE__BODY_RESULT_ACK:
        handle_result_ack (self, env->result_ack);
        break;
    case DRIFTWATCH__V1__ENVELOPE__BODY_CANCEL: {
        job_t *job = zhashx_lookup (self->jobs, env->cancel->attempt_id);
        dw_info ("event=cancel_received attempt=%s reason=\"%s\" known=%d",
                 env->cancel->attempt_id, env->cancel->reason, job != NULL);
        if (job)
            job->cancel = 1;
        break;
    }
    case DRIFTWATCH__V1__ENVELOPE__BODY_DRAIN:
        dw_info ("event=drain_received reason=\"%s\"", env->drain->reason);
        self->draining = 1;
        break;
    default:
        dw_warn ("event=message_unexpected type=%s", dw_wire_body_name (env->body_case));
        break;
    }
    dw_wire_free (&env);
    zmsg_destroy (&msg);
}

/* --- spooled events ------------------------------------------------------------- */

/* Durably store JOB's unacknowledged events before its result, so a worker
 * that crashes before the coordinator acknowledges them still delivers them. */
static int spool_events (worker_t *self, job_t *job)
{
    size_t count = zlistx_size (job->unacked);
    if (count == 0)
        return 0;

    Driftwatch__V1__JobEvent *items = calloc (count, sizeof *items);
    Driftwatch__V1__JobEvent **pointers = calloc (count, sizeof *pointers);
    if (!items || !pointers) {
        free (items);
        free (pointers);
        return -1;
    }
    size_t i = 0;
    for (event_t *event = zlistx_first (job->unacked); event && i < count;
         event = zlistx_next (job->unacked), i++) {
        driftwatch__v1__job_event__init (&items[i]);
        items[i].seq = event->seq;
        items[i].time_ms = event->time_ms;
        items[i].kind = "agent";
        items[i].payload.data = event->payload;
        items[i].payload.len = event->len;
        items[i].truncated = event->truncated;
        pointers[i] = &items[i];
    }
    Driftwatch__V1__JobEvents batch = DRIFTWATCH__V1__JOB_EVENTS__INIT;
    batch.attempt_id = job->attempt_id;
    batch.n_events = i;
    batch.events = pointers;

    int rc = 0;
    size_t len = driftwatch__v1__job_events__get_packed_size (&batch);
    if (len > DW_SPOOL_ENTRY_MAX) {
        /* Too large to read back: keep them in memory only, and say so. */
        dw_warn ("event=events_not_spooled attempt=%s count=%zu bytes=%zu", job->attempt_id,
                 i, len);
    }
    else {
        uint8_t *packed = malloc (len ? len : 1);
        if (!packed)
            rc = -1;
        else {
            driftwatch__v1__job_events__pack (&batch, packed);
            rc = dw_spool_put_events (self->spool, job->attempt_id, packed, len);
            free (packed);
        }
    }
    free (items);
    free (pointers);
    return rc;
}

/* After a restart: bring back the events spooled with each unacknowledged
 * result as a finished job, so the usual resend and retire logic applies. */
static void restore_spooled_events (worker_t *self)
{
    zlist_t *spooled = dw_spool_list (self->spool);
    for (char *id = zlist_first (spooled); id; id = zlist_next (spooled)) {
        size_t len = 0;
        uint8_t *data = dw_spool_get_events (self->spool, id, &len);
        if (!data)
            continue;
        Driftwatch__V1__JobEvents *batch = driftwatch__v1__job_events__unpack (NULL, len, data);
        free (data);
        job_t *job = batch ? calloc (1, sizeof *job) : NULL;
        if (!job) {
            dw_warn ("event=spooled_events_unreadable attempt=%s", id);
            if (batch)
                driftwatch__v1__job_events__free_unpacked (batch, NULL);
            continue;
        }
        snprintf (job->attempt_id, sizeof job->attempt_id, "%s", id);
        job->config = self->config;
        job->done = 1;
        job->unacked = zlistx_new ();
        zlistx_set_destructor (job->unacked, event_destroy);
        for (size_t i = 0; i < batch->n_events; i++) {
            event_t *event = calloc (1, sizeof *event);
            if (!event)
                break;
            event->seq = batch->events[i]->seq;
            event->time_ms = batch->events[i]->time_ms;
            event->len = batch->events[i]->payload.len;
            event->payload = malloc (event->len ? event->len : 1);
            if (event->len)
                memcpy (event->payload, batch->events[i]->payload.data, event->len);
            event->truncated = batch->events[i]->truncated;
            zlistx_add_end (job->unacked, event);
            if (event->seq > job->next_seq)
                job->next_seq = event->seq;
        }
        driftwatch__v1__job_events__free_unpacked (batch, NULL);
        zhashx_insert (self->jobs, job->attempt_id, job);
        dw_info ("event=spooled_events_restored attempt=%s count=%zu", job->attempt_id,
                 zlistx_size (job->unacked));
    }
    zlist_destroy (&spooled);
}

/* --- handling job threads ---------------------------------------------------- */

/* Count attempts lost to this worker's own setup; past the limit, stop taking
 * jobs and report the harness as broken, so the coordinator gives the work
 * to healthy workers instead of burning every attempt here. */
static void note_setup_failure (worker_t *self, const uint8_t *packed, size_t len)
{
    Driftwatch__V1__JobResult *result = driftwatch__v1__job_result__unpack (NULL, len, packed);
    if (!result)
        return;
    int setup_failed = result->outcome == DRIFTWATCH__V1__OUTCOME__OUTCOME_INFRA_ERROR
                       && (strcmp (result->outcome_reason, "sandbox_failed") == 0
                           || strcmp (result->outcome_reason, "agent_prepare_failed") == 0);
    if (!setup_failed) {
        self->setup_failures = 0;
        driftwatch__v1__job_result__free_unpacked (result, NULL);
        return;
    }
    self->setup_failures++;
    if (self->setup_failures >= SETUP_FAILURES_MAX && self->harness == HARNESS_OK) {
        self->harness = HARNESS_BROKEN;
        snprintf (self->harness_detail, sizeof self->harness_detail,
                  "%d attempts in a row failed in this worker's setup (%s): %.300s",
                  self->setup_failures, result->outcome_reason, result->detail);
        dw_error ("event=harness_broken detail=\"%s\" action=taking_no_jobs",
                  self->harness_detail);
        send_harness_status (self);
    }
    driftwatch__v1__job_result__free_unpacked (result, NULL);
}

static void handle_job_output (worker_t *self, job_t *job)
{
    zmsg_t *msg = zmsg_recv (job->pipe);
    if (!msg)
        return;
    char *kind = zmsg_popstr (msg);
    zframe_t *data = zmsg_pop (msg);

    if (kind && (kind[0] == 'E' || kind[0] == 'T') && data) {
        event_t *event = calloc (1, sizeof *event);
        if (event) {
            event->seq = ++job->next_seq;
            event->time_ms = dw_now_ms ();
            event->len = zframe_size (data);
            event->payload = malloc (event->len ? event->len : 1);
            memcpy (event->payload, zframe_data (data), event->len);
            event->truncated = kind[0] == 'T';
            zlistx_add_end (job->unacked, event);
        }
        if (zlistx_size (job->unacked) >= DW_WORKER_UNACKED_EVENTS_MAX && !job->paused) {
            /* Stop reading this job until the coordinator catches up. */
            zpoller_remove (self->poller, job->pipe);
            job->paused = 1;
            dw_warn ("event=events_backpressure attempt=%s unacked=%zu", job->attempt_id,
                     zlistx_size (job->unacked));
        }
    }
    else if (kind && kind[0] == 'R') {
        job->done = 1;
        pthread_join (job->thread, NULL);
        job->thread_started = 0;
        flush_events (self, job);

        if (job->returned) {
            dw_info ("event=result_discarded attempt=%s reason=handed_back", job->attempt_id);
            if (job->pipe)
                zpoller_remove (self->poller, job->pipe);
            zhashx_delete (self->jobs, job->attempt_id);
        }
        else if (!data || zframe_size (data) == 0) {
            dw_error ("event=job_no_result attempt=%s reason=out_of_memory", job->attempt_id);
        }
        else if (spool_events (self, job) != 0
                 || dw_spool_put (self->spool, job->attempt_id, zframe_data (data),
                                  zframe_size (data))
                        != 0) {
            /* Without a durable copy the result could be lost: keep it in the
             * job and fail loudly. The coordinator's lease will expire and the
             * job will be retried as an infrastructure failure. */
            dw_error ("event=spool_write_failed attempt=%s error=\"%s\"", job->attempt_id,
                      strerror (errno));
        }
        else {
            dw_info ("event=job_finished attempt=%s events=%" PRIu64, job->attempt_id,
                     job->next_seq);
            send_spooled_result (self, job->attempt_id);
            note_setup_failure (self, zframe_data (data), zframe_size (data));
        }
        send_ready (self, 1);
    }
    free (kind);
    zframe_destroy (&data);
    zmsg_destroy (&msg);
}

/* --- setup ------------------------------------------------------------------- */

static int load_worker_id (worker_t *self)
{
    if (self->config->worker_id && *self->config->worker_id) {
        snprintf (self->worker_id, sizeof self->worker_id, "%s", self->config->worker_id);
        return 0;
    }
    char path[PATH_MAX];
    snprintf (path, sizeof path, "%s/worker-id", self->config->data_dir);
    char *text = dw_read_file (path, 256, NULL);
    if (text) {
        text[strcspn (text, "\r\n")] = '\0';
        snprintf (self->worker_id, sizeof self->worker_id, "%s", text);
        free (text);
        if (self->worker_id[0])
            return 0;
    }

    /* First start: a random id that survives restarts. */
    zuuid_t *id = zuuid_new ();
    snprintf (self->worker_id, sizeof self->worker_id, "w-%.12s", zuuid_str_canonical (id));
    zuuid_destroy (&id);
    char line[160];
    int n = snprintf (line, sizeof line, "%s\n", self->worker_id);
    if (dw_write_file_atomic (path, line, (size_t) n, 0644) != 0) {
        dw_error ("event=worker_id_save_failed path=%s error=\"%s\"", path, strerror (errno));
        return -1;
    }
    return 0;
}

static int setup (worker_t *self, const dw_worker_config_t *config)
{
    self->config = config;
    self->heartbeat_ms = config->heartbeat_ms ? config->heartbeat_ms : 1000;
    self->liveness = config->liveness ? config->liveness : 5;
    self->backoff_ms = DW_WORKER_BACKOFF_MIN_MS;
    if (gethostname (self->hostname, sizeof self->hostname) != 0)
        snprintf (self->hostname, sizeof self->hostname, "unknown");

    if (dw_mkdir_p (config->data_dir, 0700) != 0) {
        dw_error ("event=data_dir_failed path=%s error=\"%s\"", config->data_dir,
                  strerror (errno));
        return -1;
    }
    snprintf (self->spool_dir, sizeof self->spool_dir, "%s/spool", config->data_dir);
    snprintf (self->cache_dir, sizeof self->cache_dir, "%s/git-cache", config->data_dir);
    snprintf (self->work_dir, sizeof self->work_dir, "%s/work", config->data_dir);
    /* The sandbox's unprivileged user must traverse the data and work
     * directories (0711: no listing) but never the spool, keys or cache. */
    chmod (config->data_dir, 0711);
    if (dw_mkdir_p (self->cache_dir, 0700) != 0 || dw_mkdir_p (self->work_dir, 0711) != 0
        || chmod (self->work_dir, 0711) != 0) {
        dw_error ("event=data_dir_failed path=%s error=\"%s\"", config->data_dir,
                  strerror (errno));
        return -1;
    }
    char err[512];
    self->spool = dw_spool_new (self->spool_dir, err, sizeof err);
    if (!self->spool) {
        dw_error ("event=spool_failed error=\"%s\"", err);
        return -1;
    }
    if (load_worker_id (self) != 0)
        return -1;
    if (config->insecure && !dw_curve_endpoint_is_loopback (config->coordinator)) {
        dw_error ("event=insecure_refused endpoint=%s reason=\"unencrypted operation is allowed "
                  "only on a loopback endpoint; give the worker a key and --server-key\"",
                  config->coordinator);
        return -1;
    }
    if (!config->insecure && (!config->server_key || !config->curve_secret_path)) {
        dw_error ("event=curve_missing reason=\"--server-key is required (the coordinator's "
                  "public key or certificate file); create this worker's key with 'worker "
                  "keygen'\"");
        return -1;
    }
    if (!config->insecure) {
        /* A bad key file never gets better by retrying: check it once now. */
        zsock_t *probe = zsock_new (ZMQ_DEALER);
        char err[512];
        int rc = probe ? dw_curve_client_apply (probe, config->curve_secret_path,
                                                config->server_key, err, sizeof err)
                       : -1;
        zsock_destroy (&probe);
        if (rc != 0) {
            dw_error ("event=curve_setup_failed error=\"%s\"", err);
            fprintf (stderr, "worker: %s\n", err);
            return -1;
        }
    }

    /* Say what the sandbox backends need before taking any job. */
    dw_preflight_options_t preflight_options = { .scratch_dir = self->work_dir };
    dw_preflight_run (&preflight_options, &self->preflight);
    for (int i = 0; i < self->preflight.message_count; i++)
        dw_warn ("event=preflight message=\"%s\"", self->preflight.messages[i]);
    char limits_text[1024];
    dw_limit_report_format (&self->preflight.limits, limits_text, sizeof limits_text);
    dw_info ("event=limits_probed bwrap=%d cgroup=%d container=%d limits=\"%s\"",
             self->preflight.bwrap_ok, self->preflight.cgroup_ok, self->preflight.container_ok,
             limits_text);
    if (self->preflight.container_ok) {
        /* Containers left by a crashed worker are removed before new work. */
        char err[256];
        if (dw_container_reap (NULL, err, sizeof err) < 0)
            dw_warn ("event=container_reap_failed error=\"%s\"", err);
    }

    self->jobs = zhashx_new ();
    zhashx_set_destructor (self->jobs, job_destroy);
    self->poller = zpoller_new (NULL);
    restore_spooled_events (self);
    return 0;
}

static void teardown (worker_t *self)
{
    harness_check_destroy (self);
    zhashx_destroy (&self->jobs);
    if (self->dealer)
        zsock_destroy (&self->dealer);
    zpoller_destroy (&self->poller);
    dw_spool_destroy (&self->spool);
}

/* Hand every unfinished job back to the coordinator and stop them. */
static void hand_back_jobs (worker_t *self, const char *reason)
{
    size_t count = 0;
    char **ids = running_ids (self, &count);
    for (job_t *job = zhashx_first (self->jobs); job; job = zhashx_next (self->jobs))
        if (!job->done) {
            job->returned = 1;
            job->cancel = 1;
        }
    if (count > 0 && self->state == STATE_ACTIVE) {
        Driftwatch__V1__Goodbye goodbye = DRIFTWATCH__V1__GOODBYE__INIT;
        goodbye.reason = (char *) reason;
        goodbye.n_returned_attempt_ids = count;
        goodbye.returned_attempt_ids = ids;
        Driftwatch__V1__Envelope env = DRIFTWATCH__V1__ENVELOPE__INIT;
        env.body_case = DRIFTWATCH__V1__ENVELOPE__BODY_GOODBYE;
        env.goodbye = &goodbye;
        send_envelope (self, &env);
    }
    dw_info ("event=jobs_handed_back count=%zu reason=\"%s\"", count, reason);
    free (ids);
}

static void send_goodbye (worker_t *self, const char *reason)
{
    if (self->state != STATE_ACTIVE)
        return;
    Driftwatch__V1__Goodbye goodbye = DRIFTWATCH__V1__GOODBYE__INIT;
    goodbye.reason = (char *) reason;
    Driftwatch__V1__Envelope env = DRIFTWATCH__V1__ENVELOPE__INIT;
    env.body_case = DRIFTWATCH__V1__ENVELOPE__BODY_GOODBYE;
    env.goodbye = &goodbye;
    send_envelope (self, &env);
}

/* --- main loop ---------------------------------------------------------------- */

static int nothing_left (worker_t *self)
{
    if (count_running (self) > 0)
        return 0;
    zlist_t *spooled = dw_spool_list (self->spool);
    size_t left = zlist_size (spooled);
    zlist_destroy (&spooled);
    return left == 0;
}

static void on_timers (worker_t *self)
{
    uint64_t now = dw_mono_ms ();

    if (self->state == STATE_DISCONNECTED) {
        if (now >= self->reconnect_at_ms && connect_dealer (self) != 0)
            disconnect (self, "connect_failed");
        return;
    }
    if (now - self->last_rx_ms > (uint64_t) self->heartbeat_ms * self->liveness) {
        if (self->state == STATE_WAIT_WELCOME && ++self->unanswered_hellos == 3)
            /* CURVE rejects a wrong key silently, so say what to check. */
            dw_error ("event=no_answer endpoint=%s attempts=3 hint=\"check that the coordinator "
                      "runs at this endpoint, that --server-key is its public key, and that "
                      "this worker's worker.cert is in its keys/workers directory\"",
                      self->config->coordinator);
        disconnect (self, self->state == STATE_WAIT_WELCOME ? "no_welcome" : "coordinator_silent");
        return;
    }
    if (self->state == STATE_ACTIVE && now - self->last_tx_ms >= self->heartbeat_ms)
        send_heartbeat (self);

    for (job_t *job = zhashx_first (self->jobs); job; job = zhashx_next (self->jobs)) {
        /* Events sent long ago and still not acknowledged go out again. */
        if (self->state == STATE_ACTIVE && job->acked_through < job->sent_through
            && now - job->last_events_sent_ms >= RESEND_INTERVAL_MS)
            job->sent_through = job->acked_through;
        flush_events (self, job);
    }
    /* Retire outside the loop above: retiring deletes from the table. */
    zlist_t *expired = zlist_new ();
    for (job_t *job = zhashx_first (self->jobs); job; job = zhashx_next (self->jobs))
        if (job->done && job->result_acked && now >= job->retire_at_ms)
            zlist_append (expired, job);
    for (job_t *job = zlist_first (expired); job; job = zlist_next (expired))
        maybe_retire_job (self, job);
    zlist_destroy (&expired);

    if (self->state == STATE_ACTIVE && now - self->last_resend_ms >= RESEND_INTERVAL_MS) {
        zlist_t *spooled = dw_spool_list (self->spool);
        for (char *id = zlist_first (spooled); id; id = zlist_next (spooled)) {
            job_t *job = zhashx_lookup (self->jobs, id);
            /* A result sent moments ago is still in flight. */
            if (!job || now - job->last_events_sent_ms >= RESEND_INTERVAL_MS)
                send_spooled_result (self, id);
        }
        zlist_destroy (&spooled);
        self->last_resend_ms = now;
    }
}

int dw_worker_run (const dw_worker_config_t *config)
{
    worker_t self;
    memset (&self, 0, sizeof self);
    if (setup (&self, config) != 0) {
        teardown (&self);
        return 1;
    }

    /* CZMQ's own handler would make every poll return early; use a flag. */
    zsys_handler_set (NULL);
    struct sigaction action;
    memset (&action, 0, sizeof action);
    action.sa_handler = on_stop_signal;
    sigaction (SIGINT, &action, NULL);
    sigaction (SIGTERM, &action, NULL);
    signal (SIGPIPE, SIG_IGN);

    dw_info ("event=worker_started worker=%s coordinator=%s slots=%d data_dir=%s version=\"%s\"",
             self.worker_id, config->coordinator, config->slots, config->data_dir,
             dw_version_string ());
    if (connect_dealer (&self) != 0)
        disconnect (&self, "connect_failed");

    int exit_code = 0;
    int stopping = 0;
    for (;;) {
        if (s_stop_requested && !stopping) {
            stopping = 1;
            self.draining = 1;
            self.drain_deadline_ms = dw_mono_ms () + (uint64_t) config->drain_seconds * 1000;
            dw_info ("event=stop_requested running=%d drain_seconds=%u", count_running (&self),
                     config->drain_seconds);
        }
        if (stopping && count_running (&self) > 0 && dw_mono_ms () >= self.drain_deadline_ms) {
            hand_back_jobs (&self, "worker shutting down");
        }
        if ((stopping || (self.draining && config->exit_on_drain)) && nothing_left (&self)) {
            send_goodbye (&self, stopping ? "worker shutting down" : "drained");
            break;
        }
        if (stopping && count_running (&self) == 0 && self.state != STATE_ACTIVE) {
            dw_warn ("event=exit_with_spooled_results reason=coordinator_unreachable");
            break;
        }

        void *which = zpoller_wait (self.poller, LOOP_TICK_MS);
        if (which && which == self.dealer)
            handle_message (&self);
        else if (which && self.harness_check && which == self.harness_check->pipe)
            handle_harness_result (&self);
        else if (which) {
            for (job_t *job = zhashx_first (self.jobs); job; job = zhashx_next (self.jobs))
                if (job->pipe == which) {
                    handle_job_output (&self, job);
                    break;
                }
        }
        on_timers (&self);
    }

    /* Give the last messages a moment to leave before the socket closes. */
    if (self.dealer)
        zsock_set_linger (self.dealer, 500);
    dw_info ("event=worker_stopped worker=%s", self.worker_id);
    teardown (&self);
    return exit_code;
}
