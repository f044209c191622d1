/* The coordinator's commands: see dw_coordinator.h.
 *
 * A run opens the database, starting the private cluster if none is
 * configured. It resolves the suite, selects the panel, and finds or creates
 * the day's run and its jobs. Then it binds the broker, starts any local
 * workers and serves until every job has a final result. It ends with the
 * summary and the detector's report.
 */
#include "dw_coordinator.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dw_broker.h"
#include "dw_config.h"
#include "dw_curve.h"
#include "dw_detector_store.h"
#include "dw_log.h"
#include "dw_pgembed.h"
#include "dw_plan.h"
#include "dw_stats.h"
#include "dw_store.h"
#include "dw_suite.h"
#include "dw_util.h"

/* Seconds local workers get to exit after the run before they are killed. */
#define LOCAL_WORKER_EXIT_SECONDS 15

typedef struct {
    dw_pgembed_t *cluster;
    dw_store_t *store;
} database_t;

/* --- database -------------------------------------------------------------------- */

static int pg_environment_set (void)
{
    static const char *names[] = { "PGHOST", "PGHOSTADDR", "PGDATABASE", "PGSERVICE", "PGPORT",
                                   "PGUSER" };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (getenv (names[i]) && *getenv (names[i]))
            return 1;
    return 0;
}

static int open_database (const dw_options_t *opts, database_t *db)
{
    memset (db, 0, sizeof *db);
    char err[1024];
    const char *conninfo = opts->db;
    if (!conninfo && getenv ("DATABASE_URL") && *getenv ("DATABASE_URL"))
        conninfo = getenv ("DATABASE_URL");
    if (!conninfo && pg_environment_set ())
        conninfo = "";

    if (!conninfo) {
        /* Embedded default: a private cluster, so a new user needs no setup. */
        db->cluster = dw_pgembed_start (opts->data_dir, err, sizeof err);
        if (!db->cluster) {
            fprintf (stderr, "coordinator: cannot start the private PostgreSQL cluster: %s\n",
                     err);
            return -1;
        }
        conninfo = dw_pgembed_conninfo (db->cluster);
    }

    db->store = dw_store_connect (conninfo, err, sizeof err);
    if (!db->store) {
        fprintf (stderr, "coordinator: %s\n", err);
        dw_pgembed_stop (&db->cluster);
        return -1;
    }
    int applied = dw_store_migrate (db->store);
    if (applied < 0) {
        fprintf (stderr, "coordinator: database migration failed: %s\n",
                 dw_store_error (db->store));
        dw_store_destroy (&db->store);
        dw_pgembed_stop (&db->cluster);
        return -1;
    }
    if (applied > 0)
        dw_info ("event=schema_migrated applied=%d version=%d", applied,
                 dw_store_schema_version (db->store));
    return 0;
}

static void close_database (database_t *db)
{
    dw_store_destroy (&db->store);
    dw_pgembed_stop (&db->cluster);
}

/* --- child programs ------------------------------------------------------------------ */

/* Run ARGV to completion with its output sent to LOG_PATH (or inherited when
 * NULL). Returns the exit status, or -1 if it could not run. */
