/* Tests of CURVE key files, the worker allow list and the loopback check,
 * with real sockets on tcp://127.0.0.1. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dw_curve.h"
#include "dw_util.h"

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

/* How long a message from an admitted worker may take to arrive. */
#define DELIVERY_WAIT_MS 3000
/* How long the ROUTER must stay silent for a rejected worker. */
#define SILENCE_WAIT_MS 1000
/* How long zauth may take to notice a new file in the allow directory. */
#define RELOAD_WAIT_MS 5000

static char s_dir[256];

static char *path_in (const char *name)
{
    return dw_strdup_printf ("%s/%s", s_dir, name);
}

static mode_t file_mode (const char *path)
{
    struct stat st;
    if (stat (path, &st) != 0)
        return (mode_t) -1;
    return st.st_mode & 07777;
}

static void make_key (const char *name, const char *role)
{
    char *path = path_in (name);
    char err[256];
    int rc = dw_curve_keygen (path, role, name, 0, err, sizeof err);
    CHECK (rc == 0, "keygen %s failed: %s", path, err);
    free (path);
}

/* Copy the public certificate NAME into the allow directory the way an
 * operator should: write a hidden file, then rename it into place, so zauth
 * never reads a half-written certificate (zdir skips dot files). */
static void allow_key (const char *name)
{
    char *source = path_in (name);
    char *hidden = dw_strdup_printf ("%s/allow/.%s.tmp", s_dir, name);
    char *target = dw_strdup_printf ("%s/allow/%s", s_dir, name);
    size_t len = 0;
    char *text = dw_read_file (source, 65536, &len);
    CHECK (text != NULL, "cannot read %s", source);
    FILE *file = fopen (hidden, "w");
    CHECK (file != NULL, "cannot create %s", hidden);
    if (text && file)
        fwrite (text, 1, len, file);
    if (file)
        fclose (file);
    CHECK (rename (hidden, target) == 0, "cannot rename %s to %s", hidden, target);
    free (text);
    free (source);
    free (hidden);
    free (target);
}

static zsock_t *new_client (const char *name, const char *server_public)
{
    char *secret = dw_strdup_printf ("%s/%s_secret", s_dir, name);
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    zsock_set_linger (dealer, 0);
    char err[256];
    int rc = dw_curve_client_apply (dealer, secret, server_public, err, sizeof err);
    CHECK (rc == 0, "client setup with %s failed: %s", secret, err);
    free (secret);
    return dealer;
}

/* Receive one message on ROUTER within TIMEOUT_MS, or NULL. */
static zmsg_t *recv_within (zsock_t *router, int timeout_ms)
{
    zpoller_t *poller = zpoller_new (router, NULL);
    void *which = zpoller_wait (poller, timeout_ms);
    zpoller_destroy (&poller);
    return which == router ? zmsg_recv (router) : NULL;
}

/* --- key files ------------------------------------------------------------------------- */

static void test_keygen_modes (void)
{
    /* Whatever the umask, the files get exactly 0644 and 0600. */
    mode_t umasks[] = { 0, 077 };
    for (size_t i = 0; i < sizeof umasks / sizeof umasks[0]; i++) {
        char name[32];
        snprintf (name, sizeof name, "modes%zu", i);
        char *path = path_in (name);
        char *secret = dw_strdup_printf ("%s_secret", path);
        mode_t saved = umask (umasks[i]);
        char err[256];
        int rc = dw_curve_keygen (path, "worker", "w-1", 0, err, sizeof err);
        umask (saved);
        CHECK (rc == 0, "keygen failed: %s", err);
        CHECK (file_mode (path) == 0644, "public file mode %04o with umask %03o, expected 0644",
               (unsigned) file_mode (path), (unsigned) umasks[i]);
        CHECK (file_mode (secret) == 0600, "secret file mode %04o with umask %03o, expected 0600",
               (unsigned) file_mode (secret), (unsigned) umasks[i]);

        /* CZMQ itself reads the files, metadata included. */
        zcert_t *cert = zcert_load (path);
        CHECK (cert != NULL, "zcert_load cannot read %s", path);
        zcert_t *loaded = dw_curve_load_secret (secret, err, sizeof err);
        CHECK (loaded != NULL, "dw_curve_load_secret failed: %s", err);
        if (cert && loaded) {
            CHECK (strcmp (zcert_public_txt (cert), zcert_public_txt (loaded)) == 0,
                   "public keys of the two files differ");
            CHECK (zcert_meta (loaded, "role") && strcmp (zcert_meta (loaded, "role"), "worker") == 0,
                   "role metadata missing");
            CHECK (zcert_meta (loaded, "name") && strcmp (zcert_meta (loaded, "name"), "w-1") == 0,
                   "name metadata missing");
        }
        char public_key[DW_CURVE_KEY_TEXT_SIZE];
        CHECK (dw_curve_load_public (path, public_key, err, sizeof err) == 0,
               "dw_curve_load_public failed: %s", err);
        if (cert)
            CHECK (strcmp (public_key, zcert_public_txt (cert)) == 0, "public key text differs");
        zcert_destroy (&cert);
        zcert_destroy (&loaded);
        free (path);
        free (secret);
    }
}

