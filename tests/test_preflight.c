/* Preflight checks: this host passes, and a missing tool gives a message
 * naming it and the fix. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "dw_log.h"
#include "dw_preflight.h"

static int s_failures = 0;

#define CHECK(cond, ...) do {                                   \
        if (!(cond)) {                                          \
            fprintf (stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            fprintf (stderr, __VA_ARGS__);                      \
            fprintf (stderr, "\n");                             \
            s_failures++;                                       \
        }                                                       \
    } while (0)

static int
s_has_message (const dw_preflight_report_t *report, const char *text)
{
    for (int i = 0; i < report->message_count; i++)
        if (strstr (report->messages[i], text))
            return 1;
    return 0;
}

static void
s_print (const dw_preflight_report_t *report)
{
    for (int i = 0; i < report->message_count; i++)
        printf ("  message: %s\n", report->messages[i]);
}

int
main (void)
{
    dw_log_init ("test_preflight", DW_LOG_ERROR);
    int have_bwrap = access ("/usr/bin/bwrap", X_OK) == 0;

    /* This host: bubblewrap must work (as root, run it as nobody). */
    dw_preflight_options_t options = { .host_uid = geteuid () == 0 ? 65534 : 0 };
    dw_preflight_report_t report;
    int rc = dw_preflight_run (&options, &report);
    s_print (&report);
    if (have_bwrap) {
        CHECK (rc == 0 && report.bwrap_ok, "bubblewrap should work on this host");
        CHECK (report.userns_ok, "user namespaces should be available");
    }
    if (geteuid () == 0)
        CHECK (report.cgroup_ok, "root should get cgroup limits on this host");

    /* Missing bubblewrap. */
    options.bwrap_path = "/nonexistent/bwrap";
    options.skip_container = 1;
    rc = dw_preflight_run (&options, &report);
    s_print (&report);
    CHECK (rc == -1 && !report.bwrap_ok, "a missing bwrap must fail the check");
    CHECK (s_has_message (&report, "bubblewrap not found")
           && s_has_message (&report, "apt-get install bubblewrap"),
           "message should say bubblewrap is missing and how to install it");

    /* Missing container CLI. */
    options.bwrap_path = NULL;
    options.skip_container = 0;
    options.container_cli = "/nonexistent/podman";
    dw_preflight_run (&options, &report);
    s_print (&report);
    CHECK (!report.container_ok, "a missing podman must fail the container check");
    CHECK (s_has_message (&report, "apt-get install podman"),
           "message should say how to install podman");

    printf ("%s\n", s_failures ? "FAILED" : "ok");
    return s_failures ? 1 : 0;
}
