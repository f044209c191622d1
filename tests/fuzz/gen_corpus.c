/* Writes the seed corpus of the wire fuzzer into a directory. It contains
 * one packed envelope of every body type with typical field values, cut and
 * bit-flipped variants of each, and hand-made edge cases: another protocol
 * version, no body, an unknown field and many small repeated entries. The
 * output is deterministic, so rerunning it reproduces the committed corpus:
 *
 *   build/tests/fuzz_wire_gen_corpus tests/fuzz/corpus/wire
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dw_wire.h"

/* Cut points of the truncated variants, as fractions of the full size; a
 * cut at 0 keeps one byte, because edge-empty.bin is the empty input. */
static const double TRUNCATE_FRACTIONS[] = { 0.0, 0.25, 0.5, 0.9 };
/* Bit-flipped variants written per seed. */
#define FLIPS_PER_SEED 4
/* Entries in the repeated-field expansion seed. */
#define MANY_ENTRIES 2000

static const char *s_dir;
static unsigned s_written = 0;

static void write_input (const char *name, const void *data, size_t size)
{
    char path[4096];
    snprintf (path, sizeof path, "%s/%s", s_dir, name);
    FILE *file = fopen (path, "wb");
    if (!file || fwrite (data, 1, size, file) != size) {
        fprintf (stderr, "cannot write %s\n", path);
        exit (1);
    }
    fclose (file);
    s_written++;
}

/* Deterministic generator for flip positions (a 32-bit LCG). */
static uint32_t s_random_state = 12345;

static uint32_t next_random (void)
{
    s_random_state = s_random_state * 1664525u + 1013904223u;
    return s_random_state >> 8;
}

/* Write ENV and its cut and bit-flipped variants under NAME. */
static void write_seed (const char *name, Driftwatch__V1__Envelope *env)
{
    zframe_t *frame = dw_wire_encode (env);
    if (!frame) {
        fprintf (stderr, "cannot encode %s\n", name);
        exit (1);
    }
    const uint8_t *data = zframe_data (frame);
    size_t size = zframe_size (frame);
    char file_name[128];
    snprintf (file_name, sizeof file_name, "%s.bin", name);
    write_input (file_name, data, size);

    for (size_t i = 0; i < sizeof TRUNCATE_FRACTIONS / sizeof TRUNCATE_FRACTIONS[0]; i++) {
        size_t cut = (size_t) ((double) size * TRUNCATE_FRACTIONS[i]);
        if (cut == 0)
            cut = 1;
        snprintf (file_name, sizeof file_name, "%s-cut%zu.bin", name, cut);
        write_input (file_name, data, cut);
    }

    uint8_t *copy = malloc (size);
    for (int flip = 0; flip < FLIPS_PER_SEED && size > 0; flip++) {
        memcpy (copy, data, size);
        size_t bit = next_random () % (size * 8);
        copy[bit / 8] ^= (uint8_t) (1u << (bit % 8));
        snprintf (file_name, sizeof file_name, "%s-flip%zu.bin", name, bit);
        write_input (file_name, copy, size);
    }
    free (copy);
    zframe_destroy (&frame);
}

static void seed_hello (void)
{
    Driftwatch__V1__LimitSupport memory = DRIFTWATCH__V1__LIMIT_SUPPORT__INIT;
    memory.name = "memory_bytes";
    memory.enforced = 1;
    memory.mechanism = "cgroup";
    Driftwatch__V1__LimitSupport *limits[] = { &memory };
    char *capabilities[] = { "bubblewrap", "podman" };
    char *spooled[] = { "3f1c0f6e-0000-4000-8000-000000000001" };
    char *running[] = { "3f1c0f6e-0000-4000-8000-000000000002" };
    Driftwatch__V1__Hello hello = DRIFTWATCH__V1__HELLO__INIT;
    hello.worker_id = "worker-a";
    hello.hostname = "host-a";
    hello.slots = 4;
    hello.worker_version = "0.1.0";
    hello.agent_version = "2.0.0";
    hello.n_capabilities = 2;
    hello.capabilities = capabilities;
    hello.n_limits = 1;
    hello.limits = limits;
    hello.n_spooled_attempt_ids = 1;
    hello.spooled_attempt_ids = spooled;
    hello.n_running_attempt_ids = 1;
    hello.running_attempt_ids = running;
    hello.pid = 4242;
    Driftwatch__V1__Envelope env = DRIFTWATCH__V1__ENVELOPE__INIT;
    env.sequence = 1;
    env.body_case = DRIFTWATCH__V1__ENVELOPE__BODY_HELLO;
    env.hello = &hello;
    write_seed ("hello", &env);
}