static void test_keygen_no_overwrite (void)
{
    char *path = path_in ("keep");
    char err[256];
    CHECK (dw_curve_keygen (path, "coordinator", "coord", 0, err, sizeof err) == 0,
           "first keygen failed: %s", err);
    char before[DW_CURVE_KEY_TEXT_SIZE] = "", after[DW_CURVE_KEY_TEXT_SIZE] = "";
    dw_curve_load_public (path, before, err, sizeof err);

    err[0] = '\0';
    CHECK (dw_curve_keygen (path, "coordinator", "coord", 0, err, sizeof err) != 0,
           "keygen overwrote an existing key");
    CHECK (strstr (err, path) != NULL, "error does not name the file: %s", err);
    dw_curve_load_public (path, after, err, sizeof err);
    CHECK (strcmp (before, after) == 0, "the existing key changed");

    /* A lone secret file also blocks keygen. */
    char *lone = path_in ("lone");
    char *lone_secret = dw_strdup_printf ("%s_secret", lone);
    FILE *file = fopen (lone_secret, "w");
    if (file)
        fclose (file);
    CHECK (dw_curve_keygen (lone, "worker", "x", 0, err, sizeof err) != 0,
           "keygen ignored an existing secret file");
    CHECK (access (lone, F_OK) != 0, "keygen wrote the public file despite the error");

    CHECK (dw_curve_keygen (path, "coordinator", "coord", 1, err, sizeof err) == 0,
           "forced keygen failed: %s", err);
    dw_curve_load_public (path, after, err, sizeof err);
    CHECK (strcmp (before, after) != 0, "forced keygen kept the old key");
    char *secret = dw_strdup_printf ("%s_secret", path);
    CHECK (file_mode (secret) == 0600, "forced secret mode %04o", (unsigned) file_mode (secret));

    CHECK (dw_curve_keygen (path, "admin", "coord", 1, err, sizeof err) != 0,
           "keygen accepted role admin");
    CHECK (dw_curve_keygen (path, "worker", "a b", 1, err, sizeof err) != 0,
           "keygen accepted a name with a space");
    free (path);
    free (lone);
    free (lone_secret);
    free (secret);
}

static void test_load_secret_rejects (void)
{
    make_key ("loose", "worker");
    char *path = path_in ("loose");
    char *secret = dw_strdup_printf ("%s_secret", path);
    char err[256];

    chmod (secret, 0644);
    zcert_t *cert = dw_curve_load_secret (secret, err, sizeof err);
    CHECK (cert == NULL, "a 0644 secret file was accepted");
    CHECK (strstr (err, "chmod 600") && strstr (err, secret), "error lacks the fix: %s", err);
    zcert_destroy (&cert);

    chmod (secret, 0640);
    cert = dw_curve_load_secret (secret, err, sizeof err);
    CHECK (cert == NULL, "a 0640 secret file was accepted");
    zcert_destroy (&cert);

    chmod (secret, 0600);
    cert = dw_curve_load_secret (secret, err, sizeof err);
    CHECK (cert != NULL, "a 0600 secret file was rejected: %s", err);
    zcert_destroy (&cert);

    /* Through a symbolic link, the mode of the target counts. */
    char *link_path = path_in ("link_secret");
    CHECK (symlink (secret, link_path) == 0, "cannot create the link %s", link_path);
    cert = dw_curve_load_secret (link_path, err, sizeof err);
    CHECK (cert != NULL, "a link to a 0600 secret file was rejected: %s", err);
    zcert_destroy (&cert);
    chmod (secret, 0644);
    cert = dw_curve_load_secret (link_path, err, sizeof err);
    CHECK (cert == NULL, "a link to a 0644 secret file was accepted");
    zcert_destroy (&cert);
    chmod (secret, 0600);
    free (link_path);

    /* The public file contains no secret key. */
    chmod (path, 0600);
    cert = dw_curve_load_secret (path, err, sizeof err);
    CHECK (cert == NULL, "a public certificate was accepted as a secret");
    CHECK (strstr (err, "secret-key") != NULL, "unexpected error: %s", err);
    zcert_destroy (&cert);
    free (path);
    free (secret);
}

/* --- authentication --------------------------------------------------------------------- */

