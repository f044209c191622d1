/* Cgroup layout detection and limit files against fake v1, v2 and hybrid
 * trees built in a temporary directory. Real groups on this host check the
 * limits and the kill, and the unified hierarchy (when mounted) runs the
 * cgroup v2 kill for real. */
#include <assert.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dw_cgroup.h"
#include "dw_log.h"
#include "dw_util.h"
#include "sandbox_helpers.h"

#define SKIP_RETURN_CODE 77

static int s_failures = 0;

#define CHECK(cond, ...) do {                                   \
        if (!(cond)) {                                          \
            fprintf (stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            fprintf (stderr, __VA_ARGS__);                      \
            fprintf (stderr, "\n");                             \
            s_failures++;                                       \
        }                                                       \
    } while (0)

static char s_root[256];

/* Create DIR/FILE holding TEXT, with parents. */
static void
s_fake (const char *dir, const char *file, const char *text)
{
    char path[1024];
    snprintf (path, sizeof path, "%s/%s", s_root, dir);
    dw_mkdir_p (path, 0755);
    snprintf (path, sizeof path, "%s/%s/%s", s_root, dir, file);
    sbx_write (path, text, 0644);
}

static void
s_read_fake (const char *dir, const char *file, char *buf, size_t len)
{
    char path[1024];
    snprintf (path, sizeof path, "%s/%s/%s", s_root, dir, file);
    buf[0] = '\0';
    sbx_read (path, buf, len);
}

static void
test_detect_v2 (void)
{
    dw_rm_rf (s_root);
    s_fake ("cg", "cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n");
    s_fake ("cg", "cgroup.procs", "");
    s_fake ("cg/system.slice/dw.service", "cgroup.controllers", "cpu memory pids\n");
    s_fake ("cg/system.slice/dw.service", "cgroup.subtree_control", "");
    s_fake ("", "self_cgroup", "0::/system.slice/dw.service\n");

    char root[512], self[512], err[256];
    snprintf (root, sizeof root, "%s/cg", s_root);
    snprintf (self, sizeof self, "%s/self_cgroup", s_root);
    dw_cgroup_layout_t layout;
    CHECK (dw_cgroup_detect (root, self, &layout, err, sizeof err) == 0, "detect: %s", err);
    CHECK (layout.version == DW_CGROUP_V2, "expected v2, got %d", layout.version);
    CHECK (strcmp (layout.v2_mount, root) == 0, "v2 mount %s", layout.v2_mount);
    CHECK (strcmp (layout.v2_self, "/system.slice/dw.service") == 0, "v2 self %s",
           layout.v2_self);
    CHECK (layout.v2_memory && layout.v2_pids && layout.v2_cpu,
           "memory, pids and cpu should be available");

    /* The attempt group's files exist once the kernel creates the group;
     * the fake tree needs them up front. */
    const char *group = "cg/system.slice/dw.service/driftwatch/attempt-1";
    s_fake ("cg/system.slice/dw.service/driftwatch", "cgroup.subtree_control", "");
    const char *files[] = { "cgroup.procs", "memory.max", "memory.swap.max", "pids.max",
                            "cpu.max", "cgroup.kill", NULL };
    for (int i = 0; files[i]; i++)
        s_fake (group, files[i], "");

    dw_cgroup_limits_t limits = { .memory_bytes = 64ull << 20, .max_pids = 32,
                                  .cpu_percent = 50 };
    dw_cgroup_t *cgroup = dw_cgroup_new (&layout, NULL, "attempt-1", &limits, err, sizeof err);
    CHECK (cgroup != NULL, "create on fake v2 tree: %s", err);
    if (!cgroup)
        return;
    char expected[1024];
    snprintf (expected, sizeof expected, "%s/%s", s_root, group);
    CHECK (strcmp (dw_cgroup_path (cgroup), expected) == 0, "group path %s",
           dw_cgroup_path (cgroup));

    char text[256];
    s_read_fake (group, "memory.max", text, sizeof text);
    CHECK (strcmp (text, "67108864") == 0, "memory.max = '%s'", text);
    s_read_fake (group, "memory.swap.max", text, sizeof text);
    CHECK (strcmp (text, "0") == 0, "memory.swap.max = '%s'", text);
    s_read_fake (group, "pids.max", text, sizeof text);
    CHECK (strcmp (text, "32") == 0, "pids.max = '%s'", text);
    s_read_fake (group, "cpu.max", text, sizeof text);
    CHECK (strcmp (text, "50000 100000") == 0, "cpu.max = '%s'", text);
    s_read_fake ("cg/system.slice/dw.service", "cgroup.subtree_control", text, sizeof text);
    CHECK (strcmp (text, "+memory +pids +cpu") == 0, "service subtree_control = '%s'", text);
    s_read_fake ("cg/system.slice/dw.service/driftwatch", "cgroup.subtree_control", text,
                 sizeof text);
    CHECK (strcmp (text, "+memory +pids +cpu") == 0, "parent subtree_control = '%s'", text);
    CHECK (dw_cgroup_enforces_memory (cgroup) && dw_cgroup_enforces_pids (cgroup),
           "memory and pids should count as enforced");

    /* Usage comes from the v2 files. */
    s_fake (group, "memory.peak", "123456\n");
    s_fake (group, "memory.events", "low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\n");
    s_fake (group, "pids.current", "7\n");
    s_fake (group, "pids.events", "max 11\n");
    s_fake (group, "cpu.stat", "usage_usec 5000\nuser_usec 4000\nsystem_usec 1000\n");
    dw_cgroup_usage_t usage;
    CHECK (dw_cgroup_usage (cgroup, &usage) == 0, "usage on fake v2");
    CHECK (usage.memory_peak_bytes == 123456, "peak %llu",
           (unsigned long long) usage.memory_peak_bytes);
    CHECK (usage.oom_kills == 2, "oom_kills %llu", (unsigned long long) usage.oom_kills);
    CHECK (usage.pids_current == 7, "pids_current %llu",
           (unsigned long long) usage.pids_current);
    CHECK (usage.pids_rejected == 11, "pids_rejected %llu",
           (unsigned long long) usage.pids_rejected);
    CHECK (usage.cpu_usage_usec == 5000, "cpu %llu", (unsigned long long) usage.cpu_usage_usec);

    /* An empty group needs no kill; test_real_v2_kill covers cgroup.kill. */
    CHECK (dw_cgroup_kill (cgroup) == 0, "kill on an empty fake group");
    dw_cgroup_destroy (&cgroup);
    CHECK (cgroup == NULL, "destroy nulls the pointer");
}

