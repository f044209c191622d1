/* Sequential regression detector: see dw_detector.h and docs/statistics.md. */
#include "dw_detector.h"

#include <assert.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dw_util.h"

/* z of a two-sided 95% interval. */
#define Z95 1.959963984540054

/* Calendar windows of the Marginlab-style report. */
static const int s_windows[DW_DETECTOR_WINDOWS] = {1, 7, 30};

/* Days of the "recent" period of the secondary metrics when no change day
 * is estimated. */
#define SECONDARY_RECENT_DAYS 7

#define MAX_THREADS 64

/* --- the statistic on daily sums ------------------------------------------- */

struct dw_ss_t {
    size_t capacity;
    size_t days;
    double *sa, *sn, *sv;       /* prefix sums, index k = sum of days [0, k) */
    double last_r;              /* standardised residual r of the last day */
    double ssd;                 /* sum of squared successive differences of r */
};

dw_ss_t *
dw_ss_new (size_t capacity)
{
    dw_ss_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->capacity = capacity;
    self->sa = calloc (capacity + 1, sizeof (double));
    self->sn = calloc (capacity + 1, sizeof (double));
    self->sv = calloc (capacity + 1, sizeof (double));
    if (!self->sa || !self->sn || !self->sv) {
        dw_ss_destroy (&self);
        return NULL;
    }
    return self;
}

void
dw_ss_destroy (dw_ss_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dw_ss_t *self = *self_p;
    free (self->sa);
    free (self->sn);
    free (self->sv);
    free (self);
    *self_p = NULL;
}

void
dw_ss_reset (dw_ss_t *self)
{
    self->days = 0;
    self->ssd = 0.0;
    self->last_r = 0.0;
}

size_t
dw_ss_days (const dw_ss_t *self)
{
    return self->days;
}

int
dw_ss_add_day (dw_ss_t *self, double a, double n, double v)
{
    if (self->days >= self->capacity)
        return -1;

    size_t k = self->days;
    self->sa[k + 1] = self->sa[k] + a;
    self->sn[k + 1] = self->sn[k] + n;
    self->sv[k + 1] = self->sv[k] + v;

    double r = v > 0.0 ? a / sqrt (v) : 0.0;
    if (k > 0)
        self->ssd += (r - self->last_r) * (r - self->last_r);
    self->last_r = r;
    self->days++;
    return 0;
}

/* Dispersion from the mean squared successive difference of r, which a
 * single level shift barely moves, and the matching t degrees of freedom. */
static void
s_ss_dispersion (const dw_ss_t *self, double *phi_hat, double *phi, double *nu)
{
    double m = (double) self->days;
    *phi_hat = self->days >= 2 ? self->ssd / (2.0 * (m - 1.0)) : 1.0;
    *phi = *phi_hat > 1.0 ? *phi_hat : 1.0;
    *nu = self->days >= 2 ? 2.0 * (m - 1.0) * (m - 1.0) / (3.0 * m - 4.0) : 1.0;
}

static int
s_ss_effect_phi (const dw_ss_t *self, size_t tau, double phi, double *drop, double *se)
{
    size_t m = self->days;
    if (tau == 0 || tau >= m)
        return -1;

    double sa_pre = self->sa[tau], sn_pre = self->sn[tau], sv_pre = self->sv[tau];
    double sa_post = self->sa[m] - sa_pre;
    double sn_post = self->sn[m] - sn_pre;
    double sv_post = self->sv[m] - sv_pre;
    if (sn_pre <= 0.0 || sn_post <= 0.0)
        return -1;

    double se2 = phi * (sv_pre / (sn_pre * sn_pre) + sv_post / (sn_post * sn_post));
    if (se2 <= 0.0)
        return -1;
    *drop = sa_pre / sn_pre - sa_post / sn_post;
    *se = sqrt (se2);
    return 0;
}

int
dw_ss_effect (const dw_ss_t *self, size_t tau, double *drop, double *se)
{
    double phi_hat, phi, nu;
    s_ss_dispersion (self, &phi_hat, &phi, &nu);
    return s_ss_effect_phi (self, tau, phi, drop, se);
}

/* -ln p of Z: normal tail while the data show no over-dispersion, Student t
 * with nu degrees of freedom once phi is estimated above 1. */
static double
s_score (double z, double phi_hat, double nu)
{
    if (!(z > 0.0))
        return 0.0;
    if (phi_hat > 1.0)
        return -dw_stats_t_log_sf (z, nu);
    return -dw_stats_normal_log_sf (z);
}

int
dw_ss_scan (const dw_ss_t *self, size_t tau_first, dw_ss_scan_t *out)
{
    memset (out, 0, sizeof *out);
    s_ss_dispersion (self, &out->phi_hat, &out->phi, &out->nu);
    if (tau_first < 1)
        tau_first = 1;

    size_t m = self->days;
    int found = 0;
    double best_down = -INFINITY, best_up = -INFINITY;
    double sa_all = self->sa[m], sn_all = self->sn[m], sv_all = self->sv[m];

    for (size_t tau = tau_first; tau < m; tau++) {
        double sn_pre = self->sn[tau];
        double sn_post = sn_all - sn_pre;
        if (sn_pre <= 0.0 || sn_post <= 0.0)
            continue;
        double sv_pre = self->sv[tau];
        double se2 = out->phi * (sv_pre / (sn_pre * sn_pre)
                                 + (sv_all - sv_pre) / (sn_post * sn_post));
        if (se2 <= 0.0)
            continue;
        double drop = self->sa[tau] / sn_pre - (sa_all - self->sa[tau]) / sn_post;
        double z = drop / sqrt (se2);
        found = 1;
        if (z > best_down) {
            best_down = z;
            out->tau_down = tau;
        }
        if (-z > best_up) {
            best_up = -z;
            out->tau_up = tau;
        }
    }
    if (!found)
        return -1;

    out->z_down = best_down;
    out->z_up = best_up;
    out->s_down = s_score (best_down, out->phi_hat, out->nu);
    out->s_up = s_score (best_up, out->phi_hat, out->nu);
    return 0;
}

/* --- simulation and calibration -------------------------------------------- */

static double
s_logit (double p)
{
    return log (p / (1.0 - p));
}

static double
s_expit (double x)
{
    return 1.0 / (1.0 + exp (-x));
}

void
dw_detector_sim_day (dw_rng_t *rng, const double *rates, size_t tasks, int repeats,
                     double sigma, double missing, long *passes, long *runs)
{
    double shift = sigma > 0.0 ? sigma * dw_rng_normal (rng) : 0.0;

    for (size_t i = 0; i < tasks; i++) {
        double p = rates[i];
        if (shift != 0.0 && p > 0.0 && p < 1.0)
            p = s_expit (s_logit (p) + shift);

        long done = 0;
        long ok = 0;
        for (int r = 0; r < repeats; r++) {
            if (missing > 0.0 && dw_rng_uniform (rng) < missing)
                continue;
            done++;
            ok += dw_rng_uniform (rng) < p;
        }
        passes[i] = ok;
        runs[i] = done;
    }
}

/* Reference rates p_i from per-task baseline counts (EB beta-binomial). */
static void
s_fit_rates (const long *s, const long *n, size_t tasks, double *rates, dw_stats_betabin_t *fit)
{
    dw_stats_betabin_fit (s, n, tasks, fit);
    for (size_t i = 0; i < tasks; i++)
        rates[i] = n[i] > 0 ? dw_stats_betabin_posterior (fit, s[i], n[i]) : fit->mu;
}

static void
s_day_sums (const double *rates, const long *passes, const long *runs, size_t tasks,
            double *a, double *n, double *v)
{
    *a = *n = *v = 0.0;
    for (size_t i = 0; i < tasks; i++) {
        if (runs[i] == 0)
            continue;
        double p = rates[i];
        *a += passes[i] - runs[i] * p;
        *n += runs[i];
        *v += runs[i] * p * (1.0 - p);
    }
}

typedef struct {
    const dw_detector_calibration_t *c;
    double *maxima;
    int first, stride;
    int failed;
} calib_job_t;

