/* Monte Carlo validation of the regression detector against the Marginlab
 * rule on simulated fixed panels (built by tests/bench/detector.cmake, not
 * run by ctest; docs/benchmarks.md records a run).
 *
 * Panel: N tasks with solve rates drawn per replicate from Beta(0.348,
 * 0.252), each run R times a day, B = 14 burn-in days, then monitored days.
 * For each design the SS detector's threshold is calibrated once with
 * dw_detector_calibrate (panels redrawn per simulated year, day effect
 * sigma_c = 0.1), then every replicate runs a dw_detector with that fixed
 * threshold. The Marginlab rule (1/7/30-day windows, baseline fixed from the
 * burn-in, one-sided z > 1.96, no correction) is computed on the same data.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dw_detector.h"

#define PANEL_A 0.348
#define PANEL_B 0.252
#define BASELINE_DAYS 14
#define NULL_DAYS 365
#define CHANGE_DAY 61                   /* monitored day of the first changed day */
#define AFTER_DAYS 365                  /* days followed after the change */
#define CHANGE_RUN_DAYS (CHANGE_DAY - 1 + AFTER_DAYS)
#define NOT_DETECTED 100000
#define MAX_THREADS 16

static const double s_drops[] = {0.03, 0.05, 0.10};
#define DROPS 3

typedef struct {
    int tasks, repeats;
    double h;
    int replicates;
    double drop;            /* 0 = null year */
    uint64_t seed;
    int *ss_result;         /* per replicate: null = alarm (0/1), change = delay */
    int *ml_result;
    int first, stride;
} job_t;

static double
s_expit (double x)
{
    return 1.0 / (1.0 + exp (-x));
}

/* Log-odds shift d so the panel mean drops by exactly DROP. */
static void
s_shift_panel (const double *rates, double *out, int tasks, double drop)
{
    double mean = 0.0;
    for (int i = 0; i < tasks; i++)
        mean += rates[i];
    mean /= tasks;
    double target = mean - drop;

    double lo = 0.0, hi = 30.0;
    for (int it = 0; it < 100; it++) {
        double mid = 0.5 * (lo + hi);
        double m = 0.0;
        for (int i = 0; i < tasks; i++) {
            double p = fmin (fmax (rates[i], 1e-12), 1.0 - 1e-12);
            m += s_expit (log (p / (1.0 - p)) - mid);
        }
        if (m / tasks > target)
            lo = mid;
        else
            hi = mid;
    }
    for (int i = 0; i < tasks; i++) {
        double p = fmin (fmax (rates[i], 1e-12), 1.0 - 1e-12);
        out[i] = s_expit (log (p / (1.0 - p)) - 0.5 * (lo + hi));
    }
}

