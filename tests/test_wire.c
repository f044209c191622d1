/* Tests of the wire codec: round trips, and every kind of bad input is
 * rejected and counted. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dw_wire.h"

static int s_failures = 0;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf (stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                  \
            fprintf (stderr, __VA_ARGS__);                                                         \
            fprintf (stderr, "\n");                                                                \
            s_failures++;                                                                          \
        }                                                                                          \
    } while (0)

static void test_round_trip_result (void)
{
    Driftwatch__V1__TestResult t1 = DRIFTWATCH__V1__TEST_RESULT__INIT;
    t1.name = "test_a";
    t1.status = DRIFTWATCH__V1__TEST_STATUS__TEST_PASSED;
    Driftwatch__V1__TestResult *tests[] = { &t1 };
    Driftwatch__V1__JobResult result = DRIFTWATCH__V1__JOB_RESULT__INIT;
    result.attempt_id = "3f1c0f6e-0000-4000-8000-000000000001";
    result.job_id = "17";
    result.outcome = DRIFTWATCH__V1__OUTCOME__OUTCOME_RESOLVED;
    result.n_tests = 1;
    result.tests = tests;
    Driftwatch__V1__Envelope env = DRIFTWATCH__V1__ENVELOPE__INIT;
    env.body_case = DRIFTWATCH__V1__ENVELOPE__BODY_RESULT;
    env.result = &result;

    zframe_t *frame = dw_wire_encode (&env);
    CHECK (frame != NULL, "encode of a small result failed");
    dw_wire_stats_t stats = { 0 };
    char err[256];
    Driftwatch__V1__Envelope *back =
        dw_wire_decode (zframe_data (frame), zframe_size (frame), &stats, err, sizeof err);
    CHECK (back != NULL, "decode failed: %s", err);
    if (back) {
        CHECK (back->body_case == DRIFTWATCH__V1__ENVELOPE__BODY_RESULT, "wrong body %d",
               back->body_case);
        CHECK (strcmp (back->result->attempt_id, result.attempt_id) == 0, "attempt id changed");
        CHECK (back->result->n_tests == 1, "expected 1 test, got %zu", back->result->n_tests);
        CHECK (back->protocol_version == DW_PROTOCOL_VERSION, "version not set by encode");
    }
    CHECK (stats.decoded == 1, "decoded counter %llu", (unsigned long long) stats.decoded);
    dw_wire_free (&back);
    CHECK (back == NULL, "dw_wire_free must null the pointer");
    zframe_destroy (&frame);
}

static void test_every_body_named (void)
{
    for (int body = DRIFTWATCH__V1__ENVELOPE__BODY_HELLO;
         body <= DRIFTWATCH__V1__ENVELOPE__BODY_HARNESS; body++)
        CHECK (strcmp (dw_wire_body_name ((Driftwatch__V1__Envelope__BodyCase) body), "unknown")
                   != 0,
               "body %d has no name", body);
}

static void test_malformed_rejected (void)
{
    dw_wire_stats_t stats = { 0 };
    char err[256];
    uint8_t garbage[64];
    for (size_t i = 0; i < sizeof garbage; i++)
        garbage[i] = (uint8_t) (0xff - i);
    Driftwatch__V1__Envelope *env = dw_wire_decode (garbage, sizeof garbage, &stats, err,
                                                    sizeof err);
    CHECK (env == NULL, "garbage decoded");
    CHECK (stats.malformed == 1, "malformed counter %llu", (unsigned long long) stats.malformed);
    CHECK (strstr (err, "malformed") != NULL, "error text: %s", err);

    /* A truncated valid message. */
    Driftwatch__V1__Ready ready = DRIFTWATCH__V1__READY__INIT;
    ready.credit = 3;
    Driftwatch__V1__Envelope ok = DRIFTWATCH__V1__ENVELOPE__INIT;
    ok.body_case = DRIFTWATCH__V1__ENVELOPE__BODY_READY;
    ok.ready = &ready;
    zframe_t *frame = dw_wire_encode (&ok);
    env = dw_wire_decode (zframe_data (frame), zframe_size (frame) - 1, &stats, err, sizeof err);
    CHECK (env == NULL, "truncated message decoded");
    zframe_destroy (&frame);
}