static void seed_small_bodies (void)
{
    Driftwatch__V1__Envelope env = DRIFTWATCH__V1__ENVELOPE__INIT;

    Driftwatch__V1__Welcome welcome = DRIFTWATCH__V1__WELCOME__INIT;
    welcome.worker_id = "worker-a";
    welcome.heartbeat_interval_ms = 1000;
    welcome.liveness = 5;
    welcome.run_id = "7";
    welcome.coordinator_version = "0.1.0";
    env.body_case = DRIFTWATCH__V1__ENVELOPE__BODY_WELCOME;
    env.welcome = &welcome;
    write_seed ("welcome", &env);

    Driftwatch__V1__Reject reject = DRIFTWATCH__V1__REJECT__INIT;
    reject.reason = "not registered: send hello first";
    env.body_case = DRIFTWATCH__V1__ENVELOPE__BODY_REJECT;
    env.reject = &reject;
    write_seed ("reject", &env);

    char *running[] = { "a1", "a2", "a3" };
    Driftwatch__V1__Heartbeat beat = DRIFTWATCH__V1__HEARTBEAT__INIT;
    beat.time_ms = 1764800000000ull;
    beat.n_running_attempt_ids = 3;
    beat.running_attempt_ids = running;
    beat.free_slots = 1;
    env.body_case = DRIFTWATCH__V1__ENVELOPE__BODY_HEARTBEAT;
    env.heartbeat = &beat;
    write_seed ("heartbeat", &env);

    Driftwatch__V1__Ready ready = DRIFTWATCH__V1__READY__INIT;
    ready.credit = 4;
    env.body_case = DRIFTWATCH__V1__ENVELOPE__BODY_READY;
    env.ready = &ready;
    write_seed ("ready", &env);

    Driftwatch__V1__EventsAck events_ack = DRIFTWATCH__V1__EVENTS_ACK__INIT;
    events_ack.attempt_id = "a1";
    events_ack.through_seq = 17;
    env.body_case = DRIFTWATCH__V1__ENVELOPE__BODY_EVENTS_ACK;
    env.events_ack = &events_ack;
    write_seed ("events_ack", &env);

    Driftwatch__V1__ResultAck result_ack = DRIFTWATCH__V1__RESULT_ACK__INIT;
    result_ack.attempt_id = "a1";
    result_ack.stored = 1;
    result_ack.disposition = "stored";
    env.body_case = DRIFTWATCH__V1__ENVELOPE__BODY_RESULT_ACK;
    env.result_ack = &result_ack;
    write_seed ("result_ack", &env);

    Driftwatch__V1__Cancel cancel = DRIFTWATCH__V1__CANCEL__INIT;
    cancel.attempt_id = "a1";
    cancel.reason = "run stopped";
    env.body_case = DRIFTWATCH__V1__ENVELOPE__BODY_CANCEL;
    env.cancel = &cancel;
    write_seed ("cancel", &env);

    Driftwatch__V1__Drain drain = DRIFTWATCH__V1__DRAIN__INIT;
    drain.reason = "run complete";
    env.body_case = DRIFTWATCH__V1__ENVELOPE__BODY_DRAIN;
    env.drain = &drain;
    write_seed ("drain", &env);

    char *returned[] = { "a2", "a3" };
    Driftwatch__V1__Goodbye goodbye = DRIFTWATCH__V1__GOODBYE__INIT;
    goodbye.reason = "shutdown";
    goodbye.n_returned_attempt_ids = 2;
    goodbye.returned_attempt_ids = returned;
    env.body_case = DRIFTWATCH__V1__ENVELOPE__BODY_GOODBYE;
    env.goodbye = &goodbye;
    write_seed ("goodbye", &env);

    Driftwatch__V1__HarnessStatus harness = DRIFTWATCH__V1__HARNESS_STATUS__INIT;
    harness.ok = 0;
    harness.detail = "claude: command not found";
    harness.cli_version = "";
    env.body_case = DRIFTWATCH__V1__ENVELOPE__BODY_HARNESS;
    env.harness = &harness;
    write_seed ("harness", &env);
}

