/* Statistics toolbox: see dw_stats.h for the contracts. */
#include "dw_stats.h"

#include <assert.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Iteration cap of the incomplete-beta continued fraction. It converges in
 * O(sqrt(max(a, b))) steps, so 20,000 covers binomial n far beyond 1e6. */
#define IBETA_MAX_ITER 20000
#define IBETA_EPS 1e-15
#define IBETA_TINY 1e-300

/* Largest sample handled by the exact Wilcoxon distribution. */
#define WILCOXON_EXACT_MAX 50

/* --- special functions ------------------------------------------------------ */

static double
s_log_beta (double a, double b)
{
    return lgamma (a) + lgamma (b) - lgamma (a + b);
}

/* Continued fraction of I_x(a, b) (modified Lentz method). */
static double
s_ibeta_cf (double x, double a, double b)
{
    double qab = a + b;
    double qap = a + 1.0;
    double qam = a - 1.0;
    double c = 1.0;
    double d = 1.0 - qab * x / qap;
    if (fabs (d) < IBETA_TINY)
        d = IBETA_TINY;
    d = 1.0 / d;
    double h = d;

    for (int m = 1; m <= IBETA_MAX_ITER; m++) {
        int m2 = 2 * m;

        /* even step */
        double aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if (fabs (d) < IBETA_TINY)
            d = IBETA_TINY;
        c = 1.0 + aa / c;
        if (fabs (c) < IBETA_TINY)
            c = IBETA_TINY;
        d = 1.0 / d;
        h *= d * c;

        /* odd step */
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if (fabs (d) < IBETA_TINY)
            d = IBETA_TINY;
        c = 1.0 + aa / c;
        if (fabs (c) < IBETA_TINY)
            c = IBETA_TINY;
        d = 1.0 / d;
        double delta = d * c;
        h *= delta;
        if (fabs (delta - 1.0) < IBETA_EPS)
            break;
    }
    return h;
}

/* Log of the prefactor x^a (1-x)^b / B(a, b). */
static double
s_ibeta_log_front (double x, double a, double b)
{
    return a * log (x) + b * log1p (-x) - s_log_beta (a, b);
}

double
dw_stats_log_ibeta (double x, double a, double b)
{
    assert (a > 0 && b > 0);
    if (x <= 0.0)
        return -INFINITY;
    if (x >= 1.0)
        return 0.0;

    double front = s_ibeta_log_front (x, a, b);

    /* The fraction converges fast only below the mean; use the symmetry
     * I_x(a, b) = 1 - I_{1-x}(b, a) above it. */
    if (x < (a + 1.0) / (a + b + 2.0))
        return front + log (s_ibeta_cf (x, a, b)) - log (a);
    return log1p (-exp (front) * s_ibeta_cf (1.0 - x, b, a) / b);
}

double
dw_stats_ibeta (double x, double a, double b)
{
    return exp (dw_stats_log_ibeta (x, a, b));
}

double
dw_stats_normal_cdf (double x)
{
    return 0.5 * erfc (-x / M_SQRT2);
}

double
dw_stats_normal_sf (double x)
{
    return 0.5 * erfc (x / M_SQRT2);
}

double
dw_stats_normal_log_sf (double x)
{
    if (x < 30.0)
        return log (dw_stats_normal_sf (x));

    /* Mills-ratio series: 1 - Phi(x) = phi(x)/x (1 - 1/x^2 + 3/x^4 - 15/x^6 ...). */
    double x2 = x * x;
    double series = 1.0 - 1.0 / x2 + 3.0 / (x2 * x2) - 15.0 / (x2 * x2 * x2);
    return -0.5 * x2 - log (x) - 0.5 * log (2.0 * M_PI) + log (series);
}

