/* Encoding and decoding of the driftwatch wire protocol.
 *
 * A ZeroMQ message carries one frame with one packed Envelope (see
 * proto/driftwatch.proto). This module is the only place that packs or
 * unpacks envelopes, so every limit below applies to every peer. A message
 * that fails any check is counted in dw_wire_stats_t and dropped; callers log
 * it with the peer's identity and never act on it.
 */
#ifndef DW_WIRE_H
#define DW_WIRE_H

#include <czmq.h>
#include <stdint.h>

#include "driftwatch.pb-c.h"

/* Version carried in every envelope; peers with another version are rejected. */
#define DW_PROTOCOL_VERSION 1

/* Largest packed envelope accepted or sent. Also set as ZMQ_MAXMSGSIZE so
 * libzmq drops a larger frame before allocating it. */
#define DW_WIRE_MAX_MESSAGE (8 * 1024 * 1024)

/* Heap budget for one decoded envelope: protobuf-c expands small repeated
 * entries into larger structs, so the decoded form is bounded separately. */
#define DW_WIRE_MAX_DECODED (64 * 1024 * 1024)

/* Limits on agent events forwarded by workers. */
#define DW_EVENT_PAYLOAD_MAX (256 * 1024)
#define DW_EVENTS_BATCH_MAX 128

/* Counters of rejected input, kept by whoever owns the socket. */
typedef struct {
    uint64_t decoded;
    uint64_t oversized;
    uint64_t malformed;
    uint64_t bad_version;
    uint64_t no_body;
} dw_wire_stats_t;

/* Pack ENV (protocol_version is set here) into a new frame.
 * Returns NULL if the packed size exceeds DW_WIRE_MAX_MESSAGE. */
zframe_t *dw_wire_encode (Driftwatch__V1__Envelope *env);

/* Decode one packed envelope. Returns NULL and writes the reason into ERR
 * when the data is oversized, malformed, of another protocol version or has
 * no body; STATS (may be NULL) counts the outcome. Free with dw_wire_free. */
Driftwatch__V1__Envelope *dw_wire_decode (const void *data, size_t len, dw_wire_stats_t *stats,
                                          char *err, size_t errlen);

/* Free a decoded envelope and null the pointer. Accepts NULL. */
void dw_wire_free (Driftwatch__V1__Envelope **env_p);

/* Send ENV on SOCK without blocking. For a ROUTER socket pass the peer's
 * ROUTING_ID (not consumed); for a DEALER pass NULL. Returns 0, or -1 with
 * errno EAGAIN (peer queue full), EHOSTUNREACH (peer gone) or EMSGSIZE. */
int dw_wire_send (zsock_t *sock, zframe_t *routing_id, Driftwatch__V1__Envelope *env);

/* Name of an envelope body type, for logs ("hello", "job", ...). */
const char *dw_wire_body_name (Driftwatch__V1__Envelope__BodyCase body_case);

/* Apply the socket options every driftwatch socket uses: maximum message
 * size, no linger, ZMTP heartbeats to reap dead TCP links. */
void dw_wire_configure_socket (zsock_t *sock);

#endif