static void *
s_calibrate_worker (void *arg)
{
    calib_job_t *job = arg;
    const dw_detector_calibration_t *c = job->c;
    size_t tasks = c->tasks;
    int b = c->baseline_days;

    double *truth = malloc (tasks * sizeof *truth);
    double *fitted = malloc (tasks * sizeof *fitted);
    long *passes = malloc (tasks * sizeof *passes);
    long *runs = malloc (tasks * sizeof *runs);
    long *base_s = malloc (tasks * sizeof *base_s);
    long *base_n = malloc (tasks * sizeof *base_n);
    long *base_days = malloc ((size_t) b * tasks * 2 * sizeof *base_days);
    dw_ss_t *ss = dw_ss_new ((size_t) (b + c->horizon_days));
    if (!truth || !fitted || !passes || !runs || !base_s || !base_n || !base_days || !ss) {
        job->failed = 1;
        goto done;
    }

    for (int y = job->first; y < c->years; y += job->stride) {
        dw_rng_t rng;
        dw_rng_seed (&rng, c->seed ^ (0x9e3779b97f4a7c15ULL * (uint64_t) (y + 1)));

        for (size_t i = 0; i < tasks; i++)
            truth[i] = c->rates ? c->rates[i] : dw_rng_beta (&rng, c->panel_a, c->panel_b);

        /* Baseline: simulate, fit the reference rates, then replay the
         * baseline days under them, exactly as the detector does. */
        memset (base_s, 0, tasks * sizeof *base_s);
        memset (base_n, 0, tasks * sizeof *base_n);
        for (int d = 0; d < b; d++) {
            long *dp = base_days + (size_t) d * tasks * 2;
            dw_detector_sim_day (&rng, truth, tasks, c->repeats, c->sigma, c->missing, dp,
                                 dp + tasks);
            for (size_t i = 0; i < tasks; i++) {
                base_s[i] += dp[i];
                base_n[i] += dp[tasks + i];
            }
        }
        dw_stats_betabin_t fit;
        s_fit_rates (base_s, base_n, tasks, fitted, &fit);

        dw_ss_reset (ss);
        for (int d = 0; d < b; d++) {
            long *dp = base_days + (size_t) d * tasks * 2;
            double a, n, v;
            s_day_sums (fitted, dp, dp + tasks, tasks, &a, &n, &v);
            dw_ss_add_day (ss, a, n, v);
        }

        double year_max = 0.0;
        for (int d = 0; d < c->horizon_days; d++) {
            double a, n, v;
            dw_detector_sim_day (&rng, truth, tasks, c->repeats, c->sigma, c->missing, passes,
                                 runs);
            s_day_sums (fitted, passes, runs, tasks, &a, &n, &v);
            dw_ss_add_day (ss, a, n, v);

            dw_ss_scan_t scan;
            if (dw_ss_scan (ss, (size_t) b, &scan) == 0) {
                double s = scan.s_down > scan.s_up ? scan.s_down : scan.s_up;
                if (s > year_max)
                    year_max = s;
            }
        }
        job->maxima[y] = year_max;
    }

done:
    free (truth);
    free (fitted);
    free (passes);
    free (runs);
    free (base_s);
    free (base_n);
    free (base_days);
    dw_ss_destroy (&ss);
    return NULL;
}

static int
s_cmp_desc (const void *x, const void *y)
{
    double a = *(const double *) x;
    double b = *(const double *) y;
    return (a < b) - (a > b);
}

int
dw_detector_calibrate (const dw_detector_calibration_t *c, double *h, char *err, size_t errlen)
{
    if (c->tasks == 0 || c->repeats < 1 || c->baseline_days < 2 || c->horizon_days < 1
        || c->years < 20 || !(c->alpha > 0.0 && c->alpha < 1.0)) {
        snprintf (err, errlen,
                  "invalid calibration: tasks=%zu repeats=%d baseline_days=%d horizon_days=%d "
                  "years=%d alpha=%g (need tasks>=1, repeats>=1, baseline_days>=2, "
                  "horizon_days>=1, years>=20, 0<alpha<1)",
                  c->tasks, c->repeats, c->baseline_days, c->horizon_days, c->years, c->alpha);
        return -1;
    }
    if (!c->rates && !(c->panel_a > 0.0 && c->panel_b > 0.0)) {
        snprintf (err, errlen, "invalid calibration: no task rates and no Beta panel (a=%g b=%g)",
                  c->panel_a, c->panel_b);
        return -1;
    }

    double *maxima = calloc ((size_t) c->years, sizeof *maxima);
    if (!maxima) {
        snprintf (err, errlen, "out of memory for %d calibration years", c->years);
        return -1;
    }

    int threads = c->threads;
    if (threads < 1)
        threads = 1;
    if (threads > MAX_THREADS)
        threads = MAX_THREADS;
    calib_job_t jobs[MAX_THREADS];
    pthread_t ids[MAX_THREADS];
    int running[MAX_THREADS] = {0};
    for (int t = 0; t < threads; t++) {
        jobs[t] = (calib_job_t) {.c = c, .maxima = maxima, .first = t, .stride = threads};
        if (t > 0)
            running[t] = pthread_create (&ids[t], NULL, s_calibrate_worker, &jobs[t]) == 0;
    }
    s_calibrate_worker (&jobs[0]);
    int failed = jobs[0].failed;
    for (int t = 1; t < threads; t++) {
        if (running[t])
            pthread_join (ids[t], NULL);
        else
            s_calibrate_worker (&jobs[t]);  /* the thread did not start: run its share here */
        failed |= jobs[t].failed;
    }
    if (failed) {
        free (maxima);
        snprintf (err, errlen, "out of memory while simulating %zu tasks", c->tasks);
        return -1;
    }

    /* h = the (floor(alpha Y) + 1)-th largest yearly maximum: at most
     * alpha Y years exceed it. */
    qsort (maxima, (size_t) c->years, sizeof *maxima, s_cmp_desc);
    size_t k = (size_t) floor (c->alpha * c->years);
    *h = maxima[k];
    free (maxima);
    return 0;
}

/* --- detector state --------------------------------------------------------- */

typedef struct {
    int task;
    int pass;
} run_rec_t;

typedef struct {
    int day;
    int incident;
    long planned, excluded;
    run_rec_t *runs;
    size_t count;
    float *metrics;             /* count x DW_METRIC_COUNT, NULL in lean mode */
    double a, n, v;             /* sums under the reference rates of its regime */
} day_rec_t;

struct dw_detector_t {
    dw_detector_config_t config;
    dw_detector_cache_t cache;
    int brief;

    char **names;
    size_t task_count, task_capacity;
    json_t *name_index;

    day_rec_t *hist;
    size_t hist_count, hist_capacity;

    /* current regime */
    char *regime_hash;
    size_t *rdays;              /* hist indices of the regime's valid days */
    size_t rcount, rcapacity;
    int frozen;
    size_t base_days;
    long base_runs, base_passes;
    double *rates;
    size_t rates_len;
    double mu;
    dw_ss_t *ss;
    double h;
    double sigma_c;
    int cal_years;
    size_t tau_min;

    /* active alarm */
    int alarm_dir;
    size_t alarm_idx, alarm_tau;

    /* previous regime, for the version comparison while the baseline builds */
    int has_prev;
    double *prev_rates;
    size_t prev_rates_len;
    double prev_mu, prev_phi, prev_sa, prev_sn, prev_sv;
    double cur_sa, cur_sn, cur_sv;
};

static const char *s_metric_names[DW_METRIC_COUNT] = {
    "input_tokens", "output_tokens", "cost_usd", "runtime_ms", "tool_calls", "turns",
};

const char *
dw_metric_name (dw_metric_t metric)
{
    return metric < DW_METRIC_COUNT ? s_metric_names[metric] : "unknown";
}

static const char *s_status_names[] = {
    "insufficient_data", "baseline", "no_change", "degradation", "improvement", "data_incident",
};

const char *
dw_detector_status_name (dw_detector_status_t status)
{
    return status <= DW_STATUS_DATA_INCIDENT ? s_status_names[status] : "unknown";
}

void
dw_detector_config_defaults (dw_detector_config_t *config)
{
    memset (config, 0, sizeof *config);
    config->baseline_days = DW_DETECTOR_DEFAULT_BASELINE_DAYS;
    config->baseline_min_runs = DW_DETECTOR_DEFAULT_BASELINE_MIN_RUNS;
    config->alpha = DW_DETECTOR_DEFAULT_ALPHA;
    config->horizon_days = DW_DETECTOR_DEFAULT_HORIZON_DAYS;
    config->calibration_years = DW_DETECTOR_DEFAULT_CALIBRATION_YEARS;
    config->seed = DW_DETECTOR_DEFAULT_SEED;
    config->sigma_min = DW_DETECTOR_DEFAULT_SIGMA_MIN;
    config->confirm_days = DW_DETECTOR_DEFAULT_CONFIRM_DAYS;
    config->min_valid_fraction = DW_DETECTOR_DEFAULT_MIN_VALID_FRACTION;
    config->threads = 2;
}