double
dw_stats_normal_quantile (double p)
{
    if (p <= 0.0)
        return -INFINITY;
    if (p >= 1.0)
        return INFINITY;
    if (p > 0.5)
        return -dw_stats_normal_quantile (1.0 - p);

    /* Starting value from Abramowitz and Stegun 26.2.23 (error < 4.5e-4),
     * then Halley steps on Phi(x) = p to full double precision. */
    double t = sqrt (-2.0 * log (p));
    double x = -(t - (2.515517 + 0.802853 * t + 0.010328 * t * t)
                     / (1.0 + 1.432788 * t + 0.189269 * t * t + 0.001308 * t * t * t));
    for (int i = 0; i < 3; i++) {
        double e = dw_stats_normal_cdf (x) - p;
        double u = e * sqrt (2.0 * M_PI) * exp (0.5 * x * x);
        x = x - u / (1.0 + 0.5 * x * u);
    }
    return x;
}

double
dw_stats_t_log_sf (double t, double nu)
{
    assert (nu > 0);
    if (isinf (nu))
        return dw_stats_normal_log_sf (t);

    double x = nu / (nu + t * t);
    double log_half_tail = log (0.5) + dw_stats_log_ibeta (x, 0.5 * nu, 0.5);
    if (t > 0)
        return log_half_tail;
    return log1p (-exp (log_half_tail));
}

double
dw_stats_t_sf (double t, double nu)
{
    return exp (dw_stats_t_log_sf (t, nu));
}

/* --- binomial and related tests -------------------------------------------- */

void
dw_stats_wilson (long x, long n, double z, double *p, double *lo, double *hi)
{
    if (n <= 0) {
        *p = 0.0;
        *lo = 0.0;
        *hi = 1.0;
        return;
    }
    double ph = (double) x / (double) n;
    double z2 = z * z;
    double denom = 1.0 + z2 / n;
    double center = (ph + z2 / (2.0 * n)) / denom;
    double half = z * sqrt (ph * (1.0 - ph) / n + z2 / (4.0 * (double) n * n)) / denom;
    *p = ph;
    *lo = fmax (0.0, center - half);
    *hi = fmin (1.0, center + half);
}

static double
s_log_choose (long n, long k)
{
    return lgamma (n + 1.0) - lgamma (k + 1.0) - lgamma (n - k + 1.0);
}

double
dw_stats_binom_log_pmf (long k, long n, double p)
{
    if (k < 0 || k > n)
        return -INFINITY;
    if (p <= 0.0)
        return k == 0 ? 0.0 : -INFINITY;
    if (p >= 1.0)
        return k == n ? 0.0 : -INFINITY;
    return s_log_choose (n, k) + k * log (p) + (n - k) * log1p (-p);
}

double
dw_stats_binom_cdf (long k, long n, double p)
{
    if (k < 0)
        return 0.0;
    if (k >= n)
        return 1.0;
    if (p <= 0.0)
        return 1.0;
    if (p >= 1.0)
        return 0.0;
    /* P(X <= k) = I_{1-p}(n - k, k + 1) */
    return dw_stats_ibeta (1.0 - p, (double) (n - k), (double) k + 1.0);
}

double
dw_stats_binom_sf (long k, long n, double p)
{
    if (k <= 0)
        return 1.0;
    if (k > n)
        return 0.0;
    if (p <= 0.0)
        return 0.0;
    if (p >= 1.0)
        return 1.0;
    /* P(X >= k) = I_p(k, n - k + 1) */
    return dw_stats_ibeta (p, (double) k, (double) (n - k) + 1.0);
}