static void *
s_worker (void *arg)
{
    job_t *job = arg;
    int tasks = job->tasks;
    double *rates = malloc (tasks * sizeof *rates);
    double *changed = malloc (tasks * sizeof *changed);
    long *passes = malloc (tasks * sizeof *passes);
    long *runs = malloc (tasks * sizeof *runs);
    dw_detector_run_t *day_runs = malloc ((size_t) tasks * job->repeats * sizeof *day_runs);
    int total_days = BASELINE_DAYS + (job->drop > 0 ? CHANGE_RUN_DAYS : NULL_DAYS);
    long *day_x = malloc (total_days * sizeof *day_x);
    long *day_n = malloc (total_days * sizeof *day_n);

    for (int rep = job->first; rep < job->replicates; rep += job->stride) {
        dw_rng_t rng;
        dw_rng_seed (&rng, job->seed ^ (0xd1b54a32d192ed03ULL * (uint64_t) (rep + 1)));
        for (int i = 0; i < tasks; i++)
            rates[i] = dw_rng_beta (&rng, PANEL_A, PANEL_B);
        if (job->drop > 0)
            s_shift_panel (rates, changed, tasks, job->drop);

        dw_detector_config_t config;
        dw_detector_config_defaults (&config);
        config.baseline_days = BASELINE_DAYS;
        config.baseline_min_runs = 0;
        config.fixed_threshold = job->h;
        config.confirm_days = 100000;       /* alarms stay pending: decided here */
        config.lean = 1;
        char err[256];
        dw_detector_t *det = dw_detector_new (&config, err, sizeof err);
        for (int i = 0; i < tasks; i++) {
            char name[32];
            snprintf (name, sizeof name, "t%d", i);
            dw_detector_task_index (det, name);
        }

        int ss_out = job->drop > 0 ? NOT_DETECTED : 0;
        int ml_out = job->drop > 0 ? NOT_DETECTED : 0;
        double base_rate = 0.0;
        long base_x = 0, base_n = 0;

        for (int d = 0; d < total_days; d++) {
            int monitored = d - BASELINE_DAYS + 1;      /* 1-based monitored day */
            int after = job->drop > 0 && monitored >= CHANGE_DAY;
            dw_detector_sim_day (&rng, after ? changed : rates, (size_t) tasks, job->repeats, 0.0,
                                 0.0, passes, runs);
            size_t count = 0;
            long x = 0, n = 0;
            for (int i = 0; i < tasks; i++) {
                for (long r = 0; r < runs[i]; r++) {
                    day_runs[count].task = i;
                    day_runs[count].pass = r < passes[i];
                    count++;
                }
                x += passes[i];
                n += runs[i];
            }
            day_x[d] = x;
            day_n[d] = n;

            dw_detector_day_t day = {.day = 1000 + d, .config_hash = "bench", .runs = day_runs,
                                     .run_count = count, .planned = (long) count};
            dw_detector_report_t *report = dw_detector_add_day (det, &day, err, sizeof err);
            if (!report) {
                fprintf (stderr, "detector error: %s\n", err);
                exit (1);
            }

            if (monitored < 1) {
                base_x += x;
                base_n += n;
                if (monitored == 0)
                    base_rate = (double) base_x / (double) base_n;
                dw_detector_report_destroy (&report);
                continue;
            }

            /* SS detector: the first alarm counts; in change runs an alarm
             * before the change is dismissed (only later change days are
             * considered afterwards), as an investigated false alarm would be. */
            int ss_alarm = report->alarm_down_new || report->alarm_up_new;
            int ss_drop = report->alarm_down_new;
            dw_detector_report_destroy (&report);
            if (ss_alarm) {
                if (job->drop <= 0)
                    ss_out = 1;
                else if (ss_drop && monitored >= CHANGE_DAY && ss_out == NOT_DETECTED)
                    ss_out = monitored - CHANGE_DAY + 1;
                dw_detector_dismiss_alarm (det);
            }

            /* Marginlab rule on the monitored days so far. */
            int ml_flag = 0;
            static const int windows[] = {1, 7, 30};
            for (int w = 0; w < 3 && !ml_flag; w++) {
                long wx = 0, wn = 0;
                for (int k = 0; k < windows[w] && monitored - k >= 1; k++) {
                    wx += day_x[d - k];
                    wn += day_n[d - k];
                }
                if (wn == 0)
                    continue;
                double z = (base_rate - (double) wx / wn)
                           / sqrt (base_rate * (1.0 - base_rate) / (double) wn);
                ml_flag = z > 1.96;
            }
            if (ml_flag) {
                if (job->drop <= 0)
                    ml_out = 1;
                else if (monitored >= CHANGE_DAY && ml_out == NOT_DETECTED)
                    ml_out = monitored - CHANGE_DAY + 1;
            }
            if (job->drop > 0 && ss_out != NOT_DETECTED && ml_out != NOT_DETECTED)
                break;
            if (job->drop <= 0 && ss_out && ml_out)
                break;
        }
        job->ss_result[rep] = ss_out;
        job->ml_result[rep] = ml_out;
        dw_detector_destroy (&det);
    }
    free (rates);
    free (changed);
    free (passes);
    free (runs);
    free (day_runs);
    free (day_x);
    free (day_n);
    return NULL;
}

static void
s_run (job_t *proto, int threads)
{
    job_t jobs[MAX_THREADS];
    pthread_t ids[MAX_THREADS];
    for (int t = 0; t < threads; t++) {
        jobs[t] = *proto;
        jobs[t].first = t;
        jobs[t].stride = threads;
        pthread_create (&ids[t], NULL, s_worker, &jobs[t]);
    }
    for (int t = 0; t < threads; t++)
        pthread_join (ids[t], NULL);
}

static int
s_cmp_int (const void *a, const void *b)
{
    int x = *(const int *) a, y = *(const int *) b;
    return (x > y) - (x < y);
}

static void
s_delay_cell (int *delays, int n, char *out, size_t outlen)
{
    qsort (delays, n, sizeof *delays, s_cmp_int);
    int med = delays[(n - 1) / 2];
    int p90 = delays[(int) ceil (0.9 * n) - 1];
    char a[16], b[16];
    if (med > AFTER_DAYS)
        snprintf (a, sizeof a, ">%d", AFTER_DAYS);
    else
        snprintf (a, sizeof a, "%d", med);
    if (p90 > AFTER_DAYS)
        snprintf (b, sizeof b, ">%d", AFTER_DAYS);
    else
        snprintf (b, sizeof b, "%d", p90);
    snprintf (out, outlen, "%s / %s", a, b);
}

