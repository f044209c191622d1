/* Embedded default PostgreSQL: see dw_pgembed.h. */
#include "dw_pgembed.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libpq-fe.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dw_log.h"
#include "dw_util.h"

/* System user that owns the cluster when the coordinator runs as root. */
#define PGEMBED_SERVER_USER "postgres"
#define PGEMBED_DATABASE "driftwatch"
#define PGEMBED_PORT "5432"
/* Bytes of tool output kept for error messages. */
#define PGEMBED_OUTPUT_MAX 2048
#define PGEMBED_ENV_MAX 256
#define PGEMBED_ARGS_MAX 24
#define PGEMBED_POLL_MS 100

extern char **environ;

struct dw_pgembed_t {
    char *data_dir;            /* absolute path */
    char *cluster_dir;         /* DATA_DIR/postgres */
    char *socket_dir;          /* /tmp/driftwatch-pg-XXXXXXXX */
    char *bindir;
    char *conninfo;
    int lock_fd;
    bool drop_privileges;      /* run the PostgreSQL tools as the server user */
    uid_t uid;
    gid_t gid;
};

/* Output and exit status of one tool run. */
typedef struct {
    char output[PGEMBED_OUTPUT_MAX];
    int status;                /* exit code, or -1 if it did not exit normally */
} tool_result_t;

static void set_err (char *err, size_t errlen, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

static void set_err (char *err, size_t errlen, const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    vsnprintf (err, errlen, fmt, args);
    va_end (args);

    size_t len = strlen (err);
    while (len > 0 && (err[len - 1] == '\n' || err[len - 1] == ' '))
        err[--len] = '\0';
}

/* The last line of a tool's output that is not empty, for error messages. */
static const char *last_line (tool_result_t *result)
{
    char *text = result->output;
    size_t len = strlen (text);
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == ' '))
        text[--len] = '\0';
    char *nl = strrchr (text, '\n');
    return nl ? nl + 1 : text;
}

/* Run ARGV[0] with ARGV, as the server user when SELF drops privileges,
 * with stdout and stderr captured into RESULT. The environment is the
 * coordinator's minus PG* variables, which would change the tools' defaults
 * (PGPORT, PGDATA). Returns 0 when the tool ran (see RESULT->status), -1
 * when it could not be started. */
