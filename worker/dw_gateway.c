/* Model gateway: see dw_gateway.h.
 *
 * Each agent request is served by MHD in its own connection thread. When the
 * request body is complete, a relay thread runs the upstream transfer with
 * libcurl and writes the response body into a bounded pipe; the connection
 * thread waits for the response headers, queues an MHD response whose
 * content callback reads from the pipe, and MHD sends the bytes as they
 * come. The pipe blocks the curl write callback while it is full, which
 * throttles the upstream instead of buffering the whole response.
 */
#include "dw_gateway.h"

#include <curl/curl.h>
#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "dw_log.h"
#include "dw_util.h"

#define DEFAULT_UPSTREAM "https://api.anthropic.com"
/* Time allowed to connect to the upstream. */
#define CONNECT_TIMEOUT_MS 15000
/* Backstop for an upstream that stops sending: the CLI's own idle timeout
 * normally fires much earlier. */
#define UPSTREAM_IDLE_ABORT_S 900
/* How often blocked threads wake up to look for shutdown or a gone client. */
#define WAIT_SLICE_MS 250
/* Response headers copied from the upstream to the agent. */
static const char *const RESPONSE_HEADERS[] = {
    "content-type", "retry-after", "request-id", "x-should-retry", "anthropic-ratelimit-", NULL
};

typedef struct relay relay_t;

struct dw_gateway {
    char socket_path[sizeof ((struct sockaddr_un *) 0)->sun_path];
    char *upstream;
    char *api_key;
    size_t api_key_len;
    char *tag;
    struct MHD_Daemon *daemon;

    pthread_mutex_t lock;
    pthread_cond_t idle;          /* signalled when a relay thread ends */
    int stopping;
    uint32_t running_relays;
    uint32_t next_seq;
    dw_gateway_request_t records[DW_GATEWAY_LOG_MAX];
    uint32_t n_records;           /* total ever created; slot = (seq - 1) % MAX */
    dw_gateway_stats_t totals;    /* counters that do not depend on the ring */
    uint64_t last_activity_ms;
};

/* One proxied request, shared by the connection thread, the relay thread
 * and MHD's response callback; freed when the last of them lets go. */
struct relay {
    dw_gateway_t *gateway;
    int refs;                      /* protected by gateway->lock */

    char *method;
    char *url;
    struct curl_slist *headers;
    char *body;
    size_t body_len;
    size_t body_cap;
    int too_large;

    uint32_t seq;
    /* Bounded pipe from curl to MHD, protected by gateway->lock. */
    pthread_cond_t changed;
    char pipe[DW_GATEWAY_PIPE_BYTES];
    size_t pipe_head;
    size_t pipe_len;
    int headers_done;
    int upstream_done;
    int client_gone;
    CURL *curl;                    /* the relay thread's handle, for header callbacks */
    long status;
    char *content_type;
    struct curl_slist *response_headers;  /* "name: value" to copy to the agent */
};

/* --- request records (call with gateway->lock held) --------------------- */

static dw_gateway_request_t *record_get (dw_gateway_t *gw, uint32_t seq)
{
    if (seq == 0 || seq + DW_GATEWAY_LOG_MAX <= gw->n_records)
        return NULL;
    return &gw->records[(seq - 1) % DW_GATEWAY_LOG_MAX];
}

static uint32_t record_new (dw_gateway_t *gw, uint64_t bytes_in, int retry_count)
{
    uint32_t seq = ++gw->n_records;
    dw_gateway_request_t *rec = &gw->records[(seq - 1) % DW_GATEWAY_LOG_MAX];
    memset (rec, 0, sizeof *rec);
    rec->seq = seq;
    rec->started_ms = dw_mono_ms ();
    rec->last_activity_ms = rec->started_ms;
    rec->bytes_in = bytes_in;
    rec->retry_count = retry_count;
    rec->in_flight = 1;
    gw->totals.requests++;
    gw->totals.in_flight++;
    gw->last_activity_ms = rec->started_ms;
    return seq;
}