static void test_auth_flow (void)
{
    make_key ("coord", "coordinator");
    make_key ("listed", "worker");
    make_key ("unlisted", "worker");
    char *allow = path_in ("allow");
    mkdir (allow, 0755);
    allow_key ("listed");

    char *server_secret = path_in ("coord_secret");
    char *server_public = path_in ("coord");
    char err[256];
    zsock_t *router = zsock_new (ZMQ_ROUTER);
    zsock_set_linger (router, 0);
    dw_curve_server_t *server = dw_curve_server_new (router, server_secret, allow, err, sizeof err);
    CHECK (server != NULL, "server setup failed: %s", err);
    if (!server) {
        zsock_destroy (&router);
        return;
    }
    dw_curve_server_t *second = dw_curve_server_new (router, server_secret, allow, err, sizeof err);
    CHECK (second == NULL, "a second CURVE server in one process was accepted");
    CHECK (zsock_bind (router, "tcp://127.0.0.1:*") > 0, "bind failed");
    char *endpoint = zsock_last_endpoint (router);

    /* Listed worker: its messages arrive and carry its public key. The
     * server key is given as Z85 text here and as a file below. */
    zsock_t *listed = new_client ("listed", dw_curve_server_public_key (server));
    zsock_connect (listed, "%s", endpoint);
    zstr_send (listed, "hello");
    zmsg_t *msg = recv_within (router, DELIVERY_WAIT_MS);
    CHECK (msg != NULL, "the listed worker's message did not arrive");
    if (msg) {
        zframe_t *routing_id = zmsg_pop (msg);
        zframe_t *payload = zmsg_pop (msg);
        char key[DW_CURVE_KEY_TEXT_SIZE];
        char expected[DW_CURVE_KEY_TEXT_SIZE] = "";
        char *listed_path = path_in ("listed");
        dw_curve_load_public (listed_path, expected, err, sizeof err);
        CHECK (dw_curve_peer_key (payload, key) == 0, "no User-Id on the payload frame");
        CHECK (strcmp (key, expected) == 0, "User-Id %s, expected the worker key %s", key,
               expected);
        const char *role = zframe_meta (payload, "role");
        CHECK (role && strcmp (role, "worker") == 0, "role metadata %s, expected worker",
               role ? role : "(none)");
        CHECK (zframe_streq (payload, "hello"), "payload changed");

        /* Reply through the ROUTER. */
        zframe_send (&routing_id, router, ZFRAME_MORE);
        zstr_send (router, "welcome");
        zpoller_t *poller = zpoller_new (listed, NULL);
        CHECK (zpoller_wait (poller, DELIVERY_WAIT_MS) == listed, "the reply did not arrive");
        zpoller_destroy (&poller);
        char *reply = zstr_recv (listed);
        CHECK (reply && strcmp (reply, "welcome") == 0, "reply %s", reply ? reply : "(none)");
        zstr_free (&reply);
        zframe_destroy (&payload);
        zframe_destroy (&routing_id);
        free (listed_path);
        zmsg_destroy (&msg);
    }

    /* A plain frame has no User-Id. */
    zframe_t *plain = zframe_new ("x", 1);
    char key[DW_CURVE_KEY_TEXT_SIZE];
    CHECK (dw_curve_peer_key (plain, key) == -1, "a local frame had a User-Id");
    zframe_destroy (&plain);

    /* Unlisted worker: nothing gets through. */
    zsock_t *unlisted = new_client ("unlisted", server_public);
    zsock_connect (unlisted, "%s", endpoint);
    zstr_send (unlisted, "hello from unlisted");
    msg = recv_within (router, SILENCE_WAIT_MS);
    CHECK (msg == NULL, "the ROUTER received a message from an unlisted key");
    zmsg_destroy (&msg);
    zsock_destroy (&unlisted);

    /* Adding its certificate admits it without restarting the server. */
    allow_key ("unlisted");
    uint64_t deadline = dw_mono_ms () + RELOAD_WAIT_MS;
    int admitted = 0;
    while (!admitted && dw_mono_ms () < deadline) {
        unlisted = new_client ("unlisted", server_public);
        zsock_connect (unlisted, "%s", endpoint);
        zstr_send (unlisted, "hello again");
        msg = recv_within (router, 500);
        if (msg) {
            zframe_t *payload = zmsg_last (msg);
            admitted = zframe_streq (payload, "hello again");
        }
        zmsg_destroy (&msg);
        zsock_destroy (&unlisted);
    }
    CHECK (admitted, "a key added to the allow directory was not admitted within %d ms",
           RELOAD_WAIT_MS);
    printf ("added key admitted after %llu ms\n",
            (unsigned long long) (dw_mono_ms () + RELOAD_WAIT_MS - deadline));

    /* Without zauth the ROUTER accepts no connection, not even from a listed key. */
    dw_curve_server_destroy (&server);
    CHECK (server == NULL, "destroy must null the pointer");
    zsock_t *late = new_client ("listed", server_public);
    zsock_connect (late, "%s", endpoint);
    zstr_send (late, "hello without zauth");
    msg = recv_within (router, SILENCE_WAIT_MS);
    CHECK (msg == NULL, "the ROUTER accepted a connection while no ZAP handler ran");
    zmsg_destroy (&msg);
    zsock_destroy (&late);

    /* Setup after bind or connect is rejected. */
    server = dw_curve_server_new (router, server_secret, allow, err, sizeof err);
    CHECK (server == NULL, "server setup on a bound socket was accepted");
    CHECK (strstr (err, "before zsock_bind") != NULL, "unexpected error: %s", err);
    dw_curve_server_destroy (&server);
    char *listed_secret = path_in ("listed_secret");
    CHECK (dw_curve_client_apply (listed, listed_secret, server_public, err, sizeof err) != 0,
           "client setup on a connected socket was accepted");

    zsock_destroy (&listed);
    zsock_destroy (&router);
    zstr_free (&endpoint);
    free (listed_secret);
    free (allow);
    free (server_secret);
    free (server_public);
}

