/* PostgreSQL side of the regression detector: see dw_detector_store.h. */
#include "dw_detector_store.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dw_log.h"
#include "dw_util.h"

/* Tracks handled by one "detect" call. */
#define MAX_TRACKS 256

/* The newest run of each (track, day) and its jobs; results of the final
 * attempt give the metrics. */
static const char *SQL_LOAD =
    "SELECT (r.day - DATE '1970-01-01')::int, r.config_hash, t.instance_id, j.final_outcome,"
    "       res.metrics::text, res.agent_ms"
    "  FROM runs r"
    "  JOIN jobs j ON j.run_id = r.id"
    "  JOIN tasks t ON t.id = j.task_id"
    "  LEFT JOIN results res ON res.attempt_id = j.final_attempt_id"
    " WHERE r.track = $1 AND r.day <= $2::date"
    "   AND r.id = (SELECT max(r2.id) FROM runs r2 WHERE r2.track = r.track AND r2.day = r.day)"
    " ORDER BY r.day, j.id";

static const char *SQL_SAVE =
    "INSERT INTO detector_reports (track, day, config_hash, status, alarm_new, alarm_direction,"
    "                              s_down, s_up, threshold, settings, report)"
    " VALUES ($1, $2::date, $3, $4, $5::boolean, $6::int, $7::float8, $8::float8, $9::float8,"
    "         $10, $11::jsonb)"
    " ON CONFLICT (track, day) DO UPDATE SET config_hash = EXCLUDED.config_hash,"
    "   status = EXCLUDED.status, alarm_new = EXCLUDED.alarm_new,"
    "   alarm_direction = EXCLUDED.alarm_direction, s_down = EXCLUDED.s_down,"
    "   s_up = EXCLUDED.s_up, threshold = EXCLUDED.threshold, settings = EXCLUDED.settings,"
    "   report = EXCLUDED.report, computed_at = now()";

/* --- loading ---------------------------------------------------------------- */

typedef enum { OUTCOME_PASS, OUTCOME_FAIL, OUTCOME_EXCLUDED, OUTCOME_PENDING } outcome_class_t;

static outcome_class_t
s_classify (const char *outcome, int is_null)
{
    if (is_null)
        return OUTCOME_PENDING;
    if (strcmp (outcome, "resolved") == 0)
        return OUTCOME_PASS;
    if (strcmp (outcome, "unresolved") == 0 || strcmp (outcome, "agent_error") == 0
        || strcmp (outcome, "timeout") == 0)
        return OUTCOME_FAIL;
    /* infra_error, harness_error, cancelled, and any value this code does
     * not know: none of them reflects the agent's work. */
    return OUTCOME_EXCLUDED;
}

static double
s_json_number (json_t *obj, const char *key)
{
    json_t *value = json_object_get (obj, key);
    return json_is_number (value) ? json_number_value (value) : NAN;
}

/* Secondary metrics of one run from the results.metrics jsonb text. */
static void
s_parse_metrics (const char *text, const char *agent_ms, double out[DW_METRIC_COUNT])
{
    for (int m = 0; m < DW_METRIC_COUNT; m++)
        out[m] = NAN;
    if (agent_ms && *agent_ms)
        out[DW_METRIC_RUNTIME_MS] = strtod (agent_ms, NULL);
    if (!text || !*text)
        return;

    json_t *obj = json_loads (text, 0, NULL);
    if (!json_is_object (obj)) {
        json_decref (obj);
        return;
    }
    out[DW_METRIC_INPUT_TOKENS] = s_json_number (obj, "input_tokens");
    out[DW_METRIC_OUTPUT_TOKENS] = s_json_number (obj, "output_tokens");
    out[DW_METRIC_COST_USD] = s_json_number (obj, "cost_usd");
    out[DW_METRIC_TURNS] = s_json_number (obj, "turns");
    double duration = s_json_number (obj, "duration_ms");
    if (duration > 0)
        out[DW_METRIC_RUNTIME_MS] = duration;

    /* tool_calls is {"tool": count}; a plain number is accepted too. */
    json_t *tools = json_object_get (obj, "tool_calls");
    if (json_is_object (tools)) {
        double total = 0;
        const char *key;
        json_t *value;
        json_object_foreach (tools, key, value)
            if (json_is_number (value))
                total += json_number_value (value);
        out[DW_METRIC_TOOL_CALLS] = total;
    }
    else if (json_is_number (tools))
        out[DW_METRIC_TOOL_CALLS] = json_number_value (tools);
    json_decref (obj);
}

