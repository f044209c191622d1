/* Unit tests of coordinator/dw_detector: the statistic on a hand-computed
 * series, calibration reproducibility, detection of a simulated drop, no
 * alarm on a null series, the per-task table, secondary metrics, regimes,
 * data incidents, track comparison and the JSON shape of a report. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dw_detector.h"

static int failures = 0;

static void
check_near (const char *what, double got, double expected, double tol)
{
    if (!(fabs (got - expected) <= tol)) {
        fprintf (stderr, "FAIL %s: expected %.10g, got %.10g (tolerance %g)\n", what, expected,
                 got, tol);
        failures++;
    }
}

static void
check_true (const char *what, int condition)
{
    if (!condition) {
        fprintf (stderr, "FAIL %s\n", what);
        failures++;
    }
}

/* --- hand-computed statistic ---------------------------------------------- */

static void
test_ss_hand_case (void)
{
    /* Two tasks with reference rates 0.5 and 0.8, three days:
     *   day 0: both pass   A = 0.5 + 0.2 = 0.7,  n = 2, V = 0.25 + 0.16 = 0.41
     *   day 1: both pass   A = 0.7
     *   day 2: both fail   A = -0.5 - 0.8 = -1.3
     * r = A / sqrt(V) = 1.093216, 1.093216, -2.030258; successive squared
     * differences 0 and 3.123475^2 = 9.756098, so phi_hat = 9.756098 / (2 x 2)
     * = 2.439024 and nu = 2 (3-1)^2 / (3x3 - 4) = 1.6.
     * tau = 1: D = 0.7/2 - (-0.6)/4 = 0.5,  SE = sqrt(phi (0.41/4 + 0.82/16)),
     * tau = 2: D = 1.4/4 - (-1.3)/2 = 1.0, same SE = sqrt(2.439024 x 0.15375)
     * = 0.612372, so Z(1) = 0.816497 and Z(2) = 1.632993. */
    dw_ss_t *ss = dw_ss_new (8);
    dw_ss_add_day (ss, 0.7, 2, 0.41);
    dw_ss_add_day (ss, 0.7, 2, 0.41);
    dw_ss_add_day (ss, -1.3, 2, 0.41);

    dw_ss_scan_t scan;
    check_true ("ss scan has candidates", dw_ss_scan (ss, 1, &scan) == 0);
    check_near ("ss phi_hat", scan.phi_hat, 2.439024390, 1e-6);
    check_near ("ss nu", scan.nu, 1.6, 1e-12);
    check_near ("ss z_down", scan.z_down, 1.632993162, 1e-6);
    check_true ("ss tau_down is day 2", scan.tau_down == 2);
    check_near ("ss z_up", scan.z_up, -0.816496581, 1e-6);
    check_near ("ss s_up is 0 for negative z", scan.s_up, 0.0, 0);

    /* phi_hat > 1, so the score is the Student t tail with nu = 1.6:
     * P(T > z) = 0.5 I_{nu/(nu+z^2)}(nu/2, 1/2). */
    double x = 1.6 / (1.6 + 1.632993162 * 1.632993162);
    double expected = -log (0.5 * dw_stats_ibeta (x, 0.8, 0.5));
    check_near ("ss s_down uses t tail", scan.s_down, expected, 1e-6);

    double drop, se;
    check_true ("ss effect at tau 1", dw_ss_effect (ss, 1, &drop, &se) == 0);
    check_near ("ss effect drop", drop, 0.5, 1e-12);
    check_near ("ss effect se", se, 0.6123724357, 1e-6);
    check_true ("ss effect tau 0 rejected", dw_ss_effect (ss, 0, &drop, &se) == -1);
    check_true ("ss scan past the end has no candidate", dw_ss_scan (ss, 3, &scan) == -1);
    dw_ss_destroy (&ss);
    check_true ("ss destroy nulls", ss == NULL);
}

/* --- simulation helpers ----------------------------------------------------- */

typedef struct {
    dw_detector_t *det;
    int *index;
    size_t tasks;
    dw_detector_run_t *runs;
    size_t cap;
} panel_t;

