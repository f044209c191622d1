/* Tests of the coordinator's PostgreSQL store against a real server (the
 * throwaway cluster of the "db" fixture). The test works in its own database
 * so it can run next to other database tests. */
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dw_store.h"
#include "dw_suite.h"
#include "dw_util.h"

#define TEST_DB "dw_test_store"
#define LEASE_MS 60000
#define MAX_ATTEMPTS 2

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

/* Stop at once: later steps depend on this one. */
#define REQUIRE(cond, ...)                                                                  \
    do {                                                                                    \
        if (!(cond)) {                                                                      \
            fprintf (stderr, "%s:%d: required check failed: %s: ", __FILE__, __LINE__,     \
                     #cond);                                                                \
            fprintf (stderr, __VA_ARGS__);                                                  \
            fputc ('\n', stderr);                                                           \
            exit (1);                                                                       \
        }                                                                                   \
    } while (0)

/* Run SQL on the store's connection and return the first value as a heap
 * string ("" for NULL, "<no row>" when there is none). */
static char *query_value (dw_store_t *store, const char *fmt, ...)
{
    char sql[1024];
    va_list args;
    va_start (args, fmt);
    vsnprintf (sql, sizeof sql, fmt, args);
    va_end (args);

    PGresult *res = PQexec (dw_store_conn (store), sql);
    ExecStatusType status = PQresultStatus (res);
    if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) {
        fprintf (stderr, "query failed: %s: %s", sql, PQresultErrorMessage (res));
        PQclear (res);
        exit (1);
    }
    char *value;
    if (status == PGRES_COMMAND_OK || PQntuples (res) == 0)
        value = strdup ("<no row>");
    else
        value = strdup (PQgetvalue (res, 0, 0));
    PQclear (res);
    return value;
}

/* query_value compared with EXPECTED; returns 1 when equal. */
static int query_is (dw_store_t *store, const char *expected, const char *sql)
{
    char *value = query_value (store, "%s", sql);
    int same = strcmp (value, expected) == 0;
    if (!same)
        fprintf (stderr, "  %s -> '%s', expected '%s'\n", sql, value, expected);
    free (value);
    return same;
}

static void ignore_notice (void *arg, const char *message)
{
    (void) arg;
    (void) message;
}