dw_detector_t *
dw_detector_new (const dw_detector_config_t *config, char *err, size_t errlen)
{
    const dw_detector_config_t *c = config;
    if (c->baseline_days < 2 || c->baseline_days > 3650) {
        snprintf (err, errlen, "invalid baseline days %d: use 2..3650 (default %d)",
                  c->baseline_days, DW_DETECTOR_DEFAULT_BASELINE_DAYS);
        return NULL;
    }
    if (c->baseline_min_runs < 0) {
        snprintf (err, errlen, "invalid baseline minimum runs %ld: use >= 0", c->baseline_min_runs);
        return NULL;
    }
    if (!(c->alpha > 0.0 && c->alpha < 0.5)) {
        snprintf (err, errlen, "invalid alpha %g: use a value in (0, 0.5), e.g. 0.05", c->alpha);
        return NULL;
    }
    if (c->fixed_threshold <= 0.0 && (c->calibration_years < 100 || c->calibration_years > 10000000)) {
        snprintf (err, errlen, "invalid calibration years %d: use 100..10000000 (default %d)",
                  c->calibration_years, DW_DETECTOR_DEFAULT_CALIBRATION_YEARS);
        return NULL;
    }
    if (c->horizon_days < 1 || c->confirm_days < 0 || c->sigma_min < 0.0
        || !(c->min_valid_fraction >= 0.0 && c->min_valid_fraction <= 1.0)) {
        snprintf (err, errlen, "invalid detector configuration: horizon_days=%d confirm_days=%d "
                  "sigma_min=%g min_valid_fraction=%g", c->horizon_days, c->confirm_days,
                  c->sigma_min, c->min_valid_fraction);
        return NULL;
    }

    dw_detector_t *self = calloc (1, sizeof *self);
    if (!self) {
        snprintf (err, errlen, "out of memory");
        return NULL;
    }
    self->config = *config;
    self->name_index = json_object ();
    self->ss = dw_ss_new (1024);
    if (!self->name_index || !self->ss) {
        dw_detector_destroy (&self);
        snprintf (err, errlen, "out of memory");
        return NULL;
    }
    return self;
}

static void
s_prev_clear (dw_detector_t *self)
{
    free (self->prev_rates);
    self->prev_rates = NULL;
    self->prev_rates_len = 0;
    self->has_prev = 0;
}

void
dw_detector_destroy (dw_detector_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dw_detector_t *self = *self_p;
    for (size_t i = 0; i < self->task_count; i++)
        free (self->names[i]);
    free (self->names);
    json_decref (self->name_index);
    for (size_t i = 0; i < self->hist_count; i++) {
        free (self->hist[i].runs);
        free (self->hist[i].metrics);
    }
    free (self->hist);
    free (self->regime_hash);
    free (self->rdays);
    free (self->rates);
    dw_ss_destroy (&self->ss);
    s_prev_clear (self);
    free (self);
    *self_p = NULL;
}

void
dw_detector_set_cache (dw_detector_t *self, const dw_detector_cache_t *cache)
{
    if (cache)
        self->cache = *cache;
    else
        memset (&self->cache, 0, sizeof self->cache);
}

int
dw_detector_task_index (dw_detector_t *self, const char *name)
{
    json_t *known = json_object_get (self->name_index, name);
    if (known)
        return (int) json_integer_value (known);
    if (self->task_count >= DW_DETECTOR_MAX_TASKS)
        return -1;

    if (self->task_count == self->task_capacity) {
        size_t capacity = self->task_capacity ? 2 * self->task_capacity : 64;
        char **names = realloc (self->names, capacity * sizeof *names);
        if (!names)
            return -1;
        self->names = names;
        self->task_capacity = capacity;
    }
    char *copy = strdup (name);
    if (!copy)
        return -1;
    int index = (int) self->task_count;
    if (json_object_set_new (self->name_index, name, json_integer (index)) != 0) {
        free (copy);
        return -1;
    }
    self->names[self->task_count++] = copy;
    return index;
}

/* Reference rate of TASK in the current regime; tasks without baseline runs
 * get the panel mean. */
static double
s_rate (const dw_detector_t *self, int task)
{
    if ((size_t) task < self->rates_len)
        return self->rates[task];
    return self->mu;
}

static void
s_record_sums (const day_rec_t *rec, const double *rates, size_t rates_len, double mu,
               double *a, double *n, double *v)
{
    *a = *n = *v = 0.0;
    for (size_t k = 0; k < rec->count; k++) {
        int task = rec->runs[k].task;
        double p = (size_t) task < rates_len ? rates[task] : mu;
        *a += rec->runs[k].pass - p;
        *n += 1.0;
        *v += p * (1.0 - p);
    }
}

static int
s_ensure_ss (dw_detector_t *self, size_t days)
{
    if (days <= self->ss->capacity)
        return 0;
    size_t capacity = self->ss->capacity;
    while (capacity < days)
        capacity *= 2;
    dw_ss_t *bigger = dw_ss_new (capacity);
    if (!bigger)
        return -1;
    dw_ss_destroy (&self->ss);
    self->ss = bigger;
    return 0;
}

/* Calibration cache key: every input of the simulation. */
static void
s_calibration_key (const dw_detector_calibration_t *c, char out[41])
{
    size_t cap = 256 + c->tasks * 24;
    char *text = malloc (cap);
    if (!text) {
        out[0] = '\0';
        return;
    }
    int len = snprintf (text, cap, "ss-v1|%zu|%d|%d|%d|%.6f|%.6f|%d|%.6f|%llu|", c->tasks,
                        c->repeats, c->baseline_days, c->horizon_days, c->sigma, c->missing,
                        c->years, c->alpha, (unsigned long long) c->seed);
    for (size_t i = 0; i < c->tasks && len > 0 && (size_t) len < cap; i++)
        len += snprintf (text + len, cap - (size_t) len, "%.6f,", c->rates[i]);
    dw_sha1_hex (text, strlen (text), out);
    free (text);
}

/* Freeze the baseline: fit reference rates, fill the day sums, set h. */
static int
s_freeze (dw_detector_t *self, char *err, size_t errlen)
{
    size_t tasks = self->task_count;
    long *s = calloc (tasks ? tasks : 1, sizeof *s);
    long *n = calloc (tasks ? tasks : 1, sizeof *n);
    double *rates = calloc (tasks ? tasks : 1, sizeof *rates);
    if (!s || !n || !rates) {
        free (s);
        free (n);
        free (rates);
        snprintf (err, errlen, "out of memory while fitting the baseline");
        return -1;
    }

    long planned = 0;
    for (size_t k = 0; k < self->rcount; k++) {
        const day_rec_t *rec = &self->hist[self->rdays[k]];
        planned += rec->planned;
        for (size_t j = 0; j < rec->count; j++) {
            s[rec->runs[j].task] += rec->runs[j].pass;
            n[rec->runs[j].task] += 1;
        }
    }

    dw_stats_betabin_t fit;
    s_fit_rates (s, n, tasks, rates, &fit);
    free (self->rates);
    self->rates = rates;
    self->rates_len = tasks;
    self->mu = fit.mu;
    self->base_days = self->rcount;
    self->base_runs = fit.runs;
    self->base_passes = 0;
    for (size_t i = 0; i < tasks; i++)
        self->base_passes += s[i];

    if (s_ensure_ss (self, self->rcount + 1) != 0) {
        free (s);
        free (n);
        snprintf (err, errlen, "out of memory for the day sums");
        return -1;
    }
    dw_ss_reset (self->ss);
    double v_total = 0.0;
    for (size_t k = 0; k < self->rcount; k++) {
        day_rec_t *rec = &self->hist[self->rdays[k]];
        s_record_sums (rec, self->rates, self->rates_len, self->mu, &rec->a, &rec->n, &rec->v);
        dw_ss_add_day (self->ss, rec->a, rec->n, rec->v);
        v_total += rec->v;
    }

    /* Calibration design: the baseline tasks with their fitted rates, the
     * observed repeats and loss rate, and a day effect of at least
     * sigma_min on the log-odds. */
    double phi_hat, phi, nu;
    s_ss_dispersion (self->ss, &phi_hat, &phi, &nu);
    double v_day = v_total / (double) self->rcount;
    double sigma_hat = v_day > 0.0 ? sqrt (fmax (0.0, phi_hat - 1.0) / v_day) : 0.0;
    self->sigma_c = fmax (self->config.sigma_min, sigma_hat);

    if (self->config.fixed_threshold > 0.0) {
        self->h = self->config.fixed_threshold;
        self->cal_years = 0;
        free (s);
        free (n);
        return 0;
    }

    size_t used = 0;
    double *panel = malloc ((tasks ? tasks : 1) * sizeof *panel);
    if (!panel) {
        free (s);
        free (n);
        snprintf (err, errlen, "out of memory for the calibration panel");
        return -1;
    }
    for (size_t i = 0; i < tasks; i++)
        if (n[i] > 0)
            panel[used++] = rates[i];

    double per_task_day = (double) planned / ((double) self->rcount * (double) (used ? used : 1));
    int repeats = (int) lround (per_task_day);
    if (repeats < 1)
        repeats = 1;
    double missing = 1.0 - (double) fit.runs / ((double) self->rcount * used * repeats);
    missing = fmin (fmax (missing, 0.0), 0.5);

    dw_detector_calibration_t c = {
        .rates = panel, .tasks = used, .repeats = repeats,
        .baseline_days = (int) self->rcount, .horizon_days = self->config.horizon_days,
        .sigma = self->sigma_c, .missing = missing, .years = self->config.calibration_years,
        .alpha = self->config.alpha, .seed = self->config.seed, .threads = self->config.threads,
    };
    free (s);
    free (n);

    char key[41];
    s_calibration_key (&c, key);
    double h;
    if (self->cache.lookup && key[0] && self->cache.lookup (self->cache.ctx, key, &h) == 1) {
        self->h = h;
        self->cal_years = c.years;
        free (panel);
        return 0;
    }
    if (dw_detector_calibrate (&c, &h, err, errlen) != 0) {
        free (panel);
        return -1;
    }
    free (panel);
    self->h = h;
    self->cal_years = c.years;
    if (self->cache.store && key[0])
        self->cache.store (self->cache.ctx, key, h, c.years);
    return 0;
}

