/* The worker's durable spool of finished results.
 *
 * A result is written here (fsync'd) before it is sent, and removed only when
 * the coordinator acknowledges that it committed it. After a crash or a lost
 * connection, everything still in the spool is sent again; the coordinator
 * stores results idempotently by attempt id, so a resend never counts twice.
 */
#ifndef DW_SPOOL_H
#define DW_SPOOL_H

#include <czmq.h>
#include <stddef.h>
#include <stdint.h>

typedef struct dw_spool_t dw_spool_t;

/* Largest spooled result accepted when reading back. */
#define DW_SPOOL_ENTRY_MAX (16 * 1024 * 1024)

/* Open (creating it, mode 0700) the spool directory DIR. */
dw_spool_t *dw_spool_new (const char *dir, char *err, size_t errlen);

void dw_spool_destroy (dw_spool_t **self_p);

/* Durably store DATA as the result of ATTEMPT_ID. Returns -1 (errno set)
 * when the disk is full or the id is not a valid attempt id. */
int dw_spool_put (dw_spool_t *self, const char *attempt_id, const void *data, size_t len);

/* Read back the result of ATTEMPT_ID (malloc'd, caller frees), or NULL. */
uint8_t *dw_spool_get (dw_spool_t *self, const char *attempt_id, size_t *len);

/* Remove the result of ATTEMPT_ID; a missing entry is fine. */
int dw_spool_remove (dw_spool_t *self, const char *attempt_id);

/* Durably store the packed JobEvents of ATTEMPT_ID that the coordinator has
 * not acknowledged yet, next to its result ("<id>.events"). Written before
 * the result, so a spooled result always has its events on disk. */
int dw_spool_put_events (dw_spool_t *self, const char *attempt_id, const void *data, size_t len);

/* Read back the spooled events of ATTEMPT_ID (malloc'd), or NULL if none. */
uint8_t *dw_spool_get_events (dw_spool_t *self, const char *attempt_id, size_t *len);

/* Remove the spooled events of ATTEMPT_ID; a missing entry is fine. */
int dw_spool_remove_events (dw_spool_t *self, const char *attempt_id);

/* Move the entry of ATTEMPT_ID aside as "<id>.corrupt" so it is kept for
 * inspection but no longer listed or resent. */
int dw_spool_quarantine (dw_spool_t *self, const char *attempt_id);

/* Attempt ids currently in the spool, oldest first (caller destroys). */
zlist_t *dw_spool_list (dw_spool_t *self);

/* Return 1 if ID is acceptable as an attempt id: 1-63 characters of
 * [0-9a-zA-Z-], so it can name a file. */
int dw_spool_valid_id (const char *id);

#endif
