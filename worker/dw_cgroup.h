/* Control groups for sandboxed attempts: host layout detection, one group
 * per attempt with memory / process / CPU limits, usage figures, and a kill
 * that reaches every process of the attempt.
 *
 * Supported layouts: cgroup v2 unified (the worker needs a delegated subtree
 * with memory, pids and cpu available), cgroup v1 hierarchies (memory, pids,
 * cpu, cpuacct, freezer) and hybrid hosts, where v1 controllers carry the
 * limits. On a hybrid host whose unified hierarchy has no memory controller,
 * v1 is used. Every function takes a layout so tests can point it at a fake
 * tree built in a temporary directory.
 */
#ifndef DW_CGROUP_H
#define DW_CGROUP_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Default cgroup filesystem mount point. */
#define DW_CGROUP_ROOT "/sys/fs/cgroup"

/* Default parent of the per-attempt groups. A relative parent is resolved
 * against the worker's own cgroup on v2 (the delegated subtree) and against
 * the hierarchy root on v1. */
#define DW_CGROUP_PARENT "driftwatch"

/* Maximum number of pids one listing returns; larger groups are killed in
 * several rounds. */
#define DW_CGROUP_PIDS_MAX 4096

/* How long dw_cgroup_kill waits for the group to become empty. */
#define DW_CGROUP_KILL_WAIT_MS 5000

typedef enum {
    DW_CGROUP_NONE = 0,
    DW_CGROUP_V1 = 1,
    DW_CGROUP_V2 = 2
} dw_cgroup_version_t;

/* Where each hierarchy is mounted and where the worker sits in it. Empty
 * strings mean "not available". Self paths start with '/'. */
typedef struct {
    dw_cgroup_version_t version;
    char v2_mount[PATH_MAX];
    char v2_self[PATH_MAX];
    /* Controllers listed in the v2 cgroup.controllers of the worker's group. */
    int v2_memory, v2_pids, v2_cpu;
    char v1_memory[PATH_MAX], v1_memory_self[PATH_MAX];
    char v1_pids[PATH_MAX], v1_pids_self[PATH_MAX];
    char v1_cpu[PATH_MAX], v1_cpu_self[PATH_MAX];
    char v1_cpuacct[PATH_MAX], v1_cpuacct_self[PATH_MAX];
    char v1_freezer[PATH_MAX], v1_freezer_self[PATH_MAX];
    /* memory.memsw.* present: swap is limited together with memory. */
    int v1_memsw;
} dw_cgroup_layout_t;

/* Detect the layout under ROOT (normally DW_CGROUP_ROOT) using the worker's
 * membership file SELF_CGROUP (normally "/proc/self/cgroup"). Returns 0 and
 * fills LAYOUT (version DW_CGROUP_NONE when nothing usable is mounted), or
 * -1 with a message in ERR when the files cannot be read. */
int dw_cgroup_detect (const char *root, const char *self_cgroup, dw_cgroup_layout_t *layout,
                      char *err, size_t errlen);

/* Limits of one group. Zero means "no limit". */
typedef struct {
    uint64_t memory_bytes;
    uint64_t max_pids;
    /* CPU bandwidth in percent of one core (200 = two cores). */
    unsigned cpu_percent;
} dw_cgroup_limits_t;

/* What a group used; fields are 0 when the layout cannot tell. */
typedef struct {
    uint64_t memory_peak_bytes;
    uint64_t oom_kills;
    uint64_t pids_current;
    /* Forks rejected because of pids.max. */
    uint64_t pids_rejected;
    uint64_t cpu_usage_usec;
} dw_cgroup_usage_t;

typedef struct dw_cgroup_t dw_cgroup_t;

/* Create the group PARENT/NAME (PARENT NULL = DW_CGROUP_PARENT) in every
 * hierarchy the layout uses and write LIMITS. NAME must be a single path component.
 * On v2, a worker that sits in its own delegated group is first moved into
 * a "supervisor" leaf so controllers can be enabled for the subtree.
 * Returns NULL with a message naming the file and the fix in ERR. */
dw_cgroup_t *dw_cgroup_new (const dw_cgroup_layout_t *layout, const char *parent,
                            const char *name, const dw_cgroup_limits_t *limits, char *err,
                            size_t errlen);

/* Move the calling process into the group by writing "0" to each of its
 * cgroup.procs files. Async-signal-safe (open, write, close on paths built
 * by dw_cgroup_new), because the process runner closes inherited
 * descriptors before its pre-exec hook: meant for the child between fork
 * and exec. Returns 0, or -1 if any write failed. */
int dw_cgroup_enter (const dw_cgroup_t *self);

/* Move process PID into the group. */
int dw_cgroup_add_pid (dw_cgroup_t *self, pid_t pid);

/* Store up to MAX pids of the group's processes in PIDS; returns the count
 * or -1. */
int dw_cgroup_pids (dw_cgroup_t *self, pid_t *pids, size_t max);

/* SIGKILL every process in the group and wait up to DW_CGROUP_KILL_WAIT_MS
 * for it to become empty. Uses cgroup.kill on v2; on v1 freezes the group
 * (if the freezer is mounted) so no process can fork while it is being
 * emptied. Returns 0 when the group is empty, -1 otherwise. Thread-safe. */
int dw_cgroup_kill (dw_cgroup_t *self);

/* Send SIGNAL to every process currently in the group (one pass, no
 * waiting). Returns the number of processes signalled, or -1. */
int dw_cgroup_signal (dw_cgroup_t *self, int signal);

/* Read the usage figures. Returns 0, or -1 if the group is gone. */
int dw_cgroup_usage (dw_cgroup_t *self, dw_cgroup_usage_t *usage);

/* Directory of the group in the hierarchy that carries memory (v1) or the
 * unified one (v2). */
const char *dw_cgroup_path (const dw_cgroup_t *self);

/* Which limits the group enforces, as set at creation. */
int dw_cgroup_enforces_memory (const dw_cgroup_t *self);
int dw_cgroup_enforces_pids (const dw_cgroup_t *self);

/* Kill what is left, remove the group's directories and free it. Logs a
 * warning if a directory cannot be removed. Accepts NULL. */
void dw_cgroup_destroy (dw_cgroup_t **self_p);

/* One enforced-or-not line of the limit report. */
typedef struct {
    const char *limit;
    int enforced;
    char mechanism[96];
} dw_limit_entry_t;

enum {
    DW_LIMIT_MEMORY = 0,
    DW_LIMIT_PROCESSES,
    DW_LIMIT_CPU_TIME,
    DW_LIMIT_WALL_TIME,
    DW_LIMIT_WORKSPACE_SIZE,
    DW_LIMIT_OUTPUT_SIZE,
    DW_LIMIT_COUNT
};

typedef struct {
    dw_cgroup_version_t version;
    dw_limit_entry_t entries[DW_LIMIT_COUNT];
} dw_limit_report_t;

/* Detect the host layout, try to create and remove a probe group, and
 * report how each sandbox limit is enforced on this host. Returns 0. */
int dw_cgroup_probe (dw_limit_report_t *report);

/* Same as dw_cgroup_probe for an already detected LAYOUT and PARENT. */
int dw_cgroup_probe_layout (const dw_cgroup_layout_t *layout, const char *parent,
                            dw_limit_report_t *report);

/* Write the report as one line per limit ("memory enforced=yes by=cgroup v1
 * memory.limit_in_bytes") into OUT. */
void dw_limit_report_format (const dw_limit_report_t *report, char *out, size_t outlen);

#endif