static int run_tool (const dw_pgembed_t *self, char *const argv[], tool_result_t *result)
{
    memset (result, 0, sizeof *result);
    result->status = -1;

    /* Everything the child needs is prepared before fork, because after
     * fork in a threaded process only async-signal-safe calls are allowed. */
    char *envp[PGEMBED_ENV_MAX];
    size_t nenv = 0;
    for (char **e = environ; *e && nenv + 1 < PGEMBED_ENV_MAX; e++)
        if (strncmp (*e, "PG", 2) != 0)
            envp[nenv++] = *e;
    envp[nenv] = NULL;

    int fds[2];
    if (pipe2 (fds, O_CLOEXEC) != 0)
        return -1;

    pid_t pid = fork ();
    if (pid < 0) {
        close (fds[0]);
        close (fds[1]);
        return -1;
    }
    if (pid == 0) {
        int null_fd = open ("/dev/null", O_RDONLY);
        if (null_fd < 0 || dup2 (null_fd, STDIN_FILENO) < 0 || dup2 (fds[1], STDOUT_FILENO) < 0
            || dup2 (fds[1], STDERR_FILENO) < 0)
            _exit (126);
        if (self->drop_privileges) {
            gid_t gid = self->gid;
            if (setgroups (1, &gid) != 0 || setgid (self->gid) != 0 || setuid (self->uid) != 0)
                _exit (126);
        }
        /* The server user may not be able to enter the coordinator's cwd. */
        if (chdir ("/") != 0)
            _exit (126);
        execve (argv[0], argv, envp);
        _exit (127);
    }

    close (fds[1]);
    char chunk[512];
    size_t kept = 0;
    for (;;) {
        ssize_t n = read (fds[0], chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        /* Keep the tail: the reason for a failure is printed last. */
        size_t len = (size_t) n;
        if (kept + len >= PGEMBED_OUTPUT_MAX) {
            size_t drop = kept + len - (PGEMBED_OUTPUT_MAX - 1);
            if (drop > kept)
                drop = kept;
            memmove (result->output, result->output + drop, kept - drop);
            kept -= drop;
        }
        if (len > PGEMBED_OUTPUT_MAX - 1 - kept)
            len = PGEMBED_OUTPUT_MAX - 1 - kept;
        memcpy (result->output + kept, chunk + ((size_t) n - len), len);
        kept += len;
    }
    result->output[kept] = '\0';
    close (fds[0]);

    int status = 0;
    while (waitpid (pid, &status, 0) < 0) {
        if (errno != EINTR)
            return -1;
    }
    result->status = WIFEXITED (status) ? WEXITSTATUS (status) : -1;
    if (result->status == 126 || result->status == 127) {
        snprintf (result->output, sizeof result->output, "cannot run %s as uid %d", argv[0],
                  (int) (self->drop_privileges ? self->uid : getuid ()));
    }
    return 0;
}

static bool is_executable (const char *dir, const char *name)
{
    char path[PATH_MAX];
    if (snprintf (path, sizeof path, "%s/%s", dir, name) >= (int) sizeof path)
        return false;
    return access (path, X_OK) == 0;
}

static bool has_server_tools (const char *dir)
{
    return is_executable (dir, "initdb") && is_executable (dir, "pg_ctl")
           && is_executable (dir, "postgres");
}

/* Directory of `pg_config --bindir`, if pg_config is on PATH. */
static char *bindir_from_pg_config (void)
{
    const char *path_env = getenv ("PATH");
    char *paths = strdup (path_env ? path_env : "/usr/bin:/bin");
    if (!paths)
        return NULL;

    char *found = NULL;
    char *save = NULL;
    for (char *dir = strtok_r (paths, ":", &save); dir; dir = strtok_r (NULL, ":", &save)) {
        if (*dir && is_executable (dir, "pg_config")) {
            found = dw_strdup_printf ("%s/pg_config", dir);
            break;
        }
    }
    free (paths);
    if (!found)
        return NULL;

    /* pg_config runs as the coordinator's own user. */
    dw_pgembed_t self_user = { .drop_privileges = false };
    char *argv[] = { found, (char *) "--bindir", NULL };
    tool_result_t result;
    int rc = run_tool (&self_user, argv, &result);
    free (found);
    if (rc != 0 || result.status != 0)
        return NULL;

    char *bindir = strdup (last_line (&result));
    if (bindir && !has_server_tools (bindir)) {
        free (bindir);
        return NULL;
    }
    return bindir;
}

/* The newest /usr/lib/postgresql/N/bin with the server tools. */
static char *bindir_from_usr_lib (void)
{
    DIR *dir = opendir ("/usr/lib/postgresql");
    if (!dir)
        return NULL;

    char *best = NULL;
    double best_version = -1;
    struct dirent *entry;
    while ((entry = readdir (dir)) != NULL) {
        char *end = NULL;
        double version = strtod (entry->d_name, &end);
        if (end == entry->d_name || *end != '\0' || version <= best_version)
            continue;
        char *candidate = dw_strdup_printf ("/usr/lib/postgresql/%s/bin", entry->d_name);
        if (candidate && has_server_tools (candidate)) {
            free (best);
            best = candidate;
            best_version = version;
        }
        else
            free (candidate);
    }
    closedir (dir);
    return best;
}

/* Take the data directory lock, or explain who holds it. */
static int take_lock (dw_pgembed_t *self, char *err, size_t errlen)
{
    char path[PATH_MAX];
    snprintf (path, sizeof path, "%s/postgres.lock", self->data_dir);

    /* O_CLOEXEC keeps the lock out of the server processes: a server left
     * running after a crash must not block the next coordinator. */
    self->lock_fd = open (path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (self->lock_fd < 0) {
        set_err (err, errlen, "cannot open %s: %s", path, strerror (errno));
        return -1;
    }
    if (flock (self->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK)
            set_err (err, errlen,
                     "data directory %s is in use by another coordinator (%s is locked); "
                     "stop that coordinator or use another data directory",
                     self->data_dir, path);
        else
            set_err (err, errlen, "cannot lock %s: %s", path, strerror (errno));
        close (self->lock_fd);
        self->lock_fd = -1;
        return -1;
    }

    /* The pid is for people looking at the file; the flock is the lock. */
    if (ftruncate (self->lock_fd, 0) == 0)
        dprintf (self->lock_fd, "%d\n", (int) getpid ());
    return 0;
}

static int chown_to_server (const dw_pgembed_t *self, const char *path, char *err, size_t errlen)
{
    if (!self->drop_privileges)
        return 0;
    if (chown (path, self->uid, self->gid) != 0) {
        set_err (err, errlen, "cannot give %s to user %s: %s", path, PGEMBED_SERVER_USER,
                 strerror (errno));
        return -1;
    }
    return 0;
}

/* Check that the server user can use the cluster directory: each parent
 * must be searchable by it. Tested in a child running as that user, which
 * is what the kernel will check later. */
static int check_server_access (const dw_pgembed_t *self, char *err, size_t errlen)
{
    if (!self->drop_privileges)
        return 0;

    pid_t pid = fork ();
    if (pid < 0) {
        set_err (err, errlen, "fork failed: %s", strerror (errno));
        return -1;
    }
    if (pid == 0) {
        gid_t gid = self->gid;
        if (setgroups (1, &gid) != 0 || setgid (self->gid) != 0 || setuid (self->uid) != 0)
            _exit (2);
        _exit (access (self->cluster_dir, R_OK | W_OK | X_OK) == 0 ? 0 : 1);
    }
    int status = 0;
    while (waitpid (pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (WIFEXITED (status) && WEXITSTATUS (status) == 0)
        return 0;

    set_err (err, errlen,
             "the %s system user cannot reach %s (as root the embedded PostgreSQL runs as %s, "
             "and a parent directory is not searchable by it); use a data directory under "
             "/var/lib, e.g. --data-dir /var/lib/driftwatch, or make the parents searchable "
             "(chmod o+x)", PGEMBED_SERVER_USER, self->cluster_dir, PGEMBED_SERVER_USER);
    return -1;
}

/* Create the private socket directory, or check that an existing one is a
 * real directory owned by the server user (anyone can create names in /tmp). */
static int prepare_socket_dir (dw_pgembed_t *self, char *err, size_t errlen)
{
    if (mkdir (self->socket_dir, 0700) != 0 && errno != EEXIST) {
        set_err (err, errlen, "cannot create %s: %s", self->socket_dir, strerror (errno));
        return -1;
    }

    struct stat st;
    if (lstat (self->socket_dir, &st) != 0 || !S_ISDIR (st.st_mode)) {
        set_err (err, errlen, "%s is not a directory; remove it", self->socket_dir);
        return -1;
    }
    if (st.st_uid != self->uid) {
        if (self->drop_privileges && st.st_uid == 0 && chown_to_server (self, self->socket_dir,
                                                                         err, errlen) == 0)
            st.st_uid = self->uid;
        else {
            set_err (err, errlen, "%s belongs to uid %d, not to the server's uid %d; remove it",
                     self->socket_dir, (int) st.st_uid, (int) self->uid);
            return -1;
        }
    }
    if (chmod (self->socket_dir, 0700) != 0) {
        set_err (err, errlen, "cannot chmod %s: %s", self->socket_dir, strerror (errno));
        return -1;
    }
    return 0;
}

static int run_initdb (dw_pgembed_t *self, char *err, size_t errlen)
{
    char *initdb = dw_strdup_printf ("%s/initdb", self->bindir);
    char *argv[] = {
        initdb, (char *) "-D", self->cluster_dir, (char *) "-U", (char *) "postgres",
        (char *) "--auth-local=trust", (char *) "--auth-host=reject", (char *) "-E",
        (char *) "UTF8", (char *) "--locale=C", NULL
    };
    tool_result_t result;
    dw_info ("pgembed: creating cluster dir=%s", self->cluster_dir);
    int rc = run_tool (self, argv, &result);
    free (initdb);
    if (rc != 0 || result.status != 0) {
        set_err (err, errlen, "initdb of %s failed: %s", self->cluster_dir,
                 rc != 0 ? strerror (errno) : last_line (&result));
        return -1;
    }

    /* No TCP at all, even if someone starts the cluster by hand. */
    char conf[PATH_MAX];
    snprintf (conf, sizeof conf, "%s/postgresql.conf", self->cluster_dir);
    FILE *f = fopen (conf, "a");
    if (!f) {
        set_err (err, errlen, "cannot append to %s: %s", conf, strerror (errno));
        return -1;
    }
    fprintf (f, "\n# Added by the driftwatch coordinator: unix socket only.\n"
                "listen_addresses = ''\n");
    if (fclose (f) != 0) {
        set_err (err, errlen, "cannot write %s: %s", conf, strerror (errno));
        return -1;
    }
    return 0;
}

/* pg_ctl status: 0 running, 3 not running, 4 no cluster; -1 on failure. */
static int server_status (dw_pgembed_t *self)
{
    char *pg_ctl = dw_strdup_printf ("%s/pg_ctl", self->bindir);
    char *argv[] = { pg_ctl, (char *) "status", (char *) "-D", self->cluster_dir, NULL };
    tool_result_t result;
    int rc = run_tool (self, argv, &result);
    free (pg_ctl);
    return rc != 0 ? -1 : result.status;
}

static int start_server (dw_pgembed_t *self, char *err, size_t errlen)
{
    char *pg_ctl = dw_strdup_printf ("%s/pg_ctl", self->bindir);
    char *log = dw_strdup_printf ("%s/server.log", self->cluster_dir);
    char *timeout = dw_strdup_printf ("%d", DW_PGEMBED_TIMEOUT_S);
    /* pg_ctl hands -o to a shell; the socket path has only safe characters. */
    char *options = dw_strdup_printf ("-k %s -p %s", self->socket_dir, PGEMBED_PORT);
    char *argv[] = {
        pg_ctl, (char *) "start", (char *) "-D", self->cluster_dir, (char *) "-l", log,
        (char *) "-w", (char *) "-t", timeout, (char *) "-s", (char *) "-o", options, NULL
    };
    tool_result_t result;
    int rc = run_tool (self, argv, &result);
    if (rc != 0 || result.status != 0)
        set_err (err, errlen, "starting PostgreSQL in %s failed: %s; see %s", self->cluster_dir,
                 rc != 0 ? strerror (errno) : last_line (&result), log);
    free (pg_ctl);
    free (log);
    free (timeout);
    free (options);
    return rc != 0 || result.status != 0 ? -1 : 0;
}

/* Wait until the server accepts connections (a reused server may still be
 * recovering), then create the driftwatch database if it is missing. */
static int ensure_database (dw_pgembed_t *self, char *err, size_t errlen)
{
    char *admin = dw_strdup_printf ("host=%s port=%s user=postgres dbname=postgres",
                                    self->socket_dir, PGEMBED_PORT);
    uint64_t deadline = dw_mono_ms () + (uint64_t) DW_PGEMBED_TIMEOUT_S * 1000;
    while (PQping (admin) != PQPING_OK) {
        if (dw_mono_ms () > deadline) {
            set_err (err, errlen, "PostgreSQL in %s did not accept connections within %d s; "
                     "see %s/server.log", self->cluster_dir, DW_PGEMBED_TIMEOUT_S,
                     self->cluster_dir);
            free (admin);
            return -1;
        }
        usleep (PGEMBED_POLL_MS * 1000);
    }

    PGconn *conn = PQconnectdb (admin);
    free (admin);
    if (PQstatus (conn) != CONNECTION_OK) {
        set_err (err, errlen, "cannot connect to the embedded PostgreSQL: %s",
                 PQerrorMessage (conn));
        PQfinish (conn);
        return -1;
    }

    const char *params[] = { PGEMBED_DATABASE };
    PGresult *res = PQexecParams (conn, "SELECT 1 FROM pg_database WHERE datname = $1", 1, NULL,
                                  params, NULL, NULL, 0);
    int rc = 0;
    if (PQresultStatus (res) != PGRES_TUPLES_OK) {
        set_err (err, errlen, "looking up database %s failed: %s", PGEMBED_DATABASE,
                 PQresultErrorMessage (res));
        rc = -1;
    }
    else if (PQntuples (res) == 0) {
        PQclear (res);
        res = PQexec (conn, "CREATE DATABASE " PGEMBED_DATABASE);
        if (PQresultStatus (res) != PGRES_COMMAND_OK) {
            set_err (err, errlen, "creating database %s failed: %s", PGEMBED_DATABASE,
                     PQresultErrorMessage (res));
            rc = -1;
        }
        else
            dw_info ("pgembed: database created name=%s", PGEMBED_DATABASE);
    }
    PQclear (res);
    PQfinish (conn);
    return rc;
}

/* Resolve the server user, the paths and the binaries. */
static int setup_paths (dw_pgembed_t *self, const char *data_dir, char *err, size_t errlen)
{
    if (geteuid () == 0) {
        struct passwd *pw = getpwnam (PGEMBED_SERVER_USER);
        if (!pw) {
            set_err (err, errlen, "running as root, the embedded PostgreSQL needs the system "
                     "user %s, which does not exist; install the postgresql package or run "
                     "the coordinator as another user", PGEMBED_SERVER_USER);
            return -1;
        }
        self->drop_privileges = true;
        self->uid = pw->pw_uid;
        self->gid = pw->pw_gid;
    }
    else {
        self->uid = geteuid ();
        self->gid = getegid ();
    }

    if (dw_mkdir_p (data_dir, 0755) != 0) {
        set_err (err, errlen, "cannot create data directory %s: %s", data_dir, strerror (errno));
        return -1;
    }
    char real[PATH_MAX];
    if (!realpath (data_dir, real)) {
        set_err (err, errlen, "cannot resolve data directory %s: %s", data_dir,
                 strerror (errno));
        return -1;
    }
    self->data_dir = strdup (real);
    self->cluster_dir = dw_strdup_printf ("%s/postgres", real);

    /* Unix socket paths are limited to 107 bytes, so the socket lives in a
     * short directory named after a hash of the data directory. */
    char hash[41];
    dw_sha1_hex (real, strlen (real), hash);
    hash[8] = '\0';
    self->socket_dir = dw_strdup_printf ("/tmp/driftwatch-pg-%s", hash);
    self->conninfo = dw_strdup_printf ("host=%s port=%s user=postgres dbname=%s",
                                       self->socket_dir, PGEMBED_PORT, PGEMBED_DATABASE);
    if (!self->data_dir || !self->cluster_dir || !self->socket_dir || !self->conninfo) {
        set_err (err, errlen, "out of memory");
        return -1;
    }

    self->bindir = bindir_from_pg_config ();
    if (!self->bindir)
        self->bindir = bindir_from_usr_lib ();
    if (!self->bindir) {
        set_err (err, errlen, "PostgreSQL server programs (initdb, pg_ctl) not found via "
                 "pg_config or in /usr/lib/postgresql/*/bin; install postgresql, or pass a "
                 "database connection string instead of using the embedded one");
        return -1;
    }
    return 0;
}

static void free_self (dw_pgembed_t *self)
{
    if (self->lock_fd >= 0)
        close (self->lock_fd);
    free (self->data_dir);
    free (self->cluster_dir);
    free (self->socket_dir);
    free (self->bindir);
    free (self->conninfo);
    free (self);
}

dw_pgembed_t *dw_pgembed_start (const char *data_dir, char *err, size_t errlen)
{
    dw_pgembed_t *self = calloc (1, sizeof *self);
    if (!self) {
        set_err (err, errlen, "out of memory");
        return NULL;
    }
    self->lock_fd = -1;

    if (setup_paths (self, data_dir, err, errlen) != 0 || take_lock (self, err, errlen) != 0)
        goto failed;

    struct stat st;
    if (stat (self->cluster_dir, &st) != 0) {
        if (mkdir (self->cluster_dir, 0700) != 0) {
            set_err (err, errlen, "cannot create %s: %s", self->cluster_dir, strerror (errno));
            goto failed;
        }
        if (chown_to_server (self, self->cluster_dir, err, errlen) != 0)
            goto failed;
    }
    if (check_server_access (self, err, errlen) != 0
        || prepare_socket_dir (self, err, errlen) != 0)
        goto failed;

    char version_file[PATH_MAX];
    snprintf (version_file, sizeof version_file, "%s/PG_VERSION", self->cluster_dir);
    if (access (version_file, F_OK) != 0 && run_initdb (self, err, errlen) != 0)
        goto failed;

    int status = server_status (self);
    if (status == 0)
        dw_info ("pgembed: reusing running server dir=%s", self->cluster_dir);
    else {
        /* A postmaster.pid of a dead server is stale: postgres checks the
         * pid itself and runs crash recovery on start. */
        dw_info ("pgembed: starting server dir=%s socket=%s", self->cluster_dir,
                 self->socket_dir);
        if (start_server (self, err, errlen) != 0)
            goto failed;
    }

    if (ensure_database (self, err, errlen) != 0)
        goto failed;
    dw_info ("pgembed: ready dir=%s socket=%s", self->cluster_dir, self->socket_dir);
    return self;

failed:
    dw_error ("pgembed: start failed data_dir=%s error=\"%s\"", data_dir, err);
    free_self (self);
    return NULL;
}

const char *dw_pgembed_conninfo (const dw_pgembed_t *self)
{
    return self->conninfo;
}

void dw_pgembed_stop (dw_pgembed_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dw_pgembed_t *self = *self_p;

    char *pg_ctl = dw_strdup_printf ("%s/pg_ctl", self->bindir);
    char *timeout = dw_strdup_printf ("%d", DW_PGEMBED_TIMEOUT_S);
    char *argv[] = {
        pg_ctl, (char *) "stop", (char *) "-D", self->cluster_dir, (char *) "-m",
        (char *) "fast", (char *) "-w", (char *) "-t", timeout, (char *) "-s", NULL
    };
    tool_result_t result;
    int rc = run_tool (self, argv, &result);
    if (rc != 0 || result.status != 0)
        dw_error ("pgembed: stop failed dir=%s error=\"%s\"", self->cluster_dir,
                  rc != 0 ? strerror (errno) : last_line (&result));
    else
        dw_info ("pgembed: stopped dir=%s", self->cluster_dir);
    free (pg_ctl);
    free (timeout);

    /* Empty once the server has removed its socket and lock files. */
    rmdir (self->socket_dir);
    free_self (self);
    *self_p = NULL;
}