static void test_allow_dir_checks (void)
{
    char *allow = path_in ("open");
    mkdir (allow, 0777);
    chmod (allow, 0777);
    char *server_secret = path_in ("coord_secret");
    char err[256];
    zsock_t *router = zsock_new (ZMQ_ROUTER);
    dw_curve_server_t *server = dw_curve_server_new (router, server_secret, allow, err, sizeof err);
    CHECK (server == NULL, "a world-writable allow directory was accepted");
    CHECK (strstr (err, "chmod go-w") != NULL, "error lacks the fix: %s", err);
    dw_curve_server_destroy (&server);

    char *missing = path_in ("missing");
    server = dw_curve_server_new (router, server_secret, missing, err, sizeof err);
    CHECK (server == NULL, "a missing allow directory was accepted");
    dw_curve_server_destroy (&server);
    zsock_destroy (&router);
    free (allow);
    free (missing);
    free (server_secret);
}

/* --- endpoints --------------------------------------------------------------------------- */

static void test_loopback_table (void)
{
    struct {
        const char *endpoint;
        int loopback;
    } cases[] = {
        { "tcp://127.0.0.1:5555", 1 },
        { "tcp://127.0.0.1:*", 1 },
        { "tcp://127.1.2.3:80", 1 },
        { "tcp://[::1]:5555", 1 },
        { "tcp://localhost:5555", 1 },
        { "ipc:///run/driftwatch.sock", 1 },
        { "inproc://broker", 1 },
        { "tcp://0.0.0.0:5555", 0 },
        { "tcp://*:5555", 0 },
        { "tcp://10.0.0.1:5555", 0 },
        { "tcp://128.0.0.1:5555", 0 },
        { "tcp://127.0.0.1.example.com:5555", 0 },
        { "tcp://localhost.example.com:5555", 0 },
        { "tcp://[::]:5555", 0 },
        { "tcp://[::ffff:127.0.0.1]:5555", 0 },
        { "tcp://eth0:5555", 0 },
        { "tcp://lo:5555", 0 },
        { "tcp://10.0.0.1:4000;127.0.0.1:5555", 0 },
        { "tcp://127.0.0.1:4000;10.0.0.1:5555", 0 },
        { "tcp://127.0.0.1", 0 },
        { "tcp://127.0.0.1:", 0 },
        { "tcp://127.0.0.1:99999", 0 },
        { "tcp://:5555", 0 },
        { "TCP://127.0.0.1:5555", 0 },
        { "ws://127.0.0.1:5555", 0 },
        { "udp://127.0.0.1:5555", 0 },
        { "", 0 },
        { NULL, 0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int got = dw_curve_endpoint_is_loopback (cases[i].endpoint);
        CHECK (got == cases[i].loopback, "%s: loopback %d, expected %d",
               cases[i].endpoint ? cases[i].endpoint : "(null)", got, cases[i].loopback);
    }
}

int main (void)
{
    snprintf (s_dir, sizeof s_dir, "/tmp/dw-curve-XXXXXX");
    if (!mkdtemp (s_dir)) {
        perror ("mkdtemp");
        return 1;
    }

    test_keygen_modes ();
    test_keygen_no_overwrite ();
    test_load_secret_rejects ();
    test_auth_flow ();
    test_allow_dir_checks ();
    test_loopback_table ();

    dw_rm_rf (s_dir);
    if (s_failures) {
        fprintf (stderr, "%d check(s) failed\n", s_failures);
        return 1;
    }
    printf ("test_curve: all checks passed\n");
    return 0;
}
