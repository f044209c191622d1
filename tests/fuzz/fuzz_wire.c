/* libFuzzer target for the envelope decoder: every input goes through
 * dw_wire_decode, and a decoded envelope has every field the coordinator or
 * the worker reads walked, so a dangling pointer or a wrong count shows up
 * under AddressSanitizer. The same file is linked with replay_main.c for the
 * corpus replay test. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "dw_wire.h"

/* The compiler cannot drop reads that feed this sum. */
static volatile size_t s_sink;

static void touch_string (const char *text)
{
    /* protobuf-c sets absent strings to the empty string, never NULL. */
    s_sink += text ? strlen (text) : 0;
}

static void touch_bytes (ProtobufCBinaryData data)
{
    if (data.len > 0) {
        s_sink += data.data[0];
        s_sink += data.data[data.len - 1];
    }
}

static void touch_strings (char **items, size_t count)
{
    for (size_t i = 0; i < count; i++)
        touch_string (items[i]);
}

static void touch_task (const Driftwatch__V1__TaskSpec *task)
{
    if (!task)
        return;
    touch_string (task->instance_id);
    touch_string (task->repo);
    touch_string (task->repo_url);
    touch_string (task->base_commit);
    touch_string (task->problem_statement);
    touch_string (task->requirements);
    touch_string (task->interface);
    touch_string (task->patch);
    touch_string (task->test_patch);
    touch_string (task->repo_language);
    touch_strings (task->fail_to_pass, task->n_fail_to_pass);
    touch_strings (task->pass_to_pass, task->n_pass_to_pass);
    touch_strings (task->selected_test_files, task->n_selected_test_files);
    touch_string (task->test_cmd);
    touch_string (task->test_format);
    touch_string (task->image);
    touch_string (task->extra_json);
}

static void touch_hello (const Driftwatch__V1__Hello *hello)
{
    touch_string (hello->worker_id);
    touch_string (hello->hostname);
    touch_string (hello->worker_version);
    touch_string (hello->agent_version);
    s_sink += hello->slots + hello->pid;
    touch_strings (hello->capabilities, hello->n_capabilities);
    for (size_t i = 0; i < hello->n_limits; i++) {
        touch_string (hello->limits[i]->name);
        touch_string (hello->limits[i]->mechanism);
        s_sink += hello->limits[i]->enforced;
    }
    touch_strings (hello->spooled_attempt_ids, hello->n_spooled_attempt_ids);
    touch_strings (hello->running_attempt_ids, hello->n_running_attempt_ids);
}

static void touch_job (const Driftwatch__V1__JobAssignment *job)
{
    touch_string (job->run_id);
    touch_string (job->job_id);
    touch_string (job->attempt_id);
    touch_string (job->day);
    s_sink += job->attempt_number + job->lease_ms + job->seed;
    touch_task (job->task);
    if (job->agent) {
        touch_string (job->agent->kind);
        touch_string (job->agent->command);
        touch_string (job->agent->model);
        touch_string (job->agent->cli_version);
        touch_string (job->agent->config_hash);
        touch_strings (job->agent->extra_args, job->agent->n_extra_args);
        s_sink += job->agent->max_turns;
    }
    if (job->limits)
        s_sink += job->limits->wall_seconds + job->limits->memory_bytes;
}

static void touch_events (const Driftwatch__V1__JobEvents *batch)
{
    touch_string (batch->attempt_id);
    for (size_t i = 0; i < batch->n_events; i++) {
        const Driftwatch__V1__JobEvent *event = batch->events[i];
        s_sink += event->seq + event->time_ms + event->truncated;
        touch_string (event->kind);
        touch_bytes (event->payload);
    }
}

