/* driftwatch-modelserver: a scripted Anthropic Messages API server for tests.
 *
 * It serves POST /v1/messages on 127.0.0.1 with the subset of the API that the
 * Claude Code CLI uses: streaming server-sent events (with `event:` lines, and
 * tool inputs sent as input_json_delta fragments, because the CLI ignores the
 * input field of content_block_start) and the non-streaming JSON fallback
 * (stream:false) that the CLI uses after a broken stream.
 *
 * The task is found by matching the first user message against the
 * problem statements of a JSONL suite. Whether the "model" solves it is
 * decided deterministically from (model name, instance id, seed): the seed
 * comes from a DW_SEED=... marker in the prompt, else from the CLI's session
 * id header. The conversation is driven by the number of tool_result blocks
 * in the request: read a file the gold patch touches, apply the gold patch
 * (solve) or append a wrong line (no solve), run the task's test_cmd, then
 * answer "Done".
 *
 * Faults (--fault KIND[:N] or DW_FAULT=KIND[:N] in the prompt) make the
 * first N requests of each session fail (N = 0: all of them).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_BODY (32 * 1024 * 1024)
#define MAX_TASKS 10000
#define MAX_MODEL_RATES 16
#define MAX_SESSIONS 1024
/* Bytes of request text searched for the prompt and markers. */
#define MAX_PROMPT_TEXT (256 * 1024)
/* How long a stalled response keeps the connection open before giving up. */
#define STALL_MAX_MS (10 * 60 * 1000)

typedef enum {
    FAULT_NONE = 0,
    FAULT_429,
    FAULT_529,
    FAULT_500,
    FAULT_401,
    FAULT_STALL,
    FAULT_DROP,
    FAULT_MALFORMED
} fault_kind_t;

static const char *FAULT_NAMES[] = {"none", "429", "529", "500", "401", "stall", "drop", "malformed"};

typedef struct {
    fault_kind_t kind;
    int count;      /* failing requests per session before recovery; 0 = always */
} fault_t;

typedef struct {
    char *instance_id;
    char *problem_statement;
    char *patch;
    char *test_cmd;
    double solve_rate;
} task_t;

typedef struct {
    char name[128];
    double delta;
} model_rate_t;

typedef struct {
    uint64_t key;
    int requests;
} session_t;

static task_t s_tasks[MAX_TASKS];
static size_t s_n_tasks;
static model_rate_t s_rates[MAX_MODEL_RATES];
static size_t s_n_rates;
static fault_t s_fault;
static const char *s_expect_key;
static FILE *s_log;
static session_t s_sessions[MAX_SESSIONS];
static uint64_t s_request_seq;
static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;

/* --- small helpers ------------------------------------------------------ */

static uint64_t fnv1a (uint64_t h, const char *text)
{
    for (const unsigned char *p = (const unsigned char *) text; *p; p++) {
        h ^= *p;
        h *= 1099511628211ULL;
    }
    h ^= 0xff;
    h *= 1099511628211ULL;
    return h;
}

static uint64_t mono_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

typedef struct {
    char *data;
    size_t len;
    size_t cap;
} buf_t;