void
dw_detector_series_destroy (dw_detector_series_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dw_detector_series_t *self = *self_p;
    for (size_t i = 0; i < self->count; i++) {
        free ((void *) self->days[i].runs);
        free ((void *) self->days[i].config_hash);
    }
    free (self->days);
    free (self);
    *self_p = NULL;
}

int
dw_detector_store_load (PGconn *conn, const char *track, const char *day,
                        dw_detector_t *detector, dw_detector_series_t **series_p,
                        char *err, size_t errlen)
{
    *series_p = NULL;
    const char *params[2] = {track, day};
    PGresult *res = PQexecParams (conn, SQL_LOAD, 2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus (res) != PGRES_TUPLES_OK) {
        snprintf (err, errlen, "loading track %s failed: %s", track, PQerrorMessage (conn));
        PQclear (res);
        return -1;
    }

    int rows = PQntuples (res);
    dw_detector_series_t *series = calloc (1, sizeof *series);
    size_t day_count = 0;
    for (int i = 0; i < rows; i++)
        if (i == 0 || strcmp (PQgetvalue (res, i, 0), PQgetvalue (res, i - 1, 0)) != 0)
            day_count++;
    if (series)
        series->days = calloc (day_count ? day_count : 1, sizeof *series->days);
    if (!series || !series->days) {
        free (series);
        PQclear (res);
        snprintf (err, errlen, "out of memory loading %d jobs", rows);
        return -1;
    }

    int i = 0;
    while (i < rows) {
        int first = i;
        while (i < rows && strcmp (PQgetvalue (res, i, 0), PQgetvalue (res, first, 0)) == 0)
            i++;

        dw_detector_day_t *d = &series->days[series->count++];
        d->day = atoi (PQgetvalue (res, first, 0));
        d->config_hash = strdup (PQgetvalue (res, first, 1));
        d->planned = i - first;
        dw_detector_run_t *runs = calloc ((size_t) (i - first), sizeof *runs);
        if (!runs || !d->config_hash) {
            free (runs);
            PQclear (res);
            dw_detector_series_destroy (&series);
            snprintf (err, errlen, "out of memory loading track %s", track);
            return -1;
        }

        size_t n = 0;
        for (int row = first; row < i; row++) {
            outcome_class_t cls = s_classify (PQgetvalue (res, row, 3), PQgetisnull (res, row, 3));
            if (cls == OUTCOME_EXCLUDED)
                d->excluded++;
            if (cls != OUTCOME_PASS && cls != OUTCOME_FAIL)
                continue;
            int task = dw_detector_task_index (detector, PQgetvalue (res, row, 2));
            if (task < 0) {
                free (runs);
                PQclear (res);
                dw_detector_series_destroy (&series);
                snprintf (err, errlen, "track %s has more than %d distinct tasks", track,
                          DW_DETECTOR_MAX_TASKS);
                return -1;
            }
            runs[n].task = task;
            runs[n].pass = cls == OUTCOME_PASS;
            s_parse_metrics (PQgetisnull (res, row, 4) ? NULL : PQgetvalue (res, row, 4),
                             PQgetisnull (res, row, 5) ? NULL : PQgetvalue (res, row, 5),
                             runs[n].metrics);
            n++;
        }
        d->runs = runs;
        d->run_count = n;
    }
    PQclear (res);
    *series_p = series;
    return 0;
}

