/* Stream-json parser: see dw_streamjson.h. */
#include "dw_streamjson.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* Open-addressing set of 64-bit id hashes; twice the maximum fill keeps
 * probes short. A hash collision merges two ids, which at 64 bits is
 * negligible for a few thousand ids. */
#define ID_SET_SLOTS (2 * DW_STREAMJSON_TOOL_IDS_MAX)

typedef struct {
    uint64_t slots[ID_SET_SLOTS];
    size_t used;
} id_set_t;

struct dw_streamjson {
    uint64_t start_ms;
    uint64_t last_line_ms;
    dw_streamjson_summary_t summary;
    id_set_t tool_ids;
    id_set_t message_ids;
    /* Model names of the three sources, resolved by priority at the end. */
    char assistant_model[DW_STREAMJSON_NAME_MAX];
    char usage_model[DW_STREAMJSON_NAME_MAX];
    char init_model[DW_STREAMJSON_NAME_MAX];
    uint32_t denial_events;
    uint32_t result_denials;
    int result_api_status;
    int retry_api_status;
    uint64_t result_duration_ms;
    int result_duration_seen;
};

static uint64_t hash_string (const char *text)
{
    /* FNV-1a, 64 bit. */
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *) text; *p; p++) {
        h ^= *p;
        h *= 1099511628211ULL;
    }
    return h ? h : 1;
}

/* Insert TEXT; return 1 if it was new, 0 if already present, -1 if full. */
static int id_set_insert (id_set_t *set, const char *text)
{
    uint64_t h = hash_string (text);
    size_t i = (size_t) (h % ID_SET_SLOTS);
    for (size_t probes = 0; probes < ID_SET_SLOTS; probes++) {
        if (set->slots[i] == h)
            return 0;
        if (set->slots[i] == 0) {
            if (set->used >= DW_STREAMJSON_TOOL_IDS_MAX)
                return -1;
            set->slots[i] = h;
            set->used++;
            return 1;
        }
        i = (i + 1) % ID_SET_SLOTS;
    }
    return -1;
}

static void copy_text (char *dst, size_t size, const char *src)
{
    if (!src)
        src = "";
    size_t len = strlen (src);
    if (len >= size)
        len = size - 1;
    memcpy (dst, src, len);
    dst[len] = '\0';
}

static uint64_t json_u64 (json_t *value)
{
    if (json_is_integer (value) && json_integer_value (value) > 0)
        return (uint64_t) json_integer_value (value);
    if (json_is_real (value) && json_real_value (value) > 0)
        return (uint64_t) json_real_value (value);
    return 0;
}

static double json_double (json_t *value)
{
    return json_is_number (value) ? json_number_value (value) : 0.0;
}

static void count_tool (dw_streamjson_t *self, const char *name)
{
    dw_streamjson_summary_t *s = &self->summary;
    if (!name || !*name)
        name = "unknown";

    s->tool_calls_total++;
    for (size_t i = 0; i < s->n_tools; i++)
        if (strncmp (s->tools[i].name, name, DW_STREAMJSON_NAME_MAX - 1) == 0) {
            s->tools[i].count++;
            return;
        }

    /* The last slot is reserved for "other" once the table is full. */
    if (s->n_tools < DW_STREAMJSON_TOOLS_MAX - 1) {
        copy_text (s->tools[s->n_tools].name, DW_STREAMJSON_NAME_MAX, name);
        s->tools[s->n_tools].count = 1;
        s->n_tools++;
        return;
    }
    if (s->n_tools == DW_STREAMJSON_TOOLS_MAX - 1) {
        copy_text (s->tools[s->n_tools].name, DW_STREAMJSON_NAME_MAX, "other");
        s->tools[s->n_tools].count = 0;
        s->n_tools++;
    }
    s->tools[DW_STREAMJSON_TOOLS_MAX - 1].count++;
}

static void on_assistant (dw_streamjson_t *self, json_t *event)
{
    json_t *message = json_object_get (event, "message");
    if (!json_is_object (message))
        return;

    /* The CLI reports an API failure as an assistant line of its own making;
     * it is neither a turn nor evidence of the model's name. */
    const char *model = json_string_value (json_object_get (message, "model"));
    if ((model && strcmp (model, "<synthetic>") == 0)
        || json_is_true (json_object_get (event, "is_api_error_message"))) {
        self->summary.synthetic_api_errors++;
        return;
    }
    if (model && *model && !self->assistant_model[0])
        copy_text (self->assistant_model, sizeof self->assistant_model, model);

    /* One line per content block: count each message id once. */
    const char *id = json_string_value (json_object_get (message, "id"));
    if (!id || id_set_insert (&self->message_ids, id) != 0)
        self->summary.assistant_messages++;

    json_t *content = json_object_get (message, "content");
    size_t i;
    json_t *block;
    json_array_foreach (content, i, block) {
        const char *type = json_string_value (json_object_get (block, "type"));
        if (!type || strcmp (type, "tool_use") != 0)
            continue;
        const char *tool_id = json_string_value (json_object_get (block, "id"));
        const char *name = json_string_value (json_object_get (block, "name"));
        if (tool_id && id_set_insert (&self->tool_ids, tool_id) == 0)
            continue;
        count_tool (self, name);
    }
}

