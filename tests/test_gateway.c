/* Tests for the model gateway (worker/dw_gateway.c) with libcurl as the
 * agent and driftwatch-modelserver as the upstream. */
#include <curl/curl.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dw_gateway.h"
#include "dw_log.h"
#include "dw_util.h"

/* Checks print to stdout because stderr is redirected to capture the log. */
static int s_failures = 0;

#define CHECK(cond, ...)                                                    \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf (stdout, "FAIL %s:%d: ", __FILE__, __LINE__);           \
            fprintf (stdout, __VA_ARGS__);                                  \
            fprintf (stdout, "\n");                                         \
            s_failures++;                                                   \
        }                                                                   \
    } while (0)

#define REAL_KEY "sk-ant-gateway-test-secret-42"

static char s_root[256];
static pid_t s_server_pid;
static int s_port;
static char s_log_path[512];

static int server_start (void)
{
    const char *build = getenv ("DW_BUILD_DIR");
    char *program = dw_strdup_printf ("%s/driftwatch-modelserver", build ? build : ".");
    snprintf (s_log_path, sizeof s_log_path, "%s/modelserver.log", s_root);
    int fds[2];
    if (!program || pipe (fds) != 0)
        return -1;
    s_server_pid = fork ();
    if (s_server_pid == 0) {
        dup2 (fds[1], 1);
        close (fds[0]);
        execl (program, program, "--expect-key", REAL_KEY, "--log", s_log_path, (char *) NULL);
        _exit (127);
    }
    free (program);
    close (fds[1]);
    FILE *out = fdopen (fds[0], "r");
    char line[128] = "";
    int ok = out && fgets (line, sizeof line, out) && sscanf (line, "listening port=%d", &s_port) == 1;
    if (out)
        fclose (out);
    return ok ? 0 : -1;
}

typedef struct {
    char data[64 * 1024];
    size_t len;
} body_t;

static size_t on_body (char *data, size_t size, size_t nmemb, void *arg)
{
    body_t *b = arg;
    size_t n = size * nmemb;
    size_t room = sizeof b->data - 1 - b->len;
    size_t copy = n < room ? n : room;
    memcpy (b->data + b->len, data, copy);
    b->len += copy;
    b->data[b->len] = '\0';
    return n;
}

typedef struct {
    char retry_after[32];
    char content_type[64];
} seen_headers_t;

static size_t on_header (char *data, size_t size, size_t nmemb, void *arg)
{
    seen_headers_t *h = arg;
    size_t n = size * nmemb;
    if (n > 12 && strncasecmp (data, "retry-after:", 12) == 0)
        snprintf (h->retry_after, sizeof h->retry_after, "%.*s", (int) (n - 12), data + 12);
    if (n > 13 && strncasecmp (data, "content-type:", 13) == 0)
        snprintf (h->content_type, sizeof h->content_type, "%.*s", (int) (n - 13), data + 13);
    return n;
}