double
dw_stats_binom_test_two_sided (long k, long n, double p)
{
    if (n <= 0)
        return 1.0;
    if (p <= 0.0)
        return k == 0 ? 1.0 : 0.0;
    if (p >= 1.0)
        return k == n ? 1.0 : 0.0;

    /* Outcomes within a relative 1e-7 of the observed probability count as
     * "as likely", which keeps symmetric cases exact despite rounding. */
    double log_d = dw_stats_binom_log_pmf (k, n, p) + 1e-7;
    double m = n * p;
    double total;

    if (fabs (k - m) < 1e-12)
        return 1.0;

    if (k < m) {
        /* pmf is non-increasing on [ceil(m), n]: find the first i there
         * with pmf(i) <= pmf(k) by bisection. */
        long lo = (long) ceil (m);
        long hi = n + 1;
        while (lo < hi) {
            long mid = lo + (hi - lo) / 2;
            if (dw_stats_binom_log_pmf (mid, n, p) <= log_d)
                hi = mid;
            else
                lo = mid + 1;
        }
        total = dw_stats_binom_cdf (k, n, p) + (lo <= n ? dw_stats_binom_sf (lo, n, p) : 0.0);
    }
    else {
        /* pmf is non-decreasing on [0, floor(m)]: find the last i there with
         * pmf(i) <= pmf(k). */
        long lo = -1;
        long hi = (long) floor (m);
        while (lo < hi) {
            long mid = lo + (hi - lo + 1) / 2;
            if (dw_stats_binom_log_pmf (mid, n, p) <= log_d)
                lo = mid;
            else
                hi = mid - 1;
        }
        total = (lo >= 0 ? dw_stats_binom_cdf (lo, n, p) : 0.0) + dw_stats_binom_sf (k, n, p);
    }
    return fmin (1.0, total);
}

/* Hypergeometric log pmf: J passes in a row of M drawn from N with K passes. */
static double
s_hyper_log_pmf (long j, long n, long k, long m)
{
    return s_log_choose (k, j) + s_log_choose (n - k, m - j) - s_log_choose (n, m);
}

static double
s_fisher_tail (long a, long b, long c, long d, int lower)
{
    assert (a >= 0 && b >= 0 && c >= 0 && d >= 0);
    long n = a + b + c + d;
    long k = a + c;
    long m = c + d;
    long jmin = m - (n - k) > 0 ? m - (n - k) : 0;
    long jmax = k < m ? k : m;
    if (n == 0 || m == 0 || m == n)
        return 1.0;

    long from = lower ? jmin : c;
    long to = lower ? c : jmax;
    double sum = 0.0;
    for (long j = from; j <= to; j++)
        sum += exp (s_hyper_log_pmf (j, n, k, m));
    return fmin (1.0, sum);
}

double
dw_stats_fisher_less (long a, long b, long c, long d)
{
    return s_fisher_tail (a, b, c, d, 1);
}

double
dw_stats_fisher_greater (long a, long b, long c, long d)
{
    return s_fisher_tail (a, b, c, d, 0);
}

double
dw_stats_sign_test (long positive, long negative)
{
    return dw_stats_binom_test_two_sided (positive, positive + negative, 0.5);
}

static int
s_cmp_double (const void *x, const void *y)
{
    double a = *(const double *) x;
    double b = *(const double *) y;
    return (a > b) - (a < b);
}

double
dw_stats_median (const double *values, size_t n)
{
    if (n == 0)
        return NAN;
    double *copy = malloc (n * sizeof *copy);
    if (!copy)
        return NAN;
    memcpy (copy, values, n * sizeof *copy);
    qsort (copy, n, sizeof *copy, s_cmp_double);
    double median = n % 2 ? copy[n / 2] : 0.5 * (copy[n / 2 - 1] + copy[n / 2]);
    free (copy);
    return median;
}