/* --- saving ----------------------------------------------------------------- */

static void
s_day_text (int day, char out[11])
{
    time_t t = (time_t) day * 86400;
    struct tm tm;
    gmtime_r (&t, &tm);
    strftime (out, 11, "%Y-%m-%d", &tm);
}

static void
s_float_text (double x, char *out, size_t len, const char **param)
{
    if (isfinite (x)) {
        snprintf (out, len, "%.17g", x);
        *param = out;
    }
    else
        *param = NULL;
}

int
dw_detector_store_save (PGconn *conn, const char *track, const char *config_hash,
                        const char *settings, const dw_detector_report_t *report,
                        char *err, size_t errlen)
{
    char day[11], direction[8], s_down[32], s_up[32], threshold[32];
    s_day_text (report->day, day);
    snprintf (direction, sizeof direction, "%d", report->alarm_direction);

    json_t *json = dw_detector_report_json (report);
    char *text = json ? json_dumps (json, JSON_COMPACT) : NULL;
    json_decref (json);
    if (!text) {
        snprintf (err, errlen, "encoding the report of %s failed", day);
        return -1;
    }

    const char *params[11];
    params[0] = track;
    params[1] = day;
    params[2] = config_hash;
    params[3] = dw_detector_status_name (report->status);
    params[4] = report->alarm_down_new || report->alarm_up_new ? "true" : "false";
    params[5] = direction;
    s_float_text (report->s_down, s_down, sizeof s_down, &params[6]);
    s_float_text (report->s_up, s_up, sizeof s_up, &params[7]);
    s_float_text (report->h_down, threshold, sizeof threshold, &params[8]);
    params[9] = settings;
    params[10] = text;

    PGresult *res = PQexecParams (conn, SQL_SAVE, 11, NULL, params, NULL, NULL, 0);
    free (text);
    if (PQresultStatus (res) != PGRES_COMMAND_OK) {
        snprintf (err, errlen, "storing the report of track %s day %s failed: %s", track, day,
                  PQerrorMessage (conn));
        PQclear (res);
        return -1;
    }
    PQclear (res);
    return 0;
}

/* --- calibration cache ------------------------------------------------------ */

static int
s_cache_lookup (void *ctx, const char *key, double *h)
{
    PGconn *conn = ctx;
    const char *params[1] = {key};
    PGresult *res = PQexecParams (conn, "SELECT threshold FROM detector_calibrations WHERE key = $1",
                                  1, NULL, params, NULL, NULL, 0);
    int found = PQresultStatus (res) == PGRES_TUPLES_OK && PQntuples (res) == 1;
    if (found)
        *h = strtod (PQgetvalue (res, 0, 0), NULL);
    else if (PQresultStatus (res) != PGRES_TUPLES_OK)
        dw_warn ("detector calibration lookup failed key=%s error=%s", key, PQerrorMessage (conn));
    PQclear (res);
    return found;
}

static void
s_cache_store (void *ctx, const char *key, double h, int years)
{
    PGconn *conn = ctx;
    char h_text[32], years_text[16];
    snprintf (h_text, sizeof h_text, "%.17g", h);
    snprintf (years_text, sizeof years_text, "%d", years);
    const char *params[3] = {key, h_text, years_text};
    PGresult *res = PQexecParams (conn,
                                  "INSERT INTO detector_calibrations (key, threshold, years)"
                                  " VALUES ($1, $2::float8, $3::int) ON CONFLICT (key) DO NOTHING",
                                  3, NULL, params, NULL, NULL, 0);
    if (PQresultStatus (res) != PGRES_COMMAND_OK)
        dw_warn ("detector calibration store failed key=%s error=%s", key, PQerrorMessage (conn));
    PQclear (res);
}

void
dw_detector_store_cache (PGconn *conn, dw_detector_cache_t *cache)
{
    cache->ctx = conn;
    cache->lookup = s_cache_lookup;
    cache->store = s_cache_store;
}

