/* A hostile peer for the coordinator: connects like a worker and sends
 * malformed, truncated, oversized, unexpected and replayed messages and a
 * heartbeat flood. It prints what the coordinator replied, one line per
 * check, and exits 0 if every answer was a rejection; the calling test then
 * checks that the coordinator still completes its run.
 *
 * usage: hostile_peer ENDPOINT [SERVER_PUBLIC_CERT CLIENT_SECRET_CERT]
 */
#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dw_curve.h"
#include "dw_wire.h"

static int s_failures = 0;

static zsock_t *connect_peer (const char *endpoint, const char *server_cert,
                              const char *client_secret)
{
    zsock_t *sock = zsock_new (ZMQ_DEALER);
    zsock_set_linger (sock, 1000);
    zsock_set_sndhwm (sock, 100000);
    if (server_cert) {
        char err[256];
        if (dw_curve_client_apply (sock, client_secret, server_cert, err, sizeof err) != 0) {
            fprintf (stderr, "hostile_peer: %s\n", err);
            exit (2);
        }
    }
    zsock_connect (sock, "%s", endpoint);
    return sock;
}

static void send_raw (zsock_t *sock, const void *data, size_t len)
{
    zframe_t *frame = zframe_new (data, len);
    zframe_send (&frame, sock, 0);
}

/* Wait up to TIMEOUT_MS for one envelope; NULL on timeout. */
static Driftwatch__V1__Envelope *receive (zsock_t *sock, int timeout_ms)
{
    zsock_set_rcvtimeo (sock, timeout_ms);
    zframe_t *frame = zframe_recv (sock);
    if (!frame)
        return NULL;
    char err[128];
    Driftwatch__V1__Envelope *env =
        dw_wire_decode (zframe_data (frame), zframe_size (frame), NULL, err, sizeof err);
    zframe_destroy (&frame);
    return env;
}

static void send_env (zsock_t *sock, Driftwatch__V1__Envelope *env)
{
    zframe_t *frame = dw_wire_encode (env);
    zframe_send (&frame, sock, 0);
}

static void check (int ok, const char *what)
{
    printf ("%s %s\n", ok ? "ok" : "FAIL", what);
    if (!ok)
        s_failures++;
}

