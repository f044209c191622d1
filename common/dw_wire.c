/* Wire protocol: see dw_wire.h. */
#include "dw_wire.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* protobuf-c allocator that refuses to go past DW_WIRE_MAX_DECODED bytes for
 * one message. Each block carries its size in a header so free can account. */
/* A decoded envelope owns its allocator; both are freed together. Every
 * block records its owner, so dw_wire_free finds the allocator from the
 * envelope pointer alone. */
typedef struct {
    size_t used;
    ProtobufCAllocator allocator;
} decoded_owner_t;

typedef union {
    struct {
        size_t size;
        decoded_owner_t *owner;
    } info;
    max_align_t align;
} block_header_t;

static void *budget_alloc (void *data, size_t size)
{
    decoded_owner_t *owner = data;
    /* Count the header too: a message of many tiny entries is mostly headers. */
    size_t charged = sizeof (block_header_t) + size;
    if (size > DW_WIRE_MAX_DECODED || owner->used + charged > DW_WIRE_MAX_DECODED)
        return NULL;
    block_header_t *block = malloc (sizeof *block + size);
    if (!block)
        return NULL;
    block->info.size = charged;
    block->info.owner = owner;
    owner->used += charged;
    return block + 1;
}

static void budget_free (void *data, void *pointer)
{
    if (!pointer)
        return;
    decoded_owner_t *owner = data;
    block_header_t *block = (block_header_t *) pointer - 1;
    owner->used -= block->info.size;
    free (block);
}

zframe_t *dw_wire_encode (Driftwatch__V1__Envelope *env)
{
    env->protocol_version = DW_PROTOCOL_VERSION;
    size_t size = driftwatch__v1__envelope__get_packed_size (env);
    if (size > DW_WIRE_MAX_MESSAGE)
        return NULL;

    zframe_t *frame = zframe_new (NULL, size);
    if (!frame)
        return NULL;
    driftwatch__v1__envelope__pack (env, zframe_data (frame));
    return frame;
}

Driftwatch__V1__Envelope *dw_wire_decode (const void *data, size_t len, dw_wire_stats_t *stats,
                                          char *err, size_t errlen)
{
    if (len > DW_WIRE_MAX_MESSAGE) {
        if (stats)
            stats->oversized++;
        snprintf (err, errlen, "message of %zu bytes exceeds the limit of %d bytes", len,
                  DW_WIRE_MAX_MESSAGE);
        return NULL;
    }

    decoded_owner_t *owner = calloc (1, sizeof *owner);
    if (!owner) {
        snprintf (err, errlen, "out of memory");
        return NULL;
    }
    owner->allocator.alloc = budget_alloc;
    owner->allocator.free = budget_free;
    owner->allocator.allocator_data = owner;

    Driftwatch__V1__Envelope *env =
        driftwatch__v1__envelope__unpack (&owner->allocator, len, (const uint8_t *) data);
    if (!env) {
        free (owner);
        if (stats)
            stats->malformed++;
        snprintf (err, errlen,
                  "malformed message of %zu bytes (protobuf decoding failed, or its decoded form "
                  "exceeds %d bytes)",
                  len, DW_WIRE_MAX_DECODED);
        return NULL;
    }
    if (env->protocol_version != DW_PROTOCOL_VERSION) {
        if (stats)
            stats->bad_version++;
        snprintf (err, errlen, "protocol version %u, expected %d", env->protocol_version,
                  DW_PROTOCOL_VERSION);
        driftwatch__v1__envelope__free_unpacked (env, &owner->allocator);
        free (owner);
        return NULL;
    }
    if (env->body_case == DRIFTWATCH__V1__ENVELOPE__BODY__NOT_SET) {
        if (stats)
            stats->no_body++;
        snprintf (err, errlen, "message has no body or an unknown body type");
        driftwatch__v1__envelope__free_unpacked (env, &owner->allocator);
        free (owner);
        return NULL;
    }

    if (stats)
        stats->decoded++;
    return env;
}

void dw_wire_free (Driftwatch__V1__Envelope **env_p)
{
    if (!env_p || !*env_p)
        return;
    block_header_t *block = (block_header_t *) (void *) *env_p - 1;
    decoded_owner_t *owner = block->info.owner;
    driftwatch__v1__envelope__free_unpacked (*env_p, &owner->allocator);
    free (owner);
    *env_p = NULL;
}

int dw_wire_send (zsock_t *sock, zframe_t *routing_id, Driftwatch__V1__Envelope *env)
{
    zframe_t *payload = dw_wire_encode (env);
    if (!payload) {
        errno = EMSGSIZE;
        return -1;
    }

    if (routing_id) {
        if (zframe_send (&routing_id, sock, ZFRAME_MORE | ZFRAME_REUSE | ZFRAME_DONTWAIT) != 0) {
            int saved = errno;
            zframe_destroy (&payload);
            errno = saved;
            return -1;
        }
    }
    if (zframe_send (&payload, sock, ZFRAME_DONTWAIT) != 0) {
        int saved = errno;
        zframe_destroy (&payload);
        errno = saved;
        return -1;
    }
    return 0;
}

const char *dw_wire_body_name (Driftwatch__V1__Envelope__BodyCase body_case)
{
    switch (body_case) {
    case DRIFTWATCH__V1__ENVELOPE__BODY_HELLO: return "hello";
    case DRIFTWATCH__V1__ENVELOPE__BODY_WELCOME: return "welcome";
    case DRIFTWATCH__V1__ENVELOPE__BODY_REJECT: return "reject";
    case DRIFTWATCH__V1__ENVELOPE__BODY_HEARTBEAT: return "heartbeat";
    case DRIFTWATCH__V1__ENVELOPE__BODY_READY: return "ready";
    case DRIFTWATCH__V1__ENVELOPE__BODY_JOB: return "job";
    case DRIFTWATCH__V1__ENVELOPE__BODY_EVENTS: return "events";
    case DRIFTWATCH__V1__ENVELOPE__BODY_EVENTS_ACK: return "events_ack";
    case DRIFTWATCH__V1__ENVELOPE__BODY_RESULT: return "result";
    case DRIFTWATCH__V1__ENVELOPE__BODY_RESULT_ACK: return "result_ack";
    case DRIFTWATCH__V1__ENVELOPE__BODY_CANCEL: return "cancel";
    case DRIFTWATCH__V1__ENVELOPE__BODY_DRAIN: return "drain";
    case DRIFTWATCH__V1__ENVELOPE__BODY_GOODBYE: return "goodbye";
    case DRIFTWATCH__V1__ENVELOPE__BODY_HARNESS: return "harness";
    default: return "unknown";
    }
}

void dw_wire_configure_socket (zsock_t *sock)
{
    zsock_set_maxmsgsize (sock, DW_WIRE_MAX_MESSAGE);
    zsock_set_linger (sock, 0);
    zsock_set_sndhwm (sock, 1000);
    zsock_set_rcvhwm (sock, 1000);
    /* ZMTP pings find dead TCP links; application heartbeats find dead workers. */
    zsock_set_heartbeat_ivl (sock, 2000);
    zsock_set_heartbeat_timeout (sock, 6000);
}