static void record_finish (dw_gateway_t *gw, relay_t *r, int curl_code, const char *error)
{
    dw_gateway_request_t *rec = record_get (gw, r->seq);
    uint64_t now = dw_mono_ms ();
    dw_gateway_stats_t *t = &gw->totals;

    t->in_flight--;
    int status = (int) r->status;
    if (status >= 200 && status < 300)
        t->status_2xx++;
    else if (status == 401 || status == 403)
        t->status_401_403++;
    else if (status == 429)
        t->status_429++;
    else if (status == 529)
        t->status_529++;
    else if (status >= 500)
        t->status_5xx++;
    else if (status >= 400)
        t->status_4xx++;
    if (curl_code != CURLE_OK && !r->client_gone)
        t->upstream_errors++;
    /* Only the upstream's failure counts: an agent that hangs up early (its
     * own idle timeout, a crash, a kill) is not evidence against the API. */
    int clean = curl_code == CURLE_OK && !r->client_gone;
    if (status >= 200 && status < 300 && curl_code != CURLE_OK && !r->client_gone)
        t->unclean_streams++;
    t->last_status = status;
    t->last_curl_code = curl_code;

    if (!rec)
        return;
    rec->status = status;
    rec->curl_code = curl_code;
    rec->in_flight = 0;
    rec->total_ms = now - rec->started_ms;
    rec->clean_end = clean;
    if (error && curl_code != CURLE_OK)
        snprintf (rec->error, sizeof rec->error, "%s", error);
}

/* --- relay lifetime ------------------------------------------------------ */

/* Free R; its last reference is gone. Touches nothing of the gateway, which
 * may already be destroyed. */
static void relay_free (relay_t *r)
{
    pthread_cond_destroy (&r->changed);
    curl_slist_free_all (r->headers);
    curl_slist_free_all (r->response_headers);
    free (r->content_type);
    free (r->method);
    free (r->url);
    free (r->body);
    free (r);
}

static void relay_unref (relay_t *r)
{
    dw_gateway_t *gw = r->gateway;
    pthread_mutex_lock (&gw->lock);
    int last = --r->refs == 0;
    pthread_mutex_unlock (&gw->lock);
    if (last)
        relay_free (r);
}

static void timed_wait (pthread_cond_t *cond, pthread_mutex_t *lock, int ms)
{
    struct timespec deadline;
    clock_gettime (CLOCK_REALTIME, &deadline);
    deadline.tv_nsec += (long) ms * 1000000L;
    deadline.tv_sec += deadline.tv_nsec / 1000000000L;
    deadline.tv_nsec %= 1000000000L;
    pthread_cond_timedwait (cond, lock, &deadline);
}

/* --- curl side ----------------------------------------------------------- */

static int header_is_copied (const char *line, size_t len)
{
    for (int i = 0; RESPONSE_HEADERS[i]; i++) {
        size_t n = strlen (RESPONSE_HEADERS[i]);
        if (len > n && strncasecmp (line, RESPONSE_HEADERS[i], n) == 0)
            return 1;
    }
    return 0;
}

/* Publish STATUS and the header time once (call with gateway->lock held). */
static void publish_headers_locked (relay_t *r, long status)
{
    dw_gateway_t *gw = r->gateway;
    if (r->headers_done)
        return;

    r->status = status;
    r->headers_done = 1;
    dw_gateway_request_t *rec = record_get (gw, r->seq);
    if (rec) {
        rec->status = (int) status;
        rec->headers_ms = status ? dw_mono_ms () - rec->started_ms : 0;
        rec->event_stream = r->content_type
                            && strncasecmp (r->content_type, "text/event-stream", 17) == 0;
    }
    pthread_cond_broadcast (&r->changed);
}

/* Called when the header block has ended. */
static void headers_complete (relay_t *r)
{
    long status = 0;
    curl_easy_getinfo (r->curl, CURLINFO_RESPONSE_CODE, &status);
    pthread_mutex_lock (&r->gateway->lock);
    publish_headers_locked (r, status);
    pthread_mutex_unlock (&r->gateway->lock);
}