static int
s_regime_push (dw_detector_t *self, size_t hist_index)
{
    if (self->rcount == self->rcapacity) {
        size_t capacity = self->rcapacity ? 2 * self->rcapacity : 128;
        size_t *rdays = realloc (self->rdays, capacity * sizeof *rdays);
        if (!rdays)
            return -1;
        self->rdays = rdays;
        self->rcapacity = capacity;
    }
    self->rdays[self->rcount++] = hist_index;
    return 0;
}

/* Add the valid day at HIST_INDEX to the current regime. */
static int
s_regime_add (dw_detector_t *self, size_t hist_index, char *err, size_t errlen)
{
    if (s_regime_push (self, hist_index) != 0) {
        snprintf (err, errlen, "out of memory");
        return -1;
    }
    day_rec_t *rec = &self->hist[hist_index];

    if (!self->frozen) {
        if (self->has_prev) {
            double a, n, v;
            s_record_sums (rec, self->prev_rates, self->prev_rates_len, self->prev_mu, &a, &n, &v);
            self->cur_sa += a;
            self->cur_sn += n;
            self->cur_sv += v;
        }
        long runs = 0;
        for (size_t k = 0; k < self->rcount; k++)
            runs += (long) self->hist[self->rdays[k]].count;
        if ((int) self->rcount >= self->config.baseline_days
            && runs >= self->config.baseline_min_runs && runs > 0) {
            if (s_freeze (self, err, errlen) != 0)
                return -1;
            self->frozen = 1;
        }
        return 0;
    }

    s_record_sums (rec, self->rates, self->rates_len, self->mu, &rec->a, &rec->n, &rec->v);
    if (s_ensure_ss (self, self->rcount) != 0) {
        snprintf (err, errlen, "out of memory for the day sums");
        return -1;
    }
    if (dw_ss_days (self->ss) + 1 != self->rcount) {
        /* The sums were reallocated: rebuild them from the records. */
        dw_ss_reset (self->ss);
        for (size_t k = 0; k + 1 < self->rcount; k++) {
            const day_rec_t *r = &self->hist[self->rdays[k]];
            dw_ss_add_day (self->ss, r->a, r->n, r->v);
        }
    }
    dw_ss_add_day (self->ss, rec->a, rec->n, rec->v);
    return 0;
}

/* Start a new regime whose first day is the regime day FROM_IDX of the
 * current one (0 keeps nothing old: pass rcount to start empty). The old
 * regime's pre-change part becomes the comparison reference. */
static int
s_restart (dw_detector_t *self, size_t from_idx, const char *hash, char *err, size_t errlen)
{
    s_prev_clear (self);
    if (self->frozen && from_idx > 0) {
        double sa = self->ss->sa[from_idx], sn = self->ss->sn[from_idx], sv = self->ss->sv[from_idx];
        double phi_hat, phi, nu;
        s_ss_dispersion (self->ss, &phi_hat, &phi, &nu);
        self->prev_rates = self->rates;
        self->prev_rates_len = self->rates_len;
        self->rates = NULL;
        self->rates_len = 0;
        self->prev_mu = self->mu;
        self->prev_phi = phi;
        self->prev_sa = sa;
        self->prev_sn = sn;
        self->prev_sv = sv;
        self->has_prev = 1;
    }
    self->cur_sa = self->cur_sn = self->cur_sv = 0.0;

    size_t keep_count = self->rcount > from_idx ? self->rcount - from_idx : 0;
    size_t *keep = NULL;
    if (keep_count) {
        keep = malloc (keep_count * sizeof *keep);
        if (!keep) {
            snprintf (err, errlen, "out of memory");
            return -1;
        }
        memcpy (keep, self->rdays + from_idx, keep_count * sizeof *keep);
    }

    if (hash) {
        free (self->regime_hash);
        self->regime_hash = strdup (hash);
    }
    self->rcount = 0;
    self->frozen = 0;
    self->base_days = 0;
    self->base_runs = self->base_passes = 0;
    free (self->rates);
    self->rates = NULL;
    self->rates_len = 0;
    dw_ss_reset (self->ss);
    self->tau_min = 0;
    self->alarm_dir = 0;

    int rc = 0;
    for (size_t k = 0; k < keep_count && rc == 0; k++)
        rc = s_regime_add (self, keep[k], err, errlen);
    free (keep);
    return rc;
}

int
dw_detector_confirm_alarm (dw_detector_t *self)
{
    if (!self->alarm_dir)
        return -1;
    char err[256];
    return s_restart (self, self->alarm_tau, NULL, err, sizeof err);
}

int
dw_detector_dismiss_alarm (dw_detector_t *self)
{
    if (!self->alarm_dir)
        return -1;
    self->tau_min = self->alarm_idx + 1;
    self->alarm_dir = 0;
    return 0;
}

/* --- report pieces ----------------------------------------------------------- */

void
dw_detector_report_destroy (dw_detector_report_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dw_detector_report_t *self = *self_p;
    for (size_t i = 0; i < self->flip_count; i++)
        free (self->flips[i].name);
    free (self->flips);
    free (self->message);
    free (self);
    *self_p = NULL;
}

static void
s_set_message (dw_detector_report_t *report, const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    char *text = NULL;
    if (vasprintf (&text, fmt, args) < 0)
        text = NULL;
    va_end (args);
    free (report->message);
    report->message = text;
}

static int
s_day_of_regime (const dw_detector_t *self, size_t idx)
{
    return self->hist[self->rdays[idx]].day;
}

static void
s_fill_windows (const dw_detector_t *self, dw_detector_report_t *report, double phi)
{
    double base = self->frozen ? (double) self->base_passes / (double) self->base_runs : NAN;
    const dw_ss_t *ss = self->ss;
    double sa_b = 0, sn_b = 0, sv_b = 0;
    if (self->frozen) {
        sa_b = ss->sa[self->base_days];
        sn_b = ss->sn[self->base_days];
        sv_b = ss->sv[self->base_days];
    }

    for (int w = 0; w < DW_DETECTOR_WINDOWS; w++) {
        dw_detector_window_t *win = &report->windows[w];
        win->window_days = s_windows[w];
        int first = report->day - s_windows[w] + 1;

        for (size_t i = self->hist_count; i-- > 0;) {
            const day_rec_t *rec = &self->hist[i];
            if (rec->day < first)
                break;
            win->runs += (long) rec->count;
            for (size_t k = 0; k < rec->count; k++)
                win->passes += rec->runs[k].pass;
        }
        dw_stats_wilson (win->passes, win->runs, Z95, &win->rate, &win->wilson_lo,
                         &win->wilson_hi);
        win->baseline_rate = base;
        win->z = NAN;
        win->p_drop = NAN;
        win->p_two_sided = NAN;
        if (self->frozen && win->runs > 0 && base > 0.0 && base < 1.0) {
            win->z = (base - win->rate) / sqrt (base * (1.0 - base) / (double) win->runs);
            win->p_drop = dw_stats_binom_cdf (win->passes, win->runs, base);
            win->p_two_sided = dw_stats_binom_test_two_sided (win->passes, win->runs, base);
            win->flag_drop = win->z > 1.96;
        }

        /* Task-adjusted comparison over the regime days in the window. */
        win->paired_drop = NAN;
        win->paired_se = NAN;
        if (!self->frozen)
            continue;
        double sa_w = 0, sn_w = 0, sv_w = 0;
        for (size_t k = self->rcount; k-- > 0;) {
            const day_rec_t *rec = &self->hist[self->rdays[k]];
            if (rec->day < first)
                break;
            sa_w += rec->a;
            sn_w += rec->n;
            sv_w += rec->v;
        }
        if (sn_w > 0 && sn_b > 0) {
            win->paired_drop = sa_b / sn_b - sa_w / sn_w;
            win->paired_se = sqrt (phi * (sv_b / (sn_b * sn_b) + sv_w / (sn_w * sn_w)));
        }
    }
}