static double
s_now (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int
main (int argc, char **argv)
{
    int null_years = 2000, replicates = 2000, cal_years = 10000, threads = 2;
    uint64_t seed = 2026;
    for (int i = 1; i < argc; i++) {
        if (!strcmp (argv[i], "--null-years") && i + 1 < argc)
            null_years = atoi (argv[++i]);
        else if (!strcmp (argv[i], "--replicates") && i + 1 < argc)
            replicates = atoi (argv[++i]);
        else if (!strcmp (argv[i], "--calibration-years") && i + 1 < argc)
            cal_years = atoi (argv[++i]);
        else if (!strcmp (argv[i], "--threads") && i + 1 < argc)
            threads = atoi (argv[++i]);
        else if (!strcmp (argv[i], "--seed") && i + 1 < argc)
            seed = strtoull (argv[++i], NULL, 10);
        else {
            fprintf (stderr, "usage: %s [--null-years N] [--replicates N] "
                     "[--calibration-years N] [--threads N] [--seed S]\n", argv[0]);
            return 2;
        }
    }
    if (threads < 1 || threads > MAX_THREADS || null_years < 10 || replicates < 10
        || cal_years < 100) {
        fprintf (stderr, "invalid arguments: threads 1..%d, null-years >= 10, replicates >= 10, "
                 "calibration-years >= 100\n", MAX_THREADS);
        return 2;
    }

    printf ("# detector_bench: panels Beta(%.3f, %.3f), burn-in B = %d days, change on monitored "
            "day %d (log-odds shift)\n", PANEL_A, PANEL_B, BASELINE_DAYS, CHANGE_DAY);
    printf ("# calibration years %d (sigma_c = 0.1, alpha = 0.05 over %d days), null years %d, "
            "replicates per drop %d, seed %llu, threads %d\n\n", cal_years, NULL_DAYS, null_years,
            replicates, (unsigned long long) seed, threads);
    printf ("| design | method | threshold | P(>=1 FA in 365 d) | -3 pp median / p90 | "
            "-5 pp median / p90 | -10 pp median / p90 |\n");
    printf ("|---|---|---|---|---|---|---|\n");
    fflush (stdout);

    static const int designs[][2] = {{50, 1}, {50, 3}, {200, 1}, {200, 3}};
    int *ss = malloc (sizeof (int) * (replicates > null_years ? replicates : null_years));
    int *ml = malloc (sizeof (int) * (replicates > null_years ? replicates : null_years));

    for (int k = 0; k < 4; k++) {
        int tasks = designs[k][0], repeats = designs[k][1];
        double t0 = s_now ();

        dw_detector_calibration_t c = {
            .tasks = (size_t) tasks, .panel_a = PANEL_A, .panel_b = PANEL_B, .repeats = repeats,
            .baseline_days = BASELINE_DAYS, .horizon_days = NULL_DAYS, .sigma = 0.1,
            .years = cal_years, .alpha = 0.05, .seed = seed + (uint64_t) k, .threads = threads,
        };
        double h;
        char err[256];
        if (dw_detector_calibrate (&c, &h, err, sizeof err) != 0) {
            fprintf (stderr, "calibration failed: %s\n", err);
            return 1;
        }
        double t_cal = s_now () - t0;

        job_t proto = {.tasks = tasks, .repeats = repeats, .h = h, .replicates = null_years,
                       .drop = 0.0, .seed = seed * 7919 + 100 + (uint64_t) k, .ss_result = ss,
                       .ml_result = ml};
        s_run (&proto, threads);
        int ss_fa = 0, ml_fa = 0;
        for (int r = 0; r < null_years; r++) {
            ss_fa += ss[r];
            ml_fa += ml[r];
        }

        char ss_cells[DROPS][40], ml_cells[DROPS][40];
        for (int j = 0; j < DROPS; j++) {
            proto.replicates = replicates;
            proto.drop = s_drops[j];
            proto.seed = seed * 104729 + 1000 * (uint64_t) (j + 1) + (uint64_t) k;
            s_run (&proto, threads);
            s_delay_cell (ss, replicates, ss_cells[j], sizeof ss_cells[j]);
            s_delay_cell (ml, replicates, ml_cells[j], sizeof ml_cells[j]);
        }

        printf ("| N=%d R=%d | driftwatch SS paired GLR, 2-sided, phi+t | %.4f | %.3f | %s | %s | "
                "%s |\n", tasks, repeats, h, (double) ss_fa / null_years, ss_cells[0], ss_cells[1],
                ss_cells[2]);
        printf ("| N=%d R=%d | Marginlab rule, z > 1.96 | 1.96 | %.3f | %s | %s | %s |\n", tasks,
                repeats, (double) ml_fa / null_years, ml_cells[0], ml_cells[1], ml_cells[2]);
        fprintf (stderr, "design N=%d R=%d: calibration %.1f s, total %.1f s\n", tasks, repeats,
                 t_cal, s_now () - t0);
        fflush (stdout);
    }
    free (ss);
    free (ml);
    return 0;
}
