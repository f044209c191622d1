/* CURVE keys and authentication: see dw_curve.h. */
#include "dw_curve.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dw_util.h"

/* libzmq 4.3 declares this option only in its draft API, but the stable
 * 4.3.4 library accepts it. */
#ifndef ZMQ_ZAP_ENFORCE_DOMAIN
#define ZMQ_ZAP_ENFORCE_DOMAIN 93
#endif

#define SECRET_SUFFIX "_secret"
#define KEY_BYTES 32

struct dw_curve_server_t {
    zactor_t *auth;
    char public_key[DW_CURVE_KEY_TEXT_SIZE];
};

/* zauth binds the process-wide ZAP endpoint, and a second zauth fails. */
static atomic_int s_servers = 0;

/* --- key files --------------------------------------------------------------------- */

static int valid_name (const char *name)
{
    size_t len = strlen (name);
    if (len == 0 || len > DW_CURVE_NAME_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char) name[i];
        if (!isalnum (c) && c != '.' && c != '_' && c != '-')
            return 0;
    }
    return 1;
}

static int valid_key_text (const char *text)
{
    uint8_t key[KEY_BYTES];
    return text && strlen (text) == 40 && zmq_z85_decode (key, text) != NULL;
}

/* Serialise a certificate in the zconfig format that zcert_load reads. */
static char *cert_text (zcert_t *cert, const char *role, const char *name, int with_secret)
{
    zconfig_t *root = zconfig_new ("root", NULL);
    if (with_secret) {
        zconfig_set_comment (root, "   ZeroMQ CURVE **Secret** Certificate");
        zconfig_set_comment (root, "   DO NOT share this file or change its permissions.");
    }
    else {
        zconfig_set_comment (root, "   ZeroMQ CURVE Public Certificate");
        if (strcmp (role, "worker") == 0)
            zconfig_set_comment (root, "   Copy it into the coordinator's allow directory.");
        else
            zconfig_set_comment (root, "   Give it to workers with --server-key.");
    }
    zconfig_put (root, "metadata/role", role);
    zconfig_put (root, "metadata/name", name);
    zconfig_put (root, "curve/public-key", zcert_public_txt (cert));
    if (with_secret)
        zconfig_put (root, "curve/secret-key", zcert_secret_txt (cert));
    char *text = zconfig_str_save (root);
    zconfig_destroy (&root);
    return text;
}

/* Write TEXT to PATH with MODE. The temporary file comes from mkstemp, which
 * creates it with mode 0600, so the content is never readable by others
 * before fchmod. link publishes it only if PATH does not exist yet. */
static int write_key_file (const char *path, const char *text, mode_t mode, int force, char *err,
                           size_t errlen)
{
    char *temp = dw_strdup_printf ("%s.tmp.XXXXXX", path);
    int fd = mkstemp (temp);
    if (fd < 0) {
        snprintf (err, errlen, "cannot create a file next to %s: %s", path, strerror (errno));
        free (temp);
        return -1;
    }

    size_t len = strlen (text);
    int rc = 0;
    if (fchmod (fd, mode) != 0 || write (fd, text, len) != (ssize_t) len || fsync (fd) != 0) {
        snprintf (err, errlen, "cannot write %s: %s", temp, strerror (errno));
        rc = -1;
    }
    if (close (fd) != 0 && rc == 0) {
        snprintf (err, errlen, "cannot write %s: %s", temp, strerror (errno));
        rc = -1;
    }

    if (rc == 0 && force && rename (temp, path) != 0) {
        snprintf (err, errlen, "cannot replace %s: %s", path, strerror (errno));
        rc = -1;
    }
    if (rc == 0 && !force && link (temp, path) != 0) {
        if (errno == EEXIST)
            snprintf (err, errlen, "%s already exists; remove it or force the overwrite", path);
        else
            snprintf (err, errlen, "cannot create %s: %s", path, strerror (errno));
        rc = -1;
    }
    if (rc != 0 || !force)
        unlink (temp);
    free (temp);
    return rc;
}