double
dw_stats_wilcoxon_signed_rank (const double *diff, size_t n)
{
    double *abs_values = malloc ((n ? n : 1) * sizeof *abs_values);
    int *positive = malloc ((n ? n : 1) * sizeof *positive);
    if (!abs_values || !positive) {
        free (abs_values);
        free (positive);
        return NAN;
    }

    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        if (diff[i] == 0.0 || isnan (diff[i]))
            continue;
        abs_values[used] = fabs (diff[i]);
        positive[used] = diff[i] > 0;
        used++;
    }
    if (used == 0) {
        free (abs_values);
        free (positive);
        return 1.0;
    }

    /* Mid-ranks: rank of value i = 1 + #smaller + (#equal - 1)/2. O(n^2) is
     * fine for the per-task panels this serves. */
    double w_plus = 0.0;
    double tie_term = 0.0;
    int ties = 0;
    for (size_t i = 0; i < used; i++) {
        long smaller = 0;
        long equal = 0;
        for (size_t j = 0; j < used; j++) {
            if (abs_values[j] < abs_values[i])
                smaller++;
            else if (abs_values[j] == abs_values[i])
                equal++;
        }
        if (equal > 1) {
            ties = 1;
            tie_term += (double) (equal * equal * equal - equal) / (double) equal;
        }
        if (positive[i])
            w_plus += 1.0 + smaller + (equal - 1) / 2.0;
    }
    free (abs_values);
    free (positive);

    double nn = (double) used;
    double mean = nn * (nn + 1.0) / 4.0;

    if (!ties && used <= WILCOXON_EXACT_MAX) {
        /* counts[w] = number of sign patterns with W+ = w. */
        size_t max_w = used * (used + 1) / 2;
        double *counts = calloc (max_w + 1, sizeof *counts);
        if (!counts)
            return NAN;
        counts[0] = 1.0;
        for (size_t r = 1; r <= used; r++)
            for (size_t w = max_w; w >= r; w--)
                counts[w] += counts[w - r];
        double total = ldexp (1.0, (int) used);
        long w_obs = lround (w_plus);
        double lower = 0.0;
        double upper = 0.0;
        for (size_t w = 0; w <= max_w; w++) {
            if ((long) w <= w_obs)
                lower += counts[w];
            if ((long) w >= w_obs)
                upper += counts[w];
        }
        free (counts);
        return fmin (1.0, 2.0 * fmin (lower, upper) / total);
    }

    double var = nn * (nn + 1.0) * (2.0 * nn + 1.0) / 24.0 - tie_term / 48.0;
    if (var <= 0.0)
        return 1.0;
    double dev = fabs (w_plus - mean) - 0.5;
    if (dev < 0.0)
        dev = 0.0;
    return fmin (1.0, 2.0 * dw_stats_normal_sf (dev / sqrt (var)));
}

/* --- seeded pseudo-random numbers ------------------------------------------- */