static void buf_append (buf_t *b, const char *data, size_t len)
{
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + len + 1)
            cap *= 2;
        char *grown = realloc (b->data, cap);
        if (!grown)
            abort ();
        b->data = grown;
        b->cap = cap;
    }
    memcpy (b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

static void buf_printf (buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start (ap, fmt);
    char *text = NULL;
    int n = vasprintf (&text, fmt, ap);
    va_end (ap);
    if (n < 0)
        abort ();
    buf_append (b, text, (size_t) n);
    free (text);
}

static int parse_fault (const char *spec, fault_t *out)
{
    char kind[32];
    size_t len = strcspn (spec, ":");
    if (len == 0 || len >= sizeof kind)
        return -1;
    memcpy (kind, spec, len);
    kind[len] = '\0';

    out->kind = FAULT_NONE;
    for (int i = 1; i < (int) (sizeof FAULT_NAMES / sizeof *FAULT_NAMES); i++)
        if (strcmp (kind, FAULT_NAMES[i]) == 0)
            out->kind = (fault_kind_t) i;
    if (out->kind == FAULT_NONE)
        return -1;
    out->count = spec[len] == ':' ? atoi (spec + len + 1) : 0;
    return out->count < 0 ? -1 : 0;
}

/* --- suite -------------------------------------------------------------- */

static char *dup_field (json_t *row, const char *name)
{
    const char *value = json_string_value (json_object_get (row, name));
    return strdup (value ? value : "");
}

static int load_suite (const char *path)
{
    FILE *f = fopen (path, "r");
    if (!f) {
        fprintf (stderr, "modelserver: cannot open suite %s: %s\n", path, strerror (errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int lineno = 0;
    while ((n = getline (&line, &cap, f)) > 0) {
        lineno++;
        if (strspn (line, " \t\r\n") == (size_t) n)
            continue;
        json_error_t err;
        json_t *row = json_loadb (line, (size_t) n, 0, &err);
        if (!json_is_object (row)) {
            fprintf (stderr, "modelserver: %s:%d: invalid JSON: %s\n", path, lineno, err.text);
            json_decref (row);
            continue;
        }
        if (s_n_tasks >= MAX_TASKS) {
            json_decref (row);
            break;
        }
        task_t *t = &s_tasks[s_n_tasks++];
        t->instance_id = dup_field (row, "instance_id");
        t->problem_statement = dup_field (row, "problem_statement");
        t->patch = dup_field (row, "patch");
        t->test_cmd = dup_field (row, "test_cmd");
        json_t *rate = json_object_get (row, "stub_solve_rate");
        t->solve_rate = json_is_number (rate) ? json_number_value (rate) : 0.5;
        json_decref (row);
    }
    free (line);
    fclose (f);
    return 0;
}

static const task_t *find_task (const char *prompt)
{
    /* The CLI may wrap the prompt, so match a prefix of the statement. */
    for (size_t i = 0; i < s_n_tasks; i++) {
        const char *ps = s_tasks[i].problem_statement;
        size_t len = strlen (ps);
        if (len == 0)
            continue;
        if (len > 200)
            len = 200;
        char *needle = strndup (ps, len);
        int hit = needle && strstr (prompt, needle) != NULL;
        free (needle);
        if (hit)
            return &s_tasks[i];
    }
    return NULL;
}

static double model_delta (const char *model)
{
    for (size_t i = 0; i < s_n_rates; i++)
        if (strcmp (s_rates[i].name, model) == 0)
            return s_rates[i].delta;
    return 0.0;
}

/* First path that PATCH changes ("+++ b/PATH"), or NULL. */
static char *patch_first_file (const char *patch)
{
    const char *p = strstr (patch, "+++ b/");
    if (!p)
        return NULL;
    p += 6;
    size_t len = strcspn (p, "\r\n\t");
    return strndup (p, len);
}

/* --- request inspection ------------------------------------------------- */

/* Append every string inside VALUE (depth first) to OUT, up to its cap. */
static void collect_text (json_t *value, buf_t *out)
{
    if (out->len >= MAX_PROMPT_TEXT)
        return;
    if (json_is_string (value)) {
        size_t len = json_string_length (value);
        if (out->len + len > MAX_PROMPT_TEXT)
            len = MAX_PROMPT_TEXT - out->len;
        buf_append (out, json_string_value (value), len);
        buf_append (out, "\n", 1);
    }
    else if (json_is_array (value)) {
        size_t i;
        json_t *item;
        json_array_foreach (value, i, item) collect_text (item, out);
    }
    else if (json_is_object (value)) {
        const char *key;
        json_t *item;
        json_object_foreach (value, key, item) collect_text (item, out);
    }
}

/* Count tool_result blocks over all messages; also return the text of the
 * last tool_result in *LAST_RESULT (borrowed from the JSON). */
static int count_tool_results (json_t *messages, const char **last_result)
{
    int count = 0;
    size_t i, j;
    json_t *message, *block;
    *last_result = NULL;
    json_array_foreach (messages, i, message) {
        json_t *content = json_object_get (message, "content");
        json_array_foreach (content, j, block) {
            const char *type = json_string_value (json_object_get (block, "type"));
            if (!type || strcmp (type, "tool_result") != 0)
                continue;
            count++;
            json_t *result = json_object_get (block, "content");
            if (json_is_string (result))
                *last_result = json_string_value (result);
            else if (json_is_array (result))
                *last_result = json_string_value (
                    json_object_get (json_array_get (result, 0), "text"));
        }
    }
    return count;
}

/* Copy the value after MARKER up to whitespace, or NULL. */
static char *find_marker (const char *text, const char *marker)
{
    const char *p = strstr (text, marker);
    if (!p)
        return NULL;
    p += strlen (marker);
    return strndup (p, strcspn (p, " \t\r\n\"'`,.;"));
}

static char *find_cwd (const char *text)
{
    const char *marker = "Primary working directory: ";
    const char *p = strstr (text, marker);
    if (!p)
        return NULL;
    p += strlen (marker);
    return strndup (p, strcspn (p, "\r\n"));
}

/* --- the scripted conversation ------------------------------------------ */

typedef struct {
    /* One of them may be NULL. */
    char *text;
    char *tool_name;
    json_t *tool_input;   /* owned */
} reply_t;

static void reply_tool (reply_t *r, const char *text, const char *tool, json_t *input)
{
    r->text = text ? strdup (text) : NULL;
    r->tool_name = strdup (tool);
    r->tool_input = input;
}

static void reply_text (reply_t *r, const char *text)
{
    r->text = strdup (text);
}

static void reply_free (reply_t *r)
{
    free (r->text);
    free (r->tool_name);
    json_decref (r->tool_input);
}

typedef struct {
    const task_t *task;
    int solve;
    int step;
    int check_env;
    int loop;
    const char *last_result;
    char *cwd;
} script_t;

static void script_reply (const script_t *s, reply_t *r)
{
    int step = s->step;

    if (s->loop) {
        reply_tool (r, "Still working.", "Bash", json_pack ("{s:s}", "command", "true"));
        return;
    }
    if (s->check_env) {
        if (step == 0) {
            reply_tool (r, "Checking the environment.", "Bash",
                        json_pack ("{s:s}", "command", "env"));
            return;
        }
        step--;
    }
    if (!s->task) {
        reply_text (r, "Done");
        return;
    }

    char *file = patch_first_file (s->task->patch);
    if (step == 0 && file) {
        char *path = s->cwd ? NULL : strdup (file);
        if (s->cwd && asprintf (&path, "%s/%s", s->cwd, file) < 0)
            abort ();
        reply_tool (r, "Let me read the code first.", "Read",
                    json_pack ("{s:s}", "file_path", path));
        free (path);
        free (file);
        return;
    }
    if (!file)
        step = step < 2 ? 2 : step;

    if (step == 1) {
        char *command = NULL;
        if (s->solve) {
            const char *nl = s->task->patch[0] && s->task->patch[strlen (s->task->patch) - 1] == '\n'
                                 ? "" : "\n";
            if (asprintf (&command, "git apply <<'DW_PATCH_EOF'\n%s%sDW_PATCH_EOF",
                          s->task->patch, nl) < 0)
                abort ();
        }
        else if (asprintf (&command, "printf '\\n# attempted fix\\n' >> '%s'", file) < 0)
            abort ();
        reply_tool (r, "Applying a fix.", "Bash", json_pack ("{s:s}", "command", command));
        free (command);
        free (file);
        return;
    }
    free (file);

    if (step == 2 && s->task->test_cmd[0]) {
        reply_tool (r, "Running the tests.", "Bash",
                    json_pack ("{s:s}", "command", s->task->test_cmd));
        return;
    }
    reply_text (r, "Done");
}

/* --- rendering ---------------------------------------------------------- */

static void sse_event (buf_t *b, const char *name, json_t *data)
{
    char *text = json_dumps (data, JSON_COMPACT);
    buf_printf (b, "event: %s\ndata: %s\n\n", name, text);
    free (text);
    json_decref (data);
}

static void render_sse (buf_t *b, const reply_t *r, const char *model, uint64_t seq,
                        uint64_t input_tokens, size_t *message_start_len)
{
    char id[64], tool_id[64];
    snprintf (id, sizeof id, "msg_dw%06llu", (unsigned long long) seq);
    snprintf (tool_id, sizeof tool_id, "toolu_dw%06llu", (unsigned long long) seq);

    sse_event (b, "message_start",
               json_pack ("{s:s,s:{s:s,s:s,s:s,s:s,s:[],s:n,s:n,s:{s:I,s:i,s:i,s:i}}}",
                          "type", "message_start", "message", "id", id, "type", "message",
                          "role", "assistant", "model", model, "content", "stop_reason",
                          "stop_sequence", "usage", "input_tokens", (json_int_t) input_tokens,
                          "cache_creation_input_tokens", 0, "cache_read_input_tokens", 0,
                          "output_tokens", 1));
    *message_start_len = b->len;
    sse_event (b, "ping", json_pack ("{s:s}", "type", "ping"));

    int index = 0;
    if (r->text) {
        sse_event (b, "content_block_start",
                   json_pack ("{s:s,s:i,s:{s:s,s:s}}", "type", "content_block_start", "index",
                              index, "content_block", "type", "text", "text", ""));
        sse_event (b, "content_block_delta",
                   json_pack ("{s:s,s:i,s:{s:s,s:s}}", "type", "content_block_delta", "index",
                              index, "delta", "type", "text_delta", "text", r->text));
        sse_event (b, "content_block_stop",
                   json_pack ("{s:s,s:i}", "type", "content_block_stop", "index", index));
        index++;
    }
    if (r->tool_name) {
        sse_event (b, "content_block_start",
                   json_pack ("{s:s,s:i,s:{s:s,s:s,s:s,s:{}}}", "type", "content_block_start",
                              "index", index, "content_block", "type", "tool_use", "id", tool_id,
                              "name", r->tool_name, "input"));
        /* Two fragments, to exercise the client's reassembly. */
        char *input = json_dumps (r->tool_input, JSON_COMPACT);
        size_t half = strlen (input) / 2;
        char *first = strndup (input, half);
        sse_event (b, "content_block_delta",
                   json_pack ("{s:s,s:i,s:{s:s,s:s}}", "type", "content_block_delta", "index",
                              index, "delta", "type", "input_json_delta", "partial_json", first));
        sse_event (b, "content_block_delta",
                   json_pack ("{s:s,s:i,s:{s:s,s:s}}", "type", "content_block_delta", "index",
                              index, "delta", "type", "input_json_delta", "partial_json",
                              input + half));
        free (first);
        free (input);
        sse_event (b, "content_block_stop",
                   json_pack ("{s:s,s:i}", "type", "content_block_stop", "index", index));
    }
    sse_event (b, "message_delta",
               json_pack ("{s:s,s:{s:s,s:n},s:{s:i}}", "type", "message_delta", "delta",
                          "stop_reason", r->tool_name ? "tool_use" : "end_turn", "stop_sequence",
                          "usage", "output_tokens", 50));
    sse_event (b, "message_stop", json_pack ("{s:s}", "type", "message_stop"));
}

static char *render_message (const reply_t *r, const char *model, uint64_t seq,
                             uint64_t input_tokens)
{
    char id[64], tool_id[64];
    snprintf (id, sizeof id, "msg_dw%06llu", (unsigned long long) seq);
    snprintf (tool_id, sizeof tool_id, "toolu_dw%06llu", (unsigned long long) seq);

    json_t *content = json_array ();
    if (r->text)
        json_array_append_new (content, json_pack ("{s:s,s:s}", "type", "text", "text", r->text));
    if (r->tool_name)
        json_array_append_new (content, json_pack ("{s:s,s:s,s:s,s:O}", "type", "tool_use", "id",
                                                   tool_id, "name", r->tool_name, "input",
                                                   r->tool_input));
    json_t *message = json_pack (
        "{s:s,s:s,s:s,s:s,s:o,s:s,s:n,s:{s:I,s:i}}", "id", id, "type", "message", "role",
        "assistant", "model", model, "content", content, "stop_reason",
        r->tool_name ? "tool_use" : "end_turn", "stop_sequence", "usage", "input_tokens",
        (json_int_t) input_tokens, "output_tokens", 50);
    char *text = json_dumps (message, JSON_COMPACT);
    json_decref (message);
    return text;
}

/* --- HTTP --------------------------------------------------------------- */

typedef struct {
    buf_t body;
} request_t;

typedef struct {
    buf_t data;
    size_t serve_len;    /* bytes of DATA to send */
    int stall;           /* after SERVE_LEN bytes, keep the connection silent */
    uint64_t stall_until;
} stream_t;

/* Set on shutdown so stalled responses end and MHD_stop_daemon returns. */
static volatile int s_stopping;

static ssize_t stream_read (void *cls, uint64_t pos, char *out, size_t max)
{
    stream_t *st = cls;
    size_t end = st->serve_len;
    if (pos >= end) {
        if (!st->stall)
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (s_stopping || mono_ms () >= st->stall_until)
            return MHD_CONTENT_READER_END_WITH_ERROR;
        /* Thread-per-connection mode: sleeping here blocks only this client's thread. */
        usleep (100 * 1000);
        return 0;
    }
    size_t n = end - (size_t) pos;
    if (n > max)
        n = max;
    memcpy (out, st->data.data + pos, n);
    return (ssize_t) n;
}

static void stream_free (void *cls)
{
    stream_t *st = cls;
    free (st->data.data);
    free (st);
}

static enum MHD_Result send_json (struct MHD_Connection *conn, unsigned status, const char *text,
                                  const char *retry_after)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer (strlen (text), (void *) text, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header (resp, "content-type", "application/json");
    MHD_add_response_header (resp, "request-id", "req_dw_modelserver");
    if (retry_after)
        MHD_add_response_header (resp, "retry-after", retry_after);
    enum MHD_Result ret = MHD_queue_response (conn, status, resp);
    MHD_destroy_response (resp);
    return ret;
}

static enum MHD_Result send_error (struct MHD_Connection *conn, unsigned status,
                                   const char *type, const char *message)
{
    json_t *body = json_pack ("{s:s,s:{s:s,s:s}}", "type", "error", "error", "type", type,
                              "message", message);
    char *text = json_dumps (body, JSON_COMPACT);
    json_decref (body);
    enum MHD_Result ret = send_json (conn, status, text, status == 429 ? "1" : NULL);
    free (text);
    return ret;
}

/* Which fault applies to this request of this session. */
static fault_kind_t fault_for (const fault_t *fault, uint64_t session_key)
{
    if (fault->kind == FAULT_NONE)
        return FAULT_NONE;

    pthread_mutex_lock (&s_lock);
    session_t *slot = NULL;
    size_t i = (size_t) (session_key % MAX_SESSIONS);
    for (size_t probes = 0; probes < MAX_SESSIONS; probes++, i = (i + 1) % MAX_SESSIONS) {
        if (s_sessions[i].key == session_key || s_sessions[i].key == 0) {
            slot = &s_sessions[i];
            break;
        }
    }
    int seen = 0;
    if (slot) {
        slot->key = session_key;
        seen = slot->requests++;
    }
    pthread_mutex_unlock (&s_lock);

    if (fault->count == 0 || seen < fault->count)
        return fault->kind;
    return FAULT_NONE;
}

static void log_request (json_t *record)
{
    if (!s_log) {
        json_decref (record);
        return;
    }
    char *text = json_dumps (record, JSON_COMPACT);
    json_decref (record);
    pthread_mutex_lock (&s_lock);
    fprintf (s_log, "%s\n", text);
    fflush (s_log);
    pthread_mutex_unlock (&s_lock);
    free (text);
}

static enum MHD_Result handle_messages (struct MHD_Connection *conn, const char *url,
                                        const buf_t *body)
{
    uint64_t seq = __atomic_add_fetch (&s_request_seq, 1, __ATOMIC_SEQ_CST);
    json_t *record = json_pack ("{s:I,s:s}", "seq", (json_int_t) seq, "path", url);

    const char *key = MHD_lookup_connection_value (conn, MHD_HEADER_KIND, "x-api-key");
    const char *auth = MHD_lookup_connection_value (conn, MHD_HEADER_KIND, "authorization");
    const char *session = MHD_lookup_connection_value (conn, MHD_HEADER_KIND,
                                                       "x-claude-code-session-id");
    const char *retry = MHD_lookup_connection_value (conn, MHD_HEADER_KIND,
                                                     "x-stainless-retry-count");
    /* Never log a key: only whether it matched. */
    int key_ok = !s_expect_key || (key && strcmp (key, s_expect_key) == 0);
    json_object_set_new (record, "key_ok", json_boolean (key_ok));
    json_object_set_new (record, "authorization_header", json_boolean (auth != NULL));
    json_object_set_new (record, "retry_count", json_string (retry ? retry : ""));
    const char *beta = MHD_lookup_connection_value (conn, MHD_GET_ARGUMENT_KIND, "beta");
    json_object_set_new (record, "beta", json_string (beta ? beta : ""));

    json_error_t err;
    json_t *request = json_loadb (body->data ? body->data : "", body->len, 0, &err);
    if (!json_is_object (request)) {
        json_object_set_new (record, "status", json_integer (400));
        log_request (record);
        json_decref (request);
        return send_error (conn, 400, "invalid_request_error", "body is not a JSON object");
    }
    if (!key_ok) {
        json_object_set_new (record, "status", json_integer (401));
        log_request (record);
        json_decref (request);
        return send_error (conn, 401, "authentication_error", "invalid x-api-key");
    }

    const char *model = json_string_value (json_object_get (request, "model"));
    if (!model)
        model = "unknown";
    int stream = json_is_true (json_object_get (request, "stream"));
    json_t *messages = json_object_get (request, "messages");

    /* The first user message carries the task; the whole request carries the
     * working directory (in the system prompt or a system message). */
    buf_t first_user = {0}, all_text = {0};
    size_t i;
    json_t *message;
    json_array_foreach (messages, i, message) {
        const char *role = json_string_value (json_object_get (message, "role"));
        if (role && strcmp (role, "user") == 0) {
            collect_text (json_object_get (message, "content"), &first_user);
            break;
        }
    }
    collect_text (json_object_get (request, "system"), &all_text);
    collect_text (messages, &all_text);
    const char *prompt = first_user.data ? first_user.data : "";

    script_t script = {0};
    script.task = find_task (prompt);
    script.step = count_tool_results (messages, &script.last_result);
    script.check_env = strstr (prompt, "DW_CHECK_ENV") != NULL;
    script.loop = strstr (prompt, "DW_LOOP") != NULL;
    script.cwd = find_cwd (all_text.data ? all_text.data : "");

    char *seed = find_marker (prompt, "DW_SEED=");
    const char *seed_text = "";
    if (seed)
        seed_text = seed;
    else if (session)
        seed_text = session;
    if (script.task) {
        uint64_t h = fnv1a (fnv1a (fnv1a (1469598103934665603ULL, model),
                                   script.task->instance_id), seed_text);
        double u = (double) (h >> 11) / 9007199254740992.0;
        double rate = script.task->solve_rate + model_delta (model);
        script.solve = u < rate;
        json_object_set_new (record, "task", json_string (script.task->instance_id));
        json_object_set_new (record, "solve", json_boolean (script.solve));
    }

    /* After the `env` call, record whether the tool's environment showed the
     * gateway's key or any API key variable. */
    if (script.check_env && script.step == 1 && script.last_result) {
        int leak = strstr (script.last_result, "ANTHROPIC_API_KEY=") != NULL
                   || (s_expect_key && strstr (script.last_result, s_expect_key) != NULL);
        json_object_set_new (record, "env_checked", json_true ());
        json_object_set_new (record, "env_leak", json_boolean (leak));
    }

    fault_t fault = s_fault;
    char *fault_spec = find_marker (prompt, "DW_FAULT=");
    if (fault_spec && parse_fault (fault_spec, &fault) != 0)
        fault.kind = FAULT_NONE;
    fault_kind_t kind = fault_for (&fault, fnv1a (1469598103934665603ULL,
                                                  session ? session : seed_text));

    json_object_set_new (record, "model", json_string (model));
    json_object_set_new (record, "stream", json_boolean (stream));
    json_object_set_new (record, "step", json_integer (script.step));
    json_object_set_new (record, "session", json_string (session ? session : ""));
    json_object_set_new (record, "fault", json_string (FAULT_NAMES[kind]));

    reply_t reply = {0};
    script_reply (&script, &reply);
    if (reply.tool_name) {
        json_object_set_new (record, "tool", json_string (reply.tool_name));
    }
    uint64_t input_tokens = body->len / 4 + 1;

    enum MHD_Result ret;
    unsigned status = 200;
    switch (kind) {
    case FAULT_429:
        status = 429;
        ret = send_error (conn, 429, "rate_limit_error", "scripted rate limit");
        break;
    case FAULT_529:
        status = 529;
        ret = send_error (conn, 529, "overloaded_error", "scripted overload");
        break;
    case FAULT_500:
        status = 500;
        ret = send_error (conn, 500, "api_error", "scripted server error");
        break;
    case FAULT_401:
        status = 401;
        ret = send_error (conn, 401, "authentication_error", "scripted invalid key");
        break;
    case FAULT_DROP:
        /* MHD closes the connection without a response. */
        status = 0;
        ret = MHD_NO;
        break;
    default: {
        stream_t *st = calloc (1, sizeof *st);
        if (!st)
            abort ();
        size_t start_len = 0;
        if (stream) {
            render_sse (&st->data, &reply, model, seq, input_tokens, &start_len);
            if (kind == FAULT_MALFORMED) {
                st->data.len = start_len;
                buf_printf (&st->data, "event: content_block_start\ndata: {\"type\": "
                                       "\"content_block_start\", \"index\": 0,,,}\n\n");
            }
        }
        else {
            char *text = render_message (&reply, model, seq, input_tokens);
            if (kind == FAULT_MALFORMED)
                text[strlen (text) / 2] = '\0';
            buf_append (&st->data, text, strlen (text));
            free (text);
        }
        st->serve_len = st->data.len;
        if (kind == FAULT_STALL) {
            /* Streaming: message_start, then silence. Non-streaming: headers only. */
            st->serve_len = stream ? start_len : 0;
            st->stall = 1;
            st->stall_until = mono_ms () + STALL_MAX_MS;
        }
        struct MHD_Response *resp = MHD_create_response_from_callback (
            MHD_SIZE_UNKNOWN, 16 * 1024, stream_read, st, stream_free);
        MHD_add_response_header (resp, "content-type",
                                 stream ? "text/event-stream" : "application/json");
        MHD_add_response_header (resp, "request-id", "req_dw_modelserver");
        MHD_add_response_header (resp, "connection", "close");
        ret = MHD_queue_response (conn, 200, resp);
        MHD_destroy_response (resp);
        break;
    }
    }
    json_object_set_new (record, "status", json_integer (status));
    log_request (record);

    reply_free (&reply);
    free (fault_spec);
    free (seed);
    free (script.cwd);
    free (first_user.data);
    free (all_text.data);
    json_decref (request);
    return ret;
}

static enum MHD_Result on_request (void *cls, struct MHD_Connection *conn, const char *url,
                                   const char *method, const char *version,
                                   const char *upload_data, size_t *upload_data_size,
                                   void **con_cls)
{
    (void) cls;
    (void) version;
    request_t *req = *con_cls;
    if (!req) {
        req = calloc (1, sizeof *req);
        if (!req)
            return MHD_NO;
        *con_cls = req;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        if (req->body.len + *upload_data_size > MAX_BODY)
            return MHD_NO;
        buf_append (&req->body, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }

    if (strcmp (method, "POST") == 0 && strcmp (url, "/v1/messages") == 0)
        return handle_messages (conn, url, &req->body);
    if (strcmp (method, "HEAD") == 0 || strcmp (method, "GET") == 0)
        return send_json (conn, 200, "{}", NULL);
    return send_error (conn, 404, "not_found_error", "unknown path");
}

static void on_completed (void *cls, struct MHD_Connection *conn, void **con_cls,
                          enum MHD_RequestTerminationCode code)
{
    (void) cls;
    (void) conn;
    (void) code;
    request_t *req = *con_cls;
    if (req) {
        free (req->body.data);
        free (req);
    }
    *con_cls = NULL;
}

static void usage (void)
{
    fprintf (stderr,
             "usage: driftwatch-modelserver [--port N] [--suite FILE] [--model-rate NAME=DELTA]...\n"
             "                              [--fault KIND[:N]] [--expect-key KEY] [--log FILE]\n"
             "  --port N            TCP port on 127.0.0.1; 0 (default) picks a free one\n"
             "  --suite FILE        JSONL suite (instance_id, problem_statement, patch,\n"
             "                      test_cmd, stub_solve_rate)\n"
             "  --model-rate N=D    add D to every task's solve rate for model name N\n"
             "  --fault KIND[:N]    429, 529, 500, 401, stall, drop or malformed; the first N\n"
             "                      requests of each session fail (0 = all)\n"
             "  --expect-key KEY    reject requests whose x-api-key differs (status 401)\n"
             "  --log FILE          append one JSON line per request\n"
             "Prompt markers: DW_FAULT=KIND[:N], DW_SEED=S, DW_CHECK_ENV, DW_LOOP.\n");
}

int main (int argc, char **argv)
{
    unsigned port = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp (arg, "--help") == 0) {
            usage ();
            return 0;
        }
        if (!value) {
            fprintf (stderr, "modelserver: option %s needs a value\n", arg);
            usage ();
            return 2;
        }
        i++;
        if (strcmp (arg, "--port") == 0)
            port = (unsigned) atoi (value);
        else if (strcmp (arg, "--suite") == 0) {
            if (load_suite (value) != 0)
                return 1;
        }
        else if (strcmp (arg, "--model-rate") == 0) {
            const char *eq = strchr (value, '=');
            if (!eq || eq == value || (size_t) (eq - value) >= sizeof s_rates[0].name
                || s_n_rates >= MAX_MODEL_RATES) {
                fprintf (stderr, "modelserver: invalid --model-rate '%s'; use NAME=DELTA\n",
                         value);
                return 2;
            }
            model_rate_t *r = &s_rates[s_n_rates++];
            memcpy (r->name, value, (size_t) (eq - value));
            r->name[eq - value] = '\0';
            r->delta = atof (eq + 1);
        }
        else if (strcmp (arg, "--fault") == 0) {
            if (parse_fault (value, &s_fault) != 0) {
                fprintf (stderr, "modelserver: invalid --fault '%s'; use KIND[:N] with KIND "
                                 "429, 529, 500, 401, stall, drop or malformed\n", value);
                return 2;
            }
        }
        else if (strcmp (arg, "--expect-key") == 0)
            s_expect_key = value;
        else if (strcmp (arg, "--log") == 0) {
            s_log = fopen (value, "a");
            if (!s_log) {
                fprintf (stderr, "modelserver: cannot open log %s: %s\n", value,
                         strerror (errno));
                return 1;
            }
        }
        else {
            fprintf (stderr, "modelserver: unknown option %s\n", arg);
            usage ();
            return 2;
        }
    }

    sigset_t signals;
    sigemptyset (&signals);
    sigaddset (&signals, SIGTERM);
    sigaddset (&signals, SIGINT);
    sigaddset (&signals, SIGPIPE);
    pthread_sigmask (SIG_BLOCK, &signals, NULL);

    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons ((uint16_t) port);
    addr.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    struct MHD_Daemon *daemon = MHD_start_daemon (
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG,
        0, NULL, NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &addr,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned) 900, MHD_OPTION_END);
    if (!daemon) {
        fprintf (stderr, "modelserver: cannot listen on 127.0.0.1:%u\n", port);
        return 1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info (daemon, MHD_DAEMON_INFO_BIND_PORT);
    printf ("listening port=%u\n", info ? info->port : port);
    fflush (stdout);

    int sig = 0;
    do
        sigwait (&signals, &sig);
    while (sig == SIGPIPE);

    s_stopping = 1;
    MHD_stop_daemon (daemon);
    if (s_log)
        fclose (s_log);
    return 0;
}
