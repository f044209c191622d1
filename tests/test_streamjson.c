/* Unit tests for the stream-json parser (worker/dw_streamjson.c). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dw_streamjson.h"

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

static void feed (dw_streamjson_t *p, const char *line, uint64_t now)
{
    dw_streamjson_feed (p, line, strlen (line), 0, now);
}

static uint32_t tool_count (const dw_streamjson_summary_t *s, const char *name)
{
    for (size_t i = 0; i < s->n_tools; i++)
        if (strcmp (s->tools[i].name, name) == 0)
            return s->tools[i].count;
    return 0;
}

static const char *INIT_LINE =
    "{\"type\":\"system\",\"subtype\":\"init\",\"cwd\":\"/w\",\"session_id\":\"s1\","
    "\"model\":\"init-model\",\"tools\":[\"Bash\",\"Read\"]}";

static void test_success_transcript (void)
{
    dw_streamjson_t *p = dw_streamjson_new (1000);
    feed (p, INIT_LINE, 1250);
    /* One message, two content blocks on two lines with the same id. */
    feed (p, "{\"type\":\"assistant\",\"message\":{\"id\":\"msg_1\",\"model\":\"m-real\","
             "\"content\":[{\"type\":\"text\",\"text\":\"Looking.\"}],"
             "\"usage\":{\"input_tokens\":999999,\"output_tokens\":999999}}}", 1300);
    feed (p, "{\"type\":\"assistant\",\"message\":{\"id\":\"msg_1\",\"model\":\"m-real\","
             "\"content\":[{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"Read\","
             "\"input\":{\"file_path\":\"a.py\"}}]}}", 1310);
    feed (p, "{\"type\":\"user\",\"message\":{\"role\":\"user\",\"content\":[{\"type\":"
             "\"tool_result\",\"tool_use_id\":\"toolu_1\",\"content\":\"x\"}]}}", 1320);
    /* The same tool_use id printed again must not be counted twice. */
    feed (p, "{\"type\":\"assistant\",\"message\":{\"id\":\"msg_2\",\"model\":\"m-real\","
             "\"content\":[{\"type\":\"tool_use\",\"id\":\"toolu_2\",\"name\":\"Bash\","
             "\"input\":{\"command\":\"ls\"}}]}}", 1400);
    feed (p, "{\"type\":\"assistant\",\"message\":{\"id\":\"msg_2\",\"model\":\"m-real\","
             "\"content\":[{\"type\":\"tool_use\",\"id\":\"toolu_2\",\"name\":\"Bash\","
             "\"input\":{\"command\":\"ls\"}}]}}", 1401);
    feed (p, "{\"type\":\"system\",\"subtype\":\"permission_denied\",\"tool_name\":\"Bash\"}", 1402);
    feed (p, "{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,\"num_turns\":5,"
             "\"duration_ms\":317,\"total_cost_usd\":9.0,\"stop_reason\":\"end_turn\","
             "\"terminal_reason\":\"completed\",\"result\":\"Done\","
             "\"usage\":{\"input_tokens\":1,\"output_tokens\":1},"
             "\"modelUsage\":{\"m-real\":{\"inputTokens\":5000,\"outputTokens\":250,"
             "\"cacheReadInputTokens\":7,\"cacheCreationInputTokens\":3,\"costUSD\":0.025},"
             "\"m-small\":{\"inputTokens\":100,\"outputTokens\":10,\"cacheReadInputTokens\":1,"
             "\"cacheCreationInputTokens\":2,\"costUSD\":0.001}},"
             "\"permission_denials\":[{\"tool_name\":\"Bash\"},{\"tool_name\":\"Edit\"}],"
             "\"api_error_status\":null}", 1500);

    const dw_streamjson_summary_t *s = dw_streamjson_summary (p);
    CHECK (s->lines == 8, "expected 8 lines, got %llu", (unsigned long long) s->lines);
    CHECK (s->init_seen, "expected the init event to be seen");
    CHECK (s->result_seen, "expected the result event to be seen");
    CHECK (s->turns == 5, "expected turns=5 from num_turns, got %u", s->turns);
    CHECK (s->assistant_messages == 2, "expected 2 distinct assistant messages, got %u",
           s->assistant_messages);
    CHECK (tool_count (s, "Read") == 1, "expected Read=1, got %u", tool_count (s, "Read"));
    CHECK (tool_count (s, "Bash") == 1, "expected Bash=1 (deduplicated), got %u",
           tool_count (s, "Bash"));
    CHECK (s->input_tokens == 5100, "expected input 5100 summed over models, got %llu",
           (unsigned long long) s->input_tokens);
    CHECK (s->output_tokens == 260, "expected output 260, got %llu",
           (unsigned long long) s->output_tokens);
    CHECK (s->cache_read_tokens == 8, "expected cache read 8, got %llu",
           (unsigned long long) s->cache_read_tokens);
    CHECK (s->cache_creation_tokens == 5, "expected cache creation 5, got %llu",
           (unsigned long long) s->cache_creation_tokens);
    CHECK (fabs (s->cost_usd - 0.026) < 1e-9, "expected cost 0.026 from modelUsage, got %f",
           s->cost_usd);
    CHECK (s->duration_ms == 317, "expected duration 317, got %llu",
           (unsigned long long) s->duration_ms);
    CHECK (s->time_to_first_event_ms == 250, "expected first event after 250 ms, got %lld",
           (long long) s->time_to_first_event_ms);
    CHECK (strcmp (s->terminal_reason, "completed") == 0, "terminal_reason '%s'",
           s->terminal_reason);
    CHECK (strcmp (s->subtype, "success") == 0, "subtype '%s'", s->subtype);
    CHECK (!s->is_error, "expected is_error false");
    CHECK (s->permission_denials == 2, "expected 2 denials, got %u", s->permission_denials);
    CHECK (strcmp (s->model, "m-real") == 0, "expected model from assistant, got '%s'", s->model);
    CHECK (s->api_error_status == 0, "expected no API error status, got %d", s->api_error_status);

    Driftwatch__V1__AgentMetrics m = DRIFTWATCH__V1__AGENT_METRICS__INIT;
    CHECK (dw_streamjson_fill_metrics (p, &m) == 0, "fill_metrics failed");
    CHECK (m.turns == 5, "metrics turns %u", m.turns);
    CHECK (m.n_tool_calls == 2, "metrics tool entries %zu", m.n_tool_calls);
    CHECK (m.result_event_seen, "metrics result_event_seen");
    CHECK (strcmp (m.api_model, "m-real") == 0, "metrics api_model '%s'", m.api_model);
    CHECK (strcmp (m.terminal_reason, "completed") == 0, "metrics terminal_reason");
    CHECK (m.time_to_first_event_ms == 250, "metrics ttfe %llu",
           (unsigned long long) m.time_to_first_event_ms);
    dw_streamjson_metrics_free (&m);
    CHECK (m.n_tool_calls == 0 && m.tool_calls == NULL, "metrics_free resets tool calls");
    dw_streamjson_metrics_free (&m);
    dw_streamjson_destroy (&p);
    CHECK (p == NULL, "destroy nulls the pointer");
}