static void
test_detect_v1 (void)
{
    dw_rm_rf (s_root);
    s_fake ("cg/memory", "cgroup.procs", "");
    s_fake ("cg/memory", "memory.memsw.limit_in_bytes", "");
    s_fake ("cg/pids", "cgroup.procs", "");
    s_fake ("cg/cpu,cpuacct", "cgroup.procs", "");
    s_fake ("cg/freezer", "cgroup.procs", "");
    s_fake ("cg/unified", "cgroup.controllers", "\n");
    s_fake ("", "self_cgroup", "12:pids:/user.slice\n5:cpu,cpuacct:/user.slice\n"
            "4:memory:/user.slice/session-1.scope\n3:freezer:/\n0::/user.slice\n");

    char root[512], self[512], err[256];
    snprintf (root, sizeof root, "%s/cg", s_root);
    snprintf (self, sizeof self, "%s/self_cgroup", s_root);
    dw_cgroup_layout_t layout;
    CHECK (dw_cgroup_detect (root, self, &layout, err, sizeof err) == 0, "detect: %s", err);
    CHECK (layout.version == DW_CGROUP_V1, "hybrid without v2 memory should use v1, got %d",
           layout.version);
    CHECK (strstr (layout.v2_mount, "/unified") != NULL, "unified mount found: '%s'",
           layout.v2_mount);
    CHECK (strstr (layout.v1_cpu, "cpu,cpuacct") != NULL, "cpu mount '%s'", layout.v1_cpu);
    CHECK (strcmp (layout.v1_cpu, layout.v1_cpuacct) == 0, "cpu and cpuacct share a mount");
    CHECK (layout.v1_memsw, "memsw should be detected");
    CHECK (strcmp (layout.v1_memory_self, "/user.slice/session-1.scope") == 0,
           "memory self '%s'", layout.v1_memory_self);

    const char *groups[] = { "cg/memory/dwtest/a1", "cg/pids/dwtest/a1",
                             "cg/cpu,cpuacct/dwtest/a1", "cg/freezer/dwtest/a1", NULL };
    for (int i = 0; groups[i]; i++)
        s_fake (groups[i], "cgroup.procs", "");
    s_fake (groups[0], "memory.limit_in_bytes", "");
    s_fake (groups[0], "memory.memsw.limit_in_bytes", "");
    s_fake (groups[1], "pids.max", "");
    s_fake (groups[2], "cpu.cfs_quota_us", "");
    s_fake (groups[2], "cpu.cfs_period_us", "");

    dw_cgroup_limits_t limits = { .memory_bytes = 1 << 20, .max_pids = 5, .cpu_percent = 150 };
    dw_cgroup_t *cgroup = dw_cgroup_new (&layout, "dwtest", "a1", &limits, err, sizeof err);
    CHECK (cgroup != NULL, "create on fake v1 tree: %s", err);
    if (!cgroup)
        return;
    char text[256];
    s_read_fake (groups[0], "memory.limit_in_bytes", text, sizeof text);
    CHECK (strcmp (text, "1048576") == 0, "memory.limit_in_bytes = '%s'", text);
    s_read_fake (groups[0], "memory.memsw.limit_in_bytes", text, sizeof text);
    CHECK (strcmp (text, "1048576") == 0, "memsw = '%s'", text);
    s_read_fake (groups[1], "pids.max", text, sizeof text);
    CHECK (strcmp (text, "5") == 0, "pids.max = '%s'", text);
    s_read_fake (groups[2], "cpu.cfs_quota_us", text, sizeof text);
    CHECK (strcmp (text, "150000") == 0, "cfs_quota_us = '%s'", text);

    s_fake (groups[0], "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n");
    s_fake (groups[0], "memory.max_usage_in_bytes", "999\n");
    dw_cgroup_usage_t usage;
    dw_cgroup_usage (cgroup, &usage);
    CHECK (usage.oom_kills == 3, "v1 oom_kill %llu", (unsigned long long) usage.oom_kills);
    CHECK (usage.memory_peak_bytes == 999, "v1 peak %llu",
           (unsigned long long) usage.memory_peak_bytes);
    dw_cgroup_destroy (&cgroup);
}

