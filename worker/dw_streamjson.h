/* Incremental parser for the Claude Code CLI's stream-json output.
 *
 * The CLI, run as `claude -p ... --output-format stream-json --verbose`,
 * prints one JSON object per line: a system/init event, one assistant line
 * per content block (several lines share one message id), user lines with
 * tool results, system/api_retry and system/permission_denied events, and a
 * final result event with the totals. The caller feeds the lines one at a
 * time as they arrive; the parser keeps only the running summary, never the
 * lines, so its memory is bounded by the constants below.
 *
 * Tokens and cost come from the final result event only (its modelUsage map
 * summed over models, or its usage object when modelUsage is absent). They
 * are never summed over assistant lines, because those carry the
 * message_start usage of each request, not the final one.
 */
#ifndef DW_STREAMJSON_H
#define DW_STREAMJSON_H

#include <stddef.h>
#include <stdint.h>

#include "driftwatch.pb-c.h"

/* Distinct tool names counted; calls to further names go to "other". */
#define DW_STREAMJSON_TOOLS_MAX 32
/* Distinct tool_use ids remembered for de-duplication. Past this many, new
 * ids are counted without de-duplication. */
#define DW_STREAMJSON_TOOL_IDS_MAX 4096
/* Bytes kept of each short string field (names, reasons), with the NUL. */
#define DW_STREAMJSON_NAME_MAX 128
/* Bytes kept of the result text and of the last API error text, with the NUL. */
#define DW_STREAMJSON_TEXT_MAX 512

typedef struct {
    char name[DW_STREAMJSON_NAME_MAX];
    uint32_t count;
} dw_streamjson_tool_t;

/* Running summary of one CLI run. Fields without a value stay zero or "". */
typedef struct {
    uint64_t lines;              /* every line fed, including truncated ones */
    uint64_t truncated_lines;    /* cut by the caller; counted, not parsed */
    uint64_t invalid_lines;      /* not a JSON object */
    int init_seen;
    int result_seen;

    /* From the result event: num_turns when present (turns_from_result),
     * else the number of distinct non-synthetic assistant messages. */
    uint32_t turns;
    int turns_from_result;
    uint32_t assistant_messages;

    dw_streamjson_tool_t tools[DW_STREAMJSON_TOOLS_MAX];
    size_t n_tools;
    uint64_t tool_calls_total;

    uint64_t input_tokens;
    uint64_t output_tokens;
    uint64_t cache_creation_tokens;
    uint64_t cache_read_tokens;
    double cost_usd;

    /* duration_ms of the result event, else last line time - start time. */
    uint64_t duration_ms;
    /* Time from start to the first line, -1 while no line arrived. */
    int64_t time_to_first_event_ms;

    char subtype[DW_STREAMJSON_NAME_MAX];          /* of the result event */
    char terminal_reason[DW_STREAMJSON_NAME_MAX];  /* of the result event */
    char stop_reason[DW_STREAMJSON_NAME_MAX];      /* of the result event */
    int is_error;                                   /* of the result event */
    char result_text[DW_STREAMJSON_TEXT_MAX];      /* result or errors[0] */

    /* HTTP status of the API error: the result's api_error_status, else the
     * error_status of the last api_retry event; 0 when none. */
    int api_error_status;
    uint32_t api_retries;
    /* The `error` field of the last api_retry event ("rate_limit", ...). */
    char last_retry_error[DW_STREAMJSON_NAME_MAX];
    /* Assistant lines the CLI made up for an API error (model "<synthetic>"). */
    uint32_t synthetic_api_errors;

    uint32_t permission_denials;

    /* Model from assistant messages, else the modelUsage keys, else init. */
    char model[DW_STREAMJSON_NAME_MAX];
} dw_streamjson_summary_t;

typedef struct dw_streamjson dw_streamjson_t;

/* Create a parser for a run that started at START_MS (any monotonic clock in
 * milliseconds, the same one passed to dw_streamjson_feed). NULL on ENOMEM. */
dw_streamjson_t *dw_streamjson_new (uint64_t start_ms);

/* Destroy the parser and null the pointer; NULL is fine. */
void dw_streamjson_destroy (dw_streamjson_t **self_p);

/* Feed one stdout line of LEN bytes (a trailing newline is ignored) that
 * arrived at NOW_MS. TRUNCATED is nonzero when the caller cut the line at its
 * cap: such a line counts toward the line totals and the first-event time but
 * is not parsed. Malformed lines are counted and skipped. */
void dw_streamjson_feed (dw_streamjson_t *self, const char *line, size_t len, int truncated,
                         uint64_t now_ms);

/* Return the running summary; valid until the parser is destroyed. */
const dw_streamjson_summary_t *dw_streamjson_summary (const dw_streamjson_t *self);

/* Fill METRICS (initialised with DRIFTWATCH__V1__AGENT_METRICS__INIT) from
 * the summary. Strings and tool counts are heap copies; release them with
 * dw_streamjson_metrics_free. Returns 0, or -1 on ENOMEM (then METRICS holds
 * nothing that needs freeing). */
int dw_streamjson_fill_metrics (const dw_streamjson_t *self,
                                Driftwatch__V1__AgentMetrics *metrics);

/* Free what dw_streamjson_fill_metrics allocated inside METRICS (not METRICS
 * itself) and reset those fields. NULL is fine. */
void dw_streamjson_metrics_free (Driftwatch__V1__AgentMetrics *metrics);

#endif