static void test_usage_fallback (void)
{
    dw_streamjson_t *p = dw_streamjson_new (0);
    feed (p, "{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,"
             "\"total_cost_usd\":0.5,\"usage\":{\"input_tokens\":11,\"output_tokens\":22,"
             "\"cache_creation_input_tokens\":33,\"cache_read_input_tokens\":44}}", 10);
    const dw_streamjson_summary_t *s = dw_streamjson_summary (p);
    CHECK (s->input_tokens == 11 && s->output_tokens == 22, "usage tokens %llu/%llu",
           (unsigned long long) s->input_tokens, (unsigned long long) s->output_tokens);
    CHECK (s->cache_creation_tokens == 33 && s->cache_read_tokens == 44, "usage cache tokens");
    CHECK (fabs (s->cost_usd - 0.5) < 1e-9, "cost from total_cost_usd, got %f", s->cost_usd);
    dw_streamjson_destroy (&p);
}

static void test_no_result (void)
{
    dw_streamjson_t *p = dw_streamjson_new (100);
    feed (p, INIT_LINE, 150);
    feed (p, "{\"type\":\"assistant\",\"message\":{\"id\":\"a\",\"content\":[]}}", 160);
    feed (p, "{\"type\":\"assistant\",\"message\":{\"id\":\"b\",\"content\":[]}}", 900);
    const dw_streamjson_summary_t *s = dw_streamjson_summary (p);
    CHECK (!s->result_seen, "expected no result event");
    CHECK (s->turns == 2, "expected turns=2 counted from assistant messages, got %u", s->turns);
    CHECK (strcmp (s->model, "init-model") == 0, "expected model from init, got '%s'", s->model);
    CHECK (s->duration_ms == 800, "expected duration from line times 800, got %llu",
           (unsigned long long) s->duration_ms);
    dw_streamjson_destroy (&p);
}

