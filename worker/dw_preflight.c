/* Start-up checks of the sandbox backends. See dw_preflight.h. */
#include "dw_preflight.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dw_container.h"
#include "dw_log.h"
#include "dw_sandbox.h"
#include "dw_util.h"

/* Time allowed for each trial run. */
#define DW_PREFLIGHT_TRIAL_MS 30000

/* Output of a failed trial kept for the message. */
#define DW_PREFLIGHT_OUTPUT_MAX 400

static void __attribute__ ((format (printf, 2, 3)))
s_message (dw_preflight_report_t *report, const char *fmt, ...)
{
    if (report->message_count >= DW_PREFLIGHT_MESSAGES_MAX)
        return;
    char *slot = report->messages[report->message_count++];
    va_list args;
    va_start (args, fmt);
    vsnprintf (slot, DW_PREFLIGHT_MESSAGE_LEN, fmt, args);
    va_end (args);
    dw_warn ("preflight problem: %s", slot);
}

/* Read a small integer from a /proc file; -1 when absent. */
static long
s_read_number (const char *path)
{
    char *text = dw_read_file (path, 64, NULL);
    if (!text)
        return -1;
    long value = strtol (text, NULL, 10);
    free (text);
    return value;
}

static void
s_check_userns (dw_preflight_report_t *report)
{
    report->userns_ok = 1;
    long clone = s_read_number ("/proc/sys/kernel/unprivileged_userns_clone");
    if (clone == 0) {
        report->userns_ok = 0;
        s_message (report, "unprivileged user namespaces are disabled "
                   "(kernel.unprivileged_userns_clone=0): sysctl -w "
                   "kernel.unprivileged_userns_clone=1 and persist it in /etc/sysctl.d");
    }
    long max = s_read_number ("/proc/sys/user/max_user_namespaces");
    if (max == 0) {
        report->userns_ok = 0;
        s_message (report, "user namespaces are disabled (user.max_user_namespaces=0): "
                   "sysctl -w user.max_user_namespaces=15000");
    }
    long apparmor = s_read_number ("/proc/sys/kernel/apparmor_restrict_unprivileged_userns");
    if (apparmor == 1) {
        report->userns_ok = 0;
        s_message (report, "AppArmor restricts unprivileged user namespaces "
                   "(kernel.apparmor_restrict_unprivileged_userns=1): add an AppArmor profile "
                   "allowing userns for bwrap, or sysctl -w "
                   "kernel.apparmor_restrict_unprivileged_userns=0");
    }
}

/* Run ARGV with the sandbox's pre-exec hook; returns the exit status (or
 * -1) and keeps the start of the output in OUT. */
static int
s_trial (char *const argv[], dw_sandbox_t *sandbox, char *out, size_t outlen)
{
    out[0] = '\0';
    int fds[2];
    if (pipe2 (fds, O_CLOEXEC) != 0)
        return -1;
    pid_t pid = fork ();
    if (pid < 0) {
        close (fds[0]);
        close (fds[1]);
        return -1;
    }
    if (pid == 0) {
        int null_fd = open ("/dev/null", O_RDONLY);
        if (null_fd >= 0)
            dup2 (null_fd, STDIN_FILENO);
        dup2 (fds[1], STDOUT_FILENO);
        dup2 (fds[1], STDERR_FILENO);
        if (sandbox)
            dw_sandbox_pre_exec (sandbox);
        execv (argv[0], argv);
        _exit (127);
    }
    close (fds[1]);

    size_t used = 0;
    uint64_t deadline = dw_mono_ms () + DW_PREFLIGHT_TRIAL_MS;
    for (;;) {
        uint64_t now = dw_mono_ms ();
        if (now >= deadline) {
            kill (pid, SIGKILL);
            break;
        }
        struct pollfd pfd = { fds[0], POLLIN, 0 };
        if (poll (&pfd, 1, (int) (deadline - now)) <= 0)
            continue;
        char chunk[1024];
        ssize_t got = read (fds[0], chunk, sizeof chunk);
        if (got <= 0)
            break;
        if (used + 1 < outlen) {
            size_t take = (size_t) got < outlen - 1 - used ? (size_t) got : outlen - 1 - used;
            memcpy (out + used, chunk, take);
            used += take;
            out[used] = '\0';
        }
    }
    close (fds[0]);
    int status = 0;
    while (waitpid (pid, &status, 0) < 0 && errno == EINTR)
        ;
    for (char *p = out; *p; p++)
        if (*p == '\n')
            *p = ' ';
    return WIFEXITED (status) ? WEXITSTATUS (status) : -1;
}

