/* Sequential regression detector for one track (one configuration series).
 *
 * Statistic: self-starting, task-adjusted two-sample GLR with a dispersion
 * correction and a Student t tail ("SS paired GLR"). Every day, for every
 * candidate change day tau of the current regime, it compares the mean
 * per-run residual (outcome minus the task's baseline rate) after tau with
 * the mean before tau, standardised by a standard error that carries the
 * error of both segments and a day-level dispersion factor. The maximum over
 * tau, on the -ln p scale, is compared with a threshold calibrated by
 * simulation so that a null year of daily looks alarms with probability
 * alpha. docs/statistics.md gives every formula.
 *
 * Pure computation: no database, no I/O. dw_detector_store.h feeds it from
 * PostgreSQL.
 */
#ifndef DW_DETECTOR_H
#define DW_DETECTOR_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "dw_stats.h"

/* --- configuration ---------------------------------------------------------- */

#define DW_DETECTOR_DEFAULT_BASELINE_DAYS 14
#define DW_DETECTOR_DEFAULT_BASELINE_MIN_RUNS 1500
#define DW_DETECTOR_DEFAULT_ALPHA 0.05
#define DW_DETECTOR_DEFAULT_HORIZON_DAYS 365
#define DW_DETECTOR_DEFAULT_CALIBRATION_YEARS 10000
#define DW_DETECTOR_DEFAULT_SEED 20260101
#define DW_DETECTOR_DEFAULT_SIGMA_MIN 0.1
#define DW_DETECTOR_DEFAULT_CONFIRM_DAYS 14
#define DW_DETECTOR_DEFAULT_MIN_VALID_FRACTION 0.5

/* Upper bound of tasks per track and of runs per day (input beyond them is
 * rejected with an error, not truncated). */
#define DW_DETECTOR_MAX_TASKS 100000
#define DW_DETECTOR_MAX_RUNS_PER_DAY 1000000

typedef struct {
    int baseline_days;          /* B: minimum valid days in a regime's baseline */
    long baseline_min_runs;     /* the baseline also needs this many valid runs */
    double alpha;               /* P(>= 1 false alarm in horizon_days), both directions */
    int horizon_days;           /* looks per calibrated "year" */
    int calibration_years;      /* simulated null years per calibration */
    uint64_t seed;              /* calibration seed (same seed, same thresholds) */
    double sigma_min;           /* floor of the calibration day effect sigma_c (log-odds) */
    int confirm_days;           /* valid days after an alarm before it is confirmed or not */
    double min_valid_fraction;  /* a day with fewer valid runs than this x planned is skipped */
    int threads;                /* calibration threads (results do not depend on it) */
    double fixed_threshold;     /* > 0: use this h for both sides and skip calibration */
    int lean;                   /* 1: keep no metrics and report the verdict only (benchmarks) */
} dw_detector_config_t;

/* Fill CONFIG with the defaults above. */
void dw_detector_config_defaults (dw_detector_config_t *config);

/* --- input ------------------------------------------------------------------ */

/* Secondary metrics of a run; NAN when not recorded. */
typedef enum {
    DW_METRIC_INPUT_TOKENS,
    DW_METRIC_OUTPUT_TOKENS,
    DW_METRIC_COST_USD,
    DW_METRIC_RUNTIME_MS,
    DW_METRIC_TOOL_CALLS,
    DW_METRIC_TURNS,
    DW_METRIC_COUNT
} dw_metric_t;

/* Name of METRIC as used in JSON ("input_tokens", ...). */
const char *dw_metric_name (dw_metric_t metric);

/* One valid run: the agent was graded (pass = resolved, fail = anything else
 * the agent caused). Infrastructure errors are not runs. */
typedef struct {
    int task;                           /* index from dw_detector_task_index */
    int pass;                           /* 1 resolved, 0 not */
    double metrics[DW_METRIC_COUNT];    /* NAN = not recorded */
} dw_detector_run_t;

typedef struct {
    int day;                        /* days since 1970-01-01, strictly increasing */
    const char *config_hash;        /* a different hash starts a new regime */
    const dw_detector_run_t *runs;  /* valid runs of the day */
    size_t run_count;
    long planned;                   /* runs planned for the day (jobs) */
    long excluded;                  /* final infra_error / harness_error / cancelled */
} dw_detector_day_t;

/* --- report ----------------------------------------------------------------- */

typedef enum {
    DW_STATUS_INSUFFICIENT_DATA,    /* no valid day in the regime yet */
    DW_STATUS_BASELINE,             /* building the regime's baseline */
    DW_STATUS_NO_CHANGE,
    DW_STATUS_DEGRADATION,
    DW_STATUS_IMPROVEMENT,
    DW_STATUS_DATA_INCIDENT         /* too few valid runs: the day adds no evidence */
} dw_detector_status_t;

const char *dw_detector_status_name (dw_detector_status_t status);

/* Marginlab-style window: pass rate of the last W calendar days against the
 * baseline rate, one look, no multiplicity correction. */
