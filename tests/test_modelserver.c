/* Tests for driftwatch-modelserver (tests/modelserver/modelserver.c):
 * deterministic solve decisions per model, the SSE shape the Claude Code
 * CLI needs, and the non-streaming fallback. */
#include <curl/curl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dw_util.h"

static int s_failures = 0;

#define CHECK(cond, ...)                                                    \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf (stderr, "FAIL %s:%d: ", __FILE__, __LINE__);           \
            fprintf (stderr, __VA_ARGS__);                                  \
            fprintf (stderr, "\n");                                         \
            s_failures++;                                                   \
        }                                                                   \
    } while (0)

#define STATEMENT "The parser drops the last field of every record."
#define SEEDS 40

static char s_root[256];
static char s_log[512];
static pid_t s_pid;
static int s_port;

static int server_start (const char *suite)
{
    const char *build = getenv ("DW_BUILD_DIR");
    char *program = dw_strdup_printf ("%s/driftwatch-modelserver", build ? build : ".");
    int fds[2];
    if (!program || pipe (fds) != 0)
        return -1;
    s_pid = fork ();
    if (s_pid == 0) {
        dup2 (fds[1], 1);
        close (fds[0]);
        execl (program, program, "--suite", suite, "--log", s_log, "--model-rate",
               "model-strong=0.5", "--model-rate", "model-weak=-0.5", (char *) NULL);
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
    char *data;
    size_t len;
} body_t;

static size_t on_body (char *data, size_t size, size_t nmemb, void *arg)
{
    body_t *b = arg;
    size_t n = size * nmemb;
    char *grown = realloc (b->data, b->len + n + 1);
    if (!grown)
        return 0;
    b->data = grown;
    memcpy (b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0';
    return n;
}

/* POST a one-message request; returns the body (caller frees). */
static char *post (const char *model, const char *prompt, int stream)
{
    json_t *request = json_pack ("{s:s,s:b,s:i,s:[{s:s,s:s}]}", "model", model, "stream", stream,
                                 "max_tokens", 100, "messages", "role", "user", "content", prompt);
    char *json = json_dumps (request, JSON_COMPACT);
    json_decref (request);
    char url[128];
    snprintf (url, sizeof url, "http://127.0.0.1:%d/v1/messages?beta=true", s_port);

    body_t body = {0};
    CURL *curl = curl_easy_init ();
    struct curl_slist *h = curl_slist_append (NULL, "content-type: application/json");
    curl_easy_setopt (curl, CURLOPT_URL, url);
    curl_easy_setopt (curl, CURLOPT_POSTFIELDS, json);
    curl_easy_setopt (curl, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt (curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt (curl, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt (curl, CURLOPT_TIMEOUT, 10L);
    CURLcode code = curl_easy_perform (curl);
    CHECK (code == CURLE_OK, "request failed: curl %d", code);
    curl_slist_free_all (h);
    curl_easy_cleanup (curl);
    free (json);
    return body.data;
}

/* Count log records of MODEL whose "solve" is true. */
static int solved_count (const char *model)
{
    char *text = dw_read_file (s_log, 16 << 20, NULL);
    int count = 0;
    for (char *line = text ? strtok (text, "\n") : NULL; line; line = strtok (NULL, "\n")) {
        json_t *record = json_loads (line, 0, NULL);
        const char *m = json_string_value (json_object_get (record, "model"));
        if (m && strcmp (m, model) == 0 && json_is_true (json_object_get (record, "solve")))
            count++;
        json_decref (record);
    }
    free (text);
    return count;
}

static void test_solve_rates (void)
{
    const char *models[] = {"model-strong", "model-weak", "model-plain"};
    for (int m = 0; m < 3; m++)
        for (int seed = 0; seed < SEEDS; seed++) {
            char prompt[256];
            snprintf (prompt, sizeof prompt, "%s DW_SEED=s%d", STATEMENT, seed);
            free (post (models[m], prompt, 1));
        }
    int strong = solved_count ("model-strong");
    int weak = solved_count ("model-weak");
    int plain = solved_count ("model-plain");
    CHECK (strong == SEEDS, "rate 0.5 + 0.5 solves every seed, got %d of %d", strong, SEEDS);
    CHECK (weak == 0, "rate 0.5 - 0.5 solves no seed, got %d", weak);
    CHECK (plain > 0 && plain < SEEDS, "rate 0.5 solves some seeds, got %d of %d", plain, SEEDS);

    /* The same (model, task, seed) always gets the same decision. */
    for (int seed = 0; seed < SEEDS; seed++) {
        char prompt[256];
        snprintf (prompt, sizeof prompt, "%s DW_SEED=s%d", STATEMENT, seed);
        free (post ("model-plain", prompt, 1));
    }
    CHECK (solved_count ("model-plain") == 2 * plain, "decisions repeat: %d then %d in total",
           plain, solved_count ("model-plain"));
}

static void test_stream_shape (void)
{
    char *body = post ("model-strong", STATEMENT " DW_SEED=x", 1);
    CHECK (body && strstr (body, "event: message_start\ndata: "), "SSE has event: lines");
    CHECK (body && strstr (body, "\"input_json_delta\""), "tool input sent as input_json_delta");
    CHECK (body && strstr (body, "\"name\":\"Read\""), "first turn reads a file");
    CHECK (body && strstr (body, "calc.py"), "the file is one the gold patch touches");
    CHECK (body && strstr (body, "event: message_stop"), "stream ends with message_stop");
    free (body);
}

static void test_non_streaming (void)
{
    char *body = post ("model-strong", STATEMENT " DW_SEED=x", 0);
    json_t *message = body ? json_loads (body, 0, NULL) : NULL;
    CHECK (message != NULL, "stream:false returns JSON, got '%.80s'", body ? body : "");
    const char *type = json_string_value (json_object_get (message, "type"));
    CHECK (type && strcmp (type, "message") == 0, "a Message object");
    json_t *tool = json_array_get (json_object_get (message, "content"), 1);
    const char *path = json_string_value (json_object_get (json_object_get (tool, "input"),
                                                           "file_path"));
    CHECK (path && strstr (path, "calc.py"), "tool input inside the message");
    json_decref (message);
    free (body);
}

static void test_unknown_task (void)
{
    char *body = post ("model-plain", "Something unrelated.", 1);
    CHECK (body && strstr (body, "\"text\":\"Done\""), "an unknown task gets a plain answer");
    free (body);
}

int main (void)
{
    signal (SIGPIPE, SIG_IGN);
    snprintf (s_root, sizeof s_root, "/tmp/dw-modelserver-test-XXXXXX");
    if (!mkdtemp (s_root))
        return 1;
    char suite[512];
    snprintf (suite, sizeof suite, "%s/suite.jsonl", s_root);
    snprintf (s_log, sizeof s_log, "%s/requests.log", s_root);
    json_t *row = json_pack ("{s:s,s:s,s:s,s:s,s:f}", "instance_id", "parser-1",
                             "problem_statement", STATEMENT, "patch",
                             "--- a/calc.py\n+++ b/calc.py\n@@ -1 +1 @@\n-x\n+y\n", "test_cmd",
                             "true", "stub_solve_rate", 0.5);
    char *line = json_dumps (row, JSON_COMPACT);
    json_decref (row);
    char *text = dw_strdup_printf ("%s\n", line);
    free (line);
    dw_write_file_atomic (suite, text, strlen (text), 0644);
    free (text);

    if (server_start (suite) != 0) {
        fprintf (stderr, "cannot start driftwatch-modelserver\n");
        return 1;
    }
    test_solve_rates ();
    test_stream_shape ();
    test_non_streaming ();
    test_unknown_task ();

    kill (s_pid, SIGTERM);
    waitpid (s_pid, NULL, 0);
    if (s_failures) {
        fprintf (stderr, "%d check(s) failed; files kept in %s\n", s_failures, s_root);
        return 1;
    }
    dw_rm_rf (s_root);
    printf ("all model server checks passed\n");
    return 0;
}
