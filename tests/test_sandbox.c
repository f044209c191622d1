/* Bubblewrap sandbox containment: hostile agent scripts from tests/sandbox/
 * run inside the sandbox with limits; every check is made from outside.
 * Needs root (cgroups, fake worker files under /var/lib); skips otherwise. */
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dw_log.h"
#include "dw_sandbox.h"
#include "dw_util.h"
#include "sandbox_helpers.h"

#define SKIP_RETURN_CODE 77

/* Unprivileged host user the sandbox runs as (nobody on Debian). */
#define HOST_UID 65534

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

static char s_root[256];
static char s_ws[300], s_home[300], s_tmp[300], s_gw[300], s_agent[300];
static char s_host_file[300];
static char s_marker[64];
static char s_port_env[64], s_abstract_env[96], s_host_file_env[350], s_marker_env[96],
            s_work_root_env[300];
static const char *s_source_dir;

static const char *const s_secret_dir = "/var/lib/driftwatch-test";
static const char *const s_etc_secret_dir = "/etc/driftwatch-sbxtest";

/* Fresh workspace, home and tmp for one attempt. */
static void
s_reset_dirs (void)
{
    dw_rm_rf (s_ws);
    dw_rm_rf (s_home);
    dw_rm_rf (s_tmp);
    dw_mkdir_p (s_ws, 0755);
    dw_mkdir_p (s_home, 0755);
    dw_mkdir_p (s_tmp, 0755);
}

static void
s_base_config (dw_sandbox_config_t *cfg, const char *attempt)
{
    static const char *env[8];
    static const char *binds[2];
    static const char *hidden[2];
    env[0] = s_port_env;
    env[1] = s_abstract_env;
    env[2] = s_host_file_env;
    env[3] = s_marker_env;
    env[4] = s_work_root_env;
    env[5] = NULL;
    binds[0] = s_agent;
    binds[1] = NULL;
    hidden[0] = s_etc_secret_dir;
    hidden[1] = NULL;

    memset (cfg, 0, sizeof *cfg);
    cfg->backend = DW_SANDBOX_BWRAP;
    cfg->purpose = DW_SANDBOX_AGENT;
    cfg->workspace_dir = s_ws;
    cfg->home_dir = s_home;
    cfg->tmp_dir = s_tmp;
    cfg->gateway_dir = s_gw;
    cfg->ro_binds = binds;
    cfg->hidden_paths = hidden;
    cfg->host_uid = HOST_UID;
    cfg->env = env;
    cfg->run_id = "run-test";
    cfg->attempt_id = attempt;
    cfg->cgroup_parent = "driftwatch-test";
    cfg->limits.memory_bytes = 128ull << 20;
    cfg->limits.max_processes = 64;
    cfg->limits.wall_seconds = 60;
}