static void
s_check_bwrap (const dw_preflight_options_t *options, dw_preflight_report_t *report)
{
    const char *scratch_root = options->scratch_dir ? options->scratch_dir : "/tmp";
    char *scratch = dw_strdup_printf ("%s/dw-preflight-%d", scratch_root, (int) getpid ());
    char *workspace = scratch ? dw_strdup_printf ("%s/ws", scratch) : NULL;
    char *home = scratch ? dw_strdup_printf ("%s/home", scratch) : NULL;
    if (!workspace || !home || dw_mkdir_p (workspace, 0755) != 0
        || dw_mkdir_p (home, 0755) != 0) {
        s_message (report, "cannot create the preflight scratch directory under %s: %s",
                   scratch_root, strerror (errno));
        goto done;
    }

    /* The full sandbox without a cgroup: the cgroup is checked apart. */
    dw_sandbox_config_t cfg = {
        .backend = DW_SANDBOX_BWRAP,
        .purpose = DW_SANDBOX_GRADING,
        .workspace_dir = workspace,
        .home_dir = home,
        .host_uid = options->host_uid,
        .attempt_id = "preflight",
        .no_cgroup = 1,
        .bwrap_path = options->bwrap_path,
    };
    char err[512];
    dw_sandbox_t *sandbox = dw_sandbox_new (&cfg, err, sizeof err);
    if (!sandbox) {
        s_message (report, "%s", err);
        goto done;
    }
    char *argv[] = { "/bin/true", NULL };
    char **wrapped = NULL;
    if (dw_sandbox_wrap (sandbox, argv, &wrapped) == 0) {
        char output[DW_PREFLIGHT_OUTPUT_MAX];
        int status = s_trial (wrapped, sandbox, output, sizeof output);
        if (status == 0)
            report->bwrap_ok = 1;
        else
            s_message (report, "bubblewrap cannot run /bin/true in the sandbox (exit %d): %s; "
                       "check unprivileged user namespaces and that %s is traversable by "
                       "uid %d", status, output, scratch_root, (int) options->host_uid);
        dw_sandbox_argv_free (&wrapped);
    }
    dw_sandbox_destroy (&sandbox);

done:
    if (scratch)
        dw_rm_rf (scratch);
    free (scratch);
    free (workspace);
    free (home);
}

static void
s_check_cgroup (dw_preflight_report_t *report)
{
    dw_cgroup_probe (&report->limits);
    if (report->limits.version == DW_CGROUP_NONE) {
        s_message (report, "no cgroup hierarchy under %s: memory and process limits fall back "
                   "to per-process rlimits; mount cgroup2 on %s", DW_CGROUP_ROOT,
                   DW_CGROUP_ROOT);
        return;
    }
    const char *memory = report->limits.entries[DW_LIMIT_MEMORY].mechanism;
    const char *pids = report->limits.entries[DW_LIMIT_PROCESSES].mechanism;
    report->cgroup_ok = strncmp (memory, "cgroup", 6) == 0 && strncmp (pids, "cgroup", 6) == 0;
    if (!report->cgroup_ok)
        s_message (report, "cannot create a limited cgroup under %s/%s (memory by %s, "
                   "processes by %s): run the worker as root, or give it a delegated cgroup "
                   "v2 subtree (systemd Delegate=yes) with the memory and pids controllers",
                   DW_CGROUP_ROOT, DW_CGROUP_PARENT, memory, pids);
}

static void
s_check_container (const dw_preflight_options_t *options, dw_preflight_report_t *report)
{
    const char *cli = dw_container_default_cli (options->container_cli);
    if (!cli) {
        s_message (report, "podman not found (needed only for tasks that name an image): "
                   "apt-get install podman runc");
        return;
    }
    char output[DW_PREFLIGHT_OUTPUT_MAX];
    char *const version[] = { (char *) cli, "version", NULL };
    int status = dw_container_cli (version, output, sizeof output, DW_CONTAINER_CLI_TIMEOUT_MS);
    if (status < 0 && !output[0]) {
        s_message (report, "%s not found or not executable (needed only for tasks that name "
                   "an image): apt-get install podman runc", cli);
        return;
    }
    if (status != 0) {
        s_message (report, "%s does not run ('%s version' failed): %s; install it with "
                   "apt-get install podman runc", cli, cli, output);
        return;
    }
    if (!options->container_image) {
        report->container_ok = 1;
        return;
    }

    /* The same flags the sandbox uses; runc first because crun fails on
     * hybrid cgroup layouts. */
    const char *runtimes[] = { "runc", NULL };
    int is_podman = strstr (cli, "podman") != NULL;
    for (int i = 0; i < 2 && !report->container_ok; i++) {
        if (!is_podman && runtimes[i])
            continue;
        char *argv[24];
        int n = 0;
        argv[n++] = (char *) cli;
        if (runtimes[i]) {
            argv[n++] = "--runtime";
            argv[n++] = (char *) runtimes[i];
        }
        char *rest[] = { "run", "--rm", "--network", "none", "--ulimit", "nofile=1024:1024",
                         "--ulimit", "nproc=1024:1024", "--log-driver", "none",
                         (char *) options->container_image, "true", NULL };
        for (int j = 0; rest[j]; j++)
            argv[n++] = rest[j];
        argv[n] = NULL;
        status = dw_container_cli (argv, output, sizeof output, DW_PREFLIGHT_TRIAL_MS);
        if (status == 0) {
            report->container_ok = 1;
            snprintf (report->container_runtime, sizeof report->container_runtime, "%s",
                      runtimes[i] ? runtimes[i] : "");
        }
        else if (!runtimes[i])
            s_message (report, "%s cannot run image %s (exit %d): %s; install runc "
                       "(apt-get install runc) and check the cgroup layout", cli,
                       options->container_image, status, output);
    }
}

int
dw_preflight_run (const dw_preflight_options_t *options, dw_preflight_report_t *report)
{
    static const dw_preflight_options_t defaults = { 0 };
    options = options ? options : &defaults;
    memset (report, 0, sizeof *report);

    s_check_userns (report);
    s_check_bwrap (options, report);
    s_check_cgroup (report);
    if (!options->skip_container)
        s_check_container (options, report);

    const char *container = report->container_ok ? "ok" : "missing";
    if (options->skip_container)
        container = "skipped";
    dw_info ("preflight done bwrap=%s cgroup=%s container=%s userns=%s problems=%d",
             report->bwrap_ok ? "ok" : "missing", report->cgroup_ok ? "ok" : "missing",
             container, report->userns_ok ? "ok" : "missing", report->message_count);
    return report->bwrap_ok ? 0 : -1;
}