static size_t on_curl_header (char *data, size_t size, size_t nmemb, void *arg)
{
    relay_t *r = arg;
    size_t len = size * nmemb;

    size_t trimmed = len;
    while (trimmed > 0 && (data[trimmed - 1] == '\r' || data[trimmed - 1] == '\n'))
        trimmed--;

    if (len >= 5 && strncmp (data, "HTTP/", 5) == 0) {
        /* A new status line (after 1xx or a redirect) resets the headers. */
        curl_slist_free_all (r->response_headers);
        r->response_headers = NULL;
        free (r->content_type);
        r->content_type = NULL;
        return len;
    }
    if (trimmed == 0) {
        headers_complete (r);
        return len;
    }
    if (header_is_copied (data, trimmed)) {
        char *line = strndup (data, trimmed);
        if (!line)
            return 0;
        if (strncasecmp (line, "content-type:", 13) == 0) {
            const char *value = line + 13;
            value += strspn (value, " \t");
            free (r->content_type);
            r->content_type = strdup (value);
        }
        else {
            struct curl_slist *grown = curl_slist_append (r->response_headers, line);
            if (grown)
                r->response_headers = grown;
        }
        free (line);
    }
    return len;
}

static size_t on_curl_write (char *data, size_t size, size_t nmemb, void *arg)
{
    relay_t *r = arg;
    dw_gateway_t *gw = r->gateway;
    size_t len = size * nmemb;
    size_t done = 0;
    pthread_mutex_lock (&gw->lock);
    while (done < len) {
        if (r->client_gone || gw->stopping) {
            pthread_mutex_unlock (&gw->lock);
            return 0;   /* makes curl fail with CURLE_WRITE_ERROR */
        }
        size_t space = DW_GATEWAY_PIPE_BYTES - r->pipe_len;
        if (space == 0) {
            timed_wait (&r->changed, &gw->lock, WAIT_SLICE_MS);
            continue;
        }
        size_t n = len - done < space ? len - done : space;
        size_t tail = (r->pipe_head + r->pipe_len) % DW_GATEWAY_PIPE_BYTES;
        size_t first = DW_GATEWAY_PIPE_BYTES - tail < n ? DW_GATEWAY_PIPE_BYTES - tail : n;
        memcpy (r->pipe + tail, data + done, first);
        memcpy (r->pipe, data + done + first, n - first);
        r->pipe_len += n;
        done += n;

        uint64_t now = dw_mono_ms ();
        dw_gateway_request_t *rec = record_get (gw, r->seq);
        if (rec)
            rec->last_activity_ms = now;
        gw->last_activity_ms = now;
        pthread_cond_broadcast (&r->changed);
    }
    pthread_mutex_unlock (&gw->lock);
    return len;
}

static int on_curl_progress (void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                             curl_off_t ulnow)
{
    (void) dltotal;
    (void) dlnow;
    (void) ultotal;
    (void) ulnow;
    relay_t *r = arg;
    dw_gateway_t *gw = r->gateway;
    pthread_mutex_lock (&gw->lock);
    int abort_transfer = r->client_gone || gw->stopping;
    pthread_mutex_unlock (&gw->lock);
    return abort_transfer;
}