static void sync_parent_dir (const char *path)
{
    char *copy = strdup (path);
    if (!copy)
        return;
    int fd = open (dirname (copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync (fd);
        close (fd);
    }
    free (copy);
}

int dw_curve_keygen (const char *path, const char *role, const char *name, int force, char *err,
                     size_t errlen)
{
    if (!path || !*path || strlen (path) + strlen (SECRET_SUFFIX) + 16 >= PATH_MAX) {
        snprintf (err, errlen, "invalid key path: it must be non-empty and shorter than %d bytes",
                  PATH_MAX - 32);
        return -1;
    }
    if (!role || (strcmp (role, "coordinator") != 0 && strcmp (role, "worker") != 0)) {
        snprintf (err, errlen, "invalid key role \"%s\": use coordinator or worker",
                  role ? role : "");
        return -1;
    }
    if (!name || !valid_name (name)) {
        snprintf (err, errlen,
                  "invalid key name \"%s\": use 1-%d characters of letters, digits, '.', '_' "
                  "and '-'",
                  name ? name : "", DW_CURVE_NAME_MAX);
        return -1;
    }

    char secret_path[PATH_MAX];
    snprintf (secret_path, sizeof secret_path, "%s%s", path, SECRET_SUFFIX);
    struct stat st;
    if (!force) {
        const char *existing = lstat (path, &st) == 0          ? path
                               : lstat (secret_path, &st) == 0 ? secret_path
                                                               : NULL;
        if (existing) {
            snprintf (err, errlen, "%s already exists; remove it or force the overwrite",
                      existing);
            return -1;
        }
    }

    zcert_t *cert = zcert_new ();
    if (!cert) {
        snprintf (err, errlen, "cannot generate a CURVE key pair");
        return -1;
    }
    char *secret_text = cert_text (cert, role, name, 1);
    char *public_text = cert_text (cert, role, name, 0);
    zcert_destroy (&cert);
    if (!secret_text || !public_text) {
        snprintf (err, errlen, "out of memory");
        free (secret_text);
        free (public_text);
        return -1;
    }

    /* Secret first: a public file without its secret would look usable. */
    int rc = write_key_file (secret_path, secret_text, 0600, force, err, errlen);
    if (rc == 0) {
        rc = write_key_file (path, public_text, 0644, force, err, errlen);
        if (rc != 0 && !force)
            unlink (secret_path);
    }
    if (rc == 0)
        sync_parent_dir (path);

    explicit_bzero (secret_text, strlen (secret_text));
    free (secret_text);
    free (public_text);
    return rc;
}

/* Parse the certificate file PATH. With NEED_SECRET, reject group or other
 * permission bits. The check uses the opened descriptor, so a rename between
 * check and read cannot swap the file. Symbolic links are followed (secret
 * stores often mount files as links) and the mode of the target counts. */
static zconfig_t *read_cert_file (const char *path, int need_secret, char *err, size_t errlen)
{
    int fd = open (path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf (err, errlen, "cannot open certificate %s: %s", path, strerror (errno));
        return NULL;
    }
    struct stat st;
    if (fstat (fd, &st) != 0 || !S_ISREG (st.st_mode)) {
        snprintf (err, errlen, "certificate %s is not a regular file", path);
        close (fd);
        return NULL;
    }
    if (need_secret && (st.st_mode & 077)) {
        snprintf (err, errlen,
                  "secret key file %s has mode %04o and is accessible by other users; "
                  "run chmod 600 %s",
                  path, (unsigned) (st.st_mode & 07777), path);
        close (fd);
        return NULL;
    }
    if (st.st_size > DW_CURVE_CERT_FILE_MAX) {
        snprintf (err, errlen, "certificate %s is larger than %d bytes", path,
                  DW_CURVE_CERT_FILE_MAX);
        close (fd);
        return NULL;
    }

    char *text = calloc (1, (size_t) st.st_size + 1);
    ssize_t got = text ? read (fd, text, (size_t) st.st_size) : -1;
    close (fd);
    if (got != st.st_size) {
        snprintf (err, errlen, "cannot read certificate %s", path);
        free (text);
        return NULL;
    }
    zconfig_t *root = zconfig_str_load (text);
    explicit_bzero (text, (size_t) st.st_size);
    free (text);
    if (!root)
        snprintf (err, errlen, "certificate %s is not in the CZMQ certificate format", path);
    return root;
}

int dw_curve_load_public (const char *path, char out[DW_CURVE_KEY_TEXT_SIZE], char *err,
                          size_t errlen)
{
    zconfig_t *root = read_cert_file (path, 0, err, errlen);
    if (!root)
        return -1;
    const char *key = zconfig_get (root, "curve/public-key", NULL);
    int rc = 0;
    if (!valid_key_text (key)) {
        snprintf (err, errlen, "certificate %s has no valid curve/public-key", path);
        rc = -1;
    }
    else
        snprintf (out, DW_CURVE_KEY_TEXT_SIZE, "%s", key);
    zconfig_destroy (&root);
    return rc;
}

zcert_t *dw_curve_load_secret (const char *path, char *err, size_t errlen)
{
    zconfig_t *root = read_cert_file (path, 1, err, errlen);
    if (!root)
        return NULL;

    zcert_t *cert = NULL;
    const char *public_text = zconfig_get (root, "curve/public-key", NULL);
    const char *secret_text = zconfig_get (root, "curve/secret-key", NULL);
    uint8_t public_key[KEY_BYTES], secret_key[KEY_BYTES];
    char derived[DW_CURVE_KEY_TEXT_SIZE];
    if (!valid_key_text (secret_text)) {
        snprintf (err, errlen,
                  "%s has no valid curve/secret-key; pass the FILE_secret file of the pair", path);
        goto done;
    }
    if (!valid_key_text (public_text)) {
        snprintf (err, errlen, "%s has no valid curve/public-key", path);
        goto done;
    }
    if (zmq_curve_public (derived, secret_text) != 0 || strcmp (derived, public_text) != 0) {
        snprintf (err, errlen, "in %s the public key does not belong to the secret key", path);
        goto done;
    }

    zmq_z85_decode (public_key, public_text);
    zmq_z85_decode (secret_key, secret_text);
    cert = zcert_new_from (public_key, secret_key);
    explicit_bzero (secret_key, sizeof secret_key);
    if (!cert) {
        snprintf (err, errlen, "out of memory");
        goto done;
    }
    zconfig_t *metadata = zconfig_locate (root, "metadata");
    for (zconfig_t *item = metadata ? zconfig_child (metadata) : NULL; item;
         item = zconfig_next (item))
        zcert_set_meta (cert, zconfig_name (item), "%s", zconfig_value (item));

done:
    /* NOTE: zconfig_destroy frees the tree's copy of the secret text without
     * clearing it first. */
    zconfig_destroy (&root);
    return cert;
}

/* --- sockets ------------------------------------------------------------------------ */

/* Return 1 if SOCK already has a bound or connected endpoint. */
static int socket_in_use (zsock_t *sock)
{
    char *last = zsock_last_endpoint (sock);
    int in_use = last && *last;
    free (last);
    return in_use;
}

dw_curve_server_t *dw_curve_server_new (zsock_t *router, const char *server_secret_path,
                                        const char *allow_dir, char *err, size_t errlen)
{
    if (socket_in_use (router)) {
        snprintf (err, errlen,
                  "the ROUTER socket is already bound; set up CURVE before zsock_bind");
        return NULL;
    }
    struct stat st;
    if (!allow_dir || stat (allow_dir, &st) != 0 || !S_ISDIR (st.st_mode)) {
        snprintf (err, errlen, "worker key directory %s not found; create it and copy worker "
                  "public certificates into it", allow_dir ? allow_dir : "(null)");
        return NULL;
    }
    if (st.st_mode & 022) {
        snprintf (err, errlen,
                  "worker key directory %s is writable by other users, who could admit any "
                  "key; run chmod go-w %s",
                  allow_dir, allow_dir);
        return NULL;
    }

    zcert_t *cert = dw_curve_load_secret (server_secret_path, err, errlen);
    if (!cert)
        return NULL;

    int expected = 0;
    if (!atomic_compare_exchange_strong (&s_servers, &expected, 1)) {
        snprintf (err, errlen, "a CURVE server already runs in this process; zauth allows one");
        zcert_destroy (&cert);
        return NULL;
    }
    dw_curve_server_t *self = calloc (1, sizeof *self);
    if (self)
        self->auth = zactor_new (zauth, NULL);
    if (!self || !self->auth) {
        snprintf (err, errlen, "cannot start the zauth actor");
        zcert_destroy (&cert);
        free (self);
        atomic_store (&s_servers, 0);
        return NULL;
    }
    zstr_sendx (self->auth, "CURVE", allow_dir, NULL);
    zsock_wait (self->auth);

    snprintf (self->public_key, sizeof self->public_key, "%s", zcert_public_txt (cert));
    zcert_apply (cert, router);
    zcert_destroy (&cert);
    zsock_set_curve_server (router, 1);
    zsock_set_zap_domain (router, DW_CURVE_ZAP_DOMAIN);
    int enforce = 1;
    if (zmq_setsockopt (zsock_resolve (router), ZMQ_ZAP_ENFORCE_DOMAIN, &enforce, sizeof enforce)
        != 0) {
        snprintf (err, errlen, "cannot enable ZAP enforcement: %s; libzmq 4.3 or later is needed",
                  zmq_strerror (zmq_errno ()));
        dw_curve_server_destroy (&self);
        return NULL;
    }
    return self;
}

void dw_curve_server_destroy (dw_curve_server_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dw_curve_server_t *self = *self_p;
    zactor_destroy (&self->auth);
    free (self);
    atomic_store (&s_servers, 0);
    *self_p = NULL;
}

const char *dw_curve_server_public_key (const dw_curve_server_t *self)
{
    return self->public_key;
}

int dw_curve_client_apply (zsock_t *dealer, const char *client_secret_path,
                           const char *server_key, char *err, size_t errlen)
{
    if (socket_in_use (dealer)) {
        snprintf (err, errlen,
                  "the DEALER socket is already connected; set up CURVE before zsock_connect");
        return -1;
    }
    if (!server_key || !*server_key) {
        snprintf (err, errlen, "missing server key: pass its Z85 text or certificate file");
        return -1;
    }

    /* A file that happens to be named like a key wins, so the text is
     * taken as a key only when no such file exists. */
    char key[DW_CURVE_KEY_TEXT_SIZE];
    struct stat st;
    if (valid_key_text (server_key) && stat (server_key, &st) != 0)
        snprintf (key, sizeof key, "%s", server_key);
    else if (dw_curve_load_public (server_key, key, err, errlen) != 0) {
        /* Say what the value may be: a key of the wrong length looks like a path. */
        size_t used = strlen (err);
        snprintf (err + used, errlen - used,
                  "; the server key is either the coordinator's certificate file or its "
                  "40-character public key");
        return -1;
    }

    zcert_t *cert = dw_curve_load_secret (client_secret_path, err, errlen);
    if (!cert)
        return -1;
    zcert_apply (cert, dealer);
    zcert_destroy (&cert);
    zsock_set_curve_serverkey (dealer, key);
    return 0;
}

int dw_curve_peer_key (zframe_t *payload_frame, char out[DW_CURVE_KEY_TEXT_SIZE])
{
    out[0] = '\0';
    if (!payload_frame)
        return -1;
    const char *user_id = zframe_meta (payload_frame, "User-Id");
    if (!valid_key_text (user_id))
        return -1;
    snprintf (out, DW_CURVE_KEY_TEXT_SIZE, "%s", user_id);
    return 0;
}

/* --- endpoints ------------------------------------------------------------------------ */

static int valid_port (const char *port)
{
    if (strcmp (port, "*") == 0)
        return 1;
    if (!*port || strlen (port) > 5)
        return 0;
    for (const char *p = port; *p; p++)
        if (!isdigit ((unsigned char) *p))
            return 0;
    return atoi (port) <= 65535;
}

int dw_curve_endpoint_is_loopback (const char *endpoint)
{
    if (!endpoint)
        return 0;
    if (strncmp (endpoint, "ipc://", 6) == 0 || strncmp (endpoint, "inproc://", 9) == 0)
        return 1;
    if (strncmp (endpoint, "tcp://", 6) != 0)
        return 0;

    /* A ';' separates a source address from the destination: reject it
     * rather than reason about which half is used. */
    const char *host = endpoint + 6;
    const char *colon = strrchr (host, ':');
    if (!colon || strchr (host, ';') || !valid_port (colon + 1))
        return 0;
    size_t host_len = (size_t) (colon - host);
    char name[64];
    if (host_len == 0 || host_len >= sizeof name)
        return 0;
    memcpy (name, host, host_len);
    name[host_len] = '\0';

    if (strcmp (name, "localhost") == 0 || strcmp (name, "[::1]") == 0)
        return 1;
    struct in_addr address;
    if (inet_pton (AF_INET, name, &address) != 1)
        return 0;
    return (ntohl (address.s_addr) >> 24) == 127;
}