/* --- the detect command ----------------------------------------------------- */

typedef struct {
    const char *tracks[MAX_TRACKS];
    size_t track_count;
    char date[11];
    int json;
    dw_detector_config_t config;
} detect_options_t;

static void
s_usage (FILE *out)
{
    fprintf (out,
             "usage: coordinator detect [--track NAME] [--date YYYY-MM-DD] [--json] [--alpha A]\n"
             "                          [--baseline-days B] [--baseline-min-runs N]\n"
             "                          [--calibration-years N] [--seed S]\n"
             "  --track NAME            track to analyse, repeatable (default: every track)\n"
             "  --date DAY              report for this day (default: today)\n"
             "  --json                  print the reports as JSON\n"
             "  --alpha A               P(>= 1 false alarm per 365 days), both directions "
             "(default %g)\n"
             "  --baseline-days B       valid days in a regime's baseline (default %d)\n"
             "  --baseline-min-runs N   valid runs the baseline also needs (default %d)\n"
             "  --calibration-years N   simulated null years per calibration (default %d)\n"
             "  --seed S                calibration seed (default %d)\n"
             "Exit status: 0 no new alarm, 10 new degradation alarm, 11 new improvement alarm,\n"
             "12 both, 2 usage error, 1 runtime error.\n",
             DW_DETECTOR_DEFAULT_ALPHA, DW_DETECTOR_DEFAULT_BASELINE_DAYS,
             DW_DETECTOR_DEFAULT_BASELINE_MIN_RUNS, DW_DETECTOR_DEFAULT_CALIBRATION_YEARS,
             DW_DETECTOR_DEFAULT_SEED);
}

static int
s_parse_double (const char *text, double *out)
{
    char *end;
    errno = 0;
    double value = strtod (text, &end);
    if (errno || end == text || *end)
        return -1;
    *out = value;
    return 0;
}

static int
s_parse_long (const char *text, long *out)
{
    char *end;
    errno = 0;
    long value = strtol (text, &end, 10);
    if (errno || end == text || *end)
        return -1;
    *out = value;
    return 0;
}