static void *relay_main (void *arg)
{
    relay_t *r = arg;
    dw_gateway_t *gw = r->gateway;
    char errbuf[CURL_ERROR_SIZE] = "";

    /* NOTE: each request opens a new upstream connection (and TLS session);
     * a shared curl connection cache would save that handshake per turn. */
    CURL *curl = curl_easy_init ();
    CURLcode code = CURLE_FAILED_INIT;
    if (curl) {
        curl_easy_setopt (curl, CURLOPT_URL, r->url);
        curl_easy_setopt (curl, CURLOPT_CUSTOMREQUEST, r->method);
        if (strcmp (r->method, "GET") != 0 && strcmp (r->method, "HEAD") != 0) {
            curl_easy_setopt (curl, CURLOPT_POSTFIELDS, r->body ? r->body : "");
            curl_easy_setopt (curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) r->body_len);
        }
        if (strcmp (r->method, "HEAD") == 0)
            curl_easy_setopt (curl, CURLOPT_NOBODY, 1L);
        curl_easy_setopt (curl, CURLOPT_HTTPHEADER, r->headers);
        curl_easy_setopt (curl, CURLOPT_HEADERFUNCTION, on_curl_header);
        curl_easy_setopt (curl, CURLOPT_HEADERDATA, r);
        curl_easy_setopt (curl, CURLOPT_WRITEFUNCTION, on_curl_write);
        curl_easy_setopt (curl, CURLOPT_WRITEDATA, r);
        curl_easy_setopt (curl, CURLOPT_XFERINFOFUNCTION, on_curl_progress);
        curl_easy_setopt (curl, CURLOPT_XFERINFODATA, r);
        curl_easy_setopt (curl, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt (curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt (curl, CURLOPT_CONNECTTIMEOUT_MS, (long) CONNECT_TIMEOUT_MS);
        curl_easy_setopt (curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt (curl, CURLOPT_LOW_SPEED_TIME, (long) UPSTREAM_IDLE_ABORT_S);
        curl_easy_setopt (curl, CURLOPT_ERRORBUFFER, errbuf);
        curl_easy_setopt (curl, CURLOPT_PROTOCOLS_STR, "http,https");
        r->curl = curl;
        code = curl_easy_perform (curl);
    }
    if (code != CURLE_OK && !errbuf[0])
        snprintf (errbuf, sizeof errbuf, "%s", curl_easy_strerror (code));
    long status = 0;
    if (curl)
        curl_easy_getinfo (curl, CURLINFO_RESPONSE_CODE, &status);

    /* One locked step, so a waiter never observes the end without the record. */
    pthread_mutex_lock (&gw->lock);
    publish_headers_locked (r, status);
    r->upstream_done = 1;
    int client_gone = r->client_gone;
    record_finish (gw, r, (int) code, errbuf);
    dw_gateway_request_t *rec = record_get (gw, r->seq);
    dw_gateway_request_t copy = rec ? *rec : (dw_gateway_request_t) {0};
    pthread_cond_broadcast (&r->changed);
    pthread_mutex_unlock (&gw->lock);

    if (code != CURLE_OK && !client_gone && !gw->stopping)
        dw_warn ("gateway request failed attempt=%s req=%u status=%ld curl=%d error=\"%s\"",
                 gw->tag, r->seq, r->status, (int) code, errbuf);
    dw_info ("gateway request attempt=%s req=%u method=%s status=%d headers_ms=%llu total_ms=%llu "
             "bytes_in=%llu curl=%d client_gone=%d retry=%d",
             gw->tag, r->seq, r->method, copy.status, (unsigned long long) copy.headers_ms,
             (unsigned long long) copy.total_ms, (unsigned long long) copy.bytes_in, (int) code,
             client_gone, copy.retry_count);

    if (curl)
        curl_easy_cleanup (curl);

    /* Drop the thread's reference in the same critical section that signals to
     * dw_gateway_destroy this thread is done: once the lock is released the
     * gateway (and its lock) may be freed. */
    pthread_mutex_lock (&gw->lock);
    int last = --r->refs == 0;
    gw->running_relays--;
    pthread_cond_broadcast (&gw->idle);
    pthread_mutex_unlock (&gw->lock);
    if (last)
        relay_free (r);
    return NULL;
}

/* --- MHD side ------------------------------------------------------------ */

static ssize_t on_response_read (void *cls, uint64_t pos, char *out, size_t max)
{
    (void) pos;
    relay_t *r = cls;
    dw_gateway_t *gw = r->gateway;

    pthread_mutex_lock (&gw->lock);
    while (r->pipe_len == 0 && !r->upstream_done && !gw->stopping)
        timed_wait (&r->changed, &gw->lock, WAIT_SLICE_MS);

    ssize_t result;
    if (r->pipe_len > 0) {
        size_t n = r->pipe_len < max ? r->pipe_len : max;
        size_t first = DW_GATEWAY_PIPE_BYTES - r->pipe_head < n ? DW_GATEWAY_PIPE_BYTES - r->pipe_head
                                                                 : n;
        memcpy (out, r->pipe + r->pipe_head, first);
        memcpy (out + first, r->pipe, n - first);
        r->pipe_head = (r->pipe_head + n) % DW_GATEWAY_PIPE_BYTES;
        r->pipe_len -= n;
        dw_gateway_request_t *rec = record_get (gw, r->seq);
        if (rec)
            rec->bytes_out += n;
        pthread_cond_broadcast (&r->changed);
        result = (ssize_t) n;
    }
    else {
        dw_gateway_request_t *rec = record_get (gw, r->seq);
        int failed = gw->stopping || (rec && rec->curl_code != CURLE_OK);
        /* An upstream that broke mid-body is passed on as a broken
         * connection, so the agent receives a truncated stream as it would
         * without the gateway. */
        result = failed ? MHD_CONTENT_READER_END_WITH_ERROR : MHD_CONTENT_READER_END_OF_STREAM;
    }
    pthread_mutex_unlock (&gw->lock);
    return result;
}

static void on_response_free (void *cls)
{
    relay_t *r = cls;
    dw_gateway_t *gw = r->gateway;
    pthread_mutex_lock (&gw->lock);
    r->client_gone = 1;
    pthread_cond_broadcast (&r->changed);
    pthread_mutex_unlock (&gw->lock);
    relay_unref (r);
}

static int request_header_is_forwarded (const char *name)
{
    static const char *const exact[] = {"content-type", "accept", "user-agent", NULL};
    static const char *const prefixes[] = {"anthropic-", "x-stainless-", "x-claude-code-", NULL};
    for (int i = 0; exact[i]; i++)
        if (strcasecmp (name, exact[i]) == 0)
            return 1;
    for (int i = 0; prefixes[i]; i++)
        if (strncasecmp (name, prefixes[i], strlen (prefixes[i])) == 0)
            return 1;
    return 0;
}

static enum MHD_Result collect_header (void *cls, enum MHD_ValueKind kind, const char *name,
                                       const char *value)
{
    (void) kind;
    relay_t *r = cls;
    if (!request_header_is_forwarded (name))
        return MHD_YES;

    char *line = dw_strdup_printf ("%s: %s", name, value ? value : "");
    if (!line)
        return MHD_NO;
    struct curl_slist *grown = curl_slist_append (r->headers, line);
    free (line);
    if (!grown)
        return MHD_NO;
    r->headers = grown;
    return MHD_YES;
}

typedef struct {
    char *text;
    size_t len;
    int failed;
} query_t;

static enum MHD_Result collect_query (void *cls, enum MHD_ValueKind kind, const char *name,
                                      const char *value)
{
    (void) kind;
    query_t *q = cls;
    char *name_esc = curl_easy_escape (NULL, name, 0);
    char *value_esc = value ? curl_easy_escape (NULL, value, 0) : NULL;
    char *joined = dw_strdup_printf ("%s%s%s%s%s", q->text ? q->text : "", q->text ? "&" : "",
                                     name_esc ? name_esc : "", value ? "=" : "",
                                     value_esc ? value_esc : "");
    curl_free (name_esc);
    curl_free (value_esc);
    if (!joined) {
        q->failed = 1;
        return MHD_NO;
    }
    free (q->text);
    q->text = joined;
    return MHD_YES;
}

static enum MHD_Result reply_error (struct MHD_Connection *conn, unsigned status,
                                    const char *message)
{
    /* The body follows the Messages API error shape so the CLI reports it. */
    char *body = dw_strdup_printf ("{\"type\":\"error\",\"error\":{\"type\":\"api_error\","
                                   "\"message\":\"driftwatch gateway: %s\"}}", message);
    if (!body)
        return MHD_NO;
    struct MHD_Response *resp = MHD_create_response_from_buffer (strlen (body), body,
                                                                 MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header (resp, "content-type", "application/json");
    enum MHD_Result ret = MHD_queue_response (conn, status, resp);
    MHD_destroy_response (resp);
    return ret;
}

static relay_t *relay_new (dw_gateway_t *gw, struct MHD_Connection *conn, const char *method,
                           const char *url)
{
    relay_t *r = calloc (1, sizeof *r);
    if (!r)
        return NULL;
    r->gateway = gw;
    r->refs = 1;
    pthread_cond_init (&r->changed, NULL);

    query_t q = {0};
    MHD_get_connection_values (conn, MHD_GET_ARGUMENT_KIND, collect_query, &q);
    r->method = strdup (method);
    r->url = dw_strdup_printf ("%s%s%s%s", gw->upstream, url, q.text ? "?" : "",
                               q.text ? q.text : "");
    free (q.text);

    MHD_get_connection_values (conn, MHD_HEADER_KIND, collect_header, r);
    char *key_header = dw_strdup_printf ("x-api-key: %s", gw->api_key);
    struct curl_slist *grown = key_header ? curl_slist_append (r->headers, key_header) : NULL;
    if (key_header) {
        explicit_bzero (key_header, strlen (key_header));
        free (key_header);
    }
    if (grown) {
        r->headers = grown;
        /* No "Expect: 100-continue" round trip for large bodies. */
        grown = curl_slist_append (r->headers, "Expect:");
    }
    if (!grown || !r->method || !r->url || q.failed) {
        relay_unref (r);
        return NULL;
    }
    r->headers = grown;
    return r;
}

static enum MHD_Result start_relay (dw_gateway_t *gw, struct MHD_Connection *conn, relay_t *r)
{
    const char *retry = MHD_lookup_connection_value (conn, MHD_HEADER_KIND,
                                                     "x-stainless-retry-count");

    pthread_mutex_lock (&gw->lock);
    if (gw->stopping) {
        pthread_mutex_unlock (&gw->lock);
        return MHD_NO;
    }
    r->seq = record_new (gw, r->body_len, retry ? atoi (retry) : -1);
    r->refs++;   /* owned by the relay thread */
    gw->running_relays++;
    pthread_mutex_unlock (&gw->lock);

    pthread_t thread;
    pthread_attr_t attr;
    pthread_attr_init (&attr);
    pthread_attr_setdetachstate (&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create (&thread, &attr, relay_main, r);
    pthread_attr_destroy (&attr);
    if (rc != 0) {
        pthread_mutex_lock (&gw->lock);
        gw->running_relays--;
        r->refs--;
        r->upstream_done = 1;
        record_finish (gw, r, CURLE_FAILED_INIT, "cannot start relay thread");
        pthread_mutex_unlock (&gw->lock);
        dw_error ("gateway cannot start relay thread attempt=%s error=%s", gw->tag, strerror (rc));
        return reply_error (conn, 502, "cannot start relay thread");
    }

    /* Wait for the upstream's status line and headers (or its failure). */
    pthread_mutex_lock (&gw->lock);
    while (!r->headers_done && !r->upstream_done && !gw->stopping)
        timed_wait (&r->changed, &gw->lock, WAIT_SLICE_MS);
    /* Status 0: the transfer ended before any response arrived. */
    int no_response = r->status == 0;
    long status = r->status;
    pthread_mutex_unlock (&gw->lock);

    if (gw->stopping || no_response) {
        /* Close the connection without a response: to the agent this looks
         * like the connection failure it stands for. */
        return MHD_NO;
    }

    struct MHD_Response *resp = MHD_create_response_from_callback (
        MHD_SIZE_UNKNOWN, 16 * 1024, on_response_read, r, on_response_free);
    if (!resp)
        return MHD_NO;
    pthread_mutex_lock (&gw->lock);
    r->refs++;   /* owned by the MHD response */
    const char *content_type = r->content_type ? r->content_type : "application/json";
    MHD_add_response_header (resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    for (struct curl_slist *h = r->response_headers; h; h = h->next) {
        char *colon = strchr (h->data, ':');
        if (!colon)
            continue;
        *colon = '\0';
        const char *value = colon + 1 + strspn (colon + 1, " \t");
        MHD_add_response_header (resp, h->data, value);
        *colon = ':';
    }
    pthread_mutex_unlock (&gw->lock);

    enum MHD_Result ret = MHD_queue_response (conn, (unsigned) status, resp);
    MHD_destroy_response (resp);
    return ret;
}

static enum MHD_Result on_request (void *cls, struct MHD_Connection *conn, const char *url,
                                   const char *method, const char *version,
                                   const char *upload_data, size_t *upload_data_size,
                                   void **con_cls)
{
    (void) version;
    dw_gateway_t *gw = cls;
    relay_t *r = *con_cls;

    if (!r) {
        r = relay_new (gw, conn, method, url);
        if (!r) {
            dw_error ("gateway out of memory attempt=%s", gw->tag);
            return MHD_NO;
        }
        *con_cls = r;
        return MHD_YES;
    }

    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (r->too_large || r->body_len + n > DW_GATEWAY_BODY_MAX) {
            r->too_large = 1;
            return MHD_YES;
        }
        if (r->body_len + n + 1 > r->body_cap) {
            size_t cap = r->body_cap ? r->body_cap : 64 * 1024;
            while (cap < r->body_len + n + 1)
                cap *= 2;
            char *grown = realloc (r->body, cap);
            if (!grown) {
                r->too_large = 1;
                return MHD_YES;
            }
            r->body = grown;
            r->body_cap = cap;
        }
        memcpy (r->body + r->body_len, upload_data, n);
        r->body_len += n;
        return MHD_YES;
    }

    if (r->too_large) {
        dw_warn ("gateway request body too large attempt=%s max_bytes=%d", gw->tag,
                 DW_GATEWAY_BODY_MAX);
        return reply_error (conn, 413, "request body larger than the gateway's limit");
    }
    return start_relay (gw, conn, r);
}

static void on_completed (void *cls, struct MHD_Connection *conn, void **con_cls,
                          enum MHD_RequestTerminationCode code)
{
    (void) cls;
    (void) conn;
    (void) code;
    relay_t *r = *con_cls;
    if (r) {
        dw_gateway_t *gw = r->gateway;
        pthread_mutex_lock (&gw->lock);
        r->client_gone = 1;
        pthread_cond_broadcast (&r->changed);
        pthread_mutex_unlock (&gw->lock);
        relay_unref (r);
    }
    *con_cls = NULL;
}

/* --- lifetime ------------------------------------------------------------ */

static void on_mhd_error (void *cls, const char *fmt, va_list ap)
{
    dw_gateway_t *gw = cls;
    char text[256];
    vsnprintf (text, sizeof text, fmt, ap);
    text[strcspn (text, "\r\n")] = '\0';
    dw_warn ("gateway http server error attempt=%s error=\"%s\"", gw->tag, text);
}

static pthread_once_t s_curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once (void)
{
    curl_global_init (CURL_GLOBAL_DEFAULT);
}

static int listen_unix (const char *path, char *err, size_t errlen)
{
    struct sockaddr_un addr = {0};
    addr.sun_family = AF_UNIX;
    if (strlen (path) >= sizeof addr.sun_path) {
        snprintf (err, errlen, "gateway socket path '%s' is longer than %zu bytes; use a "
                  "shorter work directory", path, sizeof addr.sun_path - 1);
        return -1;
    }
    strcpy (addr.sun_path, path);

    char *dir = strdup (path);
    if (!dir) {
        snprintf (err, errlen, "out of memory");
        return -1;
    }
    char *slash = strrchr (dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        if (dw_mkdir_p (dir, 0711) != 0) {
            snprintf (err, errlen, "cannot create gateway socket directory '%s': %s", dir,
                      strerror (errno));
            free (dir);
            return -1;
        }
    }
    free (dir);

    int fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf (err, errlen, "cannot create unix socket: %s", strerror (errno));
        return -1;
    }
    unlink (path);
    if (bind (fd, (struct sockaddr *) &addr, sizeof addr) != 0
        || chmod (path, 0666) != 0 || listen (fd, 64) != 0) {
        snprintf (err, errlen, "cannot listen on unix socket '%s': %s", path, strerror (errno));
        close (fd);
        unlink (path);
        return -1;
    }
    return fd;
}

dw_gateway_t *dw_gateway_new (const char *socket_path, const char *upstream_base_url,
                              const char *api_key, const char *tag, char *err, size_t errlen)
{
    if (!socket_path || !*socket_path || !api_key || !*api_key) {
        snprintf (err, errlen, "gateway needs a socket path and a non-empty API key");
        return NULL;
    }
    pthread_once (&s_curl_once, curl_init_once);

    dw_gateway_t *gw = calloc (1, sizeof *gw);
    if (!gw) {
        snprintf (err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init (&gw->lock, NULL);
    pthread_cond_init (&gw->idle, NULL);
    snprintf (gw->socket_path, sizeof gw->socket_path, "%s", socket_path);

    /* Strip trailing slashes so "base" + "/v1/messages" has one slash. */
    const char *base = upstream_base_url && *upstream_base_url ? upstream_base_url
                                                               : DEFAULT_UPSTREAM;
    gw->upstream = strdup (base);
    gw->api_key = strdup (api_key);
    gw->api_key_len = strlen (api_key);
    gw->tag = strdup (tag ? tag : "-");
    if (!gw->upstream || !gw->api_key || !gw->tag) {
        snprintf (err, errlen, "out of memory");
        dw_gateway_destroy (&gw);
        return NULL;
    }
    size_t len = strlen (gw->upstream);
    while (len > 0 && gw->upstream[len - 1] == '/')
        gw->upstream[--len] = '\0';
    if (strchr (gw->api_key, '\n') || strchr (gw->api_key, '\r')) {
        snprintf (err, errlen, "API key contains a line break; check the key file");
        dw_gateway_destroy (&gw);
        return NULL;
    }

    int fd = listen_unix (socket_path, err, errlen);
    if (fd < 0) {
        dw_gateway_destroy (&gw);
        return NULL;
    }
    gw->daemon = MHD_start_daemon (
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG,
        0, NULL, NULL, on_request, gw,
        /* The logger must come first, or libmicrohttpd logs a warning. */
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_error, gw, MHD_OPTION_LISTEN_SOCKET, fd,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, gw, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned) 0, MHD_OPTION_END);
    if (!gw->daemon) {
        snprintf (err, errlen, "cannot start the HTTP server on '%s'", socket_path);
        close (fd);
        unlink (socket_path);
        gw->socket_path[0] = '\0';
        dw_gateway_destroy (&gw);
        return NULL;
    }
    dw_info ("gateway started attempt=%s socket=%s upstream=%s", gw->tag, gw->socket_path,
             gw->upstream);
    return gw;
}

void dw_gateway_destroy (dw_gateway_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dw_gateway_t *gw = *self_p;

    pthread_mutex_lock (&gw->lock);
    gw->stopping = 1;
    pthread_mutex_unlock (&gw->lock);

    if (gw->daemon) {
        /* Connection threads see `stopping` within WAIT_SLICE_MS and end. */
        MHD_stop_daemon (gw->daemon);
        dw_info ("gateway stopped attempt=%s requests=%u", gw->tag, gw->totals.requests);
    }

    /* Relay threads abort their transfers through the progress callback. */
    pthread_mutex_lock (&gw->lock);
    while (gw->running_relays > 0)
        timed_wait (&gw->idle, &gw->lock, WAIT_SLICE_MS);
    pthread_mutex_unlock (&gw->lock);

    if (gw->socket_path[0])
        unlink (gw->socket_path);
    if (gw->api_key) {
        explicit_bzero (gw->api_key, gw->api_key_len);
        free (gw->api_key);
    }
    free (gw->upstream);
    free (gw->tag);
    pthread_cond_destroy (&gw->idle);
    pthread_mutex_destroy (&gw->lock);
    free (gw);
    *self_p = NULL;
}

const char *dw_gateway_socket_path (const dw_gateway_t *self)
{
    return self->socket_path;
}

void dw_gateway_stats (dw_gateway_t *self, dw_gateway_stats_t *stats)
{
    pthread_mutex_lock (&self->lock);
    *stats = self->totals;
    stats->records_dropped = self->n_records > DW_GATEWAY_LOG_MAX
                                 ? self->n_records - DW_GATEWAY_LOG_MAX : 0;
    stats->last_activity_ms = self->last_activity_ms;
    pthread_mutex_unlock (&self->lock);
}

size_t dw_gateway_requests (dw_gateway_t *self, dw_gateway_request_t *out, size_t max)
{
    pthread_mutex_lock (&self->lock);
    uint32_t kept = self->n_records < DW_GATEWAY_LOG_MAX ? self->n_records : DW_GATEWAY_LOG_MAX;
    size_t n = kept < max ? kept : max;
    uint32_t first = self->n_records - (uint32_t) n + 1;
    uint64_t now = dw_mono_ms ();
    for (size_t i = 0; i < n; i++) {
        out[i] = self->records[(first + i - 1) % DW_GATEWAY_LOG_MAX];
        if (out[i].in_flight)
            out[i].total_ms = now - out[i].started_ms;
    }
    pthread_mutex_unlock (&self->lock);
    return n;
}