/* Drop and create database NAME on the fixture's server. */
static void recreate_database (const char *name)
{
    PGconn *conn = PQconnectdb ("");
    REQUIRE (PQstatus (conn) == CONNECTION_OK, "connect to the fixture: %s",
             PQerrorMessage (conn));
    PQsetNoticeProcessor (conn, ignore_notice, NULL);

    char sql[256];
    snprintf (sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
    PQclear (PQexec (conn, sql));
    snprintf (sql, sizeof sql, "CREATE DATABASE %s", name);
    PGresult *res = PQexec (conn, sql);
    REQUIRE (PQresultStatus (res) == PGRES_COMMAND_OK, "create database %s: %s", name,
             PQresultErrorMessage (res));
    PQclear (res);
    PQfinish (conn);
}

static dw_store_t *connect_store (const char *database)
{
    char conninfo[128];
    snprintf (conninfo, sizeof conninfo, "dbname=%s", database);
    char err[512];
    dw_store_t *store = dw_store_connect (conninfo, err, sizeof err);
    REQUIRE (store, "dw_store_connect: %s", err);
    return store;
}

/* Two coordinators migrating one empty database at once: the advisory lock
 * makes one apply every migration and the other none. */
static void test_concurrent_migrate (void)
{
    recreate_database (TEST_DB "_race");

    pid_t child = fork ();
    REQUIRE (child >= 0, "fork");
    if (child == 0) {
        dw_store_t *store = connect_store (TEST_DB "_race");
        int applied = dw_store_migrate (store);
        dw_store_destroy (&store);
        _exit (applied < 0 ? 255 : applied);
    }
    dw_store_t *store = connect_store (TEST_DB "_race");
    int applied = dw_store_migrate (store);
    int status = 0;
    waitpid (child, &status, 0);
    int child_applied = WIFEXITED (status) ? WEXITSTATUS (status) : 255;

    CHECK (applied >= 0, "parent migrate: %s", dw_store_error (store));
    CHECK (child_applied != 255, "child migrate succeeded");
    int version = dw_store_schema_version (store);
    CHECK (applied + child_applied == version, "migrations applied once in total: %d + %d, "
           "schema version %d", applied, child_applied, version);
    dw_store_destroy (&store);
}

static void write_file (const char *path, const char *text)
{
    FILE *f = fopen (path, "w");
    REQUIRE (f, "cannot write %s", path);
    fputs (text, f);
    fclose (f);
}

/* Three tasks: Python-literal lists, a relative repo_url and fields that
 * driftwatch does not interpret. */
static const char *const s_suite_text =
    "{\"instance_id\": \"t-alpha\", \"repo\": \"acme/alpha\", \"base_commit\": \"abc123\","
    " \"repo_url\": \"repos/alpha\", \"problem_statement\": \"Fix the parser\","
    " \"repo_language\": \"c\", \"fail_to_pass\": \"['test_a', \\\"test_b\\\"]\","
    " \"pass_to_pass\": [\"test_c\"], \"selected_test_files_to_run\": [\"tests/a.c\"],"
    " \"test_cmd\": \"make check\", \"test_format\": \"tap\", \"stub_solve_rate\": 0.5,"
    " \"dockerhub_tag\": \"x:1\"}\n"
    "{\"instance_id\": \"t-beta\", \"repo\": \"acme/beta\", \"base_commit\": \"def456\"}\n"
    "{\"instance_id\": \"t-gamma\", \"repo\": \"acme/gamma\", \"base_commit\": \"0a0b0c\","
    " \"repo_language\": \"python\"}\n";

static Driftwatch__V1__JobResult make_result (const char *attempt_id,
                                              Driftwatch__V1__Outcome outcome)
{
    Driftwatch__V1__JobResult r;
    driftwatch__v1__job_result__init (&r);
    r.attempt_id = (char *) attempt_id;
    r.outcome = outcome;
    r.outcome_reason = (char *) "test";
    return r;
}

static dw_store_disposition_t record (dw_store_t *store, const char *attempt_id,
                                      Driftwatch__V1__Outcome outcome, const char *worker)
{
    Driftwatch__V1__JobResult r = make_result (attempt_id, outcome);
    dw_store_disposition_t disposition = DW_STORE_STORED;
    int rc = dw_store_record_result (store, &r, worker, MAX_ATTEMPTS, &disposition);
    CHECK (rc == 0, "record_result attempt %s: %s", attempt_id, dw_store_error (store));
    return disposition;
}

static void lease (dw_store_t *store, int64_t job, const char *worker, uint32_t lease_ms,
                   char id[DW_ATTEMPT_ID_MAX], int expected_number)
{
    int number = 0;
    int rc = dw_store_lease_attempt (store, job, worker, lease_ms, id, &number);
    REQUIRE (rc == 0, "lease job %lld: rc %d %s", (long long) job, rc, dw_store_error (store));
    CHECK (number == expected_number, "job %lld attempt number %d, expected %d",
           (long long) job, number, expected_number);
}

static void test_migrations (dw_store_t *store)
{
    CHECK (dw_store_schema_version (store) == 0, "empty database has schema version 0");

    int applied = dw_store_migrate (store);
    CHECK (applied >= 1, "first migrate applies the migrations, got %d: %s", applied,
           dw_store_error (store));
    int version = dw_store_schema_version (store);
    CHECK (version >= 1 && version == applied, "schema version %d after %d migrations", version,
           applied);
    CHECK (dw_store_migrate (store) == 0, "second migrate applies nothing: %s",
           dw_store_error (store));
    CHECK (query_is (store, "t", "SELECT count(*) > 0 FROM schema_migrations WHERE name = 'core'"),
           "migration 1 is recorded as 'core'");

    free (query_value (store, "INSERT INTO schema_migrations (version, name) "
                              "VALUES (9999, 'future')"));
    CHECK (dw_store_migrate (store) == -1, "migrate refuses a newer database");
    CHECK (strstr (dw_store_error (store), "database schema version 9999 is newer than this "
                                          "coordinator supports") != NULL,
           "error names the versions: %s", dw_store_error (store));
    free (query_value (store, "DELETE FROM schema_migrations WHERE version = 9999"));
    CHECK (dw_store_migrate (store) == 0, "migrate works again after the newer row is gone");
}

static int64_t test_import (dw_store_t *store, const char *dir, dw_suite_t **suite_out)
{
    char path[512];
    snprintf (path, sizeof path, "%s/suite.jsonl", dir);
    write_file (path, s_suite_text);

    char err[512];
    dw_suite_t *suite = dw_suite_load (path, err, sizeof err);
    REQUIRE (suite, "suite loads: %s", err);

    int64_t first = 0;
    int already = -1;
    REQUIRE (dw_store_import_suite (store, "unit", suite, &first, &already) == 0,
             "first import: %s", dw_store_error (store));
    CHECK (already == 0, "first import is new");

    int64_t second = 0;
    REQUIRE (dw_store_import_suite (store, "unit", suite, &second, &already) == 0,
             "second import: %s", dw_store_error (store));
    CHECK (already == 1, "second import finds the stored suite");
    CHECK (first == second, "same suite id %lld and %lld", (long long) first, (long long) second);
    CHECK (query_is (store, "1", "SELECT count(*) FROM suites"), "one suite row");
    CHECK (query_is (store, "3", "SELECT count(*) FROM tasks"), "three task rows");

    int64_t found = 0;
    CHECK (dw_store_find_suite (store, "unit", &found) == 0 && found == first,
           "find_suite returns the suite");
    CHECK (dw_store_find_suite (store, "nosuch", &found) == 1, "unknown suite name is not found");

    *suite_out = suite;
    return first;
}

static void test_task_spec (dw_store_t *store, int64_t task_id, const char *dir)
{
    Driftwatch__V1__TaskSpec *spec = dw_store_task_spec (store, task_id);
    REQUIRE (spec, "task_spec: %s", dw_store_error (store));

    char repo_url[600];
    snprintf (repo_url, sizeof repo_url, "%s/repos/alpha", dir);
    CHECK (strcmp (spec->instance_id, "t-alpha") == 0, "instance_id %s", spec->instance_id);
    CHECK (strcmp (spec->repo, "acme/alpha") == 0, "repo %s", spec->repo);
    CHECK (strcmp (spec->repo_url, repo_url) == 0, "repo_url resolved: %s, expected %s",
           spec->repo_url, repo_url);
    CHECK (strcmp (spec->base_commit, "abc123") == 0, "base_commit %s", spec->base_commit);
    CHECK (strcmp (spec->problem_statement, "Fix the parser") == 0, "problem_statement");
    CHECK (strcmp (spec->requirements, "") == 0, "absent requirements are empty");
    CHECK (strcmp (spec->repo_language, "c") == 0, "repo_language %s", spec->repo_language);
    CHECK (strcmp (spec->test_cmd, "make check") == 0, "test_cmd %s", spec->test_cmd);
    CHECK (strcmp (spec->test_format, "tap") == 0, "test_format %s", spec->test_format);
    CHECK (spec->n_fail_to_pass == 2, "two fail_to_pass tests, got %zu", spec->n_fail_to_pass);
    if (spec->n_fail_to_pass == 2)
        CHECK (strcmp (spec->fail_to_pass[0], "test_a") == 0
                   && strcmp (spec->fail_to_pass[1], "test_b") == 0,
               "fail_to_pass items in order");
    CHECK (spec->n_pass_to_pass == 1 && strcmp (spec->pass_to_pass[0], "test_c") == 0,
           "pass_to_pass round trip");
    CHECK (spec->n_selected_test_files == 1
               && strcmp (spec->selected_test_files[0], "tests/a.c") == 0,
           "selected_test_files round trip");
    CHECK (strstr (spec->extra_json, "\"stub_solve_rate\":0.5") != NULL
               && strstr (spec->extra_json, "\"dockerhub_tag\":\"x:1\"") != NULL,
           "extra_json keeps the uninterpreted fields: %s", spec->extra_json);
    CHECK (strstr (spec->extra_json, "instance_id") == NULL,
           "extra_json leaves out known fields: %s", spec->extra_json);

    /* The protobuf must pack: every field is a valid string. */
    size_t packed = driftwatch__v1__task_spec__get_packed_size (spec);
    CHECK (packed > 0, "task spec packs");
    dw_store_task_spec_free (&spec);
    CHECK (spec == NULL, "free nulls the pointer");

    CHECK (dw_store_task_spec (store, 999999) == NULL, "unknown task id yields NULL");
}

static void test_events (dw_store_t *store, const char *attempt_id)
{
    static const char valid_json[] = "{\"type\":\"assistant\",\"n\":1}";
    static const char not_json[] = "plain text line";
    static const char nul_json[] = "{\"text\":\"a\\u0000b\"}";

    Driftwatch__V1__JobEvent events[4];
    Driftwatch__V1__JobEvent *ptrs[4];
    const char *payloads[4] = { valid_json, not_json, nul_json, valid_json };
    const uint64_t seqs[4] = { 1, 2, 4, 3 };
    for (int i = 0; i < 4; i++) {
        driftwatch__v1__job_event__init (&events[i]);
        events[i].seq = seqs[i];
        events[i].time_ms = 1700000000000ull + (uint64_t) i;
        events[i].kind = (char *) "line";
        events[i].payload.data = (uint8_t *) payloads[i];
        events[i].payload.len = strlen (payloads[i]);
        ptrs[i] = &events[i];
    }

    Driftwatch__V1__JobEvents batch;
    driftwatch__v1__job_events__init (&batch);
    batch.attempt_id = (char *) attempt_id;
    batch.events = ptrs;
    batch.n_events = 3;

    uint64_t through = 99;
    CHECK (dw_store_record_events (store, &batch, "w1", &through) == 0, "events 1,2,4: %s",
           dw_store_error (store));
    CHECK (through == 2, "through_seq stops before the gap at 3, got %llu",
           (unsigned long long) through);

    CHECK (dw_store_record_events (store, &batch, "w1", &through) == 0, "resend: %s",
           dw_store_error (store));
    CHECK (through == 2, "resend keeps through_seq 2, got %llu", (unsigned long long) through);

    char sql[256];
    snprintf (sql, sizeof sql, "SELECT count(*) FROM events WHERE attempt_id = '%s'", attempt_id);
    CHECK (query_is (store, "3", sql), "resend stores nothing twice");
    snprintf (sql, sizeof sql,
              "SELECT doc->>'type' FROM events WHERE attempt_id = '%s' AND seq = 1", attempt_id);
    CHECK (query_is (store, "assistant", sql), "JSON payload stored as doc");
    snprintf (sql, sizeof sql,
              "SELECT doc IS NULL FROM events WHERE attempt_id = '%s' AND seq = 2", attempt_id);
    CHECK (query_is (store, "t", sql), "non-JSON payload has no doc");
    snprintf (sql, sizeof sql,
              "SELECT doc IS NULL AND length(payload) = %zu FROM events"
              " WHERE attempt_id = '%s' AND seq = 4", strlen (nul_json), attempt_id);
    CHECK (query_is (store, "t", sql), "JSON with \\u0000 is kept as payload only");

    batch.events = &ptrs[3];
    batch.n_events = 1;
    CHECK (dw_store_record_events (store, &batch, "w1", &through) == 0, "event 3: %s",
           dw_store_error (store));
    CHECK (through == 4, "gap filled: through_seq 4, got %llu", (unsigned long long) through);

    CHECK (dw_store_record_events (store, &batch, "w2", &through) == -1,
           "events from another worker are rejected");
    batch.attempt_id = (char *) "00000000-0000-4000-8000-000000000000";
    CHECK (dw_store_record_events (store, &batch, "w1", &through) == -1,
           "events of an unknown attempt are rejected");
}

int main (void)
{
    char dir[] = "/tmp/dw-test-store-XXXXXX";
    REQUIRE (mkdtemp (dir), "mkdtemp");

    recreate_database (TEST_DB);
    dw_store_t *store = connect_store (TEST_DB);

    test_migrations (store);
    test_concurrent_migrate ();

    dw_suite_t *suite = NULL;
    int64_t suite_id = test_import (store, dir, &suite);

    dw_store_task_ref_t *tasks = NULL;
    size_t ntasks = 0;
    REQUIRE (dw_store_suite_tasks (store, suite_id, &tasks, &ntasks) == 0, "suite_tasks: %s",
             dw_store_error (store));
    REQUIRE (ntasks == 3, "three tasks, got %zu", ntasks);
    CHECK (strcmp (tasks[0].instance_id, "t-alpha") == 0
               && strcmp (tasks[2].instance_id, "t-gamma") == 0,
           "tasks ordered by instance id");
    CHECK (strcmp (tasks[2].repo_language, "python") == 0, "repo_language kept");
    test_task_spec (store, tasks[0].task_id, dir);

    /* Runs and jobs. */
    int64_t run_id = 0, again = 0;
    int resumed = -1;
    REQUIRE (dw_store_open_run (store, "2026-12-04", "cfg1", "{\"repeats\":2}", suite_id, &run_id,
                                &resumed) == 0, "open_run: %s", dw_store_error (store));
    CHECK (resumed == 0, "first open creates the run");
    REQUIRE (dw_store_open_run (store, "2026-12-04", "cfg1", "{\"repeats\":2}", suite_id, &again,
                                &resumed) == 0, "open_run again: %s", dw_store_error (store));
    CHECK (resumed == 1 && again == run_id, "second open resumes run %lld", (long long) run_id);

    int64_t task_ids[3] = { tasks[0].task_id, tasks[1].task_id, tasks[2].task_id };
    size_t inserted = 0;
    REQUIRE (dw_store_add_jobs (store, run_id, task_ids, 3, 2, &inserted) == 0, "add_jobs: %s",
             dw_store_error (store));
    CHECK (inserted == 6, "six jobs inserted, got %zu", inserted);
    REQUIRE (dw_store_add_jobs (store, run_id, task_ids, 3, 2, &inserted) == 0,
             "add_jobs again: %s", dw_store_error (store));
    CHECK (inserted == 0, "no duplicate jobs, got %zu", inserted);

    dw_store_job_ref_t jobs[10];
    size_t njobs = 0;
    REQUIRE (dw_store_pending_jobs (store, run_id, jobs, 10, &njobs) == 0, "pending_jobs: %s",
             dw_store_error (store));
    REQUIRE (njobs == 6, "six pending jobs, got %zu", njobs);
    int64_t job_a = jobs[0].job_id, job_b = jobs[1].job_id, job_c = jobs[2].job_id;
    int64_t job_d = jobs[3].job_id, job_e = jobs[4].job_id, job_f = jobs[5].job_id;
    char sql[512];

    /* Resolved at once: final. A resend is a duplicate and changes nothing. */
    char a1[DW_ATTEMPT_ID_MAX];
    lease (store, job_a, "w1", LEASE_MS, a1, 1);
    char other[DW_ATTEMPT_ID_MAX];
    int number = 0;
    CHECK (dw_store_lease_attempt (store, job_a, "w2", LEASE_MS, other, &number) == 1,
           "a job with a live attempt is not leased twice");
    CHECK (record (store, a1, DRIFTWATCH__V1__OUTCOME__OUTCOME_RESOLVED, "w1")
               == DW_STORE_STORED, "resolved result stored");
    snprintf (sql, sizeof sql, "SELECT final_outcome || ' ' || (final_attempt_id = '%s')"
                               " FROM jobs WHERE id = %lld", a1, (long long) job_a);
    CHECK (query_is (store, "resolved true", sql), "job A final resolved by a1");
    snprintf (sql, sizeof sql, "SELECT disposition FROM results WHERE attempt_id = '%s'", a1);
    CHECK (query_is (store, "final", sql), "a1 disposition final");
    CHECK (record (store, a1, DRIFTWATCH__V1__OUTCOME__OUTCOME_RESOLVED, "w1")
               == DW_STORE_DUPLICATE, "exact resend is a duplicate");
    CHECK (record (store, a1, DRIFTWATCH__V1__OUTCOME__OUTCOME_UNRESOLVED, "w1")
               == DW_STORE_DUPLICATE, "another result for a stored attempt is a duplicate");
    snprintf (sql, sizeof sql, "SELECT count(*) FROM results WHERE job_id = %lld",
              (long long) job_a);
    CHECK (query_is (store, "1", sql), "duplicates store no row");
    CHECK (dw_store_lease_attempt (store, job_a, "w1", LEASE_MS, other, &number) == 1,
           "a final job is not leased again");

    /* Infrastructure errors retry until MAX_ATTEMPTS, then the last is final. */
    char b1[DW_ATTEMPT_ID_MAX], b2[DW_ATTEMPT_ID_MAX];
    lease (store, job_b, "w1", LEASE_MS, b1, 1);
    CHECK (record (store, b1, DRIFTWATCH__V1__OUTCOME__OUTCOME_INFRA_ERROR, "w1")
               == DW_STORE_STORED, "first infra error stored");
    snprintf (sql, sizeof sql, "SELECT disposition FROM results WHERE attempt_id = '%s'", b1);
    CHECK (query_is (store, "retried", sql), "first infra error is retried");
    snprintf (sql, sizeof sql, "SELECT final_outcome IS NULL FROM jobs WHERE id = %lld",
              (long long) job_b);
    CHECK (query_is (store, "t", sql), "job B not final after one infra error");
    lease (store, job_b, "w2", LEASE_MS, b2, 2);
    CHECK (record (store, b2, DRIFTWATCH__V1__OUTCOME__OUTCOME_INFRA_ERROR, "w2")
               == DW_STORE_STORED, "second infra error stored");
    snprintf (sql, sizeof sql, "SELECT disposition FROM results WHERE attempt_id = '%s'", b2);
    CHECK (query_is (store, "final", sql), "infra error at max attempts is final");
    snprintf (sql, sizeof sql, "SELECT final_outcome FROM jobs WHERE id = %lld",
              (long long) job_b);
    CHECK (query_is (store, "infra_error", sql), "job B final infra_error");

    /* An expired lease goes back to the queue; the late result of the
     * expired attempt arrives after the retry was final: superseded. */
    char c1[DW_ATTEMPT_ID_MAX], c2[DW_ATTEMPT_ID_MAX];
    lease (store, job_c, "w1", 1, c1, 1);
    usleep (20 * 1000);
    size_t expired = 0;
    CHECK (dw_store_expire_leases (store, run_id, MAX_ATTEMPTS, &expired) == 0,
           "expire_leases: %s", dw_store_error (store));
    CHECK (expired == 1, "one lease expired, got %zu", expired);
    snprintf (sql, sizeof sql, "SELECT state FROM attempts WHERE id = '%s'", c1);
    CHECK (query_is (store, "expired", sql), "c1 expired");
    snprintf (sql, sizeof sql, "SELECT final_outcome IS NULL FROM jobs WHERE id = %lld",
              (long long) job_c);
    CHECK (query_is (store, "t", sql), "job C not final below max attempts");
    lease (store, job_c, "w2", LEASE_MS, c2, 2);
    CHECK (record (store, c2, DRIFTWATCH__V1__OUTCOME__OUTCOME_RESOLVED, "w2")
               == DW_STORE_STORED, "c2 result stored");
    CHECK (record (store, c1, DRIFTWATCH__V1__OUTCOME__OUTCOME_UNRESOLVED, "w1")
               == DW_STORE_SUPERSEDED, "late c1 result superseded");
    snprintf (sql, sizeof sql, "SELECT final_outcome || ' ' || (final_attempt_id = '%s')"
                               " FROM jobs WHERE id = %lld", c2, (long long) job_c);
    CHECK (query_is (store, "resolved true", sql), "job C keeps c2 as its final result");

    /* Unknown attempts and attempts of another worker store nothing. */
    char d1[DW_ATTEMPT_ID_MAX];
    lease (store, job_d, "w1", LEASE_MS, d1, 1);
    CHECK (record (store, "00000000-0000-4000-8000-000000000000",
                   DRIFTWATCH__V1__OUTCOME__OUTCOME_RESOLVED, "w1") == DW_STORE_UNKNOWN_ATTEMPT,
           "nonexistent attempt is unknown");
    CHECK (record (store, "not-a-uuid", DRIFTWATCH__V1__OUTCOME__OUTCOME_RESOLVED, "w1")
               == DW_STORE_UNKNOWN_ATTEMPT, "malformed attempt id is unknown");
    CHECK (record (store, d1, DRIFTWATCH__V1__OUTCOME__OUTCOME_RESOLVED, "w2")
               == DW_STORE_UNKNOWN_ATTEMPT, "attempt of another worker is unknown");
    snprintf (sql, sizeof sql, "SELECT count(*) FROM results WHERE job_id = %lld",
              (long long) job_d);
    CHECK (query_is (store, "0", sql), "unknown attempts store nothing");

    Driftwatch__V1__JobResult bad = make_result (d1, DRIFTWATCH__V1__OUTCOME__OUTCOME_UNSPECIFIED);
    dw_store_disposition_t disposition;
    CHECK (dw_store_record_result (store, &bad, "w1", MAX_ATTEMPTS, &disposition) == -1,
           "a result without outcome is an error");

    test_events (store, d1);

    /* Renewal keeps d1 alive through the expiry sweep below. */
    char *renew[2] = { d1, (char *) "garbage" };
    CHECK (dw_store_renew_leases (store, "w1", renew, 2, LEASE_MS) == 0, "renew_leases: %s",
           dw_store_error (store));

    /* A lease that expires at max attempts makes the job final infra_error. */
    char e1[DW_ATTEMPT_ID_MAX];
    lease (store, job_e, "w1", 1, e1, 1);
    usleep (20 * 1000);
    CHECK (dw_store_expire_leases (store, run_id, 1, &expired) == 0, "expire_leases: %s",
           dw_store_error (store));
    CHECK (expired == 1, "only e1 expired, got %zu", expired);
    snprintf (sql, sizeof sql, "SELECT final_outcome || ' ' || (final_attempt_id = '%s')"
                               " FROM jobs WHERE id = %lld", e1, (long long) job_e);
    CHECK (query_is (store, "infra_error true", sql), "job E final infra_error by expiry");

    /* A returned attempt does not use up an attempt. */
    char f1[DW_ATTEMPT_ID_MAX], f2[DW_ATTEMPT_ID_MAX];
    lease (store, job_f, "w1", LEASE_MS, f1, 1);
    CHECK (dw_store_return_attempt (store, f1, "w2", "drain") == 1,
           "another worker cannot return f1");
    CHECK (dw_store_return_attempt (store, f1, "w1", "drain") == 0, "return_attempt: %s",
           dw_store_error (store));
    CHECK (dw_store_return_attempt (store, f1, "w1", "drain") == 1, "f1 is no longer live");
    snprintf (sql, sizeof sql, "SELECT attempts FROM jobs WHERE id = %lld", (long long) job_f);
    CHECK (query_is (store, "0", sql), "returned attempt is not counted");
    REQUIRE (dw_store_pending_jobs (store, run_id, jobs, 10, &njobs) == 0, "pending_jobs: %s",
             dw_store_error (store));
    CHECK (njobs == 1 && jobs[0].job_id == job_f, "only job F is pending, got %zu jobs", njobs);
    lease (store, job_f, "w2", LEASE_MS, f2, 2);

    /* Counts: A, B, C, E final; D and F leased. */
    dw_run_counts_t counts;
    REQUIRE (dw_store_run_counts (store, run_id, &counts) == 0, "run_counts: %s",
             dw_store_error (store));
    CHECK (counts.jobs_total == 6, "jobs_total %zu", counts.jobs_total);
    CHECK (counts.jobs_final == 4, "jobs_final %zu", counts.jobs_final);
    CHECK (counts.jobs_leased == 2, "jobs_leased %zu", counts.jobs_leased);
    CHECK (counts.jobs_pending == 0, "jobs_pending %zu", counts.jobs_pending);
    CHECK (counts.attempts == 9, "attempts %zu", counts.attempts);
    CHECK (counts.final_by_outcome[DRIFTWATCH__V1__OUTCOME__OUTCOME_RESOLVED] == 2,
           "two resolved, got %zu",
           counts.final_by_outcome[DRIFTWATCH__V1__OUTCOME__OUTCOME_RESOLVED]);
    CHECK (counts.final_by_outcome[DRIFTWATCH__V1__OUTCOME__OUTCOME_INFRA_ERROR] == 2,
           "two infra errors, got %zu",
           counts.final_by_outcome[DRIFTWATCH__V1__OUTCOME__OUTCOME_INFRA_ERROR]);
    CHECK (counts.final_by_outcome[0] == 0, "no unknown outcomes");
    CHECK (counts.superseded == 1, "one superseded result, got %zu", counts.superseded);

    /* Workers and run status. */
    Driftwatch__V1__Hello hello;
    driftwatch__v1__hello__init (&hello);
    hello.hostname = (char *) "host1";
    hello.slots = 2;
    char *caps[1] = { (char *) "bubblewrap" };
    hello.capabilities = caps;
    hello.n_capabilities = 1;
    CHECK (dw_store_upsert_worker (store, "w1", &hello) == 0, "upsert_worker: %s",
           dw_store_error (store));
    hello.slots = 4;
    CHECK (dw_store_upsert_worker (store, "w1", &hello) == 0, "upsert_worker again");
    CHECK (query_is (store, "4 bubblewrap",
                     "SELECT slots || ' ' || (capabilities->>0) FROM workers WHERE id = 'w1'"),
           "worker row updated");
    CHECK (dw_store_set_worker_status (store, "w1", "lost") == 0, "set_worker_status");
    CHECK (query_is (store, "lost", "SELECT status FROM workers WHERE id = 'w1'"), "worker lost");
    CHECK (dw_store_set_worker_status (store, "nobody", "lost") == 1, "unknown worker");
    CHECK (dw_store_set_worker_status (store, "w1", "bogus") == -1, "invalid worker status");
    CHECK (dw_store_set_run_status (store, run_id, "complete") == 0, "set_run_status: %s",
           dw_store_error (store));
    snprintf (sql, sizeof sql, "SELECT status || ' ' || (finished_at IS NOT NULL) FROM runs"
                               " WHERE id = %lld", (long long) run_id);
    CHECK (query_is (store, "complete true", sql), "run complete with finish time");
    CHECK (dw_store_set_run_status (store, run_id, "bogus") == -1, "invalid run status");

    /* A reconnect re-prepares the statements and the store keeps working. */
    CHECK (dw_store_reconnect (store) == 0, "reconnect: %s", dw_store_error (store));
    CHECK (dw_store_run_counts (store, run_id, &counts) == 0 && counts.jobs_total == 6,
           "queries work after reconnect");

    dw_store_task_refs_free (&tasks, ntasks);
    dw_suite_destroy (&suite);
    dw_store_destroy (&store);
    CHECK (store == NULL, "destroy nulls the pointer");
    dw_rm_rf (dir);

    if (s_failures)
        fprintf (stderr, "test_store: %d checks failed\n", s_failures);
    return s_failures ? 1 : 0;
}