/* Returns 0, or DW_DETECT_EXIT_USAGE after printing the problem. */
static int
s_parse_options (int argc, char **argv, detect_options_t *o)
{
    memset (o, 0, sizeof *o);
    dw_detector_config_defaults (&o->config);
    dw_today (o->date);

    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i];
        if (strcmp (opt, "--json") == 0) {
            o->json = 1;
            continue;
        }
        if (strcmp (opt, "--help") == 0 || strcmp (opt, "-h") == 0) {
            s_usage (stdout);
            return -1;
        }
        if (i + 1 >= argc) {
            fprintf (stderr, "coordinator detect: option %s needs a value\n", opt);
            s_usage (stderr);
            return DW_DETECT_EXIT_USAGE;
        }
        const char *value = argv[++i];
        double number;
        long integer;

        if (strcmp (opt, "--track") == 0) {
            if (o->track_count >= MAX_TRACKS || !*value) {
                fprintf (stderr, "coordinator detect: invalid --track '%s' (non-empty, at most "
                         "%d tracks)\n", value, MAX_TRACKS);
                return DW_DETECT_EXIT_USAGE;
            }
            o->tracks[o->track_count++] = value;
        }
        else if (strcmp (opt, "--date") == 0) {
            if (dw_parse_day (value) != 0) {
                fprintf (stderr, "coordinator detect: invalid --date '%s': use YYYY-MM-DD\n",
                         value);
                return DW_DETECT_EXIT_USAGE;
            }
            snprintf (o->date, sizeof o->date, "%s", value);
        }
        else if (strcmp (opt, "--alpha") == 0) {
            if (s_parse_double (value, &number) != 0 || !(number > 0.0 && number < 0.5)) {
                fprintf (stderr, "coordinator detect: invalid --alpha '%s': use a number in "
                         "(0, 0.5), e.g. 0.05\n", value);
                return DW_DETECT_EXIT_USAGE;
            }
            o->config.alpha = number;
        }
        else if (strcmp (opt, "--baseline-days") == 0) {
            if (s_parse_long (value, &integer) != 0 || integer < 2 || integer > 3650) {
                fprintf (stderr, "coordinator detect: invalid --baseline-days '%s': use 2..3650\n",
                         value);
                return DW_DETECT_EXIT_USAGE;
            }
            o->config.baseline_days = (int) integer;
        }
        else if (strcmp (opt, "--baseline-min-runs") == 0) {
            if (s_parse_long (value, &integer) != 0 || integer < 0) {
                fprintf (stderr, "coordinator detect: invalid --baseline-min-runs '%s': use a "
                         "count >= 0\n", value);
                return DW_DETECT_EXIT_USAGE;
            }
            o->config.baseline_min_runs = integer;
        }
        else if (strcmp (opt, "--calibration-years") == 0) {
            if (s_parse_long (value, &integer) != 0 || integer < 100 || integer > 10000000) {
                fprintf (stderr, "coordinator detect: invalid --calibration-years '%s': use "
                         "100..10000000\n", value);
                return DW_DETECT_EXIT_USAGE;
            }
            o->config.calibration_years = (int) integer;
        }
        else if (strcmp (opt, "--seed") == 0) {
            char *end;
            errno = 0;
            unsigned long long seed = strtoull (value, &end, 10);
            if (errno || end == value || *end || value[0] == '-') {
                fprintf (stderr, "coordinator detect: invalid --seed '%s': use an unsigned "
                         "integer\n", value);
                return DW_DETECT_EXIT_USAGE;
            }
            o->config.seed = (uint64_t) seed;
        }
        else {
            fprintf (stderr, "coordinator detect: unknown option '%s'\n", opt);
            s_usage (stderr);
            return DW_DETECT_EXIT_USAGE;
        }
    }
    return 0;
}

/* Every track with a run on or before DATE. */
static int
s_all_tracks (PGconn *conn, const char *date, PGresult **res_p, char *err, size_t errlen)
{
    const char *params[1] = {date};
    PGresult *res = PQexecParams (conn, "SELECT DISTINCT track FROM runs WHERE day <= $1::date"
                                  " ORDER BY track", 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus (res) != PGRES_TUPLES_OK) {
        snprintf (err, errlen, "listing tracks failed: %s", PQerrorMessage (conn));
        PQclear (res);
        return -1;
    }
    *res_p = res;
    return 0;
}

/* Days of TRACK already stored with SETTINGS, as a sorted int array. */
static int *
s_stored_days (PGconn *conn, const char *track, const char *settings, size_t *count)
{
    *count = 0;
    const char *params[2] = {track, settings};
    PGresult *res = PQexecParams (conn, "SELECT (day - DATE '1970-01-01')::int FROM detector_reports"
                                  " WHERE track = $1 AND settings = $2 ORDER BY day",
                                  2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus (res) != PGRES_TUPLES_OK) {
        dw_warn ("detector reading stored reports failed track=%s error=%s", track,
                 PQerrorMessage (conn));
        PQclear (res);
        return NULL;
    }
    int rows = PQntuples (res);
    int *days = malloc ((rows ? (size_t) rows : 1) * sizeof *days);
    if (days)
        for (int i = 0; i < rows; i++)
            days[i] = atoi (PQgetvalue (res, i, 0));
    *count = days ? (size_t) rows : 0;
    PQclear (res);
    return days;
}

static int
s_cmp_int (const void *a, const void *b)
{
    int x = *(const int *) a, y = *(const int *) b;
    return (x > y) - (x < y);
}