int main (int argc, char **argv)
{
    if (argc != 2 && argc != 4) {
        fprintf (stderr, "usage: hostile_peer ENDPOINT [SERVER_CERT CLIENT_SECRET]\n");
        return 2;
    }
    const char *server_cert = argc == 4 ? argv[2] : NULL;
    const char *client_secret = argc == 4 ? argv[3] : NULL;
    zsock_t *sock = connect_peer (argv[1], server_cert, client_secret);

    /* 1. Garbage, a truncated hello, a two-frame message, before registering. */
    uint8_t garbage[200];
    for (int round = 0; round < 100; round++) {
        for (size_t i = 0; i < sizeof garbage; i++)
            garbage[i] = (uint8_t) (random () & 0xff);
        send_raw (sock, garbage, (size_t) (random () % sizeof garbage) + 1);
    }
    Driftwatch__V1__Hello hello = DRIFTWATCH__V1__HELLO__INIT;
    hello.worker_id = "hostile";
    hello.hostname = "nowhere";
    hello.slots = 1;
    Driftwatch__V1__Envelope env = DRIFTWATCH__V1__ENVELOPE__INIT;
    env.body_case = DRIFTWATCH__V1__ENVELOPE__BODY_HELLO;
    env.hello = &hello;
    zframe_t *packed = dw_wire_encode (&env);
    send_raw (sock, zframe_data (packed), zframe_size (packed) / 2);
    zframe_destroy (&packed);
    zmsg_t *two = zmsg_new ();
    zmsg_addstr (two, "one");
    zmsg_addstr (two, "two");
    zmsg_send (&two, sock);

    /* 2. A heartbeat before registering gets a rejection. */
    Driftwatch__V1__Heartbeat beat = DRIFTWATCH__V1__HEARTBEAT__INIT;
    Driftwatch__V1__Envelope beat_env = DRIFTWATCH__V1__ENVELOPE__INIT;
    beat_env.body_case = DRIFTWATCH__V1__ENVELOPE__BODY_HEARTBEAT;
    beat_env.heartbeat = &beat;
    send_env (sock, &beat_env);
    Driftwatch__V1__Envelope *answer = receive (sock, 5000);
    check (answer && answer->body_case == DRIFTWATCH__V1__ENVELOPE__BODY_REJECT,
           "unregistered heartbeat rejected");
    dw_wire_free (&answer);

    /* 3. Register, then send a result for an attempt never assigned, twice. */
    send_env (sock, &env);
    answer = receive (sock, 5000);
    check (answer && answer->body_case == DRIFTWATCH__V1__ENVELOPE__BODY_WELCOME,
           "hello answered with welcome");
    dw_wire_free (&answer);

    Driftwatch__V1__JobResult result = DRIFTWATCH__V1__JOB_RESULT__INIT;
    result.attempt_id = "00000000-0000-4000-8000-000000000000";
    result.job_id = "1";
    result.outcome = DRIFTWATCH__V1__OUTCOME__OUTCOME_RESOLVED;
    Driftwatch__V1__Envelope result_env = DRIFTWATCH__V1__ENVELOPE__INIT;
    result_env.body_case = DRIFTWATCH__V1__ENVELOPE__BODY_RESULT;
    result_env.result = &result;
    for (int replay = 0; replay < 2; replay++) {
        send_env (sock, &result_env);
        int seen = 0;
        for (int i = 0; i < 20 && !seen; i++) {
            answer = receive (sock, 3000);
            if (!answer)
                break;
            if (answer->body_case == DRIFTWATCH__V1__ENVELOPE__BODY_RESULT_ACK) {
                seen = 1;
                check (!answer->result_ack->stored, "result for an unknown attempt not stored");
            }
            dw_wire_free (&answer);
        }
        check (seen, "result for an unknown attempt acknowledged as rejected");
    }

    /* 4. A result with no outcome, events for an unknown attempt, a message
     *    type only the coordinator sends, and a heartbeat flood. */
    result.outcome = DRIFTWATCH__V1__OUTCOME__OUTCOME_UNSPECIFIED;
    send_env (sock, &result_env);
    Driftwatch__V1__JobEvent event = DRIFTWATCH__V1__JOB_EVENT__INIT;
    event.seq = 1;
    Driftwatch__V1__JobEvent *events[] = { &event };
    Driftwatch__V1__JobEvents batch = DRIFTWATCH__V1__JOB_EVENTS__INIT;
    batch.attempt_id = "00000000-0000-4000-8000-000000000001";
    batch.n_events = 1;
    batch.events = events;
    Driftwatch__V1__Envelope events_env = DRIFTWATCH__V1__ENVELOPE__INIT;
    events_env.body_case = DRIFTWATCH__V1__ENVELOPE__BODY_EVENTS;
    events_env.events = &batch;
    send_env (sock, &events_env);
    Driftwatch__V1__Welcome welcome = DRIFTWATCH__V1__WELCOME__INIT;
    Driftwatch__V1__Envelope welcome_env = DRIFTWATCH__V1__ENVELOPE__INIT;
    welcome_env.body_case = DRIFTWATCH__V1__ENVELOPE__BODY_WELCOME;
    welcome_env.welcome = &welcome;
    send_env (sock, &welcome_env);
    for (int i = 0; i < 20000; i++)
        send_env (sock, &beat_env);

    /* 5. An oversized frame: libzmq drops it and the connection. */
    size_t big = DW_WIRE_MAX_MESSAGE + 1024;
    uint8_t *huge = calloc (1, big);
    send_raw (sock, huge, big);
    free (huge);

    /* The hostile peer must never have been given a job. */
    int jobs = 0;
    while ((answer = receive (sock, 1000)) != NULL) {
        if (answer->body_case == DRIFTWATCH__V1__ENVELOPE__BODY_JOB)
            jobs++;
        dw_wire_free (&answer);
    }
    check (jobs == 0, "no job assigned to a peer that never sent ready");

    zsock_destroy (&sock);
    return s_failures ? 1 : 0;
}