static void
test_rejects_bad_names (void)
{
    dw_cgroup_layout_t layout = { .version = DW_CGROUP_V1 };
    snprintf (layout.v1_memory, sizeof layout.v1_memory, "%s/none", s_root);
    char err[256];
    dw_cgroup_limits_t limits = { 0 };
    CHECK (dw_cgroup_new (&layout, NULL, "../escape", &limits, err, sizeof err) == NULL,
           "a name with '/' must be rejected");
    CHECK (dw_cgroup_new (&layout, "../up", "x", &limits, err, sizeof err) == NULL,
           "a parent with '..' must be rejected");
    dw_cgroup_layout_t none = { .version = DW_CGROUP_NONE };
    CHECK (dw_cgroup_new (&none, NULL, "x", &limits, err, sizeof err) == NULL,
           "no hierarchy must be an error");
    CHECK (strstr (err, "no usable cgroup") != NULL, "message: %s", err);
}

/* Start "sh -c" with three sleeping children inside CGROUP. */
static pid_t
s_spawn_in (dw_cgroup_t *cgroup)
{
    pid_t pid = fork ();
    if (pid == 0) {
        if (dw_cgroup_enter (cgroup) != 0)
            _exit (126);
        setsid ();
        execl ("/bin/sh", "sh", "-c", "sleep 100 & sleep 100 & setsid sleep 100 & wait", NULL);
        _exit (127);
    }
    return pid;
}

static void
test_real_groups (void)
{
    dw_cgroup_layout_t layout;
    char err[512];
    if (dw_cgroup_detect (NULL, NULL, &layout, err, sizeof err) != 0
        || layout.version == DW_CGROUP_NONE || geteuid () != 0) {
        printf ("skip real_groups: no writable cgroup hierarchy (%s)\n", err);
        return;
    }

    dw_cgroup_limits_t limits = { .memory_bytes = 32ull << 20, .max_pids = 16 };
    dw_cgroup_t *cgroup = dw_cgroup_new (&layout, "driftwatch-test", "real", &limits, err,
                                         sizeof err);
    CHECK (cgroup != NULL, "create a real group: %s", err);
    if (!cgroup)
        return;
    CHECK (dw_cgroup_enforces_memory (cgroup), "memory limit should be enforced on this host");
    CHECK (dw_cgroup_enforces_pids (cgroup), "pids limit should be enforced on this host");

    pid_t pid = s_spawn_in (cgroup);
    usleep (200000);
    pid_t pids[16];
    int count = dw_cgroup_pids (cgroup, pids, 16);
    CHECK (count >= 4, "sh and three sleeps expected in the group, found %d", count);
    CHECK (dw_cgroup_kill (cgroup) == 0, "kill should empty the group");
    int status;
    waitpid (pid, &status, 0);
    CHECK (WIFSIGNALED (status) && WTERMSIG (status) == SIGKILL, "sh should die of SIGKILL");
    CHECK (dw_cgroup_pids (cgroup, pids, 16) == 0, "group should be empty");
    char path[PATH_MAX];
    snprintf (path, sizeof path, "%s", dw_cgroup_path (cgroup));
    dw_cgroup_destroy (&cgroup);
    CHECK (access (path, F_OK) != 0, "group directory %s should be removed", path);
}