static uint64_t
s_splitmix64 (uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t
s_rotl (uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void
dw_rng_seed (dw_rng_t *rng, uint64_t seed)
{
    uint64_t state = seed;
    for (int i = 0; i < 4; i++)
        rng->s[i] = s_splitmix64 (&state);
}

uint64_t
dw_rng_next (dw_rng_t *rng)
{
    uint64_t *s = rng->s;
    uint64_t result = s_rotl (s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = s_rotl (s[3], 45);
    return result;
}

double
dw_rng_uniform (dw_rng_t *rng)
{
    return (double) (dw_rng_next (rng) >> 11) * 0x1.0p-53;
}

double
dw_rng_normal (dw_rng_t *rng)
{
    for (;;) {
        double u = 2.0 * dw_rng_uniform (rng) - 1.0;
        double v = 2.0 * dw_rng_uniform (rng) - 1.0;
        double s = u * u + v * v;
        if (s > 0.0 && s < 1.0)
            return u * sqrt (-2.0 * log (s) / s);
    }
}

double
dw_rng_gamma (dw_rng_t *rng, double shape)
{
    assert (shape > 0);
    if (shape < 1.0) {
        /* Gamma(a) = Gamma(a + 1) U^(1/a) */
        double u = dw_rng_uniform (rng);
        return dw_rng_gamma (rng, shape + 1.0) * pow (u, 1.0 / shape);
    }

    double d = shape - 1.0 / 3.0;
    double c = 1.0 / sqrt (9.0 * d);
    for (;;) {
        double x = dw_rng_normal (rng);
        double v = 1.0 + c * x;
        if (v <= 0.0)
            continue;
        v = v * v * v;
        double u = dw_rng_uniform (rng);
        if (u < 1.0 - 0.0331 * x * x * x * x)
            return d * v;
        if (log (u) < 0.5 * x * x + d * (1.0 - v + log (v)))
            return d * v;
    }
}

double
dw_rng_beta (dw_rng_t *rng, double a, double b)
{
    double x = dw_rng_gamma (rng, a);
    double y = dw_rng_gamma (rng, b);
    if (x + y <= 0.0)
        return dw_rng_uniform (rng) < a / (a + b) ? 1.0 : 0.0;
    return x / (x + y);
}

long
dw_rng_binomial (dw_rng_t *rng, long n, double p)
{
    if (n <= 0 || p <= 0.0)
        return 0;
    if (p >= 1.0)
        return n;

    if (n <= 64) {
        long k = 0;
        for (long i = 0; i < n; i++)
            k += dw_rng_uniform (rng) < p;
        return k;
    }

    /* Inversion starting at the mode: walk down or up the CDF until it
     * brackets U, updating the pmf by its ratio recurrence. */
    double u = dw_rng_uniform (rng);
    double odds = p / (1.0 - p);
    long k = (long) floor ((n + 1) * p);
    if (k > n)
        k = n;
    double pmf = exp (dw_stats_binom_log_pmf (k, n, p));
    double cdf = dw_stats_binom_cdf (k, n, p);

    if (u <= cdf) {
        while (k > 0 && u <= cdf - pmf) {
            cdf -= pmf;
            pmf *= (double) k / ((double) (n - k + 1) * odds);
            k--;
        }
        return k;
    }
    while (k < n && cdf < u) {
        pmf *= (double) (n - k) / (double) (k + 1) * odds;
        k++;
        cdf += pmf;
    }
    return k;
}

/* --- empirical-Bayes beta-binomial ------------------------------------------ */

int
dw_stats_betabin_fit (const long *s, const long *n, size_t count, dw_stats_betabin_t *fit)
{
    if (count == 0)
        return -1;
    memset (fit, 0, sizeof *fit);

    long total_s = 0;
    long total_n = 0;
    double inv_n_sum = 0.0;
    for (size_t i = 0; i < count; i++) {
        if (n[i] <= 0)
            continue;
        total_s += s[i];
        total_n += n[i];
        inv_n_sum += 1.0 / (double) n[i];
        fit->tasks++;
    }
    fit->runs = total_n;

    if (total_n == 0) {
        fit->mu = 0.5;
        fit->rho = DW_STATS_RHO_MAX;
    }
    else {
        double mu = (double) total_s / (double) total_n;
        double edge = 0.5 / (double) total_n;
        mu = fmin (fmax (mu, edge), 1.0 - edge);
        fit->mu = mu;

        /* Between-task variance: observed spread of the task rates minus the
         * binomial part; n is the harmonic mean of the per-task run counts
         * because the binomial part averages mu(1-mu)/n_i. */
        double spread = 0.0;
        for (size_t i = 0; i < count; i++) {
            if (n[i] <= 0)
                continue;
            double rate = (double) s[i] / (double) n[i];
            spread += (rate - mu) * (rate - mu);
        }
        spread = fit->tasks > 1 ? spread / (double) (fit->tasks - 1) : 0.0;
        double n_h = (double) fit->tasks / inv_n_sum;
        double base = mu * (1.0 - mu);

        /* NOTE: with one run per task the spread carries no information on
         * heterogeneity; the fit then falls back to the pooled prior. */
        double rho = DW_STATS_RHO_MIN;
        if (n_h > 1.0 + 1e-9) {
            double sigma_b2 = (spread - base / n_h) / (1.0 - 1.0 / n_h);
            rho = sigma_b2 / base;
        }
        fit->rho = fmin (fmax (rho, DW_STATS_RHO_MIN), DW_STATS_RHO_MAX);
    }

    double scale = 1.0 / fit->rho - 1.0;
    fit->a = fit->mu * scale;
    fit->b = (1.0 - fit->mu) * scale;
    return 0;
}

double
dw_stats_betabin_posterior (const dw_stats_betabin_t *fit, long s, long n)
{
    return ((double) s + fit->a) / ((double) n + fit->a + fit->b);
}