static void on_system (dw_streamjson_t *self, json_t *event)
{
    const char *subtype = json_string_value (json_object_get (event, "subtype"));
    if (!subtype)
        return;

    if (strcmp (subtype, "init") == 0) {
        self->summary.init_seen = 1;
        copy_text (self->init_model, sizeof self->init_model,
                   json_string_value (json_object_get (event, "model")));
    }
    else if (strcmp (subtype, "api_retry") == 0) {
        self->summary.api_retries++;
        json_t *status = json_object_get (event, "error_status");
        self->retry_api_status = json_is_integer (status) ? (int) json_integer_value (status) : 0;
        copy_text (self->summary.last_retry_error, sizeof self->summary.last_retry_error,
                   json_string_value (json_object_get (event, "error")));
    }
    else if (strcmp (subtype, "permission_denied") == 0)
        self->denial_events++;
}

static void add_model_usage (dw_streamjson_t *self, json_t *model_usage)
{
    dw_streamjson_summary_t *s = &self->summary;
    const char *name;
    json_t *usage;
    json_object_foreach (model_usage, name, usage) {
        if (!self->usage_model[0])
            copy_text (self->usage_model, sizeof self->usage_model, name);
        s->input_tokens += json_u64 (json_object_get (usage, "inputTokens"));
        s->output_tokens += json_u64 (json_object_get (usage, "outputTokens"));
        s->cache_creation_tokens += json_u64 (json_object_get (usage, "cacheCreationInputTokens"));
        s->cache_read_tokens += json_u64 (json_object_get (usage, "cacheReadInputTokens"));
        s->cost_usd += json_double (json_object_get (usage, "costUSD"));
    }
}

static void on_result (dw_streamjson_t *self, json_t *event)
{
    dw_streamjson_summary_t *s = &self->summary;

    /* A second result event replaces the first; totals are never summed. */
    s->result_seen = 1;
    s->input_tokens = s->output_tokens = 0;
    s->cache_creation_tokens = s->cache_read_tokens = 0;
    s->cost_usd = 0;
    self->usage_model[0] = '\0';

    copy_text (s->subtype, sizeof s->subtype,
               json_string_value (json_object_get (event, "subtype")));
    copy_text (s->terminal_reason, sizeof s->terminal_reason,
               json_string_value (json_object_get (event, "terminal_reason")));
    copy_text (s->stop_reason, sizeof s->stop_reason,
               json_string_value (json_object_get (event, "stop_reason")));
    s->is_error = json_is_true (json_object_get (event, "is_error"));

    const char *text = json_string_value (json_object_get (event, "result"));
    if (!text)
        text = json_string_value (json_array_get (json_object_get (event, "errors"), 0));
    copy_text (s->result_text, sizeof s->result_text, text);

    json_t *turns = json_object_get (event, "num_turns");
    if (json_is_integer (turns) && json_integer_value (turns) >= 0) {
        s->turns = (uint32_t) json_integer_value (turns);
        s->turns_from_result = 1;
    }

    json_t *duration = json_object_get (event, "duration_ms");
    if (json_is_number (duration)) {
        self->result_duration_ms = json_u64 (duration);
        self->result_duration_seen = 1;
    }

    json_t *status = json_object_get (event, "api_error_status");
    self->result_api_status = json_is_integer (status) ? (int) json_integer_value (status) : 0;

    self->result_denials = (uint32_t) json_array_size (json_object_get (event, "permission_denials"));

    json_t *model_usage = json_object_get (event, "modelUsage");
    if (json_is_object (model_usage) && json_object_size (model_usage) > 0)
        add_model_usage (self, model_usage);
    else {
        json_t *usage = json_object_get (event, "usage");
        s->input_tokens = json_u64 (json_object_get (usage, "input_tokens"));
        s->output_tokens = json_u64 (json_object_get (usage, "output_tokens"));
        s->cache_creation_tokens = json_u64 (json_object_get (usage, "cache_creation_input_tokens"));
        s->cache_read_tokens = json_u64 (json_object_get (usage, "cache_read_input_tokens"));
        s->cost_usd = json_double (json_object_get (event, "total_cost_usd"));
    }
}

/* Recompute the fields that depend on several sources. */
static void resolve (dw_streamjson_t *self)
{
    dw_streamjson_summary_t *s = &self->summary;

    if (!s->turns_from_result)
        s->turns = s->assistant_messages;

    if (self->result_duration_seen)
        s->duration_ms = self->result_duration_ms;
    else if (s->lines > 0 && self->last_line_ms > self->start_ms)
        s->duration_ms = self->last_line_ms - self->start_ms;

    s->api_error_status = self->result_api_status ? self->result_api_status
                                                  : self->retry_api_status;
    s->permission_denials = self->result_denials > self->denial_events ? self->result_denials
                                                                       : self->denial_events;

    const char *model = self->assistant_model[0] ? self->assistant_model
                        : self->usage_model[0]   ? self->usage_model
                                                 : self->init_model;
    copy_text (s->model, sizeof s->model, model);
}

