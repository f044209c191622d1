/* Model gateway: the agent's only way to the Messages API.
 *
 * The agent runs without network access. The worker serves HTTP on a unix
 * socket (the CLI reaches it through ANTHROPIC_UNIX_SOCKET) and forwards each
 * request to the upstream API with libcurl: method, path with query, body,
 * and the content-type, accept, user-agent, anthropic-*, x-stainless-* and
 * x-claude-code-* headers. It drops any x-api-key or authorization header the
 * agent sends and adds the real key, which therefore never enters the
 * sandbox. Responses (status, content-type, body bytes) are relayed as they
 * arrive through a bounded buffer, so a server-sent event stream reaches the
 * agent without being buffered whole.
 *
 * One gateway serves one attempt: its request log is the evidence the
 * outcome classification uses to tell API failures from agent failures.
 * Create it before the agent starts and destroy it after the agent exited.
 */
#ifndef DW_GATEWAY_H
#define DW_GATEWAY_H

#include <stddef.h>
#include <stdint.h>

/* Request records kept per gateway; older ones are dropped (and counted). */
#define DW_GATEWAY_LOG_MAX 256
/* Largest request body accepted from the agent. */
#define DW_GATEWAY_BODY_MAX (64 * 1024 * 1024)
/* Bytes buffered between upstream and agent per request. */
#define DW_GATEWAY_PIPE_BYTES (64 * 1024)
/* Bytes kept of an upstream error message, with the NUL. */
#define DW_GATEWAY_ERROR_MAX 160

typedef struct {
    uint32_t seq;                /* 1-based request number within the gateway */
    int status;                  /* upstream HTTP status; 0 when no response arrived */
    uint64_t started_ms;         /* monotonic clock (dw_mono_ms) */
    uint64_t headers_ms;         /* latency to response headers; 0 when none */
    uint64_t total_ms;           /* duration so far (in flight) or in total */
    uint64_t last_activity_ms;   /* monotonic time of the last byte moved */
    uint64_t bytes_in;           /* request body bytes from the agent */
    uint64_t bytes_out;          /* response body bytes delivered to the agent */
    int curl_code;               /* CURLcode of the upstream transfer, 0 = OK */
    char error[DW_GATEWAY_ERROR_MAX];  /* curl's message when curl_code != 0 */
    int clean_end;               /* the whole upstream body reached the agent */
    int in_flight;               /* still running when the snapshot was taken */
    int retry_count;             /* x-stainless-retry-count header; -1 when absent */
    int event_stream;            /* response content-type was text/event-stream */
} dw_gateway_request_t;

/* Totals over every request of the gateway (not only the kept records). */
typedef struct {
    uint32_t requests;
    uint32_t records_dropped;
    uint32_t status_2xx;
    uint32_t status_401_403;
    uint32_t status_429;
    uint32_t status_529;
    uint32_t status_5xx;         /* 5xx other than 529 */
    uint32_t status_4xx;         /* 4xx other than 401, 403 and 429 */
    uint32_t upstream_errors;    /* transfers that failed in curl (connect, reset, ...) */
    uint32_t unclean_streams;    /* 2xx responses the upstream broke off midway */
    uint32_t in_flight;
    int last_status;             /* of the most recent request */
    int last_curl_code;          /* of the most recent request */
    uint64_t last_activity_ms;   /* monotonic time of the last byte over the gateway */
} dw_gateway_stats_t;

typedef struct dw_gateway dw_gateway_t;

/* Start a gateway listening on the unix socket SOCKET_PATH (created with mode
 * 0666; its directory is created with mode 0711 if missing, and an old socket
 * file at that path is replaced) that forwards to UPSTREAM_BASE_URL (NULL for
 * https://api.anthropic.com) with API_KEY (copied; never logged). TAG names
 * the attempt in log lines. Returns NULL and a message in ERR on failure. */
dw_gateway_t *dw_gateway_new (const char *socket_path, const char *upstream_base_url,
                              const char *api_key, const char *tag, char *err, size_t errlen);

/* Stop serving, abort transfers still running, remove the socket file,
 * wipe the key and null the pointer. NULL is fine. */
void dw_gateway_destroy (dw_gateway_t **self_p);

/* Return the socket path the gateway listens on. */
const char *dw_gateway_socket_path (const dw_gateway_t *self);

/* Fill STATS with the totals so far. */
void dw_gateway_stats (dw_gateway_t *self, dw_gateway_stats_t *stats);

/* Copy up to MAX of the most recent request records, oldest first, into OUT
 * and return how many were copied. */
size_t dw_gateway_requests (dw_gateway_t *self, dw_gateway_request_t *out, size_t max);

#endif