static void seed_job (void)
{
    char *fail_to_pass[] = { "tests/test_a.py::test_fix" };
    char *pass_to_pass[] = { "tests/test_a.py::test_old", "tests/test_b.py::test_other" };
    Driftwatch__V1__TaskSpec task = DRIFTWATCH__V1__TASK_SPEC__INIT;
    task.instance_id = "demo__calc-1";
    task.repo = "demo/calc";
    task.repo_url = "/srv/demo/calc.git";
    task.base_commit = "0123456789abcdef0123456789abcdef01234567";
    task.problem_statement = "Division by zero must raise ValueError.";
    task.patch = "diff --git a/calc.py b/calc.py\n";
    task.test_patch = "diff --git a/tests/test_a.py b/tests/test_a.py\n";
    task.repo_language = "python";
    task.n_fail_to_pass = 1;
    task.fail_to_pass = fail_to_pass;
    task.n_pass_to_pass = 2;
    task.pass_to_pass = pass_to_pass;
    task.test_cmd = "python3 -m pytest -q";
    task.test_format = "pytest";
    task.extra_json = "{\"stub_solve_rate\":0.5}";
    char *extra_args[] = { "--verbose" };
    Driftwatch__V1__AgentConfig agent = DRIFTWATCH__V1__AGENT_CONFIG__INIT;
    agent.kind = "claude-code";
    agent.model = "claude-sonnet";
    agent.cli_version = "2.0.0";
    agent.max_turns = 50;
    agent.max_budget_usd = 2.5;
    agent.n_extra_args = 1;
    agent.extra_args = extra_args;
    agent.config_hash = "9f86d081884c7d65";
    Driftwatch__V1__Limits limits = DRIFTWATCH__V1__LIMITS__INIT;
    limits.wall_seconds = 1800;
    limits.memory_bytes = 4ull << 30;
    limits.max_processes = 512;
    Driftwatch__V1__JobAssignment job = DRIFTWATCH__V1__JOB_ASSIGNMENT__INIT;
    job.run_id = "7";
    job.job_id = "42";
    job.attempt_id = "3f1c0f6e-0000-4000-8000-000000000003";
    job.attempt_number = 1;
    job.task = &task;
    job.agent = &agent;
    job.limits = &limits;
    job.lease_ms = 15000;
    job.seed = 0x1234567890abcdefull;
    job.day = "2026-12-04";
    Driftwatch__V1__Envelope env = DRIFTWATCH__V1__ENVELOPE__INIT;
    env.body_case = DRIFTWATCH__V1__ENVELOPE__BODY_JOB;
    env.job = &job;
    write_seed ("job", &env);
}

static void seed_events_and_result (void)
{
    Driftwatch__V1__JobEvent first = DRIFTWATCH__V1__JOB_EVENT__INIT;
    first.seq = 1;
    first.time_ms = 1764800000001ull;
    first.kind = "system";
    first.payload.data = (uint8_t *) "{\"type\":\"system\"}";
    first.payload.len = strlen ((char *) first.payload.data);
    Driftwatch__V1__JobEvent second = DRIFTWATCH__V1__JOB_EVENT__INIT;
    second.seq = 2;
    second.kind = "assistant";
    second.payload.data = (uint8_t *) "{\"type\":\"assistant\"";
    second.payload.len = strlen ((char *) second.payload.data);
    second.truncated = 1;
    Driftwatch__V1__JobEvent *events[] = { &first, &second };
    Driftwatch__V1__JobEvents batch = DRIFTWATCH__V1__JOB_EVENTS__INIT;
    batch.attempt_id = "a1";
    batch.n_events = 2;
    batch.events = events;
    Driftwatch__V1__Envelope env = DRIFTWATCH__V1__ENVELOPE__INIT;
    env.body_case = DRIFTWATCH__V1__ENVELOPE__BODY_EVENTS;
    env.events = &batch;
    write_seed ("events", &env);

    Driftwatch__V1__TestResult passed = DRIFTWATCH__V1__TEST_RESULT__INIT;
    passed.name = "tests/test_a.py::test_fix";
    passed.status = DRIFTWATCH__V1__TEST_STATUS__TEST_PASSED;
    Driftwatch__V1__TestResult missing = DRIFTWATCH__V1__TEST_RESULT__INIT;
    missing.name = "tests/test_b.py::test_other";
    missing.status = DRIFTWATCH__V1__TEST_STATUS__TEST_MISSING;
    Driftwatch__V1__TestResult *tests[] = { &passed, &missing };
    Driftwatch__V1__ToolCount edit = DRIFTWATCH__V1__TOOL_COUNT__INIT;
    edit.tool = "Edit";
    edit.count = 3;
    Driftwatch__V1__ToolCount *tools[] = { &edit };
    Driftwatch__V1__AgentMetrics metrics = DRIFTWATCH__V1__AGENT_METRICS__INIT;
    metrics.turns = 12;
    metrics.n_tool_calls = 1;
    metrics.tool_calls = tools;
    metrics.input_tokens = 12000;
    metrics.output_tokens = 800;
    metrics.cost_usd = 0.12;
    metrics.terminal_reason = "end_turn";
    metrics.api_model = "claude-sonnet";
    metrics.api_error_status = -1;
    metrics.result_event_seen = 1;
    Driftwatch__V1__JobResult result = DRIFTWATCH__V1__JOB_RESULT__INIT;
    result.run_id = "7";
    result.job_id = "42";
    result.attempt_id = "a1";
    result.outcome = DRIFTWATCH__V1__OUTCOME__OUTCOME_UNRESOLVED;
    result.outcome_reason = "tests_failed";
    result.detail = "1 of 2 tests passed";
    result.agent_diff.data = (uint8_t *) "diff --git a/calc.py b/calc.py\n";
    result.agent_diff.len = strlen ((char *) result.agent_diff.data);
    result.n_tests = 2;
    result.tests = tests;
    result.agent_exit_code = 0;
    result.metrics = &metrics;
    result.events_total = 2;
    result.worker_id = "worker-a";
    env.body_case = DRIFTWATCH__V1__ENVELOPE__BODY_RESULT;
    env.result = &result;
    write_seed ("result", &env);
}