static int
s_cmp_flip (const void *x, const void *y)
{
    const dw_detector_flip_t *a = x;
    const dw_detector_flip_t *b = y;
    return (a->contribution < b->contribution) - (a->contribution > b->contribution);
}

/* Per-task table for the change at regime day TAU in direction DIR. */
static int
s_fill_flips (const dw_detector_t *self, dw_detector_report_t *report, size_t tau, int dir)
{
    size_t tasks = self->task_count;
    dw_detector_flip_t *flips = calloc (tasks ? tasks : 1, sizeof *flips);
    double *res_before = calloc (tasks ? tasks : 1, sizeof *res_before);
    double *res_after = calloc (tasks ? tasks : 1, sizeof *res_after);
    if (!flips || !res_before || !res_after) {
        free (flips);
        free (res_before);
        free (res_after);
        return -1;
    }

    double sn_pre = 0, sn_post = 0;
    for (size_t k = 0; k < self->rcount; k++) {
        const day_rec_t *rec = &self->hist[self->rdays[k]];
        int after = k >= tau;
        for (size_t j = 0; j < rec->count; j++) {
            const run_rec_t *run = &rec->runs[j];
            dw_detector_flip_t *f = &flips[run->task];
            double resid = run->pass - s_rate (self, run->task);
            if (after) {
                f->passes_after += run->pass;
                f->runs_after++;
                res_after[run->task] += resid;
                sn_post += 1;
            }
            else {
                f->passes_before += run->pass;
                f->runs_before++;
                res_before[run->task] += resid;
                sn_pre += 1;
            }
        }
    }

    size_t used = 0;
    for (size_t i = 0; i < tasks; i++) {
        dw_detector_flip_t f = flips[i];
        if (f.runs_before == 0 && f.runs_after == 0)
            continue;
        f.task = (int) i;
        f.name = strdup (self->names[i]);
        f.contribution = (sn_pre > 0 ? res_before[i] / sn_pre : 0.0)
                         - (sn_post > 0 ? res_after[i] / sn_post : 0.0);
        long a = f.passes_before, b = f.runs_before - f.passes_before;
        long c = f.passes_after, d = f.runs_after - f.passes_after;
        f.fisher_p = dir >= 0 ? dw_stats_fisher_less (a, b, c, d)
                              : dw_stats_fisher_greater (a, b, c, d);
        /* Sorting key in the alarm's direction; the sign is restored below. */
        f.contribution *= dir >= 0 ? 1.0 : -1.0;
        flips[used++] = f;
    }
    qsort (flips, used, sizeof *flips, s_cmp_flip);
    for (size_t i = 0; i < used; i++)
        flips[i].contribution *= dir >= 0 ? 1.0 : -1.0;

    free (res_before);
    free (res_after);
    report->flips = flips;
    report->flip_count = used;
    return 0;
}

static double
s_metric_log (dw_metric_t metric, double x)
{
    if (isnan (x))
        return NAN;
    /* Counts can be 0, so they use log(1 + x); the others need x > 0. */
    if (metric == DW_METRIC_TOOL_CALLS || metric == DW_METRIC_TURNS)
        return x >= 0.0 ? log1p (x) : NAN;
    return x > 0.0 ? log (x) : NAN;
}

typedef struct {
    int task;
    int after;
    double value;
} metric_value_t;

static int
s_cmp_metric_value (const void *x, const void *y)
{
    const metric_value_t *a = x;
    const metric_value_t *b = y;
    if (a->task != b->task)
        return a->task < b->task ? -1 : 1;
    if (a->after != b->after)
        return a->after < b->after ? -1 : 1;
    return (a->value > b->value) - (a->value < b->value);
}

/* Median of a sorted run of values. */
static double
s_sorted_median (const metric_value_t *v, size_t n)
{
    return n % 2 ? v[n / 2].value : 0.5 * (v[n / 2 - 1].value + v[n / 2].value);
}

/* Secondary metrics: per task, the median log value of the "after" days
 * minus that of the "before" days; then the median over tasks and a
 * Wilcoxon signed-rank test. Regime days [0, END_BEFORE) are before, days
 * from FIRST_AFTER on are after. */
static void
s_fill_secondary (const dw_detector_t *self, dw_detector_report_t *report, size_t end_before,
                  size_t first_after)
{
    size_t tasks = self->task_count;
    size_t total = 0;
    for (size_t k = 0; k < self->rcount; k++)
        total += self->hist[self->rdays[k]].count;
    if (tasks == 0 || total == 0)
        return;

    metric_value_t *values = malloc (total * sizeof *values);
    double *diffs = malloc (tasks * sizeof *diffs);
    if (!values || !diffs)
        goto done;

    for (int m = 0; m < DW_METRIC_COUNT; m++) {
        size_t count = 0;
        for (size_t k = 0; k < self->rcount; k++) {
            if (k >= end_before && k < first_after)
                continue;
            const day_rec_t *rec = &self->hist[self->rdays[k]];
            if (!rec->metrics)
                continue;
            for (size_t j = 0; j < rec->count; j++) {
                double x = s_metric_log ((dw_metric_t) m, rec->metrics[j * DW_METRIC_COUNT + m]);
                if (isnan (x))
                    continue;
                values[count++] = (metric_value_t) {.task = rec->runs[j].task,
                                                    .after = k >= first_after, .value = x};
            }
        }
        qsort (values, count, sizeof *values, s_cmp_metric_value);

        /* Walk the (task, period) segments of the sorted values. */
        size_t used = 0;
        size_t q = 0;
        while (q < count) {
            int task = values[q].task;
            size_t before_start = q;
            while (q < count && values[q].task == task && !values[q].after)
                q++;
            size_t before_n = q - before_start;
            size_t after_start = q;
            while (q < count && values[q].task == task)
                q++;
            size_t after_n = q - after_start;
            if (before_n && after_n)
                diffs[used++] = s_sorted_median (values + after_start, after_n)
                                - s_sorted_median (values + before_start, before_n);
        }

        dw_detector_secondary_t *sec = &report->secondary[m];
        sec->tasks = (int) used;
        sec->median_log_ratio = used ? dw_stats_median (diffs, used) : NAN;
        sec->change_pct = used ? 100.0 * (exp (sec->median_log_ratio) - 1.0) : NAN;
        sec->p_value = used ? dw_stats_wilcoxon_signed_rank (diffs, used) : NAN;
    }

done:
    free (values);
    free (diffs);
}

static void
s_secondary_empty (dw_detector_report_t *report)
{
    for (int m = 0; m < DW_METRIC_COUNT; m++) {
        report->secondary[m].tasks = 0;
        report->secondary[m].median_log_ratio = NAN;
        report->secondary[m].change_pct = NAN;
        report->secondary[m].p_value = NAN;
    }
}

static dw_detector_report_t *
s_report_new (const dw_detector_t *self, const day_rec_t *rec)
{
    dw_detector_report_t *report = calloc (1, sizeof *report);
    if (!report)
        return NULL;
    report->day = rec->day;
    report->alarm_day = -1;
    report->tau_day = report->tau_lo_day = report->tau_hi_day = -1;
    report->effect_pp = report->effect_lo_pp = report->effect_hi_pp = NAN;
    report->version_effect_pp = report->version_lo_pp = report->version_hi_pp = NAN;
    report->z_down = report->z_up = NAN;
    report->phi_hat = report->phi = report->nu = NAN;
    report->h_down = report->h_up = self->frozen ? self->h : NAN;
    report->valid_runs = (long) rec->count;
    report->planned_runs = rec->planned;
    report->excluded_runs = rec->excluded;
    long attempted = (long) rec->count + rec->excluded;
    report->excluded_rate = attempted > 0 ? (double) rec->excluded / (double) attempted : 0.0;
    report->regime_start_day = self->rcount ? s_day_of_regime (self, 0) : rec->day;
    report->regime_valid_days = (int) self->rcount;
    report->baseline_valid_days = self->frozen ? (int) self->base_days : 0;
    report->baseline_runs = self->frozen ? self->base_runs : 0;
    report->baseline_rate = self->frozen && self->base_runs
                            ? (double) self->base_passes / (double) self->base_runs : NAN;
    report->calibration_years = self->cal_years;
    report->sigma_c = self->sigma_c;
    report->seed = self->config.seed;
    s_secondary_empty (report);
    for (int w = 0; w < DW_DETECTOR_WINDOWS; w++)
        report->windows[w].window_days = s_windows[w];
    return report;
}

