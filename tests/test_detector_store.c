/* Tests of coordinator/dw_detector_store against the PostgreSQL fixture:
 * loading a track from the core tables (infrastructure errors excluded),
 * storing daily reports, the detect command's exit codes, JSON output and
 * "new alarm only once". Works in a private schema built from the
 * migration files. */
#include <fcntl.h>
#include <libpq-fe.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dw_detector_store.h"
#include "dw_util.h"

static int failures = 0;

static void
check_true (const char *what, int condition)
{
    if (!condition) {
        fprintf (stderr, "FAIL %s\n", what);
        failures++;
    }
}

static void
exec_ok (PGconn *conn, const char *sql)
{
    PGresult *res = PQexec (conn, sql);
    ExecStatusType st = PQresultStatus (res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        fprintf (stderr, "FATAL sql failed: %s\n%s\n", PQerrorMessage (conn), sql);
        exit (1);
    }
    PQclear (res);
}

static char *
query_value (PGconn *conn, const char *sql)
{
    PGresult *res = PQexec (conn, sql);
    char *value = NULL;
    if (PQresultStatus (res) == PGRES_TUPLES_OK && PQntuples (res) == 1 && !PQgetisnull (res, 0, 0))
        value = strdup (PQgetvalue (res, 0, 0));
    else if (PQresultStatus (res) != PGRES_TUPLES_OK)
        fprintf (stderr, "query failed: %s\n%s\n", PQerrorMessage (conn), sql);
    PQclear (res);
    return value;
}

static void
apply_migration (PGconn *conn, const char *name)
{
    const char *src = getenv ("DW_SOURCE_DIR");
    char path[1024];
    snprintf (path, sizeof path, "%s/coordinator/sql/%s", src ? src : ".", name);
    size_t len;
    char *sql = dw_read_file (path, 1 << 20, &len);
    if (!sql) {
        fprintf (stderr, "FATAL cannot read %s\n", path);
        exit (1);
    }
    exec_ok (conn, sql);
    free (sql);
}

/* 30 tasks, one run a day for 30 days from 2026-01-01 on track "main":
 * tasks 0-9 always pass until day 20 and always fail from then on, tasks
 * 10-19 never pass, tasks 20-29 alternate. Day 5 has 3 infrastructure
 * errors, day 8 has 20 (a data incident). Output tokens of every task rise
 * by half from day 20. */
static void
seed_data (PGconn *conn)
{
    exec_ok (conn, "INSERT INTO suites (name, content_hash, source_path, task_count)"
                   " VALUES ('s', 'h', '/dev/null', 30)");
    exec_ok (conn, "INSERT INTO tasks (suite_id, instance_id, repo, repo_language, base_commit, spec)"
                   " SELECT 1, format('task-%s', lpad(i::text, 2, '0')), 'r', 'c', 'b', '{}'"
                   " FROM generate_series(0, 29) i ORDER BY i");
    exec_ok (conn, "INSERT INTO workers (id, hostname, slots) VALUES ('w1', 'h', 1)");
    exec_ok (conn, "INSERT INTO runs (day, track, config_hash, suite_id, config, status)"
                   " SELECT DATE '2026-01-01' + d, 'main', 'c1', 1, '{}', 'complete'"
                   " FROM generate_series(0, 29) d ORDER BY d");
    exec_ok (conn, "INSERT INTO runs (day, track, config_hash, suite_id, config, status)"
                   " SELECT DATE '2026-01-01' + d, 'other', 'c2', 1, '{}', 'complete'"
                   " FROM generate_series(0, 2) d ORDER BY d");
    exec_ok (conn,
             "INSERT INTO jobs (run_id, task_id, repeat_index, attempts, final_attempt_id, final_outcome)"
             " SELECT r.id, t.id, 0, 1, gen_random_uuid(),"
             "  CASE WHEN d = 8 AND i < 20 THEN 'infra_error'"
             "       WHEN d = 5 AND i < 3 THEN 'infra_error'"
             "       WHEN i < 10 THEN CASE WHEN d >= 20 THEN 'unresolved' ELSE 'resolved' END"
             "       WHEN i < 20 THEN 'unresolved'"
             "       ELSE CASE WHEN (i + d) % 2 = 0 THEN 'resolved' ELSE 'timeout' END END"
             " FROM runs r CROSS JOIN tasks t"
             " CROSS JOIN LATERAL (SELECT (r.day - DATE '2026-01-01') AS d, (t.id - 1)::int AS i) x"
             " ORDER BY r.id, t.id");
    exec_ok (conn, "INSERT INTO attempts (id, job_id, attempt_number, worker_id, state,"
                   " lease_expires_at) SELECT final_attempt_id, id, 1, 'w1', 'finished', now()"
                   " FROM jobs");
    exec_ok (conn,
             "INSERT INTO results (attempt_id, job_id, outcome, disposition, metrics, agent_ms, worker_id)"
             " SELECT j.final_attempt_id, j.id, j.final_outcome, 'final',"
             "  jsonb_build_object('input_tokens', 5000, 'turns', 7, 'cost_usd', 0.25,"
             "   'output_tokens', CASE WHEN x.d >= 20 THEN 1500 ELSE 1000 END,"
             "   'tool_calls', jsonb_build_object('Bash', 3, 'Edit', 2)), 60000, 'w1'"
             " FROM jobs j JOIN runs r ON r.id = j.run_id"
             " CROSS JOIN LATERAL (SELECT (r.day - DATE '2026-01-01') AS d, (j.task_id - 1)::int AS i) x");
}