static void
panel_init (panel_t *p, dw_detector_t *det, size_t tasks, const char *prefix_broken,
            size_t broken)
{
    p->det = det;
    p->tasks = tasks;
    p->index = malloc (tasks * sizeof *p->index);
    for (size_t i = 0; i < tasks; i++) {
        char name[64];
        if (i < broken)
            snprintf (name, sizeof name, "%s-%02zu", prefix_broken, i);
        else
            snprintf (name, sizeof name, "task-%03zu", i);
        p->index[i] = dw_detector_task_index (det, name);
    }
    p->cap = 4096;
    p->runs = malloc (p->cap * sizeof *p->runs);
}

static void
panel_free (panel_t *p)
{
    free (p->index);
    free (p->runs);
}

/* Simulate one day and add it; returns the report. OUT_SCALE multiplies the
 * output tokens of every run. */
static dw_detector_report_t *
panel_day (panel_t *p, dw_rng_t *rng, int day, const double *rates, int repeats,
           const char *hash, double out_scale, long lost)
{
    size_t n = 0;
    for (size_t i = 0; i < p->tasks; i++) {
        for (int r = 0; r < repeats; r++) {
            dw_detector_run_t *run = &p->runs[n++];
            run->task = p->index[i];
            run->pass = dw_rng_uniform (rng) < rates[i];
            for (int m = 0; m < DW_METRIC_COUNT; m++)
                run->metrics[m] = NAN;
            run->metrics[DW_METRIC_OUTPUT_TOKENS] = out_scale * (1000.0 + 100.0 * (double) i)
                                                    * exp (0.1 * dw_rng_normal (rng));
            run->metrics[DW_METRIC_INPUT_TOKENS] = 5000.0 * exp (0.1 * dw_rng_normal (rng));
        }
    }
    long planned = (long) n;
    if (lost > 0 && (size_t) lost <= n)
        n -= (size_t) lost;
    dw_detector_day_t d = {.day = day, .config_hash = hash, .runs = p->runs, .run_count = n,
                           .planned = planned, .excluded = lost > 0 ? lost : 0};
    char err[256];
    dw_detector_report_t *report = dw_detector_add_day (p->det, &d, err, sizeof err);
    if (!report) {
        fprintf (stderr, "FAIL add_day %d: %s\n", day, err);
        failures++;
    }
    return report;
}

static void
draw_panel (dw_rng_t *rng, double *rates, size_t tasks)
{
    for (size_t i = 0; i < tasks; i++)
        rates[i] = dw_rng_beta (rng, 0.348, 0.252);
}

#define DAY0 20000

static dw_detector_t *
small_detector (int years)
{
    dw_detector_config_t config;
    dw_detector_config_defaults (&config);
    config.calibration_years = years;
    config.seed = 11;
    char err[256];
    dw_detector_t *det = dw_detector_new (&config, err, sizeof err);
    if (!det) {
        fprintf (stderr, "FAIL detector_new: %s\n", err);
        exit (1);
    }
    return det;
}

/* --- calibration -------------------------------------------------------- */

static void
test_calibration_reproducible (void)
{
    dw_detector_calibration_t c = {
        .tasks = 30, .panel_a = 0.348, .panel_b = 0.252, .repeats = 1, .baseline_days = 14,
        .horizon_days = 120, .sigma = 0.1, .years = 400, .alpha = 0.05, .seed = 99,
        .threads = 2,
    };
    char err[256];
    double h1 = 0, h2 = 0, h3 = 0;
    check_true ("calibrate first", dw_detector_calibrate (&c, &h1, err, sizeof err) == 0);
    check_true ("calibrate second", dw_detector_calibrate (&c, &h2, err, sizeof err) == 0);
    c.threads = 1;
    check_true ("calibrate one thread", dw_detector_calibrate (&c, &h3, err, sizeof err) == 0);
    check_true ("calibration same seed same threshold", h1 == h2);
    check_true ("calibration independent of threads", h1 == h3);
    check_true ("calibrated threshold in a plausible range (-ln p 6..16)", h1 > 6.0 && h1 < 16.0);

    c.seed = 100;
    double h4 = 0;
    dw_detector_calibrate (&c, &h4, err, sizeof err);
    check_true ("calibration other seed differs", h4 != h1);

    c.years = 5;
    check_true ("calibration rejects too few years", dw_detector_calibrate (&c, &h4, err,
                                                                              sizeof err) == -1);
    check_true ("calibration error names the value", strstr (err, "years=5") != NULL);
}

