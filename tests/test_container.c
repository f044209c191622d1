/* Podman backend containment: network none, memory and pids limits,
 * read-only root, non-root user, kill and removal, reaping of labelled
 * leftovers. Uses a busybox image imported locally (no registry); exits 77
 * when podman cannot run here. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dw_container.h"
#include "dw_log.h"
#include "dw_sandbox.h"
#include "dw_util.h"
#include "sandbox_helpers.h"

#define SKIP_RETURN_CODE 77

/* Cached between runs; rebuilt only when missing. */
#define TEST_IMAGE "localhost/driftwatch-test-busybox:1"

static int s_failures = 0;

/* Setup steps the rest of the test depends on; never compiled out. */
#define REQUIRE(cond) do {                                              \
        if (!(cond)) {                                                  \
            fprintf (stderr, "FATAL %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            exit (1);                                                   \
        }                                                               \
    } while (0)

#define CHECK(cond, ...) do {                                   \
        if (!(cond)) {                                          \
            fprintf (stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            fprintf (stderr, __VA_ARGS__);                      \
            fprintf (stderr, "\n");                             \
            s_failures++;                                       \
        }                                                       \
    } while (0)

static char s_root[256], s_ws[300], s_home[300];
static char s_port_env[64];

static int
s_shell (const char *command)
{
    int status = system (command);
    return status == -1 ? -1 : WEXITSTATUS (status);
}

/* Import a busybox root filesystem as TEST_IMAGE unless it exists. */
static int
s_ensure_image (char *why, size_t len)
{
    if (s_shell ("podman image exists " TEST_IMAGE " 2>/dev/null") == 0)
        return 0;
    if (access ("/bin/busybox", X_OK) != 0) {
        snprintf (why, len, "busybox not found: apt-get install busybox-static");
        return -1;
    }
    char command[2048];
    snprintf (command, sizeof command,
              "set -e; d=%s/rootfs; mkdir -p $d/bin $d/etc $d/tmp $d/workspace $d/home/agent; "
              "cp /bin/busybox $d/bin/; for a in $(/bin/busybox --list); do "
              "[ $a = busybox ] || ln -sf busybox $d/bin/$a; done; "
              "echo 'root:x:0:0::/root:/bin/sh' > $d/etc/passwd; "
              "tar -C $d -cf %s/rootfs.tar . ; podman import -q %s/rootfs.tar " TEST_IMAGE
              " >/dev/null", s_root, s_root, s_root);
    if (s_shell (command) != 0) {
        snprintf (why, len, "podman import of a busybox root filesystem failed");
        return -1;
    }
    return 0;
}

static void
s_reset (void)
{
    dw_rm_rf (s_ws);
    dw_rm_rf (s_home);
    dw_mkdir_p (s_ws, 0755);
    dw_mkdir_p (s_home, 0755);
}

static void
s_config (dw_sandbox_config_t *cfg, const char *attempt)
{
    static const char *env[2];
    env[0] = s_port_env;
    env[1] = NULL;
    memset (cfg, 0, sizeof *cfg);
    cfg->backend = DW_SANDBOX_PODMAN;
    cfg->purpose = DW_SANDBOX_GRADING;
    cfg->workspace_dir = s_ws;
    cfg->home_dir = s_home;
    cfg->image = TEST_IMAGE;
    cfg->env = env;
    cfg->run_id = "run-test";
    cfg->attempt_id = attempt;
    cfg->limits.memory_bytes = 64ull << 20;
    cfg->limits.max_processes = 24;
}

static dw_sandbox_t *
s_new (const dw_sandbox_config_t *cfg)
{
    char err[512];
    dw_sandbox_t *sandbox = dw_sandbox_new (cfg, err, sizeof err);
    if (!sandbox)
        fprintf (stderr, "dw_sandbox_new failed: %s\n", err);
    REQUIRE (sandbox);
    return sandbox;
}

static void
s_run (dw_sandbox_t *sandbox, const char *script, int timeout_ms, sbx_result_t *result)
{
    char *argv[] = { "/bin/sh", "-c", (char *) script, NULL };
    char **wrapped = NULL;
    REQUIRE (dw_sandbox_wrap (sandbox, argv, &wrapped) == 0);
    /* podman is looked up by sbx_run's execv, which needs a path. */
    char *cli = wrapped[0];
    if (!strchr (cli, '/')) {
        wrapped[0] = dw_strdup_printf ("/usr/bin/%s", cli);
        free (cli);
    }
    sbx_run (wrapped, dw_sandbox_pre_exec, sandbox, timeout_ms, dw_sandbox_kill, result);
    dw_sandbox_argv_free (&wrapped);
    if (getenv ("DW_TEST_VERBOSE"))
        printf ("--- status=%d timed_out=%d\n%.2000s\n", result->status, result->timed_out,
                result->output);
}

static int
s_container_exists (const char *name)
{
    char command[512];
    snprintf (command, sizeof command, "podman container exists %s 2>/dev/null", name);
    return s_shell (command) == 0;
}

static void
test_containment (void)
{
    s_reset ();
    dw_sandbox_config_t cfg;
    s_config (&cfg, "contain");
    dw_sandbox_t *sandbox = s_new (&cfg);
    sbx_result_t result;
    s_run (sandbox,
           "echo UID $(id -u); "
           "if touch /etc/pwned 2>/dev/null; then echo ROOT_WRITABLE; else echo ROOT_READONLY; fi; "
           "echo inside > /workspace/inside && echo WS_OK; "
           "if wget -q -T 2 -O /dev/null http://127.0.0.1:$DW_TEST_PORT/ 2>/dev/null; "
           "then echo TCP_OPEN; else echo TCP_BLOCKED; fi; "
           "if nslookup deb.debian.org >/dev/null 2>&1; then echo DNS_OPEN; "
           "else echo DNS_BLOCKED; fi; "
           "echo IFACES $(ls /sys/class/net 2>/dev/null)",
           30000, &result);
    CHECK (strstr (result.output, "UID 1000") != NULL, "container user should be 1000:\n%s",
           result.output);
    CHECK (strstr (result.output, "ROOT_READONLY") != NULL, "root filesystem must be read-only");
    CHECK (strstr (result.output, "WS_OK") != NULL, "workspace must be writable");
    CHECK (strstr (result.output, "TCP_BLOCKED") != NULL, "host loopback must be unreachable");
    CHECK (strstr (result.output, "DNS_BLOCKED") != NULL, "name resolution must fail");
    char path[400], text[64] = "";
    snprintf (path, sizeof path, "%s/inside", s_ws);
    sbx_read (path, text, sizeof text);
    CHECK (strcmp (text, "inside\n") == 0, "workspace file should reach the host");
    dw_sandbox_destroy (&sandbox);
}

static void
test_memory_limited (void)
{
    s_reset ();
    dw_sandbox_config_t cfg;
    s_config (&cfg, "memory");
    dw_sandbox_t *sandbox = s_new (&cfg);
    sbx_result_t result;
    s_run (sandbox, "dd if=/dev/zero of=/dev/null bs=512M count=1 && echo SURVIVED", 30000,
           &result);
    dw_sandbox_usage_t usage;
    dw_sandbox_usage (sandbox, &usage);
    CHECK (strstr (result.output, "SURVIVED") == NULL, "512 MiB buffer must not fit in 64 MiB");
    CHECK (result.status != 0, "memory hog should fail (status %d)", result.status);
    CHECK (usage.oom_kills > 0 || result.status == 137 || strstr (result.output, "memory"),
           "expected an OOM kill or an allocation failure (status %d)", result.status);
    dw_sandbox_destroy (&sandbox);
}

static void
test_pids_and_kill (void)
{
    s_reset ();
    dw_sandbox_config_t cfg;
    s_config (&cfg, "pids");
    dw_sandbox_t *sandbox = s_new (&cfg);
    sbx_result_t result;
    s_run (sandbox, "trap '' TERM; i=0; while [ $i -lt 60 ]; do sleep 300 & i=$((i+1)); done; "
           "echo SPAWNED; wait", 6000, &result);
    CHECK (strstr (result.output, "can't fork") != NULL
           || strstr (result.output, "Resource temporarily unavailable") != NULL,
           "pids limit should reject forks:\n%.500s", result.output);
    CHECK (strstr (result.output, "SPAWNED") == NULL, "60 background processes must not fit");
    dw_sandbox_destroy (&sandbox);

    /* A container that ignores SIGTERM ends by the kill hook. */
    s_reset ();
    s_config (&cfg, "kill");
    sandbox = s_new (&cfg);
    uint64_t start = dw_mono_ms ();
    s_run (sandbox, "trap '' TERM; sleep 300 & echo STARTED; wait", 3000, &result);
    uint64_t elapsed = dw_mono_ms () - start;
    CHECK (strstr (result.output, "STARTED") != NULL, "container should start:\n%s",
           result.output);
    CHECK (result.timed_out, "the run should end by the timeout kill");
    CHECK (elapsed < 20000, "kill should end the run quickly (%llu ms)",
           (unsigned long long) elapsed);

    /* dw_sandbox_destroy must leave no container behind. */
    char name[128];
    char *argv[] = { "/bin/true", NULL };
    char **wrapped = NULL;
    dw_sandbox_wrap (sandbox, argv, &wrapped);
    for (int i = 0; wrapped && wrapped[i]; i++)
        if (strcmp (wrapped[i], "--name") == 0)
            snprintf (name, sizeof name, "%s", wrapped[i + 1]);
    dw_sandbox_argv_free (&wrapped);
    dw_sandbox_destroy (&sandbox);
    CHECK (name[0] && !s_container_exists (name), "container %s must be gone", name);
}

static void
test_reap (void)
{
    int rc = s_shell ("podman --runtime runc create --label driftwatch.run=r "
                      "--label driftwatch.attempt=reaptest --name dw-reap-test " TEST_IMAGE
                      " true >/dev/null 2>&1");
    CHECK (rc == 0, "podman create should work");
    char err[256];
    int removed = dw_container_reap (NULL, err, sizeof err);
    CHECK (removed >= 1, "reap should remove the labelled container (%d, %s)", removed, err);
    CHECK (!s_container_exists ("dw-reap-test"), "labelled container must be gone");
}

int
main (void)
{
    dw_log_init ("test_container", DW_LOG_WARN);
    if (geteuid () != 0) {
        printf ("SKIP: the podman tests need root (rootful podman)\n");
        return SKIP_RETURN_CODE;
    }
    if (s_shell ("command -v podman >/dev/null 2>&1") != 0) {
        printf ("SKIP: podman not found: apt-get install podman runc\n");
        return SKIP_RETURN_CODE;
    }
    snprintf (s_root, sizeof s_root, "/tmp/dw-ctr-%d", (int) getpid ());
    snprintf (s_ws, sizeof s_ws, "%s/ws", s_root);
    snprintf (s_home, sizeof s_home, "%s/home", s_root);
    dw_mkdir_p (s_root, 0755);

    char why[256];
    if (s_ensure_image (why, sizeof why) != 0) {
        printf ("SKIP: %s\n", why);
        dw_rm_rf (s_root);
        return SKIP_RETURN_CODE;
    }
    if (s_shell ("podman --runtime runc run --rm --network none --ulimit nofile=1024:1024 "
                 "--ulimit nproc=1024:1024 " TEST_IMAGE " true >/dev/null 2>&1") != 0) {
        printf ("SKIP: podman cannot run a container here even with --runtime runc\n");
        dw_rm_rf (s_root);
        return SKIP_RETURN_CODE;
    }

    int port = 0;
    int listener = sbx_listen_tcp (&port);
    REQUIRE (listener >= 0);
    snprintf (s_port_env, sizeof s_port_env, "DW_TEST_PORT=%d", port);

    test_containment ();
    printf ("done containment\n");
    test_memory_limited ();
    printf ("done memory_limited\n");
    test_pids_and_kill ();
    printf ("done pids_and_kill\n");
    test_reap ();
    printf ("done reap\n");

    dw_rm_rf (s_root);
    printf ("%s\n", s_failures ? "FAILED" : "ok");
    return s_failures ? 1 : 0;
}