static void test_api_error (void)
{
    dw_streamjson_t *p = dw_streamjson_new (0);
    feed (p, INIT_LINE, 1);
    feed (p, "{\"type\":\"system\",\"subtype\":\"api_retry\",\"attempt\":1,\"max_retries\":2,"
             "\"retry_delay_ms\":500,\"error_status\":529,\"error\":\"overloaded\"}", 2);
    feed (p, "{\"type\":\"system\",\"subtype\":\"api_retry\",\"attempt\":2,\"max_retries\":2,"
             "\"retry_delay_ms\":900,\"error_status\":529,\"error\":\"overloaded\"}", 3);
    feed (p, "{\"type\":\"assistant\",\"message\":{\"id\":\"x\",\"model\":\"<synthetic>\","
             "\"content\":[{\"type\":\"text\",\"text\":\"API Error: 529\"}]},"
             "\"is_api_error_message\":true,\"error\":\"server_error\"}", 4);
    feed (p, "{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":true,\"num_turns\":1,"
             "\"terminal_reason\":\"api_error\",\"api_error_status\":529,"
             "\"result\":\"API Error: 529 Overloaded\"}", 5);
    const dw_streamjson_summary_t *s = dw_streamjson_summary (p);
    CHECK (s->api_retries == 2, "expected 2 api_retry events, got %u", s->api_retries);
    CHECK (s->api_error_status == 529, "expected status 529, got %d", s->api_error_status);
    CHECK (s->is_error, "expected is_error");
    CHECK (s->synthetic_api_errors == 1, "expected 1 synthetic message, got %u",
           s->synthetic_api_errors);
    CHECK (s->assistant_messages == 0, "synthetic message is not a turn, got %u",
           s->assistant_messages);
    CHECK (strcmp (s->model, "init-model") == 0, "synthetic model is ignored, got '%s'",
           s->model);
    CHECK (strcmp (s->last_retry_error, "overloaded") == 0, "last retry error '%s'",
           s->last_retry_error);
    CHECK (strcmp (s->result_text, "API Error: 529 Overloaded") == 0, "result text '%s'",
           s->result_text);
    dw_streamjson_destroy (&p);
}

static void test_retry_status_without_result (void)
{
    dw_streamjson_t *p = dw_streamjson_new (0);
    feed (p, "{\"type\":\"system\",\"subtype\":\"api_retry\",\"error_status\":429,"
             "\"error\":\"rate_limit\"}", 1);
    const dw_streamjson_summary_t *s = dw_streamjson_summary (p);
    CHECK (s->api_error_status == 429, "expected status 429 from api_retry, got %d",
           s->api_error_status);
    dw_streamjson_destroy (&p);
}

static void test_big_line (void)
{
    /* A 2 MB assistant line (a large text block) parses like any other. */
    size_t text_len = 2 * 1024 * 1024;
    const char *head = "{\"type\":\"assistant\",\"message\":{\"id\":\"big\",\"model\":\"m\","
                       "\"content\":[{\"type\":\"tool_use\",\"id\":\"t_big\",\"name\":\"Write\","
                       "\"input\":{\"content\":\"";
    const char *tail = "\"}}]}}";
    size_t len = strlen (head) + text_len + strlen (tail);
    char *line = malloc (len + 1);
    CHECK (line != NULL, "malloc");
    if (!line)
        return;
    strcpy (line, head);
    memset (line + strlen (head), 'a', text_len);
    strcpy (line + strlen (head) + text_len, tail);

    dw_streamjson_t *p = dw_streamjson_new (0);
    dw_streamjson_feed (p, line, len, 0, 1);
    const dw_streamjson_summary_t *s = dw_streamjson_summary (p);
    CHECK (tool_count (s, "Write") == 1, "expected the 2 MB line to be parsed (Write=1), got %u",
           tool_count (s, "Write"));
    CHECK (s->invalid_lines == 0, "expected no invalid lines, got %llu",
           (unsigned long long) s->invalid_lines);

    /* The same line cut by the caller is counted but not parsed. */
    dw_streamjson_feed (p, line, 1024 * 1024, 1, 2);
    CHECK (s->truncated_lines == 1, "expected 1 truncated line, got %llu",
           (unsigned long long) s->truncated_lines);
    CHECK (tool_count (s, "Write") == 1, "truncated line must not be parsed");
    free (line);
    dw_streamjson_destroy (&p);
}

