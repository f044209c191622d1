/* Per-job sandbox overhead: create the sandbox (cgroup or container name),
 * run /bin/true inside it, wait, destroy. Prints median and p95 over N runs
 * for bubblewrap and for podman.
 *
 * Usage: sandbox_bench [RUNS] [IMAGE]   (as root; RUNS defaults to 100,
 * IMAGE to the busybox image test_container imports) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dw_log.h"
#include "dw_sandbox.h"
#include "dw_util.h"
#include "sandbox_helpers.h"

#define DEFAULT_RUNS 100
#define DEFAULT_IMAGE "localhost/driftwatch-test-busybox:1"

static int
s_bench (dw_sandbox_backend_t backend, const char *image, int runs, const char *root)
{
    char ws[300], home[300], tmp[300];
    snprintf (ws, sizeof ws, "%s/ws", root);
    snprintf (home, sizeof home, "%s/home", root);
    snprintf (tmp, sizeof tmp, "%s/tmp", root);
    dw_mkdir_p (ws, 0755);
    dw_mkdir_p (home, 0755);
    dw_mkdir_p (tmp, 0755);

    double *ms = calloc ((size_t) runs, sizeof (double));
    int failures = 0;
    for (int i = 0; i < runs; i++) {
        dw_sandbox_config_t cfg = {
            .backend = backend,
            .purpose = DW_SANDBOX_GRADING,
            .workspace_dir = ws,
            .home_dir = home,
            .tmp_dir = backend == DW_SANDBOX_BWRAP ? tmp : NULL,
            .host_uid = 65534,
            .attempt_id = "bench",
            .image = image,
            .cgroup_parent = "driftwatch-bench",
            .limits = { .memory_bytes = 512ull << 20, .max_processes = 256,
                        .wall_seconds = 60 },
        };
        struct timespec t0, t1;
        clock_gettime (CLOCK_MONOTONIC, &t0);

        char err[512];
        dw_sandbox_t *sandbox = dw_sandbox_new (&cfg, err, sizeof err);
        if (!sandbox) {
            fprintf (stderr, "sandbox_new failed: %s\n", err);
            free (ms);
            return -1;
        }
        char *argv[] = { "/bin/true", NULL };
        char **wrapped = NULL;
        dw_sandbox_wrap (sandbox, argv, &wrapped);
        if (!strchr (wrapped[0], '/')) {
            char *cli = wrapped[0];
            wrapped[0] = dw_strdup_printf ("/usr/bin/%s", cli);
            free (cli);
        }
        static sbx_result_t result;
        sbx_run (wrapped, dw_sandbox_pre_exec, sandbox, 60000, dw_sandbox_kill, &result);
        if (result.status != 0) {
            failures++;
            fprintf (stderr, "run %d: status %d: %.300s\n", i, result.status, result.output);
        }
        dw_sandbox_argv_free (&wrapped);
        dw_sandbox_destroy (&sandbox);

        clock_gettime (CLOCK_MONOTONIC, &t1);
        ms[i] = (double) (t1.tv_sec - t0.tv_sec) * 1000.0
                + (double) (t1.tv_nsec - t0.tv_nsec) / 1e6;
    }

    qsort (ms, (size_t) runs, sizeof (double), sbx_compare_double);
    double sum = 0;
    for (int i = 0; i < runs; i++)
        sum += ms[i];
    int p95 = (int) ((double) runs * 0.95);
    if (p95 >= runs)
        p95 = runs - 1;
    printf ("%-8s runs=%d failures=%d median_ms=%.1f p95_ms=%.1f mean_ms=%.1f min_ms=%.1f "
            "max_ms=%.1f\n", backend == DW_SANDBOX_BWRAP ? "bwrap" : "podman", runs, failures,
            ms[runs / 2], ms[p95], sum / runs, ms[0], ms[runs - 1]);
    free (ms);
    return failures ? -1 : 0;
}

int
main (int argc, char **argv)
{
    dw_log_init ("sandbox_bench", DW_LOG_ERROR);
    int runs = argc > 1 ? atoi (argv[1]) : DEFAULT_RUNS;
    const char *image = argc > 2 ? argv[2] : DEFAULT_IMAGE;
    if (runs < 1 || geteuid () != 0) {
        fprintf (stderr, "usage: sandbox_bench [RUNS] [IMAGE] (as root)\n");
        return 2;
    }
    char root[64];
    snprintf (root, sizeof root, "/tmp/dw-bench-%d", (int) getpid ());

    int rc = s_bench (DW_SANDBOX_BWRAP, NULL, runs, root);
    char command[512];
    snprintf (command, sizeof command, "podman image exists %s 2>/dev/null", image);
    if (system (command) == 0)
        rc |= s_bench (DW_SANDBOX_PODMAN, image, runs, root);
    else
        printf ("podman   skipped: image %s not found (run test_container once to import it)\n",
                image);
    dw_rm_rf (root);
    return rc ? 1 : 0;
}