/* Effect of a change at regime day TAU, in percentage points (after - before). */
static void
s_fill_effect (const dw_detector_t *self, dw_detector_report_t *report, size_t tau, int dir,
               size_t tau_first)
{
    double drop, se;
    if (dw_ss_effect (self->ss, tau, &drop, &se) != 0)
        return;
    report->tau_day = s_day_of_regime (self, tau);
    report->effect_pp = -100.0 * drop;
    report->effect_lo_pp = -100.0 * (drop + Z95 * se);
    report->effect_hi_pp = -100.0 * (drop - Z95 * se);

    /* Range: candidate days whose Z is within 1 of the best in direction DIR. */
    double best = -INFINITY;
    size_t m = dw_ss_days (self->ss);
    for (size_t t = tau_first; t < m; t++)
        if (dw_ss_effect (self->ss, t, &drop, &se) == 0 && dir * drop / se > best)
            best = dir * drop / se;
    size_t lo = tau, hi = tau;
    for (size_t t = tau_first; t < m; t++) {
        if (dw_ss_effect (self->ss, t, &drop, &se) != 0 || dir * drop / se < best - 1.0)
            continue;
        if (t < lo)
            lo = t;
        if (t > hi)
            hi = t;
    }
    report->tau_lo_day = s_day_of_regime (self, lo);
    report->tau_hi_day = s_day_of_regime (self, hi);
}

/* --- adding a day ----------------------------------------------------------- */

/* Verdict-only reports: windows, flip table and secondary metrics skipped. */
static int
s_brief (const dw_detector_t *self)
{
    return self->config.lean || self->brief;
}

void
dw_detector_set_brief (dw_detector_t *self, int brief)
{
    self->brief = brief;
}

static int
s_hist_push (dw_detector_t *self, const dw_detector_day_t *day, int incident, char *err,
             size_t errlen)
{
    if (self->hist_count == self->hist_capacity) {
        size_t capacity = self->hist_capacity ? 2 * self->hist_capacity : 128;
        day_rec_t *hist = realloc (self->hist, capacity * sizeof *hist);
        if (!hist) {
            snprintf (err, errlen, "out of memory");
            return -1;
        }
        self->hist = hist;
        self->hist_capacity = capacity;
    }

    day_rec_t rec = {.day = day->day, .incident = incident, .planned = day->planned,
                     .excluded = day->excluded, .count = day->run_count};
    rec.runs = malloc ((day->run_count ? day->run_count : 1) * sizeof *rec.runs);
    if (!self->config.lean)
        rec.metrics = malloc ((day->run_count ? day->run_count : 1) * DW_METRIC_COUNT
                              * sizeof *rec.metrics);
    if (!rec.runs || (!self->config.lean && !rec.metrics)) {
        free (rec.runs);
        free (rec.metrics);
        snprintf (err, errlen, "out of memory for %zu runs", day->run_count);
        return -1;
    }
    for (size_t k = 0; k < day->run_count; k++) {
        rec.runs[k].task = day->runs[k].task;
        rec.runs[k].pass = day->runs[k].pass ? 1 : 0;
        if (rec.metrics)
            for (int m = 0; m < DW_METRIC_COUNT; m++)
                rec.metrics[k * DW_METRIC_COUNT + m] = (float) day->runs[k].metrics[m];
    }
    self->hist[self->hist_count++] = rec;
    return 0;
}

dw_detector_report_t *
dw_detector_add_day (dw_detector_t *self, const dw_detector_day_t *day, char *err, size_t errlen)
{
    if (self->hist_count && day->day <= self->hist[self->hist_count - 1].day) {
        snprintf (err, errlen, "day %d is not after the previous day %d: add days in order",
                  day->day, self->hist[self->hist_count - 1].day);
        return NULL;
    }
    if (day->run_count > DW_DETECTOR_MAX_RUNS_PER_DAY || day->planned < 0 || day->excluded < 0) {
        snprintf (err, errlen, "invalid day %d: %zu runs (max %d), planned %ld, excluded %ld",
                  day->day, day->run_count, DW_DETECTOR_MAX_RUNS_PER_DAY, day->planned,
                  day->excluded);
        return NULL;
    }
    for (size_t k = 0; k < day->run_count; k++) {
        if (day->runs[k].task < 0 || (size_t) day->runs[k].task >= self->task_count) {
            snprintf (err, errlen, "run %zu of day %d has unknown task index %d: register tasks "
                      "with dw_detector_task_index first", k, day->day, day->runs[k].task);
            return NULL;
        }
    }

    /* A configuration change starts a new regime before the day counts. */
    int config_changed = 0;
    if (day->config_hash && (!self->regime_hash || strcmp (self->regime_hash, day->config_hash))) {
        config_changed = self->regime_hash != NULL;
        if (s_restart (self, self->rcount, day->config_hash, err, errlen) != 0)
            return NULL;
    }

    long planned = day->planned > 0 ? day->planned : (long) day->run_count;
    int incident = (double) day->run_count < self->config.min_valid_fraction * (double) planned
                   || day->run_count == 0;
    if (s_hist_push (self, day, incident, err, errlen) != 0)
        return NULL;
    size_t hist_index = self->hist_count - 1;
    const day_rec_t *rec = &self->hist[hist_index];

    if (!incident && s_regime_add (self, hist_index, err, errlen) != 0)
        return NULL;

    dw_detector_report_t *report = s_report_new (self, rec);
    if (!report) {
        snprintf (err, errlen, "out of memory");
        return NULL;
    }

    double phi_hat = 1.0, phi = 1.0, nu = 1.0;
    if (self->frozen)
        s_ss_dispersion (self->ss, &phi_hat, &phi, &nu);

    if (incident) {
        report->status = DW_STATUS_DATA_INCIDENT;
        s_set_message (report, "%zu valid runs of %ld planned (< %.0f%%): the day adds no evidence",
                       rec->count, planned, 100.0 * self->config.min_valid_fraction);
    }
    else if (!self->frozen || dw_ss_days (self->ss) <= self->base_days) {
        report->status = DW_STATUS_BASELINE;
        if (self->frozen)
            s_set_message (report, "baseline complete (%zu days, %ld runs); monitoring starts "
                           "with the next day", self->base_days, self->base_runs);
        else
            s_set_message (report, "building the baseline: %zu of %d days%s", self->rcount,
                           self->config.baseline_days, config_changed ? " (configuration changed)" : "");
    }

    if (!self->frozen || incident || dw_ss_days (self->ss) <= self->base_days) {
        if (self->frozen) {
            report->phi_hat = phi_hat;
            report->phi = phi;
            report->nu = nu;
        }
        if (!self->frozen && self->has_prev && self->cur_sn > 0 && self->prev_sn > 0) {
            double drop = self->prev_sa / self->prev_sn - self->cur_sa / self->cur_sn;
            double se = sqrt (self->prev_phi * (self->prev_sv / (self->prev_sn * self->prev_sn)
                                                + self->cur_sv / (self->cur_sn * self->cur_sn)));
            report->has_version_comparison = 1;
            report->version_effect_pp = -100.0 * drop;
            report->version_lo_pp = -100.0 * (drop + Z95 * se);
            report->version_hi_pp = -100.0 * (drop - Z95 * se);
        }
        if (self->alarm_dir) {
            report->alarm_direction = self->alarm_dir;
            report->alarm_day = s_day_of_regime (self, self->alarm_idx);
        }
        if (!s_brief (self))
            s_fill_windows (self, report, phi);
        return report;
    }

    /* Monitoring. */
    size_t m = dw_ss_days (self->ss);
    size_t tau_first = self->base_days > self->tau_min ? self->base_days : self->tau_min;
    dw_ss_scan_t scan;
    int have = dw_ss_scan (self->ss, tau_first, &scan) == 0;
    report->phi_hat = phi_hat;
    report->phi = phi;
    report->nu = nu;
    if (have) {
        report->z_down = scan.z_down;
        report->z_up = scan.z_up;
        report->s_down = scan.s_down;
        report->s_up = scan.s_up;
    }

    int confirm_now = 0;
    if (!self->alarm_dir && have) {
        int down = scan.s_down > self->h;
        int up = scan.s_up > self->h;
        if (down || up) {
            report->alarm_down_new = down;
            report->alarm_up_new = up;
            self->alarm_dir = (down && (!up || scan.s_down - self->h >= scan.s_up - self->h))
                              ? 1 : -1;
            self->alarm_idx = m - 1;
            self->alarm_tau = self->alarm_dir > 0 ? scan.tau_down : scan.tau_up;
            report->effect_biased = 1;
            if (self->config.confirm_days == 0)
                confirm_now = 1;
        }
    }
    else if (self->alarm_dir && (int) (m - 1 - self->alarm_idx) >= self->config.confirm_days) {
        /* Re-estimate with the change day fixed: confirm when the change is
         * still significant in the alarm's direction at the 5% level. */
        double drop, se;
        int held = dw_ss_effect (self->ss, self->alarm_tau, &drop, &se) == 0
                   && self->alarm_dir * drop / se > Z95;
        if (held)
            confirm_now = 1;
        else {
            report->alarm_dismissed_today = 1;
            report->alarm_day = s_day_of_regime (self, self->alarm_idx);
            self->tau_min = self->alarm_idx + 1;
            self->alarm_dir = 0;
        }
    }

    if (self->alarm_dir) {
        report->status = self->alarm_dir > 0 ? DW_STATUS_DEGRADATION : DW_STATUS_IMPROVEMENT;
        report->alarm_direction = self->alarm_dir;
        report->alarm_day = s_day_of_regime (self, self->alarm_idx);
        s_fill_effect (self, report, self->alarm_tau, self->alarm_dir, tau_first);
        s_set_message (report, "%s: pass rate %+.1f pp since %d%s",
                       self->alarm_dir > 0 ? "degradation" : "improvement", report->effect_pp,
                       report->tau_day,
                       report->effect_biased ? " (estimate at alarm, biased away from 0)" : "");
        if (!s_brief (self)) {
            s_fill_flips (self, report, self->alarm_tau, self->alarm_dir);
            report->secondary_ref = 1;
            s_fill_secondary (self, report, self->alarm_tau, self->alarm_tau);
        }
    }
    else {
        report->status = DW_STATUS_NO_CHANGE;
        if (have && !s_brief (self)) {
            int dir = scan.s_down >= scan.s_up ? 1 : -1;
            s_fill_effect (self, report, dir > 0 ? scan.tau_down : scan.tau_up, dir, tau_first);
        }
        if (report->alarm_dismissed_today)
            s_set_message (report, "no change: the alarm of day %d did not hold after %d days",
                           report->alarm_day, self->config.confirm_days);
        else
            s_set_message (report, "no change (S_down %.2f, S_up %.2f, threshold %.2f)",
                           report->s_down, report->s_up, self->h);
        if (!s_brief (self)) {
            size_t recent = m > SECONDARY_RECENT_DAYS ? m - SECONDARY_RECENT_DAYS : 0;
            if (recent < self->base_days)
                recent = self->base_days;
            report->secondary_ref = 0;
            s_fill_secondary (self, report, self->base_days, recent);
        }
    }
    if (!s_brief (self))
        s_fill_windows (self, report, phi);

    if (confirm_now) {
        report->alarm_confirmed_today = 1;
        if (s_restart (self, self->alarm_tau, NULL, err, errlen) != 0) {
            dw_detector_report_destroy (&report);
            return NULL;
        }
    }
    return report;
}