static void test_truncated_and_invalid (void)
{
    dw_streamjson_t *p = dw_streamjson_new (0);
    const char *result = "{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false}";
    dw_streamjson_feed (p, result, 20, 1, 5);
    feed (p, "not json at all", 6);
    feed (p, "[1,2,3]", 7);
    feed (p, "{\"type\":\"result\",\"subtype\"", 8);
    dw_streamjson_feed (p, "\n", 1, 0, 9);
    const dw_streamjson_summary_t *s = dw_streamjson_summary (p);
    CHECK (!s->result_seen, "a truncated result line must not count as a result");
    CHECK (s->truncated_lines == 1, "truncated lines %llu", (unsigned long long) s->truncated_lines);
    CHECK (s->invalid_lines == 3, "expected 3 invalid lines, got %llu",
           (unsigned long long) s->invalid_lines);
    CHECK (s->lines == 5, "expected 5 lines, got %llu", (unsigned long long) s->lines);
    CHECK (s->time_to_first_event_ms == 5, "a truncated first line still sets the first-event "
           "time, got %lld", (long long) s->time_to_first_event_ms);
    dw_streamjson_destroy (&p);
}

static void test_max_turns (void)
{
    dw_streamjson_t *p = dw_streamjson_new (0);
    feed (p, "{\"type\":\"result\",\"subtype\":\"error_max_turns\",\"is_error\":true,"
             "\"num_turns\":4,\"terminal_reason\":\"max_turns\",\"stop_reason\":\"tool_use\","
             "\"errors\":[\"Reached maximum number of turns (3)\"]}", 1);
    const dw_streamjson_summary_t *s = dw_streamjson_summary (p);
    CHECK (strcmp (s->subtype, "error_max_turns") == 0, "subtype '%s'", s->subtype);
    CHECK (strcmp (s->result_text, "Reached maximum number of turns (3)") == 0,
           "errors[0] used as result text, got '%s'", s->result_text);
    CHECK (s->turns == 4, "turns %u", s->turns);
    dw_streamjson_destroy (&p);
}

static void test_many_tools (void)
{
    /* More distinct tool names than the table holds: the rest go to "other". */
    dw_streamjson_t *p = dw_streamjson_new (0);
    char line[256];
    for (int i = 0; i < DW_STREAMJSON_TOOLS_MAX + 10; i++) {
        snprintf (line, sizeof line,
                  "{\"type\":\"assistant\",\"message\":{\"id\":\"m%d\",\"content\":[{\"type\":"
                  "\"tool_use\",\"id\":\"t%d\",\"name\":\"Tool%d\"}]}}", i, i, i);
        feed (p, line, 1);
    }
    const dw_streamjson_summary_t *s = dw_streamjson_summary (p);
    CHECK (s->n_tools == DW_STREAMJSON_TOOLS_MAX, "tool table holds %zu entries", s->n_tools);
    CHECK (tool_count (s, "other") == 11, "expected 11 calls in 'other', got %u",
           tool_count (s, "other"));
    CHECK (s->tool_calls_total == DW_STREAMJSON_TOOLS_MAX + 10, "total calls %llu",
           (unsigned long long) s->tool_calls_total);
    dw_streamjson_destroy (&p);
}

int main (void)
{
    test_success_transcript ();
    test_usage_fallback ();
    test_no_result ();
    test_api_error ();
    test_retry_status_without_result ();
    test_big_line ();
    test_truncated_and_invalid ();
    test_max_turns ();
    test_many_tools ();

    if (s_failures) {
        fprintf (stderr, "%d check(s) failed\n", s_failures);
        return 1;
    }
    printf ("all stream-json checks passed\n");
    return 0;
}