typedef struct {
    int window_days;
    long passes;
    long runs;
    double rate, wilson_lo, wilson_hi;  /* 95% Wilson score interval */
    double baseline_rate;
    double z;                           /* (baseline - rate) / sqrt(b (1-b) / runs) */
    double p_drop;                      /* exact binomial P(X <= passes | baseline) */
    double p_two_sided;                 /* exact binomial two-sided */
    int flag_drop;                      /* z > 1.96 (the Marginlab rule, uncorrected) */
    double paired_drop;                 /* task-adjusted drop vs baseline, NAN if none */
    double paired_se;
} dw_detector_window_t;

#define DW_DETECTOR_WINDOWS 3

/* One task's runs before and after the estimated change day. */
typedef struct {
    int task;
    char *name;
    long passes_before, runs_before;
    long passes_after, runs_after;
    double fisher_p;        /* one-sided, in the direction of the alarm */
    double contribution;    /* this task's share of D; the shares sum to D */
} dw_detector_flip_t;

/* Paired per-task change of a secondary metric on the log scale. */
typedef struct {
    int tasks;                  /* tasks with data in both periods */
    double median_log_ratio;    /* median over tasks of (median log after - median log before) */
    double change_pct;          /* 100 (exp(median_log_ratio) - 1) */
    double p_value;             /* Wilcoxon signed-rank, two-sided */
} dw_detector_secondary_t;

typedef struct {
    int day;
    dw_detector_status_t status;
    int alarm_down_new;         /* a degradation alarm was raised today */
    int alarm_up_new;           /* an improvement alarm was raised today */
    int alarm_direction;        /* active alarm: +1 degradation, -1 improvement, 0 none */
    int alarm_day;              /* day the active alarm was raised, or -1 */
    int alarm_confirmed_today;  /* the active alarm was confirmed: a new regime started */
    int alarm_dismissed_today;  /* the alarm did not hold: regime kept, tau limited */

    int regime_start_day;
    int regime_valid_days;      /* valid (non-incident) days in the regime */
    int baseline_valid_days;    /* days in the frozen baseline, 0 while building */
    long baseline_runs;
    double baseline_rate;       /* pooled pass rate of the baseline */

    long valid_runs, planned_runs, excluded_runs;
    double excluded_rate;       /* excluded / (valid + excluded) of the day */

    double z_down, z_up;        /* max over tau of Z(tau) and of -Z(tau) */
    double s_down, s_up;        /* the same on the -ln p scale */
    double h_down, h_up;        /* thresholds */
    double phi_hat, phi, nu;

    int tau_day;                /* estimated change day (first day after the change) */
    int tau_lo_day, tau_hi_day; /* days with Z within 1 of its maximum */
    double effect_pp;           /* pass-rate change after - before, percentage points */
    double effect_lo_pp, effect_hi_pp;  /* 95% interval */
    int effect_biased;          /* 1 on alarm days: selected at its maximum, biased away from 0 */

    int has_version_comparison; /* during a new regime's baseline: new vs previous regime */
    double version_effect_pp, version_lo_pp, version_hi_pp;

    dw_detector_window_t windows[DW_DETECTOR_WINDOWS];

    dw_detector_flip_t *flips;  /* sorted by contribution in the alarm's direction */
    size_t flip_count;

    int secondary_ref;          /* 1: after vs before tau, 0: last 7 days vs baseline */
    dw_detector_secondary_t secondary[DW_METRIC_COUNT];

    int calibration_years;
    double sigma_c;
    uint64_t seed;
    char *message;              /* one-line explanation of the status */
} dw_detector_report_t;

void dw_detector_report_destroy (dw_detector_report_t **self_p);

/* JSON object of REPORT (all fields, including the per-task flip table). */
json_t *dw_detector_report_json (const dw_detector_report_t *report);

/* Human-readable multi-line text of REPORT for TRACK. Caller frees. */
char *dw_detector_report_text (const dw_detector_report_t *report, const char *track);

/* --- detector --------------------------------------------------------------- */

typedef struct dw_detector_t dw_detector_t;

/* Optional calibration cache, so a replayed series does not recalibrate:
 * lookup returns 1 and sets *H when KEY is known, store saves it. */
typedef struct {
    void *ctx;
    int (*lookup) (void *ctx, const char *key, double *h);
    void (*store) (void *ctx, const char *key, double h, int years);
} dw_detector_cache_t;

/* New detector with CONFIG (copied). Returns NULL with a message in ERR when
 * a value is out of range. */
dw_detector_t *dw_detector_new (const dw_detector_config_t *config, char *err, size_t errlen);

void dw_detector_destroy (dw_detector_t **self_p);

void dw_detector_set_cache (dw_detector_t *self, const dw_detector_cache_t *cache);

/* Index of the task called NAME, adding it on first use; -1 when
 * DW_DETECTOR_MAX_TASKS is reached. */
int dw_detector_task_index (dw_detector_t *self, const char *name);