/* Run the detect command with stdout captured into a string. */
static int
run_detect (PGconn *conn, char **argv, int argc, char **output)
{
    fflush (stdout);
    char path[] = "/tmp/dw-detect-out-XXXXXX";
    int fd = mkstemp (path);
    int saved = dup (STDOUT_FILENO);
    dup2 (fd, STDOUT_FILENO);
    int rc = dw_detector_command (conn, argc, argv);
    fflush (stdout);
    dup2 (saved, STDOUT_FILENO);
    close (saved);
    close (fd);
    size_t len;
    *output = dw_read_file (path, 16 << 20, &len);
    unlink (path);
    return rc;
}

static void
test_load (PGconn *conn)
{
    dw_detector_config_t config;
    dw_detector_config_defaults (&config);
    char err[512];
    dw_detector_t *det = dw_detector_new (&config, err, sizeof err);
    dw_detector_series_t *series = NULL;
    check_true ("load track", dw_detector_store_load (conn, "main", "2026-01-10", det, &series, err,
                                                      sizeof err) == 0);
    check_true ("load returns 10 days", series && series->count == 10);
    if (series && series->count == 10) {
        check_true ("day 0 has 30 valid runs", series->days[0].run_count == 30);
        check_true ("day 0 planned 30", series->days[0].planned == 30);
        check_true ("day 5 excludes 3 infra errors", series->days[5].excluded == 3
                                                       && series->days[5].run_count == 27);
        check_true ("day 8 excludes 20 infra errors", series->days[8].excluded == 20
                                                        && series->days[8].run_count == 10);
        check_true ("config hash loaded", !strcmp (series->days[0].config_hash, "c1"));
        const dw_detector_run_t *run = &series->days[0].runs[0];
        check_true ("pass of an always-solved task", run->pass == 1);
        check_true ("output tokens parsed", run->metrics[DW_METRIC_OUTPUT_TOKENS] == 1000.0);
        check_true ("tool calls summed", run->metrics[DW_METRIC_TOOL_CALLS] == 5.0);
        check_true ("runtime from agent_ms", run->metrics[DW_METRIC_RUNTIME_MS] == 60000.0);
        check_true ("day numbers consecutive", series->days[1].day == series->days[0].day + 1);
    }
    dw_detector_series_destroy (&series);
    check_true ("series destroy nulls", series == NULL);

    check_true ("load unknown track", dw_detector_store_load (conn, "nope", "2026-01-10", det,
                                                              &series, err, sizeof err) == 0);
    check_true ("unknown track has no days", series && series->count == 0);
    dw_detector_series_destroy (&series);
    dw_detector_destroy (&det);
}