/* POST a Messages request over the unix socket the way the CLI does. */
static CURLcode post (const char *sock, const char *prompt, long timeout_ms, long *status,
                      body_t *body, seen_headers_t *headers)
{
    CURL *curl = curl_easy_init ();
    char *json = dw_strdup_printf ("{\"model\":\"m-test\",\"stream\":true,\"max_tokens\":10,"
                                   "\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}]}",
                                   prompt);
    struct curl_slist *h = NULL;
    h = curl_slist_append (h, "content-type: application/json");
    h = curl_slist_append (h, "anthropic-version: 2023-06-01");
    h = curl_slist_append (h, "x-api-key: agent-placeholder");
    h = curl_slist_append (h, "authorization: Bearer agent-token");
    h = curl_slist_append (h, "x-stainless-retry-count: 3");
    h = curl_slist_append (h, "x-claude-code-session-id: session-1");
    curl_easy_setopt (curl, CURLOPT_UNIX_SOCKET_PATH, sock);
    curl_easy_setopt (curl, CURLOPT_URL, "http://localhost/v1/messages?beta=true");
    curl_easy_setopt (curl, CURLOPT_POSTFIELDS, json);
    curl_easy_setopt (curl, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt (curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt (curl, CURLOPT_WRITEDATA, body);
    curl_easy_setopt (curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt (curl, CURLOPT_HEADERDATA, headers);
    curl_easy_setopt (curl, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt (curl, CURLOPT_NOSIGNAL, 1L);
    CURLcode code = curl_easy_perform (curl);
    *status = 0;
    curl_easy_getinfo (curl, CURLINFO_RESPONSE_CODE, status);
    curl_slist_free_all (h);
    curl_easy_cleanup (curl);
    free (json);
    return code;
}

static int file_contains (const char *path, const char *needle)
{
    char *text = dw_read_file (path, 16 << 20, NULL);
    int found = text && strstr (text, needle) != NULL;
    free (text);
    return found;
}

static void test_forwarding (dw_gateway_t *gw, const char *sock)
{
    body_t body = {0};
    seen_headers_t headers = {0};
    long status;
    CURLcode code = post (sock, "hello", 10000, &status, &body, &headers);
    CHECK (code == CURLE_OK, "plain request: curl error %d", code);
    CHECK (status == 200, "plain request: status %ld", status);
    CHECK (strstr (headers.content_type, "text/event-stream") != NULL,
           "plain request: content-type '%s'", headers.content_type);
    CHECK (strstr (body.data, "event: message_stop") != NULL,
           "plain request: the whole event stream arrived");

    /* The model server rejects any other key with 401, and logs whether an
     * authorization header or the query reached it. */
    CHECK (file_contains (s_log_path, "\"key_ok\":true"), "upstream got the real key");
    CHECK (file_contains (s_log_path, "\"authorization_header\":false"),
           "the agent's authorization header was dropped");
    CHECK (file_contains (s_log_path, "\"beta\":\"true\""), "the query ?beta=true was forwarded");
    CHECK (file_contains (s_log_path, "\"session\":\"session-1\""),
           "x-claude-code-session-id was forwarded");

    dw_gateway_request_t rec[4];
    size_t n = dw_gateway_requests (gw, rec, 4);
    CHECK (n == 1, "one request record, got %zu", n);
    if (n == 1) {
        CHECK (rec[0].status == 200, "record status %d", rec[0].status);
        CHECK (rec[0].clean_end, "record says the stream ended cleanly");
        CHECK (!rec[0].in_flight, "record finished");
        CHECK (rec[0].retry_count == 3, "record retry count %d", rec[0].retry_count);
        CHECK (rec[0].event_stream, "record says event stream");
        CHECK (rec[0].bytes_out == body.len, "record bytes_out %llu, client got %zu",
               (unsigned long long) rec[0].bytes_out, body.len);
        CHECK (rec[0].bytes_in > 50, "record bytes_in %llu", (unsigned long long) rec[0].bytes_in);
    }
}

static void test_error_status (dw_gateway_t *gw, const char *sock)
{
    body_t body = {0};
    seen_headers_t headers = {0};
    long status;
    post (sock, "DW_FAULT=429", 10000, &status, &body, &headers);
    CHECK (status == 429, "429 passed through, got %ld", status);
    CHECK (atoi (headers.retry_after) == 1, "retry-after passed through, got '%s'",
           headers.retry_after);
    CHECK (strstr (body.data, "rate_limit_error") != NULL, "error body passed through");
    dw_gateway_stats_t stats;
    dw_gateway_stats (gw, &stats);
    CHECK (stats.status_429 == 1, "stats count the 429, got %u", stats.status_429);
}

static void test_streaming_before_end (dw_gateway_t *gw, const char *sock)
{
    /* The upstream sends message_start and then nothing: the agent must get
     * the first event although the response never ends. */
    body_t body = {0};
    seen_headers_t headers = {0};
    long status;
    CURLcode code = post (sock, "DW_FAULT=stall", 1500, &status, &body, &headers);
    CHECK (code == CURLE_OPERATION_TIMEDOUT, "stalled request times out at the client, got %d",
           code);
    CHECK (strstr (body.data, "message_start") != NULL,
           "the first event arrived before the upstream finished");

    dw_gateway_request_t rec[8];
    size_t n = dw_gateway_requests (gw, rec, 8);
    CHECK (n >= 1 && rec[n - 1].bytes_out > 0, "record shows bytes delivered while stalled");
}

static void test_dropped_connection (dw_gateway_t *gw, const char *sock)
{
    dw_gateway_stats_t before, after;
    dw_gateway_stats (gw, &before);
    body_t body = {0};
    seen_headers_t headers = {0};
    long status;
    CURLcode code = post (sock, "DW_FAULT=drop", 10000, &status, &body, &headers);
    CHECK (code == CURLE_GOT_NOTHING || code == CURLE_RECV_ERROR,
           "a dropped upstream connection is passed on as a closed connection, got curl %d",
           code);
    dw_gateway_stats (gw, &after);
    CHECK (after.upstream_errors == before.upstream_errors + 1,
           "stats count the upstream error (%u -> %u)", before.upstream_errors,
           after.upstream_errors);
    dw_gateway_request_t rec[DW_GATEWAY_LOG_MAX];
    size_t n = dw_gateway_requests (gw, rec, DW_GATEWAY_LOG_MAX);
    CHECK (n > 0 && rec[n - 1].curl_code != 0 && rec[n - 1].error[0],
           "record keeps the curl error");
}

static void test_dead_upstream (void)
{
    char sock[512], err[256];
    snprintf (sock, sizeof sock, "%s/dead/api.sock", s_root);
    dw_gateway_t *gw = dw_gateway_new (sock, "http://127.0.0.1:1", REAL_KEY, "dead", err,
                                       sizeof err);
    CHECK (gw != NULL, "gateway_new failed: %s", err);
    if (!gw)
        return;
    body_t body = {0};
    seen_headers_t headers = {0};
    long status;
    CURLcode code = post (sock, "hello", 10000, &status, &body, &headers);
    CHECK (code != CURLE_OK, "a refused upstream connection fails the request");
    dw_gateway_stats_t stats;
    dw_gateway_stats (gw, &stats);
    CHECK (stats.upstream_errors == 1, "stats count the refused connection, got %u",
           stats.upstream_errors);
    CHECK (stats.last_curl_code == CURLE_COULDNT_CONNECT, "last curl code %d",
           stats.last_curl_code);
    dw_gateway_destroy (&gw);
}

static void test_bad_arguments (void)
{
    char err[256] = "";
    char long_path[200];
    memset (long_path, 'x', sizeof long_path - 1);
    long_path[0] = '/';
    long_path[sizeof long_path - 1] = '\0';
    CHECK (dw_gateway_new (long_path, NULL, REAL_KEY, "t", err, sizeof err) == NULL,
           "a socket path longer than sun_path is rejected");
    CHECK (strstr (err, "longer") != NULL, "error names the length: %s", err);
    CHECK (dw_gateway_new ("/tmp/x.sock", NULL, "", "t", err, sizeof err) == NULL,
           "an empty key is rejected");
}

int main (void)
{
    dw_log_init ("test_gateway", DW_LOG_DEBUG);
    signal (SIGPIPE, SIG_IGN);
    snprintf (s_root, sizeof s_root, "/tmp/dw-gateway-test-XXXXXX");
    if (!mkdtemp (s_root) || server_start () != 0) {
        fprintf (stderr, "cannot start driftwatch-modelserver\n");
        return 1;
    }

    /* Capture the gateway's log lines to check that the key never shows. */
    char log_path[512];
    snprintf (log_path, sizeof log_path, "%s/gateway.log", s_root);
    int saved_stderr = dup (2);
    int log_fd = open (log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2 (log_fd, 2);

    char sock[512], upstream[128], err[256];
    snprintf (sock, sizeof sock, "%s/sock/api.sock", s_root);
    snprintf (upstream, sizeof upstream, "http://127.0.0.1:%d/", s_port);
    dw_gateway_t *gw = dw_gateway_new (sock, upstream, REAL_KEY, "unit", err, sizeof err);
    CHECK (gw != NULL, "gateway_new failed: %s", err);
    if (gw) {
        struct stat st;
        CHECK (stat (sock, &st) == 0 && (st.st_mode & 0777) == 0666,
               "socket has mode 0666, got %o", st.st_mode & 0777);
        test_forwarding (gw, sock);
        test_error_status (gw, sock);
        test_streaming_before_end (gw, sock);
        test_dropped_connection (gw, sock);
        dw_gateway_destroy (&gw);
        CHECK (gw == NULL, "destroy nulls the pointer");
        CHECK (stat (sock, &st) != 0, "destroy removes the socket file");
    }
    test_dead_upstream ();
    test_bad_arguments ();

    dup2 (saved_stderr, 2);
    close (log_fd);
    CHECK (file_contains (log_path, "gateway request"), "the gateway logged its requests");
    CHECK (!file_contains (log_path, REAL_KEY), "the key never appears in the gateway's log");

    kill (s_server_pid, SIGTERM);
    waitpid (s_server_pid, NULL, 0);
    if (s_failures) {
        fprintf (stderr, "%d check(s) failed; files kept in %s\n", s_failures, s_root);
        return 1;
    }
    dw_rm_rf (s_root);
    printf ("all gateway checks passed\n");
    return 0;
}