static int run_program (char *const argv[], const char *log_path)
{
    pid_t pid = fork ();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        if (log_path) {
            int fd = open (log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
            if (fd >= 0) {
                dup2 (fd, STDOUT_FILENO);
                dup2 (fd, STDERR_FILENO);
            }
        }
        execv (argv[0], argv);
        fprintf (stderr, "cannot run %s: %s\n", argv[0], strerror (errno));
        _exit (127);
    }
    int status = 0;
    while (waitpid (pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED (status) ? WEXITSTATUS (status) : -1;
}

static const char *find_data_file (const char *relative_to_source, const char *relative_to_data,
                                   char *out, size_t size)
{
    snprintf (out, size, "%s/%s", DW_SOURCE_DIR, relative_to_source);
    if (access (out, R_OK) == 0)
        return out;
    snprintf (out, size, "%s/%s", DW_DATADIR, relative_to_data);
    return out;
}

/* --- suites ------------------------------------------------------------------------- */

static void print_suite_summary (const dw_suite_t *suite)
{
    json_t *repos = json_object (), *languages = json_object ();
    for (size_t i = 0; i < dw_suite_size (suite); i++) {
        const dw_task_t *task = dw_suite_task (suite, i);
        const char *language = task->repo_language && *task->repo_language ? task->repo_language
                                                                             : "unknown";
        json_t *count = json_object_get (repos, task->repo);
        json_object_set_new (repos, task->repo,
                             json_integer (count ? json_integer_value (count) + 1 : 1));
        count = json_object_get (languages, language);
        json_object_set_new (languages, language,
                             json_integer (count ? json_integer_value (count) + 1 : 1));
    }

    printf ("%zu tasks in %zu repositories\n", dw_suite_size (suite), json_object_size (repos));
    const char *key;
    json_t *value;
    printf ("by repository:\n");
    void *iter;
    /* jansson keeps insertion order; sort keys for a stable listing. */
    char *sorted = json_dumps (repos, JSON_SORT_KEYS | JSON_COMPACT);
    json_t *ordered = json_loads (sorted, JSON_PRESERVE_ORDER, NULL);
    free (sorted);
    for (iter = json_object_iter (ordered); iter;
         iter = json_object_iter_next (ordered, iter)) {
        key = json_object_iter_key (iter);
        value = json_object_iter_value (iter);
        printf ("  %-40s %5lld\n", key, (long long) json_integer_value (value));
    }
    json_decref (ordered);
    printf ("by language:\n");
    sorted = json_dumps (languages, JSON_SORT_KEYS | JSON_COMPACT);
    ordered = json_loads (sorted, JSON_PRESERVE_ORDER, NULL);
    free (sorted);
    for (iter = json_object_iter (ordered); iter;
         iter = json_object_iter_next (ordered, iter)) {
        key = json_object_iter_key (iter);
        value = json_object_iter_value (iter);
        printf ("  %-40s %5lld\n", key, (long long) json_integer_value (value));
    }
    json_decref (ordered);
    json_decref (repos);
    json_decref (languages);
}

/* Default suite name: the file name without directory and extension. */
static void suite_name_from_path (const char *path, char *out, size_t size)
{
    char copy[PATH_MAX];
    snprintf (copy, sizeof copy, "%s", path);
    snprintf (out, size, "%s", basename (copy));
    char *dot = strrchr (out, '.');
    if (dot && dot != out)
        *dot = '\0';
}

static int import_file (dw_store_t *store, const char *path, const char *name, int verbose,
                        int64_t *suite_id)
{
    char err[1024];
    dw_suite_t *suite = dw_suite_load (path, err, sizeof err);
    if (!suite) {
        fprintf (stderr, "coordinator: invalid suite: %s\n", err);
        return -1;
    }
    int already = 0;
    if (dw_store_import_suite (store, name, suite, suite_id, &already) != 0) {
        fprintf (stderr, "coordinator: cannot store suite %s: %s\n", path, dw_store_error (store));
        dw_suite_destroy (&suite);
        return -1;
    }
    if (verbose) {
        printf ("suite \"%s\" (id %" PRId64 ", sha1 %s) %s\n", name, *suite_id,
                dw_suite_content_hash (suite), already ? "was already stored" : "stored");
        print_suite_summary (suite);
    }
    dw_info ("event=suite_imported name=%s suite=%" PRId64 " tasks=%zu already=%d", name,
             *suite_id, dw_suite_size (suite), already);
    dw_suite_destroy (&suite);
    return 0;
}

/* Build the demo suite in the data directory if it is not there yet. */
static int ensure_demo_suite (const dw_options_t *opts, char *path, size_t size)
{
    char dir[PATH_MAX];
    snprintf (dir, sizeof dir, "%s/demo", opts->data_dir);
    if (snprintf (path, size, "%s/suite.jsonl", dir) >= (int) size) {
        fprintf (stderr, "coordinator: data directory path too long: %s\n", opts->data_dir);
        return -1;
    }
    if (access (path, R_OK) == 0)
        return 0;

    char generator[PATH_MAX];
    find_data_file ("tests/fixtures/demo/make-demo-suite", "demo/make-demo-suite", generator,
                    sizeof generator);
    printf ("building the demo suite in %s\n", dir);
    fflush (stdout);
    char *argv[] = { generator, dir, NULL };
    int rc = run_program (argv, NULL);
    if (rc != 0 || access (path, R_OK) != 0) {
        fprintf (stderr, "coordinator: the demo suite generator %s failed (status %d); run it "
                         "by hand to see why\n",
                 generator, rc);
        return -1;
    }
    return 0;
}

/* The suite file the run came from ("" for a suite found by name). */
static char s_suite_path[PATH_MAX];

static int resolve_suite (const dw_options_t *opts, dw_store_t *store, int64_t *suite_id,
                          char *name, size_t name_size)
{
    char path[PATH_MAX];
    struct stat st;

    if (strcmp (opts->suite, "demo") == 0) {
        if (ensure_demo_suite (opts, path, sizeof path) != 0)
            return -1;
        snprintf (name, name_size, "demo");
        snprintf (s_suite_path, sizeof s_suite_path, "%s", path);
        return import_file (store, path, name, 0, suite_id);
    }
    if (stat (opts->suite, &st) == 0 && S_ISREG (st.st_mode)) {
        if (opts->suite_name)
            snprintf (name, name_size, "%s", opts->suite_name);
        else
            suite_name_from_path (opts->suite, name, name_size);
        if (!realpath (opts->suite, s_suite_path))
            snprintf (s_suite_path, sizeof s_suite_path, "%s", opts->suite);
        return import_file (store, opts->suite, name, 0, suite_id);
    }

    snprintf (name, name_size, "%s", opts->suite);
    int rc = dw_store_find_suite (store, opts->suite, suite_id);
    if (rc == 1)
        fprintf (stderr, "coordinator: no suite named '%s': pass a JSONL file with --suite FILE "
                         "or import it first with 'coordinator import FILE'\n",
                 opts->suite);
    else if (rc < 0)
        fprintf (stderr, "coordinator: cannot look up suite '%s': %s\n", opts->suite,
                 dw_store_error (store));
    return rc == 0 ? 0 : -1;
}

/* --- CURVE keys ---------------------------------------------------------------------- */

typedef struct {
    char keys_dir[PATH_MAX];
    char public_path[PATH_MAX + 32];
    char secret_path[PATH_MAX + 48];
    char allow_dir[PATH_MAX + 16];
} coordinator_keys_t;

static void key_paths (const dw_options_t *opts, coordinator_keys_t *keys)
{
    snprintf (keys->keys_dir, sizeof keys->keys_dir, "%s/keys", opts->data_dir);
    snprintf (keys->public_path, sizeof keys->public_path, "%s/coordinator.cert",
              keys->keys_dir);
    snprintf (keys->secret_path, sizeof keys->secret_path, "%s_secret", keys->public_path);
    snprintf (keys->allow_dir, sizeof keys->allow_dir, "%s/workers", keys->keys_dir);
}

/* Create the coordinator's key pair and allow directory if missing. */
static int ensure_coordinator_keys (const dw_options_t *opts, coordinator_keys_t *keys, int force,
                                    int *created)
{
    key_paths (opts, keys);
    *created = 0;
    if (dw_mkdir_p (keys->allow_dir, 0755) != 0) {
        fprintf (stderr, "coordinator: cannot create %s: %s\n", keys->allow_dir,
                 strerror (errno));
        return -1;
    }
    chmod (keys->keys_dir, 0755);
    chmod (keys->allow_dir, 0755);
    if (!force && access (keys->secret_path, F_OK) == 0)
        return 0;
    char err[512];
    if (dw_curve_keygen (keys->public_path, "coordinator", "coordinator", force, err, sizeof err)
        != 0) {
        fprintf (stderr, "coordinator: cannot create the CURVE key: %s\n", err);
        return -1;
    }
    *created = 1;
    return 0;
}

/* Give local worker DIR a key pair and admit its public certificate. */
static int admit_local_worker (const coordinator_keys_t *keys, const char *dir, const char *name,
                               char *secret_path, size_t size)
{
    char public_path[PATH_MAX], err[512];
    if (snprintf (public_path, sizeof public_path, "%s/worker.cert", dir)
            >= (int) sizeof public_path
        || snprintf (secret_path, size, "%s_secret", public_path) >= (int) size) {
        fprintf (stderr, "coordinator: worker directory path too long: %s\n", dir);
        return -1;
    }
    if (access (secret_path, F_OK) != 0
        && dw_curve_keygen (public_path, "worker", name, 0, err, sizeof err) != 0) {
        fprintf (stderr, "coordinator: cannot create a key for local worker %s: %s\n", name, err);
        return -1;
    }

    /* zauth reads every visible file: write a dot file, then rename it. */
    size_t len = 0;
    char *cert = dw_read_file (public_path, DW_CURVE_CERT_FILE_MAX, &len);
    char staged[PATH_MAX * 2], admitted[PATH_MAX * 2];
    snprintf (staged, sizeof staged, "%s/.%s.cert", keys->allow_dir, name);
    snprintf (admitted, sizeof admitted, "%s/%s.cert", keys->allow_dir, name);
    if (!cert || dw_write_file_atomic (staged, cert, len, 0644) != 0
        || rename (staged, admitted) != 0) {
        fprintf (stderr, "coordinator: cannot admit local worker %s: %s\n", name, strerror (errno));
        free (cert);
        return -1;
    }
    free (cert);
    return 0;
}

int dw_coordinator_keygen (const dw_options_t *opts)
{
    coordinator_keys_t keys;
    int created = 0;
    if (ensure_coordinator_keys (opts, &keys, opts->force, &created) != 0)
        return DW_EXIT_ERROR;
    char public_key[DW_CURVE_KEY_TEXT_SIZE], err[512];
    if (dw_curve_load_public (keys.public_path, public_key, err, sizeof err) != 0) {
        fprintf (stderr, "coordinator: %s\n", err);
        return DW_EXIT_ERROR;
    }
    printf ("%s %s\n", created ? "created" : "kept the existing key", keys.public_path);
    printf ("coordinator public key: %s\n", public_key);
    printf ("give workers: --server-key %s (copy the file), or --server-key '%s'\n",
            keys.public_path, public_key);
    printf ("admit a worker: copy its worker.cert into %s/\n", keys.allow_dir);
    return DW_EXIT_OK;
}

/* --- scripted model server ------------------------------------------------------------ */

typedef struct {
    pid_t pid;
    char url[64];
} model_server_t;

/* Start the bundled scripted Messages-API server on loopback for SUITE_PATH
 * and read the port it picked. */
static int start_model_server (const char *suite_path, const char *log_dir, model_server_t *server)
{
    char path[PATH_MAX];
    snprintf (path, sizeof path, "%s/driftwatch-modelserver", dw_self_dir ());
    if (access (path, X_OK) != 0) {
        fprintf (stderr, "coordinator: the scripted model server %s is missing; build it, or set "
                         "ANTHROPIC_API_KEY to use the real API\n",
                 path);
        return -1;
    }
    char log_path[PATH_MAX + 32];
    snprintf (log_path, sizeof log_path, "%s/modelserver.log", log_dir);

    int fds[2];
    if (pipe (fds) != 0)
        return -1;
    pid_t pid = fork ();
    if (pid < 0) {
        close (fds[0]);
        close (fds[1]);
        return -1;
    }
    if (pid == 0) {
        dup2 (fds[1], STDOUT_FILENO);
        int log = open (log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (log >= 0)
            dup2 (log, STDERR_FILENO);
        close (fds[0]);
        char *argv[] = { path, "--port", "0", "--suite", (char *) suite_path, NULL };
        execv (path, argv);
        _exit (127);
    }
    close (fds[1]);

    /* The server prints "listening port=N" once it accepts connections. */
    FILE *out = fdopen (fds[0], "r");
    char line[256];
    unsigned port = 0;
    while (out && fgets (line, sizeof line, out))
        if (sscanf (line, "listening port=%u", &port) == 1)
            break;
    if (out)
        fclose (out);
    if (port == 0) {
        fprintf (stderr, "coordinator: the scripted model server did not start; see %s\n",
                 log_path);
        kill (pid, SIGTERM);
        waitpid (pid, NULL, 0);
        return -1;
    }
    server->pid = pid;
    snprintf (server->url, sizeof server->url, "http://127.0.0.1:%u", port);
    printf ("no ANTHROPIC_API_KEY: local workers use the scripted model server at %s\n",
            server->url);
    return 0;
}

static void stop_model_server (model_server_t *server)
{
    if (server->pid <= 0)
        return;
    kill (server->pid, SIGTERM);
    waitpid (server->pid, NULL, 0);
    server->pid = 0;
}

/* --- local workers --------------------------------------------------------------------- */

typedef struct {
    pid_t pids[64];
    int count;
} local_workers_t;

static int start_local_workers (const dw_options_t *opts, const char *endpoint,
                                const coordinator_keys_t *keys, const char *upstream,
                                const char *api_key_file, local_workers_t *workers)
{
    char worker_path[PATH_MAX];
    snprintf (worker_path, sizeof worker_path, "%s/worker", dw_self_dir ());
    if (access (worker_path, X_OK) != 0) {
        fprintf (stderr, "coordinator: worker program not found next to the coordinator (%s); "
                         "build or install both\n",
                 worker_path);
        return -1;
    }
    char logs[PATH_MAX];
    snprintf (logs, sizeof logs, "%s/logs", opts->data_dir);
    dw_mkdir_p (logs, 0755);

    for (int i = 0; i < opts->local_workers; i++) {
        char id[64], dir[PATH_MAX], log_path[PATH_MAX + 32], hb[16];
        char host[64] = "local";
        gethostname (host, sizeof host - 1);
        snprintf (id, sizeof id, "%.40s-local-%d", host, i + 1);
        snprintf (dir, sizeof dir, "%s/workers/local-%d", opts->data_dir, i + 1);
        snprintf (log_path, sizeof log_path, "%s/worker-%d.log", logs, i + 1);
        snprintf (hb, sizeof hb, "%d", opts->heartbeat_ms);

        /* Sandboxed runs switch to an unprivileged user, which must be able to
         * traverse (not list) the directories down to each workspace. */
        char workers_dir[PATH_MAX];
        snprintf (workers_dir, sizeof workers_dir, "%s/workers", opts->data_dir);
        dw_mkdir_p (dir, 0711);
        chmod (opts->data_dir, 0711);
        chmod (workers_dir, 0711);
        chmod (dir, 0711);

        char secret[PATH_MAX + 32];
        if (!opts->insecure) {
            if (dw_mkdir_p (dir, 0711) != 0
                || admit_local_worker (keys, dir, id, secret, sizeof secret) != 0)
                return -1;
        }
        char *argv[32] = { worker_path, "--coordinator", (char *) endpoint, "--slots", "1",
                           "--data-dir", dir, "--id", id, "--heartbeat-ms", hb,
                           "--exit-on-drain" };
        int argc = 12;
        if (opts->insecure)
            argv[argc++] = "--insecure";
        else {
            argv[argc++] = "--key";
            argv[argc++] = secret;
            argv[argc++] = "--server-key";
            argv[argc++] = (char *) keys->public_path;
        }
        if (upstream && *upstream) {
            argv[argc++] = "--upstream";
            argv[argc++] = (char *) upstream;
        }
        if (api_key_file) {
            argv[argc++] = "--api-key-file";
            argv[argc++] = (char *) api_key_file;
        }
        argv[argc] = NULL;

        pid_t pid = fork ();
        if (pid < 0) {
            fprintf (stderr, "coordinator: cannot start a local worker: %s\n", strerror (errno));
            return -1;
        }
        if (pid == 0) {
            /* exec at once: the parent has ZeroMQ threads that a forked child must not use. */
            int fd = open (log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
            if (fd >= 0) {
                dup2 (fd, STDOUT_FILENO);
                dup2 (fd, STDERR_FILENO);
            }
            execv (worker_path, argv);
            _exit (127);
        }
        workers->pids[workers->count++] = pid;
        dw_info ("event=local_worker_started worker=%s pid=%d log=%s", id, (int) pid, log_path);
    }
    if (opts->local_workers > 0)
        printf ("started %d local workers (logs in %s)\n", opts->local_workers, logs);
    return 0;
}

static void stop_local_workers (local_workers_t *workers, int graceful_seconds)
{
    uint64_t deadline = dw_mono_ms () + (uint64_t) graceful_seconds * 1000;
    int alive = workers->count;
    int signalled = 0;
    while (alive > 0) {
        alive = 0;
        for (int i = 0; i < workers->count; i++) {
            if (workers->pids[i] <= 0)
                continue;
            int status;
            if (waitpid (workers->pids[i], &status, WNOHANG) == workers->pids[i])
                workers->pids[i] = 0;
            else
                alive++;
        }
        if (alive == 0)
            break;
        if (dw_mono_ms () >= deadline) {
            int sig = signalled ? SIGKILL : SIGTERM;
            for (int i = 0; i < workers->count; i++)
                if (workers->pids[i] > 0)
                    kill (workers->pids[i], sig);
            signalled++;
            deadline = dw_mono_ms () + 10000;
        }
        usleep (50 * 1000);
    }
}

/* --- summary ----------------------------------------------------------------------------- */

static const char *s_outcome_names[DW_OUTCOME_COUNT] = {
    "unspecified", "resolved", "unresolved", "agent_error",
    "timeout", "infra_error", "harness_error", "cancelled",
};

/* Print the day's outcome counts and pass rate. Returns 1 if the policy
 * rejects the day (reject-day with infrastructure errors), else 0. */
static int print_summary (dw_store_t *store, int64_t run_id, const dw_options_t *opts,
                          const char *day, const char *config_hash, size_t panel_size)
{
    dw_run_counts_t counts;
    if (dw_store_run_counts (store, run_id, &counts) != 0) {
        fprintf (stderr, "coordinator: cannot read the run's results: %s\n",
                 dw_store_error (store));
        return 0;
    }
    size_t resolved = counts.final_by_outcome[DRIFTWATCH__V1__OUTCOME__OUTCOME_RESOLVED];
    size_t infra = counts.final_by_outcome[DRIFTWATCH__V1__OUTCOME__OUTCOME_INFRA_ERROR];
    size_t excluded = infra
                      + counts.final_by_outcome[DRIFTWATCH__V1__OUTCOME__OUTCOME_HARNESS_ERROR]
                      + counts.final_by_outcome[DRIFTWATCH__V1__OUTCOME__OUTCOME_CANCELLED];
    size_t valid = counts.jobs_final - excluded;
    if (strcmp (opts->infra_policy, "fail") == 0)
        valid += infra;

    printf ("\nrun %s  (run id %" PRId64 ", config %.12s, track %s)\n", day, run_id, config_hash,
            opts->track);
    printf ("  jobs: %zu (%zu tasks x %d repeats), final %zu, attempts %zu, superseded %zu\n",
            counts.jobs_total, panel_size, opts->repeats, counts.jobs_final, counts.attempts,
            counts.superseded);
    printf ("  outcomes:");
    for (int i = 1; i < DW_OUTCOME_COUNT; i++)
        printf ("%s %s %zu", i == 1 ? "" : ",", s_outcome_names[i], counts.final_by_outcome[i]);
    printf ("\n");

    /* The CLI version each attempt saw before and after it ran: more than one
     * means the agent changed during the day. */
    char run_text[32];
    snprintf (run_text, sizeof run_text, "%" PRId64, run_id);
    const char *params[1] = { run_text };
    PGresult *versions = PQexecParams (
        dw_store_conn (store),
        "SELECT DISTINCT v FROM (SELECT r.cli_version_before AS v FROM results r JOIN jobs j "
        "ON j.id = r.job_id WHERE j.run_id = $1::bigint UNION ALL SELECT r.cli_version_after "
        "FROM results r JOIN jobs j ON j.id = r.job_id WHERE j.run_id = $1::bigint) s "
        "WHERE v IS NOT NULL AND v <> '' ORDER BY v",
        1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus (versions) == PGRES_TUPLES_OK && PQntuples (versions) > 0) {
        printf ("  agent CLI version%s:", PQntuples (versions) > 1 ? "s" : "");
        for (int i = 0; i < PQntuples (versions); i++)
            printf (" %s", PQgetvalue (versions, i, 0));
        printf ("%s\n", PQntuples (versions) > 1
                             ? "  (CHANGED during the day: results mix CLI versions)"
                             : "");
    }
    PQclear (versions);

    /* Name the causes of infrastructure errors, so the fix is visible here. */
    if (infra > 0) {
        PGresult *causes = PQexecParams (
            dw_store_conn (store),
            "SELECT coalesce(r.outcome_reason, ''), count(*), min(left(r.detail, 160)) "
            "FROM jobs j JOIN results r ON r.attempt_id = j.final_attempt_id "
            "WHERE j.run_id = $1::bigint AND j.final_outcome = 'infra_error' "
            "GROUP BY 1 ORDER BY 2 DESC LIMIT 5",
            1, NULL, params, NULL, NULL, 0);
        for (int i = 0; PQresultStatus (causes) == PGRES_TUPLES_OK && i < PQntuples (causes); i++)
            printf ("  infrastructure error %s x%s: %s\n", PQgetvalue (causes, i, 0),
                    PQgetvalue (causes, i, 1), PQgetvalue (causes, i, 2));
        PQclear (causes);
    }

    if (strcmp (opts->infra_policy, "reject-day") == 0 && infra > 0) {
        printf ("  day rejected: %zu infrastructure errors (policy reject-day); no pass rate\n",
                infra);
        return 1;
    }
    if (valid == 0) {
        printf ("  pass rate: no valid results\n");
        return 0;
    }
    double p, lo, hi;
    dw_stats_wilson ((long) resolved, (long) valid, 1.959964, &p, &lo, &hi);
    printf ("  pass rate: %.1f%% (%zu/%zu), 95%% Wilson interval %.1f%%-%.1f%%\n", 100.0 * p,
            resolved, valid, 100.0 * lo, 100.0 * hi);
    if (strcmp (opts->infra_policy, "fail") == 0)
        printf ("  infrastructure errors counted as failures: %zu (policy fail)\n", infra);
    else
        printf ("  infrastructure errors excluded from the pass rate: %zu (policy exclude)\n",
                excluded);
    return 0;
}

/* --- run --------------------------------------------------------------------------------- */

static void build_agent_config (const dw_options_t *opts, Driftwatch__V1__AgentConfig *agent,
                                Driftwatch__V1__Limits *limits)
{
    driftwatch__v1__agent_config__init (agent);
    agent->kind = (char *) opts->agent_kind;
    agent->command = (char *) opts->agent_command;
    agent->model = (char *) opts->model;
    agent->max_turns = (uint32_t) opts->max_turns;
    /* A pinned CLI version is part of the configuration: a newer CLI is a
     * new configuration (and a new detector regime), not an accident. */
    agent->cli_version = strcmp (opts->agent_kind, "claude-code") == 0
                             ? (char *) opts->cli_version
                             : "";

    driftwatch__v1__limits__init (limits);
    limits->wall_seconds = (uint32_t) opts->wall_seconds;
    limits->grade_wall_seconds = (uint32_t) opts->grade_seconds;
    limits->memory_bytes = 4ull << 30;
    limits->max_processes = 512;
    limits->workspace_bytes = 2ull << 30;
    limits->output_bytes = 64ull << 20;
}

static int run_detector (database_t *db, const dw_options_t *opts, const char *day)
{
    char *argv[16] = { "detect", "--track", (char *) opts->track, "--date", (char *) day };
    int argc = 5;
    if (opts->baseline_days) {
        argv[argc++] = "--baseline-days";
        argv[argc++] = (char *) opts->baseline_days;
    }
    if (opts->baseline_min_runs) {
        argv[argc++] = "--baseline-min-runs";
        argv[argc++] = (char *) opts->baseline_min_runs;
    }
    argv[argc] = NULL;
    printf ("\n");
    fflush (stdout);
    return dw_detector_command (dw_store_conn (db->store), argc, argv);
}

int dw_coordinator_run (const dw_options_t *opts)
{
    char day[11], today[11], tomorrow[11];
    dw_today (today);
    time_t next = time (NULL) + 24 * 3600;
    struct tm next_tm;
    localtime_r (&next, &next_tm);
    strftime (tomorrow, sizeof tomorrow, "%Y-%m-%d", &next_tm);
    if (strcmp (opts->date, "today") == 0)
        snprintf (day, sizeof day, "%s", today);
    else if (dw_parse_day (opts->date) == 0)
        snprintf (day, sizeof day, "%s", opts->date);
    else {
        fprintf (stderr, "coordinator: invalid --date '%s': not an existing day; use today or "
                         "YYYY-MM-DD\n",
                 opts->date);
        return DW_EXIT_USAGE;
    }
    /* A day far in the future or past is a typo that would enter the
     * detector's series; simulations use recent past days. */
    if (strcmp (day, tomorrow) > 0 || strcmp (day, "2000-01-01") < 0) {
        fprintf (stderr, "coordinator: invalid --date %s: use a day from 2000-01-01 to %s\n",
                 day, tomorrow);
        return DW_EXIT_USAGE;
    }

    database_t db;
    if (open_database (opts, &db) != 0)
        return DW_EXIT_ERROR;

    int exit_code = DW_EXIT_ERROR;
    char suite_name[256];
    int64_t suite_id = 0, run_id = 0;
    dw_store_task_ref_t *tasks = NULL;
    size_t ntasks = 0, *selected = NULL, count = 0;
    int64_t *task_ids = NULL;
    char *config_json = NULL;
    dw_broker_t *broker = NULL;
    local_workers_t workers = { .count = 0 };
    model_server_t model_server = { .pid = 0 };
    char model_key_path[PATH_MAX + 32] = "";
    char err[1024];

    if (resolve_suite (opts, db.store, &suite_id, suite_name, sizeof suite_name) != 0)
        goto cleanup;
    if (dw_broker_stop_requested ()) {
        printf ("stopped before the run started\n");
        exit_code = DW_EXIT_INTERRUPTED;
        goto cleanup;
    }
    if (dw_store_suite_tasks (db.store, suite_id, &tasks, &ntasks) != 0) {
        fprintf (stderr, "coordinator: cannot list the suite's tasks: %s\n",
                 dw_store_error (db.store));
        goto cleanup;
    }
    if (dw_plan_select_panel (tasks, ntasks, opts->panel, "driftwatch-panel-v1", &selected,
                              &count, err, sizeof err)
        != 0) {
        fprintf (stderr, "coordinator: %s\n", err);
        exit_code = DW_EXIT_USAGE;
        goto cleanup;
    }

    Driftwatch__V1__AgentConfig agent;
    Driftwatch__V1__Limits limits;
    build_agent_config (opts, &agent, &limits);
    dw_plan_config_t plan = {
        .suite_id = suite_id,
        .suite_name = suite_name,
        .track = opts->track,
        .panel_seed = "driftwatch-panel-v1",
        .repeats = opts->repeats,
        .agent = &agent,
        .limits = &limits,
        .infra_policy = opts->infra_policy,
    };
    char config_hash[41];
    config_json = dw_plan_config_json (&plan, tasks, selected, count, config_hash);
    agent.config_hash = config_hash;

    int resumed = 0;
    if (dw_store_open_run (db.store, day, config_hash, config_json, suite_id, &run_id, &resumed)
        != 0) {
        fprintf (stderr, "coordinator: cannot create the run: %s\n", dw_store_error (db.store));
        goto cleanup;
    }
    task_ids = calloc (count, sizeof *task_ids);
    for (size_t i = 0; i < count; i++)
        task_ids[i] = tasks[selected[i]].task_id;
    size_t inserted = 0;
    if (dw_store_add_jobs (db.store, run_id, task_ids, count, opts->repeats, &inserted) != 0) {
        fprintf (stderr, "coordinator: cannot create the run's jobs: %s\n",
                 dw_store_error (db.store));
        goto cleanup;
    }
    printf ("%s run %" PRId64 " for %s: suite %s, %zu tasks x %d repeats, %zu new jobs\n",
            resumed ? "resuming" : "starting", run_id, day, suite_name, count, opts->repeats,
            inserted);
    fflush (stdout);

    /* A finished day needs no workers: report it again and stop. */
    dw_run_counts_t counts;
    if (dw_store_run_counts (db.store, run_id, &counts) == 0 && counts.jobs_total > 0
        && counts.jobs_final == counts.jobs_total) {
        printf ("every job of run %" PRId64 " is already final\n", run_id);
        int rejected = print_summary (db.store, run_id, opts, day, config_hash, count);
        dw_store_set_run_status (db.store, run_id, rejected ? "rejected" : "complete");
        exit_code = run_detector (&db, opts, day);
        goto cleanup;
    }
    dw_store_set_run_status (db.store, run_id, "running");

    coordinator_keys_t keys;
    int keys_created = 0;
    memset (&keys, 0, sizeof keys);
    if (!opts->insecure && ensure_coordinator_keys (opts, &keys, 0, &keys_created) != 0)
        goto cleanup;
    if (keys_created)
        printf ("created the coordinator's CURVE key %s\n", keys.public_path);

    char bind[256];
    if (opts->bind)
        snprintf (bind, sizeof bind, "%s", opts->bind);
    else
        snprintf (bind, sizeof bind, "%s",
                  opts->local_workers > 0 ? "tcp://127.0.0.1:*" : "tcp://0.0.0.0:7555");
    dw_broker_config_t broker_config = {
        .bind = bind,
        .run_id = run_id,
        .day = day,
        .config_hash = config_hash,
        .agent = &agent,
        .limits = &limits,
        .heartbeat_ms = (uint32_t) opts->heartbeat_ms,
        .liveness = 5,
        .max_attempts = opts->max_attempts,
        .progress_seconds = 10,
        .stop_grace_seconds = 30,
        .curve_secret_path = keys.secret_path,
        .curve_allow_dir = keys.allow_dir,
        .insecure = opts->insecure,
    };
    broker = dw_broker_new (db.store, &broker_config, err, sizeof err);
    if (!broker) {
        fprintf (stderr, "coordinator: %s\n", err);
        goto cleanup;
    }
    if (opts->local_workers == 0)
        printf ("waiting for workers on %s\n", dw_broker_endpoint (broker));
    const char *upstream = opts->upstream;
    int no_key = !getenv ("ANTHROPIC_API_KEY") || !*getenv ("ANTHROPIC_API_KEY");
    if (!upstream && opts->local_workers > 0 && strcmp (opts->agent_kind, "claude-code") == 0
        && no_key) {
        if (!s_suite_path[0]) {
            fprintf (stderr, "coordinator: without ANTHROPIC_API_KEY the scripted model server "
                             "needs the suite file: pass --suite FILE\n");
            goto cleanup;
        }
        char logs[PATH_MAX];
        snprintf (logs, sizeof logs, "%s/logs", opts->data_dir);
        dw_mkdir_p (logs, 0755);
        if (start_model_server (s_suite_path, logs, &model_server) != 0)
            goto cleanup;
        upstream = model_server.url;

        /* The scripted server accepts any key; this one is not a secret. */
        snprintf (model_key_path, sizeof model_key_path, "%s/keys/scripted-model.key",
                  opts->data_dir);
        const char *placeholder = "scripted-model-server-key\n";
        if (dw_write_file_atomic (model_key_path, placeholder, strlen (placeholder), 0600) != 0) {
            fprintf (stderr, "coordinator: cannot write %s: %s\n", model_key_path,
                     strerror (errno));
            goto cleanup;
        }
    }
    if (start_local_workers (opts, dw_broker_endpoint (broker), &keys, upstream,
                             model_key_path[0] ? model_key_path : NULL, &workers)
        != 0)
        goto cleanup;

    dw_broker_status_t status = dw_broker_run (broker);
    if (status == DW_BROKER_COMPLETE) {
        int rejected = print_summary (db.store, run_id, opts, day, config_hash, count);
        dw_store_set_run_status (db.store, run_id, rejected ? "rejected" : "complete");
        stop_local_workers (&workers, LOCAL_WORKER_EXIT_SECONDS);
        exit_code = run_detector (&db, opts, day);
    }
    else if (status == DW_BROKER_HARNESS_FAILURE) {
        fprintf (stderr, "coordinator: every worker reported a broken agent harness; the day is "
                         "marked as a harness failure, not as failed tasks (see the worker logs)\n");
        dw_store_set_run_status (db.store, run_id, "harness_failure");
        exit_code = DW_EXIT_HARNESS_FAILURE;
    }
    else if (status == DW_BROKER_STOPPED) {
        printf ("stopped; run the same command again to resume run %" PRId64 "\n", run_id);
        exit_code = DW_EXIT_INTERRUPTED;
    }

cleanup:
    stop_local_workers (&workers, 0);
    stop_model_server (&model_server);
    dw_broker_destroy (&broker);
    free (config_json);
    free (task_ids);
    free (selected);
    dw_store_task_refs_free (&tasks, ntasks);
    close_database (&db);
    return exit_code;
}

/* --- other commands ------------------------------------------------------------------------ */

int dw_coordinator_import (const dw_options_t *opts, const char *path)
{
    /* Check the file before starting or connecting to a database. */
    char err[1024];
    dw_suite_t *suite = dw_suite_load (path, err, sizeof err);
    if (!suite) {
        fprintf (stderr, "coordinator: invalid suite: %s\n", err);
        return DW_EXIT_ERROR;
    }
    dw_suite_destroy (&suite);

    database_t db;
    if (open_database (opts, &db) != 0)
        return DW_EXIT_ERROR;
    char name[256];
    if (opts->suite_name)
        snprintf (name, sizeof name, "%s", opts->suite_name);
    else
        suite_name_from_path (path, name, sizeof name);
    if (!name[0] || strcmp (name, "demo") == 0) {
        fprintf (stderr, "coordinator: invalid suite name '%s': \"demo\" is the bundled demo "
                         "suite and a name cannot be empty; choose another with --name\n",
                 name);
        close_database (&db);
        return DW_EXIT_USAGE;
    }
    int64_t suite_id = 0;
    int rc = import_file (db.store, path, name, 1, &suite_id);
    close_database (&db);
    return rc == 0 ? DW_EXIT_OK : DW_EXIT_ERROR;
}

int dw_coordinator_migrate (const dw_options_t *opts)
{
    database_t db;
    if (open_database (opts, &db) != 0)
        return DW_EXIT_ERROR;
    printf ("database schema version %d\n", dw_store_schema_version (db.store));
    close_database (&db);
    return DW_EXIT_OK;
}

int dw_coordinator_detect (const dw_options_t *defaults, int argc, char **argv)
{
    /* --db and --data-dir are read here; everything else is the detector's. */
    dw_options_t opts = *defaults;
    static char data_dir[PATH_MAX];
    char **rest = calloc ((size_t) argc + 1, sizeof *rest);
    int nrest = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp (argv[i], "--db") == 0 && i + 1 < argc)
            opts.db = argv[++i];
        else if (strcmp (argv[i], "--date") == 0 && i + 1 < argc
                 && strcmp (argv[i + 1], "today") == 0) {
            static char today[11];
            dw_today (today);
            rest[nrest++] = argv[i++];
            rest[nrest++] = today;
        }
        else if (strcmp (argv[i], "--data-dir") == 0 && i + 1 < argc) {
            snprintf (data_dir, sizeof data_dir, "%s", argv[++i]);
            opts.data_dir = data_dir;
        }
        else
            rest[nrest++] = argv[i];
    }
    database_t db;
    if (open_database (&opts, &db) != 0) {
        free (rest);
        return DW_EXIT_ERROR;
    }
    int rc = dw_detector_command (dw_store_conn (db.store), nrest, rest);
    close_database (&db);
    free (rest);
    return rc;
}