static void
test_command (PGconn *conn)
{
    char *out = NULL;
    char *last[] = {"detect", "--track", "main", "--date", "2026-01-30", "--baseline-min-runs",
                    "0", "--calibration-years", "200", "--seed", "7"};
    int rc = run_detect (conn, last, 11, &out);
    check_true ("text output names the track", out && strstr (out, "track main"));
    free (out);
    check_true ("last day: alarm not new, exit 0", rc == 0);

    char *stored = query_value (conn, "SELECT count(*) FROM detector_reports WHERE track = 'main'");
    check_true ("a report stored for every day", stored && !strcmp (stored, "30"));
    free (stored);
    char *alarm_days = query_value (conn, "SELECT count(*) FROM detector_reports WHERE alarm_new");
    check_true ("exactly one day with a new alarm", alarm_days && !strcmp (alarm_days, "1"));
    free (alarm_days);
    char *alarm_day = query_value (conn, "SELECT day::text FROM detector_reports WHERE alarm_new");
    check_true ("alarm on the first changed day", alarm_day && !strcmp (alarm_day, "2026-01-21"));
    char *incident = query_value (conn, "SELECT status FROM detector_reports"
                                        " WHERE day = '2026-01-09'");
    check_true ("day with 20 infra errors is a data incident",
                incident && !strcmp (incident, "data_incident"));
    free (incident);
    char *excluded = query_value (conn, "SELECT report->'runs'->>'excluded' FROM detector_reports"
                                        " WHERE day = '2026-01-06'");
    check_true ("excluded runs stored in the report", excluded && !strcmp (excluded, "3"));
    free (excluded);
    char *top = query_value (conn, "SELECT report->'tasks'->0->>'task' FROM detector_reports"
                                   " WHERE alarm_new");
    check_true ("flip table starts with a changed task",
                top && strncmp (top, "task-0", 6) == 0 && strlen (top) == 7);
    free (top);
    char *cal = query_value (conn, "SELECT count(*) FROM detector_calibrations");
    check_true ("calibration cached", cal && !strcmp (cal, "1"));
    free (cal);

    /* The alarm day itself: exit 10, JSON output. */
    char *on_alarm[] = {"detect", "--track", "main", "--date", "2026-01-21", "--json",
                        "--baseline-min-runs", "0", "--calibration-years", "200", "--seed", "7"};
    rc = run_detect (conn, on_alarm, 12, &out);
    check_true ("alarm day exits 10", rc == DW_DETECT_EXIT_DEGRADATION);
    json_t *doc = out ? json_loads (out, 0, NULL) : NULL;
    check_true ("json output parses", doc != NULL);
    json_t *entry = json_array_get (json_object_get (doc, "tracks"), 0);
    json_t *report = json_object_get (entry, "report");
    check_true ("json track name", !strcmp (json_string_value (json_object_get (entry, "track")),
                                            "main"));
    check_true ("json report status degradation",
                !strcmp (json_string_value (json_object_get (report, "status")), "degradation"));
    check_true ("json report alarm new", json_is_true (json_object_get (report, "alarm_down_new")));
    json_t *sec = json_object_get (json_object_get (report, "secondary"), "output_tokens");
    check_true ("json secondary output tokens +50%",
                fabs (json_number_value (json_object_get (sec, "change_pct")) - 50.0) < 1e-6);
    json_decref (doc);
    free (out);

    /* Same alarm the next day is not new. */
    char *next[] = {"detect", "--track", "main", "--date", "2026-01-22", "--baseline-min-runs",
                    "0", "--calibration-years", "200", "--seed", "7"};
    rc = run_detect (conn, next, 11, &out);
    check_true ("day after the alarm exits 0", rc == DW_DETECT_EXIT_OK);
    check_true ("day after still shows degradation", out && strstr (out, "status degradation"));
    free (out);

    /* All tracks (no --track): "other" is still building its baseline. */
    char *all[] = {"detect", "--date", "2026-01-21", "--baseline-min-runs", "0",
                   "--calibration-years", "200", "--seed", "7"};
    rc = run_detect (conn, all, 9, &out);
    check_true ("all tracks exit 10", rc == DW_DETECT_EXIT_DEGRADATION);
    check_true ("all tracks lists other", out && strstr (out, "track other"));
    free (out);
    free (alarm_day);
}

static void
test_usage_errors (PGconn *conn)
{
    char *out = NULL;
    char *bad_alpha[] = {"detect", "--alpha", "2"};
    check_true ("invalid alpha exits 2", run_detect (conn, bad_alpha, 3, &out) == DW_DETECT_EXIT_USAGE);
    free (out);
    char *bad_date[] = {"detect", "--date", "2026-02-30"};
    check_true ("invalid date exits 2", run_detect (conn, bad_date, 3, &out) == DW_DETECT_EXIT_USAGE);
    free (out);
    char *unknown[] = {"detect", "--frobnicate"};
    check_true ("unknown option exits 2", run_detect (conn, unknown, 2, &out) == DW_DETECT_EXIT_USAGE);
    free (out);
    char *missing[] = {"detect", "--track"};
    check_true ("missing value exits 2", run_detect (conn, missing, 2, &out) == DW_DETECT_EXIT_USAGE);
    free (out);
    char *ok[] = {"detect"};
    check_true ("no connection exits 1", dw_detector_command (NULL, 1, ok) == DW_DETECT_EXIT_RUNTIME);
}

int
main (void)
{
    PGconn *conn = PQconnectdb ("");
    if (PQstatus (conn) != CONNECTION_OK) {
        fprintf (stderr, "FATAL cannot connect: %s\n", PQerrorMessage (conn));
        return 1;
    }
    exec_ok (conn, "SET client_min_messages TO warning");
    char schema[64];
    snprintf (schema, sizeof schema, "dw_detector_test_%d", (int) getpid ());
    char sql[512];
    snprintf (sql, sizeof sql, "DROP SCHEMA IF EXISTS %s CASCADE; CREATE SCHEMA %s;"
              " SET search_path TO %s", schema, schema, schema);
    exec_ok (conn, sql);
    apply_migration (conn, "0001_core.sql");
    apply_migration (conn, "0002_detector.sql");
    seed_data (conn);

    test_load (conn);
    test_command (conn);
    test_usage_errors (conn);

    snprintf (sql, sizeof sql, "DROP SCHEMA %s CASCADE", schema);
    exec_ok (conn, sql);
    PQfinish (conn);
    if (failures) {
        fprintf (stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf ("all detector store checks passed\n");
    return 0;
}
