/* Unit tests of common/dw_stats: each value is checked against a number
 * computed by hand or by an exact summation written out in the test. */
#include <math.h>
#include <stdio.h>

#include "dw_stats.h"

static int failures = 0;

static void
check_near (const char *what, double got, double expected, double tol)
{
    if (!(fabs (got - expected) <= tol)) {
        fprintf (stderr, "FAIL %s: expected %.12g, got %.12g (tolerance %g)\n",
                 what, expected, got, tol);
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

/* P(X <= k) by summing the pmf term by term. */
static double
exact_cdf (long k, long n, double p)
{
    double sum = 0.0;
    for (long i = 0; i <= k; i++)
        sum += exp (dw_stats_binom_log_pmf (i, n, p));
    return sum;
}

static void
test_wilson (void)
{
    double p, lo, hi;

    /* 8/10 at z = 1.96: center (0.8 + 0.19208)/1.38416 = 0.716738,
     * half-width 1.96 sqrt(0.025604)/1.38416 = 0.226581. */
    dw_stats_wilson (8, 10, 1.96, &p, &lo, &hi);
    check_near ("wilson 8/10 p", p, 0.8, 1e-12);
    check_near ("wilson 8/10 lower", lo, 0.490157, 1e-5);
    check_near ("wilson 8/10 upper", hi, 0.943318, 1e-5);

    /* 0/20: lower bound 0, upper z^2/(n + z^2) = 3.8416/23.8416. */
    dw_stats_wilson (0, 20, 1.96, &p, &lo, &hi);
    check_near ("wilson 0/20 lower", lo, 0.0, 1e-12);
    check_near ("wilson 0/20 upper", hi, 3.8416 / 23.8416, 1e-9);

    dw_stats_wilson (0, 0, 1.96, &p, &lo, &hi);
    check_true ("wilson n=0 gives [0,1]", lo == 0.0 && hi == 1.0);
}

static void
test_binomial_tails (void)
{
    /* Small case: X ~ Bin(10, 0.5), P(X <= 3) = 176/1024. */
    check_near ("binom cdf 3 of 10", dw_stats_binom_cdf (3, 10, 0.5), 176.0 / 1024.0, 1e-13);
    check_near ("binom sf 8 of 10", dw_stats_binom_sf (8, 10, 0.5), 56.0 / 1024.0, 1e-13);
    check_near ("binom two-sided 3 of 10", dw_stats_binom_test_two_sided (3, 10, 0.5),
                0.34375, 1e-12);
    check_near ("binom two-sided 5 of 10", dw_stats_binom_test_two_sided (5, 10, 0.5), 1.0,
                1e-12);

    /* Asymmetric: Bin(20, 0.3), compare with term-by-term sums. */
    for (long k = 0; k <= 20; k++) {
        char what[64];
        snprintf (what, sizeof what, "binom cdf %ld of 20 at 0.3", k);
        check_near (what, dw_stats_binom_cdf (k, 20, 0.3), exact_cdf (k, 20, 0.3), 1e-12);
        snprintf (what, sizeof what, "binom sf %ld of 20 at 0.3", k);
        check_near (what, dw_stats_binom_sf (k, 20, 0.3),
                    1.0 - exact_cdf (k - 1, 20, 0.3), 1e-12);
    }

    /* Two-sided Bin(20, 0.3) at k = 2: outcomes with pmf <= pmf(2) are
     * 0, 1, 2 and 11..20 (pmf(10) = 0.0308 > pmf(2) = 0.0278 > pmf(11)). */
    double expected = exact_cdf (2, 20, 0.3) + (1.0 - exact_cdf (10, 20, 0.3));
    check_near ("binom two-sided 2 of 20 at 0.3", dw_stats_binom_test_two_sided (2, 20, 0.3),
                expected, 1e-12);

    /* Large n: Bin(1e6, 0.58) around the mean, against a direct sum. */
    long n = 1000000;
    double direct = 0.0;
    for (long i = 0; i <= 579500; i++)
        direct += exp (dw_stats_binom_log_pmf (i, n, 0.58));
    double via_beta = dw_stats_binom_cdf (579500, n, 0.58);
    check_near ("binom cdf n=1e6", via_beta, direct, 1e-9);
    check_true ("binom cdf n=1e6 in (0.1, 0.2)", via_beta > 0.1 && via_beta < 0.2);
    double far = dw_stats_binom_cdf (575000, n, 0.58);
    check_true ("binom cdf n=1e6 far tail tiny but positive", far > 0.0 && far < 1e-20);
    check_near ("binom two-sided n=1e6 at mean", dw_stats_binom_test_two_sided (580000, n, 0.58),
                1.0, 1e-6);
}

static void
test_normal_and_t (void)
{
    check_near ("normal cdf 1.96", dw_stats_normal_cdf (1.96), 0.9750021048517795, 1e-14);
    check_near ("normal quantile 0.975", dw_stats_normal_quantile (0.975), 1.959963984540054,
                1e-12);
    check_near ("normal quantile 1e-10", dw_stats_normal_quantile (1e-10), -6.361340902404056,
                1e-9);
    check_near ("normal log sf 40 series", dw_stats_normal_log_sf (40.0),
                -0.5 * 1600 - log (40.0) - 0.5 * log (2 * M_PI) + log1p (-1.0 / 1600 + 3.0 / 1600 / 1600),
                1e-8);
    check_near ("normal log sf 5", dw_stats_normal_log_sf (5.0), log (2.866515718791939e-07),
                1e-12);

    /* Cauchy: P(T_1 > 1) = 1/4.  nu = 2: P(T > t) = 1/2 - t / (2 sqrt(2 + t^2)). */
    check_near ("t sf nu=1 t=1", dw_stats_t_sf (1.0, 1.0), 0.25, 1e-13);
    check_near ("t sf nu=2 t=2", dw_stats_t_sf (2.0, 2.0), 0.5 - 2.0 / (2.0 * sqrt (6.0)), 1e-13);
    check_near ("t sf nu=2 t=-2", dw_stats_t_sf (-2.0, 2.0), 0.5 + 2.0 / (2.0 * sqrt (6.0)),
                1e-13);
    check_true ("t tail heavier than normal", dw_stats_t_sf (4.0, 10.0) > dw_stats_normal_sf (4.0));
    check_near ("t log sf large nu tends to normal", dw_stats_t_log_sf (4.0, 1e7),
                dw_stats_normal_log_sf (4.0), 1e-4);
}

static void
test_fisher_sign_wilcoxon (void)
{
    /* before 5/5 passes, after 0/5: only this table at these margins is as
     * extreme, probability 1/C(10,5) = 1/252. */
    check_near ("fisher less 5,0,0,5", dw_stats_fisher_less (5, 0, 0, 5), 1.0 / 252.0, 1e-13);
    check_near ("fisher greater 5,0,0,5", dw_stats_fisher_greater (5, 0, 0, 5), 1.0, 1e-12);
    /* before 3/4, after 1/4: P(C <= 1) = [C(4,0)C(4,4) + C(4,1)C(4,3)] / C(8,4) = 17/70. */
    check_near ("fisher less 3,1,1,3", dw_stats_fisher_less (3, 1, 1, 3), 17.0 / 70.0, 1e-13);

    check_near ("sign test 9 vs 1", dw_stats_sign_test (9, 1), 22.0 / 1024.0, 1e-13);

    double five[] = {1, 2, 3, 4, 5};
    check_near ("wilcoxon five positive", dw_stats_wilcoxon_signed_rank (five, 5), 2.0 / 32.0,
                1e-13);
    double mixed[] = {1, -2, 3, 0, 4};
    /* zero dropped; W+ = 1 + 3 + 4 = 8 of max 10; P(W+ >= 8) = 3/16 (sets
     * {1,3,4},{2,3,4},{1,2,3,4}); two-sided 6/16. */
    check_near ("wilcoxon with zero and negative", dw_stats_wilcoxon_signed_rank (mixed, 5),
                6.0 / 16.0, 1e-13);
    double none[] = {0, 0};
    check_near ("wilcoxon all zero", dw_stats_wilcoxon_signed_rank (none, 2), 1.0, 0);

    double values[] = {5, 1, 3, 2};
    check_near ("median even", dw_stats_median (values, 4), 2.5, 0);
    check_near ("median odd", dw_stats_median (values, 3), 3.0, 0);
}

static void
test_rng (void)
{
    dw_rng_t a, b;
    dw_rng_seed (&a, 42);
    dw_rng_seed (&b, 42);
    int same = 1;
    for (int i = 0; i < 1000; i++)
        same &= dw_rng_next (&a) == dw_rng_next (&b);
    check_true ("rng same seed gives same stream", same);

    dw_rng_seed (&b, 43);
    check_true ("rng different seed differs", dw_rng_next (&a) != dw_rng_next (&b));

    /* Moments over 200,000 draws; tolerances are ~5 standard errors. */
    dw_rng_seed (&a, 7);
    const int draws = 200000;
    double sum_u = 0, sum_z = 0, sum_z2 = 0, sum_beta = 0, sum_bin = 0, sum_big = 0;
    for (int i = 0; i < draws; i++) {
        sum_u += dw_rng_uniform (&a);
        double z = dw_rng_normal (&a);
        sum_z += z;
        sum_z2 += z * z;
        sum_beta += dw_rng_beta (&a, 0.348, 0.252);
        sum_bin += dw_rng_binomial (&a, 10, 0.3);
        if (i < 20000)
            sum_big += dw_rng_binomial (&a, 1000, 0.58);
    }
    check_near ("uniform mean", sum_u / draws, 0.5, 0.004);
    check_near ("normal mean", sum_z / draws, 0.0, 0.012);
    check_near ("normal variance", sum_z2 / draws, 1.0, 0.02);
    check_near ("beta(0.348,0.252) mean", sum_beta / draws, 0.58, 0.005);
    check_near ("binomial(10,0.3) mean", sum_bin / draws, 3.0, 0.02);
    check_near ("binomial(1000,0.58) mean", sum_big / 20000, 580.0, 0.6);
}

static void
test_betabin (void)
{
    dw_stats_betabin_t fit;

    /* Rates .6 .4 .8 .2 of 10 runs: mu 0.5, spread 0.2/3, sigma_b^2 =
     * (0.066667 - 0.025)/0.9 = 0.046296, rho = 0.185185, a = b = 2.2. */
    long s1[] = {6, 4, 8, 2};
    long n1[] = {10, 10, 10, 10};
    check_true ("betabin fit ok", dw_stats_betabin_fit (s1, n1, 4, &fit) == 0);
    check_near ("betabin mu", fit.mu, 0.5, 1e-12);
    check_near ("betabin rho", fit.rho, 0.185185185, 1e-8);
    check_near ("betabin a", fit.a, 2.2, 1e-8);
    check_near ("betabin posterior", dw_stats_betabin_posterior (&fit, 6, 10), 8.2 / 14.4, 1e-9);

    /* Always-or-never tasks push rho to the upper clip. */
    long s2[] = {10, 0, 5};
    long n2[] = {10, 10, 10};
    dw_stats_betabin_fit (s2, n2, 3, &fit);
    check_near ("betabin rho clipped high", fit.rho, DW_STATS_RHO_MAX, 0);

    /* Identical tasks push it to the lower clip. */
    long s3[] = {5, 5, 5};
    dw_stats_betabin_fit (s3, n2, 3, &fit);
    check_near ("betabin rho clipped low", fit.rho, DW_STATS_RHO_MIN, 0);

    check_true ("betabin no tasks rejected", dw_stats_betabin_fit (s3, n2, 0, &fit) == -1);
}

int
main (void)
{
    test_wilson ();
    test_binomial_tails ();
    test_normal_and_t ();
    test_fisher_sign_wilcoxon ();
    test_rng ();
    test_betabin ();
    if (failures) {
        fprintf (stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf ("all stats checks passed\n");
    return 0;
}