/* --- detection ------------------------------------------------------------ */

static void
test_drop_detected_and_flip_table (void)
{
    dw_rng_t rng;
    dw_rng_seed (&rng, 5);
    const size_t tasks = 50;
    double rates[50], changed[50];
    draw_panel (&rng, rates, tasks);

    /* Break: the first tasks (named "broken-..") drop from always solved to
     * never solved, 5 tasks of 50 = a 10 point drop. */
    for (size_t i = 0; i < 5; i++)
        rates[i] = 0.98;
    memcpy (changed, rates, sizeof rates);
    for (size_t i = 0; i < 5; i++)
        changed[i] = 0.0;

    dw_detector_t *det = small_detector (300);
    panel_t p;
    panel_init (&p, det, tasks, "broken", 5);

    int alarm_at = -1, new_alarms = 0;
    dw_detector_report_t *alarm_report = NULL;
    for (int d = 0; d < 14 + 60; d++) {
        int after = d >= 14 + 30;
        dw_detector_report_t *r = panel_day (&p, &rng, DAY0 + d, after ? changed : rates, 3,
                                             "cfg-a", after ? 1.4 : 1.0, 0);
        if (!r)
            break;
        if (d < 14)
            check_true ("baseline status during baseline", r->status == DW_STATUS_BASELINE);
        if (d < 14 + 30 && r->alarm_direction != 0) {
            fprintf (stderr, "FAIL alarm before the change on day %d\n", d);
            failures++;
        }
        new_alarms += r->alarm_down_new;
        if (r->alarm_down_new && alarm_at < 0) {
            alarm_at = d;
            alarm_report = r;
            continue;
        }
        dw_detector_report_destroy (&r);
    }

    check_true ("10 point drop detected", alarm_at >= 0);
    check_true ("10 point drop detected within 5 days", alarm_at >= 0 && alarm_at <= 14 + 30 + 4);
    check_true ("alarm reported as new exactly once", new_alarms == 1);
    if (alarm_report) {
        check_true ("status is degradation", alarm_report->status == DW_STATUS_DEGRADATION);
        check_true ("effect marked biased at alarm", alarm_report->effect_biased == 1);
        check_true ("change day near the true day",
                    abs (alarm_report->tau_day - (DAY0 + 44)) <= 2);
        check_true ("effect is a drop", alarm_report->effect_pp < -3.0);
        check_true ("tau range contains tau", alarm_report->tau_lo_day <= alarm_report->tau_day
                                               && alarm_report->tau_hi_day >= alarm_report->tau_day);
        check_true ("flip table filled", alarm_report->flip_count >= 5);
        int named = 0;
        for (size_t i = 0; i < 5 && i < alarm_report->flip_count; i++)
            named += strncmp (alarm_report->flips[i].name, "broken-", 7) == 0;
        check_true ("flip table names the 5 changed tasks first", named == 5);
        double sum = 0;
        for (size_t i = 0; i < alarm_report->flip_count; i++)
            sum += alarm_report->flips[i].contribution;
        check_near ("contributions sum to the drop", -100.0 * sum, alarm_report->effect_pp, 1e-6);
        check_true ("flip fisher p small for a broken task", alarm_report->flips[0].fisher_p < 0.05);

        const dw_detector_secondary_t *out = &alarm_report->secondary[DW_METRIC_OUTPUT_TOKENS];
        check_true ("secondary output tokens has tasks", out->tasks == 50);
        check_near ("secondary output tokens +40%", out->change_pct, 40.0, 8.0);
        check_true ("secondary output tokens significant", out->p_value < 0.001);
        const dw_detector_secondary_t *in = &alarm_report->secondary[DW_METRIC_INPUT_TOKENS];
        check_true ("secondary input tokens unchanged", fabs (in->change_pct) < 10.0);

        char *text = dw_detector_report_text (alarm_report, "demo");
        check_true ("text mentions the alarm", text && strstr (text, "NEW DEGRADATION ALARM"));
        check_true ("text lists a broken task", text && strstr (text, "broken-"));
        free (text);

        json_t *j = dw_detector_report_json (alarm_report);
        check_true ("json status", !strcmp (json_string_value (json_object_get (j, "status")),
                                            "degradation"));
        check_true ("json alarm_down_new", json_is_true (json_object_get (j, "alarm_down_new")));
        json_t *det_j = json_object_get (j, "detector");
        check_true ("json detector.s_down number", json_is_number (json_object_get (det_j, "s_down")));
        check_true ("json detector.h_down number", json_is_number (json_object_get (det_j, "h_down")));
        check_true ("json detector.phi_hat number", json_is_number (json_object_get (det_j, "phi_hat")));
        json_t *change = json_object_get (j, "change");
        check_true ("json change.tau_day is a date", json_is_string (json_object_get (change, "tau_day"))
                    && strlen (json_string_value (json_object_get (change, "tau_day"))) == 10);
        check_true ("json change.effect_ci95_pp pair",
                    json_array_size (json_object_get (change, "effect_ci95_pp")) == 2);
        check_true ("json change.biased_at_alarm", json_is_true (json_object_get (change,
                                                                                  "biased_at_alarm")));
        json_t *windows = json_object_get (j, "windows");
        check_true ("json three windows", json_array_size (windows) == 3);
        json_t *w7 = json_array_get (windows, 1);
        check_true ("json window 7 days", json_integer_value (json_object_get (w7, "days")) == 7);
        check_true ("json window p-value labelled uncorrected",
                    json_is_number (json_object_get (w7, "p_drop_uncorrected")));
        json_t *tasks_j = json_object_get (j, "tasks");
        check_true ("json tasks array", json_array_size (tasks_j) == alarm_report->flip_count);
        check_true ("json task has fisher_p", json_is_number (json_object_get (json_array_get (tasks_j, 0),
                                                                                 "fisher_p")));
        json_t *sec = json_object_get (j, "secondary");
        for (int m = 0; m < DW_METRIC_COUNT; m++)
            check_true ("json secondary has every metric",
                        json_is_object (json_object_get (sec, dw_metric_name ((dw_metric_t) m))));
        json_decref (j);
    }
    dw_detector_report_destroy (&alarm_report);
    panel_free (&p);
    dw_detector_destroy (&det);
    check_true ("detector destroy nulls", det == NULL);
}