/* Add one day and return its report (caller destroys it), or NULL with a
 * message in ERR when the day is invalid (not after the previous day, task
 * index unknown, too many runs). */
dw_detector_report_t *dw_detector_add_day (dw_detector_t *self, const dw_detector_day_t *day,
                                           char *err, size_t errlen);

/* 1: following reports carry the verdict only (no windows, task table or
 * secondary metrics), which makes replaying a long history cheap. */
void dw_detector_set_brief (dw_detector_t *self, int brief);

/* Decide the active alarm now instead of waiting confirm_days: confirming
 * starts a new regime at the estimated change day; dismissing keeps the
 * regime and considers only change days after the alarm. Returns 0, or -1
 * when no alarm is active. */
int dw_detector_confirm_alarm (dw_detector_t *self);
int dw_detector_dismiss_alarm (dw_detector_t *self);

/* --- the statistic on daily sums (shared with calibration and benchmarks) -- */

/* Day sums of the SS statistic: A = sum (y - p_i), n = valid runs,
 * V = sum p_i (1 - p_i), over the day's valid runs. */
typedef struct dw_ss_t dw_ss_t;

typedef struct {
    double z_down, z_up, s_down, s_up;
    size_t tau_down, tau_up;        /* regime day index of the first post-change day */
    double phi_hat, phi, nu;
} dw_ss_scan_t;

dw_ss_t *dw_ss_new (size_t capacity);
void dw_ss_destroy (dw_ss_t **self_p);
void dw_ss_reset (dw_ss_t *self);
size_t dw_ss_days (const dw_ss_t *self);

/* Append a day; returns -1 when the capacity is reached. */
int dw_ss_add_day (dw_ss_t *self, double a, double n, double v);

/* Scan every candidate tau in [tau_first, days - 1] and write the maxima.
 * Returns 0, or -1 when there is no candidate. */
int dw_ss_scan (const dw_ss_t *self, size_t tau_first, dw_ss_scan_t *out);

/* D(tau) and SE(tau) for one tau using days [0, tau) against [tau, days),
 * with the current dispersion; returns -1 when a segment is empty. */
int dw_ss_effect (const dw_ss_t *self, size_t tau, double *drop, double *se);

/* --- simulation and calibration -------------------------------------------- */

/* Draw one day of a simulated panel: task i is run REPEATS times with pass
 * probability expit(logit(rates[i]) + u), u ~ N(0, sigma^2) shared by the
 * day, and each run is lost with probability MISSING. Writes per-task
 * passes and runs. */
void dw_detector_sim_day (dw_rng_t *rng, const double *rates, size_t tasks, int repeats,
                          double sigma, double missing, long *passes, long *runs);

typedef struct {
    const double *rates;    /* true task rates; NULL: each year draws Beta(panel_a, panel_b) */
    size_t tasks;
    double panel_a, panel_b;
    int repeats;
    int baseline_days;
    int horizon_days;
    double sigma;           /* day effect of the null years (log-odds) */
    double missing;         /* per-run loss probability */
    int years;
    double alpha;
    uint64_t seed;
    int threads;
} dw_detector_calibration_t;

/* Simulate YEARS null years (baseline, EB fit, HORIZON_DAYS monitored days)
 * and set *H to the value exceeded by max(S_down, S_up) over the year in a
 * fraction ALPHA of years. Year y uses its own generator seeded from (seed,
 * y), so the result does not depend on THREADS. Returns 0 or -1 with ERR. */
int dw_detector_calibrate (const dw_detector_calibration_t *calibration, double *h,
                           char *err, size_t errlen);

/* --- comparing tracks ------------------------------------------------------- */

typedef enum {
    DW_CHANGE_NONE,         /* neither track alarms */
    DW_CHANGE_BOTH,         /* both alarm in the same direction */
    DW_CHANGE_FIRST_ONLY,   /* first alarms, second shows no evidence */
    DW_CHANGE_SECOND_ONLY,
    DW_CHANGE_UNDETERMINED  /* one alarms, the other is not monitoring or shows some evidence */
} dw_change_scope_t;

const char *dw_change_scope_name (dw_change_scope_t scope);

/* Label a change seen on the same day in two independent tracks (for example
 * pinned CLI vs latest CLI: FIRST_ONLY on the latest-CLI track means
 * harness-only). A track "shows no evidence" when it is monitoring and its
 * score in the alarm's direction is at most half its threshold. */
dw_change_scope_t dw_detector_compare (const dw_detector_report_t *first,
                                       const dw_detector_report_t *second);

/* --- CLI exit codes --------------------------------------------------------- */

#define DW_DETECT_EXIT_OK 0
#define DW_DETECT_EXIT_RUNTIME 1
#define DW_DETECT_EXIT_USAGE 2
#define DW_DETECT_EXIT_DEGRADATION 10
#define DW_DETECT_EXIT_IMPROVEMENT 11
#define DW_DETECT_EXIT_BOTH 12

#endif