/* Run the hostile script NAME with ARG inside SANDBOX. */
static void
s_run_script (dw_sandbox_t *sandbox, const char *name, const char *arg, int timeout_ms,
              sbx_result_t *result)
{
    char script[400];
    snprintf (script, sizeof script, "%s/%s", s_agent, name);
    char *argv[] = { "/bin/sh", script, (char *) arg, NULL };
    char **wrapped = NULL;
    int rc = dw_sandbox_wrap (sandbox, argv, &wrapped);
    REQUIRE (rc == 0);
    sbx_run (wrapped, dw_sandbox_pre_exec, sandbox, timeout_ms, dw_sandbox_kill, result);
    dw_sandbox_argv_free (&wrapped);
    if (getenv ("DW_TEST_VERBOSE"))
        printf ("--- %s %s: status=%d timed_out=%d\n%.3000s\n", name, arg ? arg : "",
                result->status, result->timed_out, result->output);
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
test_wrap_argv (void)
{
    s_reset_dirs ();
    dw_sandbox_config_t cfg;
    s_base_config (&cfg, "wrap");
    dw_sandbox_t *sandbox = s_new (&cfg);
    char *argv[] = { "/bin/true", NULL };
    char **wrapped = NULL;
    CHECK (dw_sandbox_wrap (sandbox, argv, &wrapped) == 0, "wrap should succeed");

    int has_net = 0, has_uid = 0, has_ws = 0, has_clearenv = 0, leaks = 0, ends = 0;
    int count = 0;
    for (; wrapped[count]; count++) {
        has_net |= strcmp (wrapped[count], "--unshare-net") == 0;
        has_clearenv |= strcmp (wrapped[count], "--clearenv") == 0;
        if (strcmp (wrapped[count], "--uid") == 0)
            has_uid = strcmp (wrapped[count + 1], "1000") == 0;
        if (strcmp (wrapped[count], "--bind") == 0 && strcmp (wrapped[count + 1], s_ws) == 0)
            has_ws = strcmp (wrapped[count + 2], "/workspace") == 0;
        leaks |= strstr (wrapped[count], "/var/lib") != NULL
                 || strcmp (wrapped[count], "/root") == 0;
    }
    ends = count >= 2 && strcmp (wrapped[count - 1], "/bin/true") == 0
           && strcmp (wrapped[count - 2], "--") == 0;
    CHECK (has_net, "expected --unshare-net in the bwrap command line");
    CHECK (has_uid, "expected --uid 1000");
    CHECK (has_ws, "expected --bind WORKSPACE /workspace");
    CHECK (has_clearenv, "expected --clearenv");
    CHECK (!leaks, "no bind of /var/lib or /root expected");
    CHECK (ends, "expected the program after '--' at the end");
    dw_sandbox_argv_free (&wrapped);
    dw_sandbox_destroy (&sandbox);
    CHECK (sandbox == NULL, "destroy must null the pointer");
}

static void
test_config_rejected (void)
{
    dw_sandbox_config_t cfg;
    char err[512] = "";
    s_base_config (&cfg, "bad");
    cfg.purpose = DW_SANDBOX_GRADING;
    CHECK (dw_sandbox_new (&cfg, err, sizeof err) == NULL, "grading with a gateway must fail");
    CHECK (strstr (err, "gateway") != NULL, "error should name the gateway, got: %s", err);

    s_base_config (&cfg, "bad");
    cfg.workspace_dir = "/nonexistent/dw-ws";
    CHECK (dw_sandbox_new (&cfg, err, sizeof err) == NULL, "missing workspace must fail");
    CHECK (strstr (err, "/nonexistent/dw-ws") != NULL, "error should name the path: %s", err);

    static const char *bad_env[] = { "NOEQUALS", NULL };
    s_base_config (&cfg, "bad");
    cfg.env = bad_env;
    CHECK (dw_sandbox_new (&cfg, err, sizeof err) == NULL, "env without '=' must fail");
}

static void
test_secrets_hidden (void)
{
    s_reset_dirs ();
    dw_sandbox_config_t cfg;
    s_base_config (&cfg, "secrets");
    dw_sandbox_t *sandbox = s_new (&cfg);
    sbx_result_t result;
    s_run_script (sandbox, "read_secrets.sh", NULL, 20000, &result);

    CHECK (strstr (result.output, "DONE") != NULL, "script should finish, output:\n%s",
           result.output);
    CHECK (strstr (result.output, "driftwatch-test-secret-value") == NULL,
           "secret contents leaked:\n%s", result.output);
    CHECK (strstr (result.output, "MISSING /var/lib/driftwatch-test/keys/secret") != NULL,
           "key file should be absent inside:\n%s", result.output);
    CHECK (strstr (result.output, "MISSING /var/lib/driftwatch-test/spool/job1") != NULL,
           "spool should be absent inside");
    CHECK (strstr (result.output, "MISSING /root") != NULL, "/root should be absent inside");
    CHECK (strstr (result.output, "MISSING /var/lib") != NULL, "/var/lib should be absent");
    CHECK (strstr (result.output, "root:") == NULL, "/etc/shadow content leaked");
    CHECK (strstr (result.output, "UID 1000") != NULL, "uid inside should be 1000");
    CHECK (strstr (result.output, "CapEff:\t0000000000000000") != NULL,
           "no capabilities expected inside:\n%s", result.output);
    dw_sandbox_destroy (&sandbox);
}

static void
test_network_blocked (void)
{
    s_reset_dirs ();
    dw_sandbox_config_t cfg;
    s_base_config (&cfg, "network");
    dw_sandbox_t *sandbox = s_new (&cfg);
    sbx_result_t result;
    s_run_script (sandbox, "network.sh", NULL, 30000, &result);

    CHECK (strstr (result.output, "DONE") != NULL, "script should finish:\n%s", result.output);
    CHECK (strstr (result.output, "TCP_LOOPBACK BLOCKED") != NULL,
           "host loopback listener must be unreachable:\n%s", result.output);
    CHECK (strstr (result.output, "DNS BLOCKED") != NULL, "name resolution must fail");
    CHECK (strstr (result.output, "ABSTRACT_UNIX BLOCKED") != NULL,
           "host abstract socket must be unreachable");
    CHECK (strstr (result.output, "EXTERNAL BLOCKED") != NULL, "external address must fail");
    CHECK (strstr (result.output, "GATEWAY OPEN") != NULL,
           "gateway socket must be reachable:\n%s", result.output);
    CHECK (strstr (result.output, "INTERFACES lo\n") != NULL, "only lo expected");
    CHECK (strstr (result.output, "SOCKETS /run/driftwatch-gateway/gw.sock\n") != NULL,
           "the gateway socket should be the only socket file:\n%s", result.output);
    dw_sandbox_destroy (&sandbox);

    /* Grading: no gateway at all. */
    s_reset_dirs ();
    s_base_config (&cfg, "network-grading");
    cfg.purpose = DW_SANDBOX_GRADING;
    cfg.gateway_dir = NULL;
    sandbox = s_new (&cfg);
    s_run_script (sandbox, "network.sh", NULL, 30000, &result);
    CHECK (strstr (result.output, "GATEWAY BLOCKED") != NULL,
           "grading sandbox must not see the gateway:\n%s", result.output);
    CHECK (strstr (result.output, "TCP_LOOPBACK BLOCKED") != NULL, "grading: loopback blocked");
    dw_sandbox_destroy (&sandbox);
}

static void
test_writes_contained (void)
{
    s_reset_dirs ();
    dw_sandbox_config_t cfg;
    s_base_config (&cfg, "writes");
    dw_sandbox_t *sandbox = s_new (&cfg);
    sbx_result_t result;
    s_run_script (sandbox, "write_outside.sh", NULL, 20000, &result);

    CHECK (strstr (result.output, "DONE") != NULL, "script should finish:\n%s", result.output);
    CHECK (access ("/usr/dw_pwn", F_OK) != 0, "/usr/dw_pwn must not exist on the host");
    CHECK (access ("/etc/dw_pwn", F_OK) != 0, "/etc/dw_pwn must not exist on the host");
    CHECK (access ("/dw_pwn", F_OK) != 0, "/dw_pwn must not exist on the host");
    char text[64] = "";
    sbx_read (s_host_file, text, sizeof text);
    CHECK (strcmp (text, "host") == 0, "host /tmp file changed to '%s'", text);
    CHECK (strstr (result.output, "DENIED /usr/dw_pwn") != NULL, "write to /usr must fail");
    CHECK (strstr (result.output, "DENIED /etc/dw_pwn") != NULL, "write to /etc must fail");
    CHECK (strstr (result.output, "DENIED /dw_pwn") != NULL, "write to / must fail");

    char path[PATH_MAX];
    snprintf (path, sizeof path, "%s/inside", s_ws);
    CHECK (sbx_read (path, text, sizeof text) > 0 && strcmp (text, "pwned\n") == 0,
           "workspace write should land in %s", path);
    snprintf (path, sizeof path, "%s%s", s_tmp, s_host_file + strlen ("/tmp"));
    CHECK (access (path, F_OK) == 0, "write to the host /tmp path should land in the private "
           "tmp (%s)", path);
    dw_sandbox_destroy (&sandbox);
}

static void
test_fork_bomb_contained (void)
{
    s_reset_dirs ();
    dw_sandbox_config_t cfg;
    s_base_config (&cfg, "forkbomb");
    cfg.limits.max_processes = 48;
    dw_sandbox_t *sandbox = s_new (&cfg);
    sbx_result_t result;
    s_run_script (sandbox, "fork_bomb.sh", NULL, 3000, &result);

    dw_sandbox_usage_t usage;
    dw_sandbox_usage (sandbox, &usage);
    CHECK (strstr (result.output, "START") != NULL, "bomb should start:\n%.500s", result.output);
    CHECK (result.timed_out, "bomb run should end by the timeout kill");
    CHECK (usage.pids_rejected > 0, "pids limit should have rejected forks (rejected=%llu)",
           (unsigned long long) usage.pids_rejected);
    pid_t pids[8];
    CHECK (dw_sandbox_pids (sandbox, pids, 8) == 0, "no process may survive the kill");

    /* The host can still start processes. */
    pid_t child = fork ();
    if (child == 0)
        _exit (0);
    int status = -1;
    waitpid (child, &status, 0);
    CHECK (child > 0 && WIFEXITED (status), "host fork after the bomb should work");
    dw_sandbox_destroy (&sandbox);
}

static void
test_memory_limited (void)
{
    s_reset_dirs ();
    dw_sandbox_config_t cfg;
    s_base_config (&cfg, "memory");
    cfg.limits.memory_bytes = 96ull << 20;
    dw_sandbox_t *sandbox = s_new (&cfg);
    sbx_result_t result;
    s_run_script (sandbox, "memory_hog.sh", NULL, 30000, &result);

    dw_sandbox_usage_t usage;
    dw_sandbox_usage (sandbox, &usage);
    CHECK (strstr (result.output, "SURVIVED") == NULL, "4 GiB allocation must not succeed");
    CHECK (result.status != 0, "memory hog should fail (status %d)", result.status);
    CHECK (usage.oom_kills > 0 || strstr (result.output, "MemoryError") != NULL,
           "expected an OOM kill or a failed allocation (oom_kills=%llu, status=%d)",
           (unsigned long long) usage.oom_kills, result.status);
    CHECK (usage.memory_peak_bytes <= (96ull << 20) + (1 << 20),
           "peak %llu above the limit", (unsigned long long) usage.memory_peak_bytes);
    dw_sandbox_destroy (&sandbox);
}

static void
test_disk_limited (void)
{
    /* One big file: the per-file size limit stops it. */
    s_reset_dirs ();
    dw_sandbox_config_t cfg;
    s_base_config (&cfg, "disk-big");
    cfg.limits.workspace_bytes = 20ull << 20;
    dw_sandbox_t *sandbox = s_new (&cfg);
    sbx_result_t result;
    s_run_script (sandbox, "disk_fill.sh", "big", 30000, &result);
    char path[400];
    snprintf (path, sizeof path, "%s/big", s_ws);
    struct stat st;
    CHECK (stat (path, &st) == 0 && st.st_size <= (off_t) (20 << 20),
           "big file should stop at 20 MiB (size %lld)", (long long) st.st_size);
    dw_sandbox_destroy (&sandbox);

    /* Many small files: the periodic size check kills the run. */
    s_reset_dirs ();
    s_base_config (&cfg, "disk-many");
    cfg.limits.workspace_bytes = 20ull << 20;
    sandbox = s_new (&cfg);
    s_run_script (sandbox, "disk_fill.sh", "many", 30000, &result);
    dw_sandbox_usage_t usage;
    dw_sandbox_usage (sandbox, &usage);
    CHECK (strstr (result.output, "WROTE_ALL") == NULL, "400 MiB of files must not fit");
    CHECK (usage.limit_exceeded && strcmp (usage.exceeded_limit, "workspace_size") == 0,
           "expected workspace_size exceeded, got '%s'", usage.exceeded_limit);
    uint64_t size = dw_sandbox_tree_size (s_ws);
    CHECK (size < (40ull << 20), "workspace should stop near the limit (%llu bytes)",
           (unsigned long long) size);
    dw_sandbox_destroy (&sandbox);
}

static void
test_cpu_limited (void)
{
    s_reset_dirs ();
    dw_sandbox_config_t cfg;
    s_base_config (&cfg, "cpu");
    cfg.limits.cpu_seconds = 1;
    dw_sandbox_t *sandbox = s_new (&cfg);
    sbx_result_t result;
    uint64_t start = dw_mono_ms ();
    s_run_script (sandbox, "cpu_spin.sh", NULL, 20000, &result);
    uint64_t elapsed = dw_mono_ms () - start;
    CHECK (!result.timed_out, "CPU limit should end the spin before the 20 s timeout");
    CHECK (result.status != 0, "spin should be killed (status %d)", result.status);
    CHECK (elapsed < 10000, "spin should end within seconds (took %llu ms)",
           (unsigned long long) elapsed);
    dw_sandbox_destroy (&sandbox);
}

/* Run survivors.sh until it is ready, then kill as the runner would. */
static void
s_check_survivors (int no_cgroup)
{
    s_reset_dirs ();
    dw_sandbox_config_t cfg;
    s_base_config (&cfg, no_cgroup ? "survivors-rlimit" : "survivors");
    cfg.no_cgroup = no_cgroup;
    dw_sandbox_t *sandbox = s_new (&cfg);

    char script[400], output[400];
    snprintf (script, sizeof script, "%s/survivors.sh", s_agent);
    snprintf (output, sizeof output, "%s/survivors.out", s_root);
    char *argv[] = { "/bin/sh", script, NULL };
    char **wrapped = NULL;
    REQUIRE (dw_sandbox_wrap (sandbox, argv, &wrapped) == 0);
    pid_t pid = sbx_start (wrapped, dw_sandbox_pre_exec, sandbox, output);
    dw_sandbox_argv_free (&wrapped);

    char text[4096] = "";
    for (int i = 0; i < 100 && !strstr (text, "READY"); i++) {
        usleep (50000);
        sbx_read (output, text, sizeof text);
    }
    CHECK (strstr (text, "READY") != NULL, "survivors.sh should start, output: %s", text);
    usleep (200000);
    CHECK (sbx_count_marked (s_marker) >= 3, "expected the marked processes to be running "
           "(found %d)", sbx_count_marked (s_marker));

    if (!no_cgroup) {
        pid_t pids[64];
        int count = dw_sandbox_pids (sandbox, pids, 64);
        CHECK (count >= 5, "bwrap, the script and its three children should be in the "
               "cgroup (found %d)", count);
    }

    /* Only the sandbox's kill: the daemon left the process group, so a
     * group kill alone would miss it. (A SIGTERM to the group would end
     * bwrap, and with it the whole pid namespace, so it is not sent here.) */
    dw_sandbox_kill_hook (sandbox, pid, SIGKILL);
    int status;
    waitpid (pid, &status, 0);
    dw_sandbox_destroy (&sandbox);

    int left = 0;
    for (int i = 0; i < 50; i++) {
        left = sbx_count_marked (s_marker);
        if (left == 0)
            break;
        usleep (20000);
    }
    CHECK (left == 0, "%d marked process(es) survived kill+destroy (%s)", left,
           no_cgroup ? "rlimit-only" : "cgroup");
}

static void
test_survivors_killed (void)
{
    s_check_survivors (0);
    s_check_survivors (1);
}

static void
s_setup (void)
{
    s_source_dir = getenv ("DW_SOURCE_DIR");
    if (!s_source_dir)
        s_source_dir = ".";
    snprintf (s_root, sizeof s_root, "/tmp/dw-sbx-%d", (int) getpid ());
    snprintf (s_ws, sizeof s_ws, "%s/ws", s_root);
    snprintf (s_home, sizeof s_home, "%s/home", s_root);
    snprintf (s_tmp, sizeof s_tmp, "%s/tmp", s_root);
    snprintf (s_gw, sizeof s_gw, "%s/gw", s_root);
    snprintf (s_agent, sizeof s_agent, "%s/agent", s_root);
    snprintf (s_host_file, sizeof s_host_file, "/tmp/dw-sbx-host-%d", (int) getpid ());
    snprintf (s_marker, sizeof s_marker, "dwmark%d", (int) getpid ());
    dw_mkdir_p (s_root, 0755);
    dw_mkdir_p (s_gw, 0755);
    dw_mkdir_p (s_agent, 0755);

    /* The agent scripts, bound read-only like the Claude Code install. */
    char command[1024];
    snprintf (command, sizeof command, "cp %s/tests/sandbox/*.sh %s/", s_source_dir, s_agent);
    REQUIRE (system (command) == 0);

    /* Fake worker secrets outside the workspace. */
    char path[512];
    snprintf (path, sizeof path, "%s/keys", s_secret_dir);
    dw_mkdir_p (path, 0700);
    snprintf (path, sizeof path, "%s/spool", s_secret_dir);
    dw_mkdir_p (path, 0700);
    snprintf (path, sizeof path, "%s/keys/secret", s_secret_dir);
    sbx_write (path, "driftwatch-test-secret-value\n", 0600);
    snprintf (path, sizeof path, "%s/spool/job1", s_secret_dir);
    sbx_write (path, "driftwatch-test-secret-value spool\n", 0644);
    dw_mkdir_p (s_etc_secret_dir, 0755);
    snprintf (path, sizeof path, "%s/secret", s_etc_secret_dir);
    sbx_write (path, "driftwatch-test-secret-value etc\n", 0644);
    sbx_write (s_host_file, "host", 0666);

    int port = 0;
    int tcp = sbx_listen_tcp (&port);
    REQUIRE (tcp >= 0);
    snprintf (s_port_env, sizeof s_port_env, "DW_TEST_PORT=%d", port);
    snprintf (s_abstract_env, sizeof s_abstract_env, "DW_TEST_ABSTRACT=dw-sbx-abstract-%d",
              (int) getpid ());
    int abstract = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    int len = snprintf (addr.sun_path + 1, sizeof addr.sun_path - 1, "dw-sbx-abstract-%d",
                        (int) getpid ());
    REQUIRE (bind (abstract, (struct sockaddr *) &addr,
                  (socklen_t) (offsetof (struct sockaddr_un, sun_path) + 1 + len)) == 0);
    REQUIRE (listen (abstract, 4) == 0);
    snprintf (path, sizeof path, "%s/gw.sock", s_gw);
    REQUIRE (sbx_listen_unix (path) >= 0);
    snprintf (s_host_file_env, sizeof s_host_file_env, "DW_TEST_HOST_FILE=%s", s_host_file);
    snprintf (s_marker_env, sizeof s_marker_env, "DW_TEST_MARKER=%s", s_marker);
    snprintf (s_work_root_env, sizeof s_work_root_env, "DW_TEST_WORK_ROOT=%s", s_root);
}

static void
s_teardown (void)
{
    dw_rm_rf (s_root);
    dw_rm_rf (s_secret_dir);
    dw_rm_rf (s_etc_secret_dir);
    unlink (s_host_file);
    rmdir ("/sys/fs/cgroup/memory/driftwatch-test");
    rmdir ("/sys/fs/cgroup/pids/driftwatch-test");
    rmdir ("/sys/fs/cgroup/cpu/driftwatch-test");
    rmdir ("/sys/fs/cgroup/cpuacct/driftwatch-test");
    rmdir ("/sys/fs/cgroup/freezer/driftwatch-test");
}

int
main (void)
{
    dw_log_init ("test_sandbox", DW_LOG_WARN);
    if (geteuid () != 0) {
        printf ("SKIP: the sandbox tests need root (cgroups, fake worker files)\n");
        return SKIP_RETURN_CODE;
    }
    if (system ("command -v bwrap >/dev/null 2>&1") != 0) {
        printf ("SKIP: bubblewrap not found: apt-get install bubblewrap\n");
        return SKIP_RETURN_CODE;
    }
    signal (SIGPIPE, SIG_IGN);
    s_setup ();

    const char *only = getenv ("DW_TEST_ONLY");
    struct { const char *name; void (*fn) (void); } tests[] = {
        { "wrap_argv", test_wrap_argv },
        { "config_rejected", test_config_rejected },
        { "secrets_hidden", test_secrets_hidden },
        { "network_blocked", test_network_blocked },
        { "writes_contained", test_writes_contained },
        { "fork_bomb_contained", test_fork_bomb_contained },
        { "memory_limited", test_memory_limited },
        { "disk_limited", test_disk_limited },
        { "cpu_limited", test_cpu_limited },
        { "survivors_killed", test_survivors_killed },
    };
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        if (only && !strstr (only, tests[i].name))
            continue;
        int before = s_failures;
        tests[i].fn ();
        printf ("%s %s\n", s_failures == before ? "ok" : "FAILED", tests[i].name);
        fflush (stdout);
    }
    s_teardown ();
    return s_failures ? 1 : 0;
}