static void
test_null_series_quiet (void)
{
    dw_rng_t rng;
    dw_rng_seed (&rng, 8);
    double rates[50];
    draw_panel (&rng, rates, 50);

    dw_detector_t *det = small_detector (300);
    panel_t p;
    panel_init (&p, det, 50, "x", 0);
    int alarms = 0, monitored = 0;
    for (int d = 0; d < 14 + 120; d++) {
        dw_detector_report_t *r = panel_day (&p, &rng, DAY0 + d, rates, 3, "cfg-a", 1.0, 0);
        if (!r)
            break;
        alarms += r->alarm_direction != 0;
        monitored += r->status == DW_STATUS_NO_CHANGE;
        dw_detector_report_destroy (&r);
    }
    check_true ("null series raises no alarm", alarms == 0);
    check_true ("null series monitored after the baseline", monitored == 120);
    panel_free (&p);
    dw_detector_destroy (&det);
}

static void
test_incident_and_regime_change (void)
{
    dw_rng_t rng;
    dw_rng_seed (&rng, 3);
    double rates[40];
    draw_panel (&rng, rates, 40);

    dw_detector_t *det = small_detector (200);
    panel_t p;
    panel_init (&p, det, 40, "x", 0);

    int d = 0;
    for (; d < 14; d++) {
        dw_detector_report_t *r = panel_day (&p, &rng, DAY0 + d, rates, 3, "cfg-a", 1.0, 0);
        dw_detector_report_destroy (&r);
    }

    /* 40 x 3 = 120 planned, 70 lost: 50 valid < 60 = half of planned. */
    dw_detector_report_t *r = panel_day (&p, &rng, DAY0 + d++, rates, 3, "cfg-a", 1.0, 70);
    check_true ("day with too few valid runs is a data incident",
                r && r->status == DW_STATUS_DATA_INCIDENT);
    check_true ("incident reports excluded runs", r && r->excluded_runs == 70);
    check_true ("incident adds no regime day", r && r->regime_valid_days == 14);
    dw_detector_report_destroy (&r);

    r = panel_day (&p, &rng, DAY0 + d++, rates, 3, "cfg-a", 1.0, 10);
    check_true ("day with some losses is monitored", r && r->status == DW_STATUS_NO_CHANGE);
    check_true ("excluded rate of the day", r && fabs (r->excluded_rate - 10.0 / 120.0) < 1e-12);
    dw_detector_report_destroy (&r);

    r = panel_day (&p, &rng, DAY0 + d++, rates, 3, "cfg-b", 1.0, 0);
    check_true ("configuration change restarts the baseline", r && r->status == DW_STATUS_BASELINE);
    check_true ("new regime starts today", r && r->regime_start_day == DAY0 + d - 1);
    check_true ("version comparison shown", r && r->has_version_comparison);
    dw_detector_report_destroy (&r);

    dw_detector_day_t same = {.day = DAY0 + d - 1, .config_hash = "cfg-b"};
    char err[256];
    check_true ("day not after the previous one is rejected",
                dw_detector_add_day (det, &same, err, sizeof err) == NULL);
    check_true ("error names the day", strstr (err, "not after") != NULL);

    dw_detector_run_t bad = {.task = 999};
    dw_detector_day_t unknown = {.day = DAY0 + 500, .runs = &bad, .run_count = 1, .planned = 1};
    check_true ("unknown task index rejected",
                dw_detector_add_day (det, &unknown, err, sizeof err) == NULL);

    panel_free (&p);
    dw_detector_destroy (&det);
}

