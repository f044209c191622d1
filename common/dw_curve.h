/* CURVE encryption and worker authentication for the coordinator's ROUTER
 * and the workers' DEALER sockets (libzmq 4.3 CURVE, CZMQ 4.2 zauth/zcert).
 *
 * Keys are CZMQ certificate pairs: FILE contains the public key and
 * FILE_secret contains both keys. The coordinator admits a worker when the worker's public
 * certificate is in the allow directory; zauth rereads that directory when
 * its contents change, so adding a file admits a worker without a restart.
 *
 * Order of calls (socket options are copied into a listener or connection
 * when bind or connect runs, so options set later do not apply to it):
 *
 *   coordinator                                worker
 *   router = zsock_new (ZMQ_ROUTER)            dealer = zsock_new (ZMQ_DEALER)
 *   dw_curve_server_new (router, ...)          dw_curve_client_apply (dealer, ...)
 *   zsock_bind (router, ...)                   zsock_connect (dealer, ...)
 *
 * Both setup functions reject a socket that is already bound or connected.
 *
 * Reading the authenticated key on the coordinator: zmsg_recv keeps each
 * frame's libzmq message, so zframe_meta works on frames popped from it
 * (checked by test_curve). The broker's receive path works unchanged:
 *
 *   zmsg_t *msg = zmsg_recv (router);
 *   zframe_t *routing_id = zmsg_pop (msg);
 *   zframe_t *payload = zmsg_pop (msg);
 *   char key[DW_CURVE_KEY_TEXT_SIZE];
 *   if (dw_curve_peer_key (payload, key) != 0)
 *       ... the connection is not authenticated: drop the message ...
 *
 * Use KEY, not the worker_id the worker sends in Hello, as the identity
 * that grants access, because only KEY was checked against the allow list.
 */
#ifndef DW_CURVE_H
#define DW_CURVE_H

#include <czmq.h>
#include <stddef.h>

/* ZAP domain set on the coordinator's ROUTER. */
#define DW_CURVE_ZAP_DOMAIN "driftwatch"

/* Z85 text of a 32-byte CURVE key (40 characters) plus the NUL. */
#define DW_CURVE_KEY_TEXT_SIZE 41

/* Maximum length of the certificate's "name" metadata. zauth copies all metadata of
 * a certificate into a 512-byte buffer, so role and name stay short. */
#define DW_CURVE_NAME_MAX 64

/* Largest certificate file accepted by the loaders. */
#define DW_CURVE_CERT_FILE_MAX (64 * 1024)

typedef struct dw_curve_server_t dw_curve_server_t;

/* Generate a new key pair and write PATH (public certificate, mode 0644) and
 * PATH_secret (both keys, mode 0600) with metadata role=ROLE and name=NAME.
 * ROLE is "coordinator" or "worker"; NAME is 1-64 characters of [A-Za-z0-9._-].
 * Each file is written to a temporary file that mkstemp creates with mode
 * 0600, so the secret key is never readable by others, then moved into place
 * with link (fails if the file exists) or, when FORCE is nonzero, rename.
 * Without FORCE an existing PATH or PATH_secret is an error and nothing is
 * written. Returns 0, or -1 with a message in ERR. */
int dw_curve_keygen (const char *path, const char *role, const char *name, int force, char *err,
                     size_t errlen);

/* Load the certificate in the secret file PATH (the FILE_secret written by
 * dw_curve_keygen). Rejects a file with any group or other permission bits,
 * and the message then names the file and the fix, chmod 600 FILE. Also
 * rejects a file that is not a regular file, lacks a secret key or whose
 * public key does not belong to its secret key. Returns a certificate with both keys and its metadata, or
 * NULL with a message in ERR. */
zcert_t *dw_curve_load_secret (const char *path, char *err, size_t errlen);

/* Read the public key of the certificate file PATH (either file of a pair)
 * into OUT as Z85 text. Returns 0, or -1 with a message in ERR. */
int dw_curve_load_public (const char *path, char out[DW_CURVE_KEY_TEXT_SIZE], char *err,
                          size_t errlen);

/* Make ROUTER a CURVE server that admits only clients whose public
 * certificate is in ALLOW_DIR. Starts a zauth actor, at most one per process
 * because zauth serves the process-wide ZAP endpoint. Loads the server key
 * from SERVER_SECRET_PATH and sets the CURVE server options, the ZAP domain
 * and ZAP enforcement. Without enforcement, libzmq 4.3.4 accepts CURVE
 * clients unauthenticated while no ZAP handler runs, and test_curve checks
 * that this setup rejects them. Call before zsock_bind. ALLOW_DIR must be a
 * directory that group and other cannot write. zauth loads every regular
 * file in it that is not hidden, so copy a certificate in by writing a dot
 * file and renaming it. Returns NULL with a message
 * in ERR on failure. */
dw_curve_server_t *dw_curve_server_new (zsock_t *router, const char *server_secret_path,
                                        const char *allow_dir, char *err, size_t errlen);

/* Stop the zauth actor and free SELF; null the pointer. Accepts NULL. The
 * ROUTER keeps its CURVE options and, with no ZAP handler, accepts no new
 * connections. */
void dw_curve_server_destroy (dw_curve_server_t **self_p);

/* Server's public key as Z85 text, for logs and for writing client configs. */
const char *dw_curve_server_public_key (const dw_curve_server_t *self);

/* Make DEALER a CURVE client with the key pair in CLIENT_SECRET_PATH, talking
 * to the server whose public key is SERVER_KEY: either 40 characters of Z85
 * text or the path of the server's certificate file. Call before
 * zsock_connect. Returns 0, or -1 with a message in ERR. */
int dw_curve_client_apply (zsock_t *dealer, const char *client_secret_path,
                           const char *server_key, char *err, size_t errlen);

/* Copy the ZAP User-Id of the connection that delivered PAYLOAD_FRAME into
 * OUT. With zauth and CURVE this is the client's public key as Z85 text.
 * Returns 0, or -1 when the frame carries no such key (for example a frame
 * that did not come from a CURVE socket). */
int dw_curve_peer_key (zframe_t *payload_frame, char out[DW_CURVE_KEY_TEXT_SIZE]);

/* Return 1 if ENDPOINT stays on this host: tcp://127.x.x.x:PORT,
 * tcp://[::1]:PORT, tcp://localhost:PORT, ipc://... or inproc://...; else 0.
 * Other spellings of loopback (interface names, IPv4-mapped addresses,
 * source;destination pairs) return 0. Unencrypted operation is allowed only
 * on such endpoints. */
int dw_curve_endpoint_is_loopback (const char *endpoint);

#endif
