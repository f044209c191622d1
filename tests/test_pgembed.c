/* Tests of the embedded PostgreSQL cluster: create, connect, stop, reuse of
 * the data, the data directory lock, reuse of a server left behind by a
 * crashed coordinator. As root it also checks the unreachable data
 * directory error, and repeats the basic cycle as the unprivileged user
 * "nobody" in a child process. */
#include <errno.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dw_pgembed.h"
#include "dw_util.h"

static int s_failures;

#define CHECK(cond, ...)                                                                    \
    do {                                                                                    \
        if (!(cond)) {                                                                      \
            fprintf (stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);       \
            fprintf (stderr, __VA_ARGS__);                                                  \
            fputc ('\n', stderr);                                                           \
            s_failures++;                                                                   \
        }                                                                                   \
    } while (0)

/* Run SQL on CONNINFO; returns the first value as a heap string, or NULL
 * when the connection or the statement failed. */
static char *query (const char *conninfo, const char *sql)
{
    PGconn *conn = PQconnectdb (conninfo);
    if (PQstatus (conn) != CONNECTION_OK) {
        fprintf (stderr, "connect %s: %s", conninfo, PQerrorMessage (conn));
        PQfinish (conn);
        return NULL;
    }
    PGresult *res = PQexec (conn, sql);
    char *value = NULL;
    if (PQresultStatus (res) == PGRES_TUPLES_OK && PQntuples (res) > 0)
        value = strdup (PQgetvalue (res, 0, 0));
    else if (PQresultStatus (res) == PGRES_COMMAND_OK)
        value = strdup ("");
    else
        fprintf (stderr, "%s: %s", sql, PQresultErrorMessage (res));
    PQclear (res);
    PQfinish (conn);
    return value;
}

static int query_is (const char *conninfo, const char *sql, const char *expected)
{
    char *value = query (conninfo, sql);
    int same = value && strcmp (value, expected) == 0;
    if (!same)
        fprintf (stderr, "  %s -> '%s', expected '%s'\n", sql, value ? value : "(failed)",
                 expected);
    free (value);
    return same;
}

/* Start, store a row, stop, start again and find the row; a second start
 * while the first runs fails on the lock. */
static void test_cycle (const char *data_dir)
{
    char err[1024] = "";
    dw_pgembed_t *pg = dw_pgembed_start (data_dir, err, sizeof err);
    CHECK (pg != NULL, "first start in %s: %s", data_dir, err);
    if (!pg)
        return;
    const char *conninfo = dw_pgembed_conninfo (pg);
    CHECK (strstr (conninfo, "dbname=driftwatch") != NULL, "conninfo names the database: %s",
           conninfo);
    CHECK (strstr (conninfo, "host=/tmp/driftwatch-pg-") != NULL,
           "conninfo uses the private socket directory: %s", conninfo);
    CHECK (query_is (conninfo, "CREATE TABLE kept (v text)", ""), "create table");
    CHECK (query_is (conninfo, "INSERT INTO kept VALUES ('hello')", ""), "insert row");
    CHECK (query_is (conninfo, "SHOW listen_addresses", ""), "no TCP listener");
    CHECK (query_is (conninfo, "SHOW fsync", "on"), "fsync stays on");

    char err2[1024] = "";
    dw_pgembed_t *second = dw_pgembed_start (data_dir, err2, sizeof err2);
    CHECK (second == NULL, "second start while the first runs fails");
    CHECK (strstr (err2, "in use by another coordinator") != NULL
               && strstr (err2, "postgres.lock") != NULL,
           "second start names the lock: %s", err2);
    dw_pgembed_stop (&second);

    dw_pgembed_stop (&pg);
    CHECK (pg == NULL, "stop nulls the pointer");

    char cluster[1024];
    snprintf (cluster, sizeof cluster, "%s/postgres/postmaster.pid", data_dir);
    CHECK (access (cluster, F_OK) != 0, "server stopped: no postmaster.pid");

    pg = dw_pgembed_start (data_dir, err, sizeof err);
    CHECK (pg != NULL, "restart: %s", err);
    if (!pg)
        return;
    CHECK (query_is (dw_pgembed_conninfo (pg), "SELECT v FROM kept", "hello"),
           "data kept across restart");
    dw_pgembed_stop (&pg);
}

/* A coordinator that exits without stopping leaves its server running; the
 * next start reuses it. Then the server is killed, leaving a stale
 * postmaster.pid, and the next start recovers. */