static void
test_config_validation (void)
{
    dw_detector_config_t config;
    dw_detector_config_defaults (&config);
    char err[256];
    config.baseline_days = 1;
    check_true ("baseline of 1 day rejected", dw_detector_new (&config, err, sizeof err) == NULL);
    check_true ("error names baseline days", strstr (err, "baseline days 1") != NULL);
    dw_detector_config_defaults (&config);
    config.alpha = 0.7;
    check_true ("alpha 0.7 rejected", dw_detector_new (&config, err, sizeof err) == NULL);
    dw_detector_destroy (NULL);
}

static void
test_compare_tracks (void)
{
    dw_detector_report_t a = {0}, b = {0};
    a.status = b.status = DW_STATUS_NO_CHANGE;
    a.h_down = a.h_up = b.h_down = b.h_up = 11.0;
    check_true ("compare none", dw_detector_compare (&a, &b) == DW_CHANGE_NONE);

    a.status = DW_STATUS_DEGRADATION;
    a.alarm_direction = 1;
    b.s_down = 2.0;
    check_true ("compare first only", dw_detector_compare (&a, &b) == DW_CHANGE_FIRST_ONLY);
    b.s_down = 8.0;
    check_true ("compare undetermined when second has evidence",
                dw_detector_compare (&a, &b) == DW_CHANGE_UNDETERMINED);
    b.status = DW_STATUS_DEGRADATION;
    b.alarm_direction = 1;
    check_true ("compare both", dw_detector_compare (&a, &b) == DW_CHANGE_BOTH);
    a.status = DW_STATUS_NO_CHANGE;
    a.alarm_direction = 0;
    a.s_down = 1.0;
    check_true ("compare second only", dw_detector_compare (&a, &b) == DW_CHANGE_SECOND_ONLY);
    a.status = DW_STATUS_BASELINE;
    check_true ("compare undetermined while baseline builds",
                dw_detector_compare (&a, &b) == DW_CHANGE_UNDETERMINED);
    check_true ("scope names", !strcmp (dw_change_scope_name (DW_CHANGE_FIRST_ONLY), "first_only"));
}

int
main (void)
{
    test_ss_hand_case ();
    test_config_validation ();
    test_calibration_reproducible ();
    test_drop_detected_and_flip_table ();
    test_null_series_quiet ();
    test_incident_and_regime_change ();
    test_compare_tracks ();
    if (failures) {
        fprintf (stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf ("all detector checks passed\n");
    return 0;
}