/* --- comparing tracks -------------------------------------------------------- */

static const char *s_scope_names[] = {"none", "both", "first_only", "second_only", "undetermined"};

const char *
dw_change_scope_name (dw_change_scope_t scope)
{
    return scope <= DW_CHANGE_UNDETERMINED ? s_scope_names[scope] : "unknown";
}

static int
s_monitoring (const dw_detector_report_t *r)
{
    return r->status == DW_STATUS_NO_CHANGE || r->status == DW_STATUS_DEGRADATION
           || r->status == DW_STATUS_IMPROVEMENT;
}

static int
s_quiet (const dw_detector_report_t *r, int dir)
{
    double s = dir > 0 ? r->s_down : r->s_up;
    double h = dir > 0 ? r->h_down : r->h_up;
    return s_monitoring (r) && r->alarm_direction != dir && s <= 0.5 * h;
}

dw_change_scope_t
dw_detector_compare (const dw_detector_report_t *first, const dw_detector_report_t *second)
{
    for (int dir = 1; dir >= -1; dir -= 2) {
        int a = first->alarm_direction == dir;
        int b = second->alarm_direction == dir;
        if (a && b)
            return DW_CHANGE_BOTH;
        if (a)
            return s_quiet (second, dir) ? DW_CHANGE_FIRST_ONLY : DW_CHANGE_UNDETERMINED;
        if (b)
            return s_quiet (first, dir) ? DW_CHANGE_SECOND_ONLY : DW_CHANGE_UNDETERMINED;
    }
    return DW_CHANGE_NONE;
}

/* --- output ------------------------------------------------------------------ */

static json_t *
s_num (double x)
{
    return isfinite (x) ? json_real (x) : json_null ();
}

static void
s_day_text (int day, char out[11])
{
    if (day < 0) {
        snprintf (out, 11, "-");
        return;
    }
    time_t t = (time_t) day * 86400;
    struct tm tm;
    gmtime_r (&t, &tm);
    strftime (out, 11, "%Y-%m-%d", &tm);
}

static json_t *
s_day_json (int day)
{
    if (day < 0)
        return json_null ();
    char text[11];
    s_day_text (day, text);
    return json_string (text);
}

json_t *
dw_detector_report_json (const dw_detector_report_t *r)
{
    json_t *o = json_object ();
    json_object_set_new (o, "day", s_day_json (r->day));
    json_object_set_new (o, "status", json_string (dw_detector_status_name (r->status)));
    json_object_set_new (o, "message", r->message ? json_string (r->message) : json_null ());
    json_object_set_new (o, "alarm_down_new", json_boolean (r->alarm_down_new));
    json_object_set_new (o, "alarm_up_new", json_boolean (r->alarm_up_new));
    json_object_set_new (o, "alarm_direction", json_integer (r->alarm_direction));
    json_object_set_new (o, "alarm_day", s_day_json (r->alarm_day));
    json_object_set_new (o, "alarm_confirmed_today", json_boolean (r->alarm_confirmed_today));
    json_object_set_new (o, "alarm_dismissed_today", json_boolean (r->alarm_dismissed_today));

    json_t *regime = json_object ();
    json_object_set_new (regime, "start_day", s_day_json (r->regime_start_day));
    json_object_set_new (regime, "valid_days", json_integer (r->regime_valid_days));
    json_object_set_new (regime, "baseline_days", json_integer (r->baseline_valid_days));
    json_object_set_new (regime, "baseline_runs", json_integer (r->baseline_runs));
    json_object_set_new (regime, "baseline_rate", s_num (r->baseline_rate));
    json_object_set_new (o, "regime", regime);

    json_t *runs = json_object ();
    json_object_set_new (runs, "valid", json_integer (r->valid_runs));
    json_object_set_new (runs, "planned", json_integer (r->planned_runs));
    json_object_set_new (runs, "excluded", json_integer (r->excluded_runs));
    json_object_set_new (runs, "excluded_rate", s_num (r->excluded_rate));
    json_object_set_new (o, "runs", runs);

    json_t *det = json_object ();
    json_object_set_new (det, "z_down", s_num (r->z_down));
    json_object_set_new (det, "z_up", s_num (r->z_up));
    json_object_set_new (det, "s_down", s_num (r->s_down));
    json_object_set_new (det, "s_up", s_num (r->s_up));
    json_object_set_new (det, "h_down", s_num (r->h_down));
    json_object_set_new (det, "h_up", s_num (r->h_up));
    json_object_set_new (det, "phi_hat", s_num (r->phi_hat));
    json_object_set_new (det, "phi", s_num (r->phi));
    json_object_set_new (det, "nu", s_num (r->nu));
    json_object_set_new (det, "calibration_years", json_integer (r->calibration_years));
    json_object_set_new (det, "sigma_c", s_num (r->sigma_c));
    json_object_set_new (det, "seed", json_integer ((json_int_t) r->seed));
    json_object_set_new (o, "detector", det);

    json_t *change = json_object ();
    json_object_set_new (change, "tau_day", s_day_json (r->tau_day));
    json_object_set_new (change, "tau_range", json_pack ("[oo]", s_day_json (r->tau_lo_day),
                                                         s_day_json (r->tau_hi_day)));
    json_object_set_new (change, "effect_pp", s_num (r->effect_pp));
    json_object_set_new (change, "effect_ci95_pp", json_pack ("[oo]", s_num (r->effect_lo_pp),
                                                              s_num (r->effect_hi_pp)));
    json_object_set_new (change, "biased_at_alarm", json_boolean (r->effect_biased));
    json_object_set_new (o, "change", change);

    if (r->has_version_comparison)
        json_object_set_new (o, "version_comparison",
                             json_pack ("{s:o, s:[oo], s:s}", "effect_pp",
                                        s_num (r->version_effect_pp), "ci95_pp",
                                        s_num (r->version_lo_pp), s_num (r->version_hi_pp),
                                        "note", "new regime vs previous one, informational"));

    json_t *windows = json_array ();
    for (int w = 0; w < DW_DETECTOR_WINDOWS; w++) {
        const dw_detector_window_t *win = &r->windows[w];
        json_t *j = json_object ();
        json_object_set_new (j, "days", json_integer (win->window_days));
        json_object_set_new (j, "passes", json_integer (win->passes));
        json_object_set_new (j, "runs", json_integer (win->runs));
        json_object_set_new (j, "rate", s_num (win->runs ? win->rate : NAN));
        json_object_set_new (j, "wilson95", json_pack ("[oo]", s_num (win->wilson_lo),
                                                       s_num (win->wilson_hi)));
        json_object_set_new (j, "baseline_rate", s_num (win->baseline_rate));
        json_object_set_new (j, "z", s_num (win->z));
        json_object_set_new (j, "p_drop_uncorrected", s_num (win->p_drop));
        json_object_set_new (j, "p_two_sided_uncorrected", s_num (win->p_two_sided));
        json_object_set_new (j, "marginlab_flag_uncorrected", json_boolean (win->flag_drop));
        json_object_set_new (j, "paired_drop", s_num (win->paired_drop));
        json_object_set_new (j, "paired_se", s_num (win->paired_se));
        json_array_append_new (windows, j);
    }
    json_object_set_new (o, "windows", windows);

    json_t *flips = json_array ();
    for (size_t i = 0; i < r->flip_count; i++) {
        const dw_detector_flip_t *f = &r->flips[i];
        json_array_append_new (flips, json_pack ("{s:s, s:I, s:I, s:I, s:I, s:o, s:o}",
                                                 "task", f->name ? f->name : "",
                                                 "passes_before", (json_int_t) f->passes_before,
                                                 "runs_before", (json_int_t) f->runs_before,
                                                 "passes_after", (json_int_t) f->passes_after,
                                                 "runs_after", (json_int_t) f->runs_after,
                                                 "fisher_p", s_num (f->fisher_p),
                                                 "contribution", s_num (f->contribution)));
    }
    json_object_set_new (o, "tasks", flips);

    json_t *sec = json_object ();
    json_object_set_new (sec, "reference", json_string (r->secondary_ref ? "after_vs_before_tau"
                                                        : "last_7_days_vs_baseline"));
    for (int m = 0; m < DW_METRIC_COUNT; m++) {
        const dw_detector_secondary_t *s = &r->secondary[m];
        json_object_set_new (sec, dw_metric_name ((dw_metric_t) m),
                             json_pack ("{s:i, s:o, s:o, s:o}", "tasks", s->tasks,
                                        "median_log_ratio", s_num (s->median_log_ratio),
                                        "change_pct", s_num (s->change_pct),
                                        "p_wilcoxon", s_num (s->p_value)));
    }
    json_object_set_new (o, "secondary", sec);
    return o;
}