/* Days since 1970-01-01 of a valid YYYY-MM-DD. */
static int
s_day_number (const char *text)
{
    struct tm tm = {0};
    sscanf (text, "%4d-%2d-%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int) (timegm (&tm) / 86400);
}

typedef struct {
    const char *track;
    dw_detector_report_t *report;   /* the date's report, NULL when the track has no data */
    int report_is_today;
} track_result_t;

/* Replay TRACK up to DATE, store the reports not stored yet with these
 * settings (and the date's own), keep the date's report in OUT. */
static int
s_process_track (PGconn *conn, const detect_options_t *o, const char *settings,
                 track_result_t *out, char *err, size_t errlen)
{
    dw_detector_t *det = dw_detector_new (&o->config, err, errlen);
    if (!det)
        return -1;
    dw_detector_cache_t cache;
    dw_detector_store_cache (conn, &cache);
    dw_detector_set_cache (det, &cache);

    dw_detector_series_t *series = NULL;
    if (dw_detector_store_load (conn, out->track, o->date, det, &series, err, errlen) != 0) {
        dw_detector_destroy (&det);
        return -1;
    }

    size_t stored_count = 0;
    int *stored = s_stored_days (conn, out->track, settings, &stored_count);
    int target = s_day_number (o->date);
    int rc = 0;

    PGresult *begin = PQexec (conn, "BEGIN");
    PQclear (begin);
    for (size_t i = 0; i < series->count && rc == 0; i++) {
        const dw_detector_day_t *day = &series->days[i];
        int known = stored && bsearch (&day->day, stored, stored_count, sizeof *stored,
                                       s_cmp_int) != NULL;
        int full = !known || day->day == target || i + 1 == series->count;
        dw_detector_set_brief (det, !full);

        dw_detector_report_t *report = dw_detector_add_day (det, day, err, errlen);
        if (!report) {
            rc = -1;
            break;
        }
        if (full && dw_detector_store_save (conn, out->track, day->config_hash, settings, report,
                                            err, errlen) != 0)
            rc = -1;
        if (i + 1 == series->count) {
            out->report = report;
            out->report_is_today = day->day == target;
        }
        else
            dw_detector_report_destroy (&report);
    }
    PGresult *end = PQexec (conn, rc == 0 ? "COMMIT" : "ROLLBACK");
    PQclear (end);

    free (stored);
    dw_detector_series_destroy (&series);
    dw_detector_destroy (&det);
    if (rc != 0)
        dw_detector_report_destroy (&out->report);
    return rc;
}

int
dw_detector_command (PGconn *conn, int argc, char **argv)
{
    detect_options_t o;
    int parsed = s_parse_options (argc, argv, &o);
    if (parsed == -1)
        return DW_DETECT_EXIT_OK;
    if (parsed != 0)
        return parsed;
    if (!conn || PQstatus (conn) != CONNECTION_OK) {
        fprintf (stderr, "coordinator detect: no database connection\n");
        return DW_DETECT_EXIT_RUNTIME;
    }

    char err[1024];
    PGresult *track_rows = NULL;
    if (o.track_count == 0) {
        if (s_all_tracks (conn, o.date, &track_rows, err, sizeof err) != 0) {
            fprintf (stderr, "coordinator detect: %s\n", err);
            return DW_DETECT_EXIT_RUNTIME;
        }
        for (int i = 0; i < PQntuples (track_rows) && o.track_count < MAX_TRACKS; i++)
            o.tracks[o.track_count++] = PQgetvalue (track_rows, i, 0);
        if (o.track_count == 0 && !o.json)
            printf ("no runs up to %s in this database: run 'coordinator --date DAY' first, or "
                    "check --db / --data-dir\n",
                    o.date);
    }

    char settings[256];
    snprintf (settings, sizeof settings, "alpha=%g baseline_days=%d baseline_min_runs=%ld "
              "calibration_years=%d seed=%llu", o.config.alpha, o.config.baseline_days,
              o.config.baseline_min_runs, o.config.calibration_years,
              (unsigned long long) o.config.seed);

    track_result_t results[MAX_TRACKS];
    memset (results, 0, sizeof results);
    int exit_code = DW_DETECT_EXIT_OK;
    int any_down = 0, any_up = 0;
    for (size_t t = 0; t < o.track_count; t++) {
        results[t].track = o.tracks[t];
        if (s_process_track (conn, &o, settings, &results[t], err, sizeof err) != 0) {
            fprintf (stderr, "coordinator detect: track %s: %s\n", o.tracks[t], err);
            dw_error ("detector failed track=%s error=%s", o.tracks[t], err);
            exit_code = DW_DETECT_EXIT_RUNTIME;
            continue;
        }
        const dw_detector_report_t *r = results[t].report;
        if (r && results[t].report_is_today) {
            any_down |= r->alarm_down_new;
            any_up |= r->alarm_up_new;
            if (r->alarm_down_new || r->alarm_up_new)
                dw_warn ("detector new alarm track=%s day=%s direction=%s effect_pp=%.2f",
                         o.tracks[t], o.date, r->alarm_down_new ? "degradation" : "improvement",
                         r->effect_pp);
        }
    }

    /* Output. */
    json_t *doc = o.json ? json_object () : NULL;
    json_t *tracks_json = o.json ? json_array () : NULL;
    for (size_t t = 0; t < o.track_count; t++) {
        const track_result_t *tr = &results[t];
        if (o.json) {
            json_t *entry = json_pack ("{s:s, s:b}", "track", tr->track, "has_report_for_date",
                                       tr->report && tr->report_is_today);
            json_object_set_new (entry, "report", tr->report ? dw_detector_report_json (tr->report)
                                                             : json_null ());
            json_array_append_new (tracks_json, entry);
            continue;
        }
        if (!tr->report) {
            printf ("track %s: no runs up to %s\n", tr->track, o.date);
            continue;
        }
        if (!tr->report_is_today)
            printf ("track %s: no run on %s; latest report shown\n", tr->track, o.date);
        char *text = dw_detector_report_text (tr->report, tr->track);
        if (text)
            fputs (text, stdout);
        free (text);
    }

    /* Which of two tracks saw a change (for example pinned vs latest CLI). */
    json_t *comparisons = o.json ? json_array () : NULL;
    for (size_t a = 0; a < o.track_count; a++) {
        for (size_t b = a + 1; b < o.track_count; b++) {
            const track_result_t *ta = &results[a], *tb = &results[b];
            if (!ta->report || !tb->report || !ta->report_is_today || !tb->report_is_today)
                continue;
            dw_change_scope_t scope = dw_detector_compare (ta->report, tb->report);
            if (scope == DW_CHANGE_NONE)
                continue;
            if (o.json)
                json_array_append_new (comparisons,
                                       json_pack ("{s:s, s:s, s:s}", "first", ta->track,
                                                  "second", tb->track, "scope",
                                                  dw_change_scope_name (scope)));
            else
                printf ("change scope %s vs %s: %s\n", ta->track, tb->track,
                        dw_change_scope_name (scope));
        }
    }
    if (o.json) {
        json_object_set_new (doc, "date", json_string (o.date));
        json_object_set_new (doc, "tracks", tracks_json);
        json_object_set_new (doc, "comparisons", comparisons);
        char *text = json_dumps (doc, JSON_INDENT (2));
        if (text)
            printf ("%s\n", text);
        free (text);
        json_decref (doc);
    }

    for (size_t t = 0; t < o.track_count; t++)
        dw_detector_report_destroy (&results[t].report);
    PQclear (track_rows);

    if (exit_code != DW_DETECT_EXIT_OK)
        return exit_code;
    if (any_down && any_up)
        return DW_DETECT_EXIT_BOTH;
    if (any_down)
        return DW_DETECT_EXIT_DEGRADATION;
    if (any_up)
        return DW_DETECT_EXIT_IMPROVEMENT;
    return DW_DETECT_EXIT_OK;
}
