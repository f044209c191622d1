/* Statistics toolbox shared by the detector, its benchmark and the reports:
 * interval estimates, exact tail probabilities, special functions, a seeded
 * pseudo-random generator and an empirical-Bayes beta-binomial fit.
 *
 * Everything here is pure computation without global state. Only the median
 * and the Wilcoxon test allocate (a scratch copy). The generator's integer
 * stream is identical on every platform; derived doubles depend on libm's
 * log/exp/pow, which agree to the last bit or so.
 */
#ifndef DW_STATS_H
#define DW_STATS_H

#include <stddef.h>
#include <stdint.h>

/* --- special functions ------------------------------------------------------ */

/* Regularised incomplete beta function I_x(a, b) for a, b > 0, 0 <= x <= 1,
 * by Lentz's continued fraction (relative error ~1e-14). */
double dw_stats_ibeta (double x, double a, double b);

/* Natural log of I_x(a, b); stays finite where I_x underflows. */
double dw_stats_log_ibeta (double x, double a, double b);

/* Standard normal cumulative distribution function Phi(x). */
double dw_stats_normal_cdf (double x);

/* Upper tail 1 - Phi(x), accurate far into the tail. */
double dw_stats_normal_sf (double x);

/* ln(1 - Phi(x)), finite for every finite x (asymptotic series beyond x = 37). */
double dw_stats_normal_log_sf (double x);

/* Quantile Phi^-1(p) for 0 < p < 1; -INFINITY / INFINITY at 0 / 1. */
double dw_stats_normal_quantile (double p);

/* Student t upper tail P(T_nu > t) for nu > 0:
 * 0.5 I_{nu/(nu+t^2)}(nu/2, 1/2) when t > 0, and 1 minus that otherwise. */
double dw_stats_t_sf (double t, double nu);

/* ln P(T_nu > t), finite far into the tail. */
double dw_stats_t_log_sf (double t, double nu);

/* --- binomial and related tests -------------------------------------------- */

/* Wilson score interval for X successes of N trials at normal quantile Z.
 * Writes the point estimate X/N and the bounds; N = 0 gives p = 0, [0, 1]. */
void dw_stats_wilson (long x, long n, double z, double *p, double *lo, double *hi);

/* ln P(X = k) for X ~ Binomial(n, p). */
double dw_stats_binom_log_pmf (long k, long n, double p);

/* P(X <= k) for X ~ Binomial(n, p), via the incomplete beta function so it
 * stays exact and fast for n up to 1e6 and beyond. */
double dw_stats_binom_cdf (long k, long n, double p);

/* P(X >= k) for X ~ Binomial(n, p). */
double dw_stats_binom_sf (long k, long n, double p);

/* Two-sided exact binomial p-value of observing K of N under rate P: the
 * total probability of outcomes no more likely than K (the rule R's
 * binom.test uses), clipped to 1. */
double dw_stats_binom_test_two_sided (long k, long n, double p);

/* One-sided Fisher exact test on the 2x2 table
 *     before: A passes, B fails;   after: C passes, D fails.
 * Returns P(after passes <= C) given the margins (small = drop after). */
double dw_stats_fisher_less (long a, long b, long c, long d);

/* Same table, P(after passes >= C) (small = rise after). */
double dw_stats_fisher_greater (long a, long b, long c, long d);

/* Two-sided sign test of COUNT paired differences given as the number of
 * positive and negative ones (zeros dropped by the caller). */
double dw_stats_sign_test (long positive, long negative);

/* Two-sided Wilcoxon signed-rank p-value of the N values in DIFF (zeros are
 * dropped, ties get mid-ranks). Exact distribution for up to 50 non-zero
 * values without ties, normal approximation with tie and continuity
 * correction otherwise. Returns 1 when no value is non-zero. */
double dw_stats_wilcoxon_signed_rank (const double *diff, size_t n);

/* Median of N values (sorts a private copy; N = 0 returns NAN). */
double dw_stats_median (const double *values, size_t n);

/* --- seeded pseudo-random numbers ------------------------------------------- */

/* xoshiro256** generator, seeded through splitmix64, so a 64-bit seed gives
 * the same stream on every platform. Plain value type: copy it to fork. */
typedef struct {
    uint64_t s[4];
} dw_rng_t;

/* Seed RNG from SEED. */
void dw_rng_seed (dw_rng_t *rng, uint64_t seed);

/* Next raw 64-bit output. */
uint64_t dw_rng_next (dw_rng_t *rng);

/* Uniform double in [0, 1) with 53 random bits. */
double dw_rng_uniform (dw_rng_t *rng);

/* Standard normal draw (Marsaglia polar method, no cached state). */
double dw_rng_normal (dw_rng_t *rng);

/* Gamma(shape, 1) draw for shape > 0 (Marsaglia and Tsang). */
double dw_rng_gamma (dw_rng_t *rng, double shape);

/* Beta(a, b) draw for a, b > 0. */
double dw_rng_beta (dw_rng_t *rng, double a, double b);

/* Binomial(n, p) draw: Bernoulli sum for n <= 64, otherwise CDF inversion
 * started at the mode (cost ~ sqrt(n p (1-p)) per draw). */
long dw_rng_binomial (dw_rng_t *rng, long n, double p);

/* --- empirical-Bayes beta-binomial ------------------------------------------ */

/* Lower and upper clip of the intra-class correlation rho. */
#define DW_STATS_RHO_MIN 0.01
#define DW_STATS_RHO_MAX 0.95

/* Beta(a, b) prior fitted across tasks by the method of moments. */
typedef struct {
    double mu;          /* pooled pass rate sum s / sum n */
    double rho;         /* sigma_b^2 / (mu (1 - mu)), clipped */
    double a;           /* mu (1/rho - 1) */
    double b;           /* (1 - mu) (1/rho - 1) */
    size_t tasks;       /* tasks with at least one run */
    long runs;          /* sum of n */
} dw_stats_betabin_t;

/* Fit the prior to S[i] successes of N[i] runs for COUNT tasks (tasks with
 * N[i] = 0 are ignored). mu is kept inside [0.5/runs, 1 - 0.5/runs] so the
 * posterior rates stay strictly between 0 and 1. With no runs at all the
 * prior is mu = 0.5, rho = DW_STATS_RHO_MAX. Returns 0, or -1 when COUNT is 0. */
int dw_stats_betabin_fit (const long *s, const long *n, size_t count, dw_stats_betabin_t *fit);

/* Posterior mean (s + a) / (n + a + b) of one task. */
double dw_stats_betabin_posterior (const dw_stats_betabin_t *fit, long s, long n);

#endif