static void test_crash_reuse (const char *data_dir)
{
    pid_t child = fork ();
    if (child == 0) {
        char err[1024];
        dw_pgembed_t *pg = dw_pgembed_start (data_dir, err, sizeof err);
        if (pg)
            free (query (dw_pgembed_conninfo (pg), "INSERT INTO kept VALUES ('crash')"));
        _exit (pg ? 0 : 1);
    }
    int status = 0;
    waitpid (child, &status, 0);
    CHECK (WIFEXITED (status) && WEXITSTATUS (status) == 0, "child start and exit");

    char pidfile[1024];
    snprintf (pidfile, sizeof pidfile, "%s/postgres/postmaster.pid", data_dir);
    CHECK (access (pidfile, F_OK) == 0, "the server outlives its coordinator");

    char err[1024] = "";
    dw_pgembed_t *pg = dw_pgembed_start (data_dir, err, sizeof err);
    CHECK (pg != NULL, "start reuses the running server: %s", err);
    if (!pg)
        return;
    CHECK (query_is (dw_pgembed_conninfo (pg), "SELECT count(*) FROM kept", "2"),
           "rows of both runs present");

    /* Kill the postmaster hard: its pid file stays behind. */
    char *text = dw_read_file (pidfile, 4096, NULL);
    pid_t postmaster = text ? (pid_t) atoi (text) : 0;
    free (text);
    CHECK (postmaster > 0, "postmaster pid read");
    if (postmaster > 0) {
        kill (postmaster, SIGKILL);
        for (int i = 0; i < 100 && kill (postmaster, 0) == 0; i++)
            usleep (50 * 1000);
    }

    /* Release the lock as a crashed coordinator would; the stop finds no
     * live server and leaves the pid file. */
    dw_pgembed_stop (&pg);

    CHECK (access (pidfile, F_OK) == 0, "stale postmaster.pid left by the killed server");
    pg = dw_pgembed_start (data_dir, err, sizeof err);
    CHECK (pg != NULL, "start recovers after a killed server: %s", err);
    if (!pg)
        return;
    CHECK (query_is (dw_pgembed_conninfo (pg), "SELECT count(*) FROM kept", "2"),
           "committed rows survive the crash");
    dw_pgembed_stop (&pg);
}

/* As root the server runs as "postgres", which cannot enter a 0700
 * directory of root's: the error names the directory and the fix. */
static void test_unreachable_dir (const char *base)
{
    char data_dir[1024];
    snprintf (data_dir, sizeof data_dir, "%s/private/data", base);
    char private_dir[1024];
    snprintf (private_dir, sizeof private_dir, "%s/private", base);
    CHECK (mkdir (private_dir, 0700) == 0, "mkdir %s", private_dir);

    char err[1024] = "";
    dw_pgembed_t *pg = dw_pgembed_start (data_dir, err, sizeof err);
    CHECK (pg == NULL, "start in a directory postgres cannot reach fails");
    CHECK (strstr (err, data_dir) != NULL, "error names the directory: %s", err);
    CHECK (strstr (err, "/var/lib") != NULL, "error suggests /var/lib: %s", err);
    dw_pgembed_stop (&pg);
}

/* The basic cycle as an unprivileged user, in a child that drops root. */
static void test_as_nobody (void)
{
    struct passwd *pw = getpwnam ("nobody");
    if (!pw) {
        fprintf (stderr, "no user nobody: skipping the unprivileged cycle\n");
        return;
    }
    pid_t child = fork ();
    if (child == 0) {
        gid_t gid = pw->pw_gid;
        if (setgroups (1, &gid) != 0 || setgid (pw->pw_gid) != 0 || setuid (pw->pw_uid) != 0)
            _exit (2);
        /* Count only this child's failures. */
        s_failures = 0;
        char dir[] = "/tmp/dw-test-pgembed-nobody-XXXXXX";
        if (!mkdtemp (dir))
            _exit (3);
        char data_dir[256];
        snprintf (data_dir, sizeof data_dir, "%s/data", dir);
        test_cycle (data_dir);
        dw_rm_rf (dir);
        _exit (s_failures ? 1 : 0);
    }
    int status = 0;
    waitpid (child, &status, 0);
    CHECK (WIFEXITED (status) && WEXITSTATUS (status) == 0,
           "start, restart and lock as user nobody (exit status %d)",
           WIFEXITED (status) ? WEXITSTATUS (status) : -1);
}

int main (void)
{
    char base[] = "/tmp/dw-test-pgembed-XXXXXX";
    if (!mkdtemp (base)) {
        fprintf (stderr, "mkdtemp: %s\n", strerror (errno));
        return 1;
    }
    /* mkdtemp makes the directory 0700; the server user must pass it. */
    chmod (base, 0755);
    char data_dir[256];
    snprintf (data_dir, sizeof data_dir, "%s/data", base);

    test_cycle (data_dir);
    test_crash_reuse (data_dir);
    if (geteuid () == 0) {
        test_unreachable_dir (base);
        test_as_nobody ();
    }

    dw_rm_rf (base);
    if (s_failures)
        fprintf (stderr, "test_pgembed: %d checks failed\n", s_failures);
    return s_failures ? 1 : 0;
}