static void test_version_and_body_checked (void)
{
    dw_wire_stats_t stats = { 0 };
    char err[256];

    /* Version 99 with a valid body. */
    uint8_t other_version[] = { 0x08, 99, 0x72, 0x02, 0x08, 0x01 };
    Driftwatch__V1__Envelope *env = dw_wire_decode (other_version, sizeof other_version, &stats,
                                                    err, sizeof err);
    CHECK (env == NULL, "message of another version accepted");
    CHECK (stats.bad_version == 1, "bad_version counter %llu",
           (unsigned long long) stats.bad_version);

    /* Right version, no body. */
    uint8_t no_body[] = { 0x08, DW_PROTOCOL_VERSION };
    env = dw_wire_decode (no_body, sizeof no_body, &stats, err, sizeof err);
    CHECK (env == NULL, "message without a body accepted");
    CHECK (stats.no_body == 1, "no_body counter %llu", (unsigned long long) stats.no_body);
}

static void test_oversized_rejected (void)
{
    dw_wire_stats_t stats = { 0 };
    char err[256];
    size_t size = DW_WIRE_MAX_MESSAGE + 1;
    uint8_t *big = calloc (1, size);
    Driftwatch__V1__Envelope *env = dw_wire_decode (big, size, &stats, err, sizeof err);
    CHECK (env == NULL, "oversized message accepted");
    CHECK (stats.oversized == 1, "oversized counter %llu", (unsigned long long) stats.oversized);
    free (big);

    /* Encoding refuses to build an oversized message too. */
    Driftwatch__V1__JobResult result = DRIFTWATCH__V1__JOB_RESULT__INIT;
    result.agent_diff.len = DW_WIRE_MAX_MESSAGE;
    result.agent_diff.data = calloc (1, DW_WIRE_MAX_MESSAGE);
    Driftwatch__V1__Envelope out = DRIFTWATCH__V1__ENVELOPE__INIT;
    out.body_case = DRIFTWATCH__V1__ENVELOPE__BODY_RESULT;
    out.result = &result;
    zframe_t *frame = dw_wire_encode (&out);
    CHECK (frame == NULL, "oversized message encoded");
    zframe_destroy (&frame);
    free (result.agent_diff.data);
}

/* Many tiny repeated entries decode to far more memory than their wire size:
 * the decoder's budget must refuse them instead of allocating it all. */
static void test_decoded_budget_enforced (void)
{
    size_t entries = (DW_WIRE_MAX_MESSAGE - 64) / 2;
    size_t inner = entries * 2;
    uint8_t *buf = malloc (inner + 64);
    size_t pos = 0;
    buf[pos++] = 0x08;
    buf[pos++] = DW_PROTOCOL_VERSION;
    buf[pos++] = 0x92; /* field 18 (result), wire type 2: two-byte tag */
    buf[pos++] = 0x01;
    size_t length = inner;
    while (length >= 0x80) {
        buf[pos++] = (uint8_t) (length | 0x80);
        length >>= 7;
    }
    buf[pos++] = (uint8_t) length;
    for (size_t i = 0; i < entries; i++) {
        buf[pos++] = 0x42; /* field 8 (tests), wire type 2 */
        buf[pos++] = 0x00; /* empty TestResult */
    }
    dw_wire_stats_t stats = { 0 };
    char err[256];
    Driftwatch__V1__Envelope *env = dw_wire_decode (buf, pos, &stats, err, sizeof err);
    CHECK (env == NULL, "a message expanding past the decode budget was accepted (%zu entries)",
           entries);
    dw_wire_free (&env);
    free (buf);
}

int main (void)
{
    test_round_trip_result ();
    test_every_body_named ();
    test_malformed_rejected ();
    test_version_and_body_checked ();
    test_oversized_rejected ();
    test_decoded_budget_enforced ();
    if (s_failures) {
        fprintf (stderr, "%d check(s) failed\n", s_failures);
        return 1;
    }
    printf ("test_wire: all checks passed\n");
    return 0;
}