/* Growable text buffer for the human-readable report. */
typedef struct {
    char *data;
    size_t len, cap;
} text_t;

static void
s_text (text_t *t, const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    char *piece = NULL;
    int n = vasprintf (&piece, fmt, args);
    va_end (args);
    if (n < 0)
        return;
    if (t->len + (size_t) n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 1024;
        while (cap < t->len + (size_t) n + 1)
            cap *= 2;
        char *data = realloc (t->data, cap);
        if (!data) {
            free (piece);
            return;
        }
        t->data = data;
        t->cap = cap;
    }
    memcpy (t->data + t->len, piece, (size_t) n + 1);
    t->len += (size_t) n;
    free (piece);
}

char *
dw_detector_report_text (const dw_detector_report_t *r, const char *track)
{
    text_t t = {0};
    char day[11], start[11], tau[11], lo[11], hi[11], alarm[11];
    s_day_text (r->day, day);
    s_day_text (r->regime_start_day, start);
    s_day_text (r->tau_day, tau);
    s_day_text (r->tau_lo_day, lo);
    s_day_text (r->tau_hi_day, hi);
    s_day_text (r->alarm_day, alarm);

    s_text (&t, "track %s  day %s  status %s%s\n", track ? track : "-", day,
            dw_detector_status_name (r->status),
            r->alarm_down_new ? "  NEW DEGRADATION ALARM" : r->alarm_up_new
            ? "  NEW IMPROVEMENT ALARM" : "");
    if (r->message)
        s_text (&t, "  %s\n", r->message);
    s_text (&t, "  runs: %ld valid of %ld planned, %ld excluded (infrastructure, %.1f%%)\n",
            r->valid_runs, r->planned_runs, r->excluded_runs, 100.0 * r->excluded_rate);
    if (isfinite (r->baseline_rate))
        s_text (&t, "  regime since %s: %d valid days, baseline %d days / %ld runs, rate %.3f\n",
                start, r->regime_valid_days, r->baseline_valid_days, r->baseline_runs,
                r->baseline_rate);
    else
        s_text (&t, "  regime since %s: %d valid days, baseline not complete yet\n", start,
                r->regime_valid_days);
    if (isfinite (r->h_down))
        s_text (&t, "  detector: S_down %.2f  S_up %.2f  threshold %.2f (-ln p)  Z_down %.2f  "
                "Z_up %.2f  phi_hat %.2f  nu %.1f\n", r->s_down, r->s_up, r->h_down, r->z_down,
                r->z_up, r->phi_hat, r->nu);
    if (r->alarm_direction)
        s_text (&t, "  alarm raised %s%s\n", alarm,
                r->alarm_confirmed_today ? ", confirmed today: new regime from the change day" : "");
    if (r->alarm_dismissed_today)
        s_text (&t, "  alarm of %s did not hold: regime kept\n", alarm);
    if (isfinite (r->effect_pp))
        s_text (&t, "  change day %s (range %s .. %s): %+.1f pp, 95%% CI [%+.1f, %+.1f]%s\n", tau,
                lo, hi, r->effect_pp, r->effect_lo_pp, r->effect_hi_pp,
                r->effect_biased ? " (estimate at alarm: biased away from 0)" : "");
    if (r->has_version_comparison)
        s_text (&t, "  new configuration vs previous regime: %+.1f pp, 95%% CI [%+.1f, %+.1f] "
                "(informational)\n", r->version_effect_pp, r->version_lo_pp, r->version_hi_pp);

    s_text (&t, "  windows (descriptive, uncorrected for repeated looks):\n");
    for (int w = 0; w < DW_DETECTOR_WINDOWS; w++) {
        const dw_detector_window_t *win = &r->windows[w];
        s_text (&t, "    %2d d: %ld/%ld = %.3f  Wilson95 [%.3f, %.3f]", win->window_days,
                win->passes, win->runs, win->rate, win->wilson_lo, win->wilson_hi);
        if (isfinite (win->z))
            s_text (&t, "  vs %.3f: z %.2f  p_drop %.3g  p_2sided %.3g%s", win->baseline_rate,
                    win->z, win->p_drop, win->p_two_sided, win->flag_drop ? "  [flag]" : "");
        s_text (&t, "\n");
    }

    int shown = 0;
    for (int m = 0; m < DW_METRIC_COUNT; m++) {
        const dw_detector_secondary_t *s = &r->secondary[m];
        if (!s->tasks)
            continue;
        if (!shown++)
            s_text (&t, "  secondary metrics (%s, per-task median of log ratio):\n",
                    r->secondary_ref ? "after vs before the change day" : "last 7 days vs baseline");
        s_text (&t, "    %-13s %+7.1f%%  p %.3g  (%d tasks)\n", dw_metric_name ((dw_metric_t) m),
                s->change_pct, s->p_value, s->tasks);
    }

    if (r->flip_count) {
        s_text (&t, "  tasks (before -> after the change day, sorted by contribution):\n");
        size_t limit = r->flip_count < 15 ? r->flip_count : 15;
        for (size_t i = 0; i < limit; i++) {
            const dw_detector_flip_t *f = &r->flips[i];
            s_text (&t, "    %-40s %ld/%ld -> %ld/%ld  fisher p %.3g  contribution %+.2f pp\n",
                    f->name, f->passes_before, f->runs_before, f->passes_after, f->runs_after,
                    f->fisher_p, 100.0 * f->contribution);
        }
        if (r->flip_count > limit)
            s_text (&t, "    ... %zu more tasks\n", r->flip_count - limit);
    }
    return t.data;
}