/* Inputs that dw_wire_encode cannot produce. */
static void seed_edge_cases (void)
{
    Driftwatch__V1__Ready ready = DRIFTWATCH__V1__READY__INIT;
    ready.credit = 1;
    Driftwatch__V1__Envelope env = DRIFTWATCH__V1__ENVELOPE__INIT;
    env.protocol_version = DW_PROTOCOL_VERSION + 1;
    env.body_case = DRIFTWATCH__V1__ENVELOPE__BODY_READY;
    env.ready = &ready;
    uint8_t buffer[256];
    size_t size = driftwatch__v1__envelope__pack (&env, buffer);
    write_input ("edge-other-version.bin", buffer, size);

    Driftwatch__V1__Envelope empty = DRIFTWATCH__V1__ENVELOPE__INIT;
    empty.protocol_version = DW_PROTOCOL_VERSION;
    size = driftwatch__v1__envelope__pack (&empty, buffer);
    write_input ("edge-no-body.bin", buffer, size);

    /* Version 1, then field 99 (varint), which decoders must skip. */
    const uint8_t unknown_field[] = { 0x08, 0x01, 0x98, 0x06, 0x2a };
    write_input ("edge-unknown-field.bin", unknown_field, sizeof unknown_field);

    /* Version 1, then field 15 (job) declaring 2^31 bytes that are absent. */
    const uint8_t huge_length[] = { 0x08, 0x01, 0x7a, 0x80, 0x80, 0x80, 0x80, 0x08 };
    write_input ("edge-huge-length.bin", huge_length, sizeof huge_length);

    write_input ("edge-empty.bin", "", 0);

    /* A heartbeat with many empty attempt ids: two bytes each on the wire,
     * one pointer and one string each once decoded. */
    char **many = calloc (MANY_ENTRIES, sizeof *many);
    for (size_t i = 0; i < MANY_ENTRIES; i++)
        many[i] = "";
    Driftwatch__V1__Heartbeat beat = DRIFTWATCH__V1__HEARTBEAT__INIT;
    beat.n_running_attempt_ids = MANY_ENTRIES;
    beat.running_attempt_ids = many;
    env.protocol_version = 0;
    env.body_case = DRIFTWATCH__V1__ENVELOPE__BODY_HEARTBEAT;
    env.heartbeat = &beat;
    zframe_t *frame = dw_wire_encode (&env);
    write_input ("edge-many-entries.bin", zframe_data (frame), zframe_size (frame));
    zframe_destroy (&frame);
    free (many);
}

int main (int argc, char **argv)
{
    if (argc != 2) {
        fprintf (stderr, "usage: %s OUTPUT_DIR\n", argv[0]);
        return 2;
    }
    s_dir = argv[1];

    seed_hello ();
    seed_small_bodies ();
    seed_job ();
    seed_events_and_result ();
    seed_edge_cases ();

    printf ("wrote %u inputs to %s\n", s_written, s_dir);
    return 0;
}