static void
test_real_v2_kill (void)
{
    /* On hybrid hosts the unified hierarchy has no controllers but still
     * offers cgroup.kill: this runs the v2 kill path for real. */
    dw_cgroup_layout_t host;
    char err[512];
    if (dw_cgroup_detect (NULL, NULL, &host, err, sizeof err) != 0 || !host.v2_mount[0]
        || geteuid () != 0) {
        printf ("skip real_v2_kill: no unified hierarchy\n");
        return;
    }
    dw_cgroup_layout_t layout = { .version = DW_CGROUP_V2 };
    snprintf (layout.v2_mount, sizeof layout.v2_mount, "%s", host.v2_mount);
    snprintf (layout.v2_self, sizeof layout.v2_self, "/");
    dw_cgroup_limits_t limits = { 0 };
    dw_cgroup_t *cgroup = dw_cgroup_new (&layout, "/driftwatch-test", "v2kill", &limits, err,
                                         sizeof err);
    if (!cgroup) {
        printf ("skip real_v2_kill: %s\n", err);
        return;
    }
    char kill_file[PATH_MAX];
    snprintf (kill_file, sizeof kill_file, "%s/cgroup.kill", dw_cgroup_path (cgroup));
    if (access (kill_file, F_OK) != 0) {
        printf ("skip real_v2_kill: kernel has no cgroup.kill\n");
        dw_cgroup_destroy (&cgroup);
        return;
    }
    pid_t pid = s_spawn_in (cgroup);
    usleep (200000);
    pid_t pids[16];
    CHECK (dw_cgroup_pids (cgroup, pids, 16) >= 4, "processes expected in the v2 group");
    CHECK (dw_cgroup_kill (cgroup) == 0, "v2 kill should empty the group");
    int status;
    waitpid (pid, &status, 0);
    CHECK (dw_cgroup_pids (cgroup, pids, 16) == 0, "v2 group should be empty");
    char path[PATH_MAX];
    snprintf (path, sizeof path, "%s", dw_cgroup_path (cgroup));
    dw_cgroup_destroy (&cgroup);
    CHECK (access (path, F_OK) != 0, "v2 group directory should be removed");
    char parent[PATH_MAX + 32];
    snprintf (parent, sizeof parent, "%s/driftwatch-test", host.v2_mount);
    rmdir (parent);
}

static void
test_probe_report (void)
{
    dw_limit_report_t report;
    CHECK (dw_cgroup_probe (&report) == 0, "probe should succeed");
    char text[2048];
    dw_limit_report_format (&report, text, sizeof text);
    printf ("%s", text);
    const char *names[] = { "memory enforced=yes", "processes enforced=yes",
                            "cpu_time enforced=yes", "wall_time enforced=yes",
                            "workspace_size enforced=yes", "output_size enforced=yes", NULL };
    for (int i = 0; names[i]; i++)
        CHECK (strstr (text, names[i]) != NULL, "report should contain '%s'", names[i]);
    if (geteuid () == 0 && report.version != DW_CGROUP_NONE)
        CHECK (strstr (text, "memory enforced=yes by=cgroup") != NULL,
               "root on a cgroup host should get cgroup memory limits:\n%s", text);

    /* Without any hierarchy only rlimits remain. */
    dw_cgroup_layout_t none = { .version = DW_CGROUP_NONE };
    dw_cgroup_probe_layout (&none, NULL, &report);
    dw_limit_report_format (&report, text, sizeof text);
    CHECK (strstr (text, "memory enforced=yes by=rlimit RLIMIT_DATA") != NULL,
           "rlimit-only memory line:\n%s", text);
    CHECK (strstr (text, "processes enforced=yes by=rlimit RLIMIT_NPROC") != NULL,
           "rlimit-only processes line");
}

int
main (void)
{
    dw_log_init ("test_cgroup", DW_LOG_ERROR);
    snprintf (s_root, sizeof s_root, "/tmp/dw-cgroup-%d", (int) getpid ());

    test_detect_v2 ();
    test_detect_v1 ();
    test_rejects_bad_names ();
    test_real_groups ();
    test_real_v2_kill ();
    test_probe_report ();

    dw_rm_rf (s_root);
    const char *hierarchies[] = { "memory", "pids", "cpu", "cpuacct", "freezer", NULL };
    for (int i = 0; hierarchies[i]; i++) {
        char path[PATH_MAX];
        snprintf (path, sizeof path, "/sys/fs/cgroup/%s/driftwatch-test", hierarchies[i]);
        rmdir (path);
    }
    printf ("%s\n", s_failures ? "FAILED" : "ok");
    return s_failures ? 1 : 0;
}