static void touch_result (const Driftwatch__V1__JobResult *result)
{
    touch_string (result->run_id);
    touch_string (result->job_id);
    touch_string (result->attempt_id);
    touch_string (result->outcome_reason);
    touch_string (result->detail);
    touch_string (result->cli_version_before);
    touch_string (result->cli_version_after);
    touch_string (result->worker_id);
    touch_bytes (result->agent_diff);
    touch_bytes (result->log_tail);
    s_sink += (size_t) result->outcome + result->events_total;
    for (size_t i = 0; i < result->n_tests; i++) {
        touch_string (result->tests[i]->name);
        s_sink += (size_t) result->tests[i]->status;
    }
    if (result->metrics) {
        const Driftwatch__V1__AgentMetrics *metrics = result->metrics;
        touch_string (metrics->terminal_reason);
        touch_string (metrics->api_model);
        s_sink += metrics->turns + metrics->input_tokens + metrics->output_tokens;
        for (size_t i = 0; i < metrics->n_tool_calls; i++) {
            touch_string (metrics->tool_calls[i]->tool);
            s_sink += metrics->tool_calls[i]->count;
        }
    }
}

static void touch_envelope (const Driftwatch__V1__Envelope *env)
{
    s_sink += env->sequence;
    switch (env->body_case) {
    case DRIFTWATCH__V1__ENVELOPE__BODY_HELLO:
        touch_hello (env->hello);
        break;
    case DRIFTWATCH__V1__ENVELOPE__BODY_WELCOME:
        touch_string (env->welcome->worker_id);
        touch_string (env->welcome->run_id);
        touch_string (env->welcome->coordinator_version);
        s_sink += env->welcome->heartbeat_interval_ms + env->welcome->liveness;
        break;
    case DRIFTWATCH__V1__ENVELOPE__BODY_REJECT:
        touch_string (env->reject->reason);
        break;
    case DRIFTWATCH__V1__ENVELOPE__BODY_HEARTBEAT:
        s_sink += env->heartbeat->time_ms + env->heartbeat->free_slots;
        touch_strings (env->heartbeat->running_attempt_ids, env->heartbeat->n_running_attempt_ids);
        break;
    case DRIFTWATCH__V1__ENVELOPE__BODY_READY:
        s_sink += env->ready->credit;
        break;
    case DRIFTWATCH__V1__ENVELOPE__BODY_JOB:
        touch_job (env->job);
        break;
    case DRIFTWATCH__V1__ENVELOPE__BODY_EVENTS:
        touch_events (env->events);
        break;
    case DRIFTWATCH__V1__ENVELOPE__BODY_EVENTS_ACK:
        touch_string (env->events_ack->attempt_id);
        s_sink += env->events_ack->through_seq;
        break;
    case DRIFTWATCH__V1__ENVELOPE__BODY_RESULT:
        touch_result (env->result);
        break;
    case DRIFTWATCH__V1__ENVELOPE__BODY_RESULT_ACK:
        touch_string (env->result_ack->attempt_id);
        touch_string (env->result_ack->disposition);
        s_sink += env->result_ack->stored;
        break;
    case DRIFTWATCH__V1__ENVELOPE__BODY_CANCEL:
        touch_string (env->cancel->attempt_id);
        touch_string (env->cancel->reason);
        break;
    case DRIFTWATCH__V1__ENVELOPE__BODY_DRAIN:
        touch_string (env->drain->reason);
        break;
    case DRIFTWATCH__V1__ENVELOPE__BODY_GOODBYE:
        touch_string (env->goodbye->reason);
        touch_strings (env->goodbye->returned_attempt_ids, env->goodbye->n_returned_attempt_ids);
        break;
    case DRIFTWATCH__V1__ENVELOPE__BODY_HARNESS:
        s_sink += env->harness->ok;
        touch_string (env->harness->detail);
        touch_string (env->harness->cli_version);
        break;
    default:
        break;
    }
    s_sink += strlen (dw_wire_body_name (env->body_case));
}

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    dw_wire_stats_t stats = { 0 };
    char err[256];
    Driftwatch__V1__Envelope *env = dw_wire_decode (data, size, &stats, err, sizeof err);
    if (env)
        touch_envelope (env);
    else
        s_sink += strlen (err);
    dw_wire_free (&env);
    return 0;
}