dw_streamjson_t *dw_streamjson_new (uint64_t start_ms)
{
    dw_streamjson_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->start_ms = start_ms;
    self->summary.time_to_first_event_ms = -1;
    return self;
}

void dw_streamjson_destroy (dw_streamjson_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free (*self_p);
    *self_p = NULL;
}

void dw_streamjson_feed (dw_streamjson_t *self, const char *line, size_t len, int truncated,
                         uint64_t now_ms)
{
    dw_streamjson_summary_t *s = &self->summary;

    s->lines++;
    if (s->time_to_first_event_ms < 0)
        s->time_to_first_event_ms = now_ms > self->start_ms ? (int64_t) (now_ms - self->start_ms)
                                                            : 0;
    self->last_line_ms = now_ms;

    if (truncated) {
        s->truncated_lines++;
        resolve (self);
        return;
    }
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        len--;
    if (len == 0) {
        resolve (self);
        return;
    }

    json_t *event = json_loadb (line, len, 0, NULL);
    if (!json_is_object (event)) {
        s->invalid_lines++;
        json_decref (event);
        resolve (self);
        return;
    }

    const char *type = json_string_value (json_object_get (event, "type"));
    if (type && strcmp (type, "assistant") == 0)
        on_assistant (self, event);
    else if (type && strcmp (type, "system") == 0)
        on_system (self, event);
    else if (type && strcmp (type, "result") == 0)
        on_result (self, event);

    json_decref (event);
    resolve (self);
}

const dw_streamjson_summary_t *dw_streamjson_summary (const dw_streamjson_t *self)
{
    return &self->summary;
}

void dw_streamjson_metrics_free (Driftwatch__V1__AgentMetrics *metrics)
{
    if (!metrics)
        return;

    for (size_t i = 0; i < metrics->n_tool_calls; i++) {
        if (metrics->tool_calls[i]) {
            if (metrics->tool_calls[i]->tool != protobuf_c_empty_string)
                free (metrics->tool_calls[i]->tool);
            free (metrics->tool_calls[i]);
        }
    }
    free (metrics->tool_calls);
    metrics->tool_calls = NULL;
    metrics->n_tool_calls = 0;

    if (metrics->terminal_reason && metrics->terminal_reason != protobuf_c_empty_string)
        free (metrics->terminal_reason);
    metrics->terminal_reason = (char *) protobuf_c_empty_string;
    if (metrics->api_model && metrics->api_model != protobuf_c_empty_string)
        free (metrics->api_model);
    metrics->api_model = (char *) protobuf_c_empty_string;
}

int dw_streamjson_fill_metrics (const dw_streamjson_t *self,
                                Driftwatch__V1__AgentMetrics *metrics)
{
    const dw_streamjson_summary_t *s = &self->summary;

    metrics->turns = s->turns;
    metrics->input_tokens = s->input_tokens;
    metrics->output_tokens = s->output_tokens;
    metrics->cache_creation_tokens = s->cache_creation_tokens;
    metrics->cache_read_tokens = s->cache_read_tokens;
    metrics->cost_usd = s->cost_usd;
    metrics->duration_ms = s->duration_ms;
    metrics->time_to_first_event_ms =
        s->time_to_first_event_ms > 0 ? (uint64_t) s->time_to_first_event_ms : 0;
    metrics->permission_denials = s->permission_denials;
    metrics->api_error_status = s->api_error_status;
    metrics->api_retries = s->api_retries;
    metrics->result_event_seen = s->result_seen ? 1 : 0;
    metrics->tool_calls = NULL;
    metrics->n_tool_calls = 0;
    metrics->terminal_reason = strdup (s->terminal_reason);
    metrics->api_model = strdup (s->model);
    if (!metrics->terminal_reason || !metrics->api_model)
        goto fail;

    if (s->n_tools > 0) {
        metrics->tool_calls = calloc (s->n_tools, sizeof *metrics->tool_calls);
        if (!metrics->tool_calls)
            goto fail;
    }
    for (size_t i = 0; i < s->n_tools; i++) {
        Driftwatch__V1__ToolCount *count = malloc (sizeof *count);
        if (!count)
            goto fail;
        driftwatch__v1__tool_count__init (count);
        metrics->tool_calls[metrics->n_tool_calls++] = count;
        count->count = s->tools[i].count;
        count->tool = strdup (s->tools[i].name);
        if (!count->tool) {
            count->tool = (char *) protobuf_c_empty_string;
            goto fail;
        }
    }
    return 0;

fail:
    if (!metrics->terminal_reason)
        metrics->terminal_reason = (char *) protobuf_c_empty_string;
    if (!metrics->api_model)
        metrics->api_model = (char *) protobuf_c_empty_string;
    dw_streamjson_metrics_free (metrics);
    return -1;
}
