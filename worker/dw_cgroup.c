/* Control groups for sandboxed attempts. See dw_cgroup.h. */
#include "dw_cgroup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dw_log.h"
#include "dw_util.h"

/* Hierarchies one group can span: the unified one, or up to five v1 ones. */
#define DW_CGROUP_HIER_MAX 5

/* Largest control file the module reads (memory.stat is not read). */
#define DW_CGROUP_FILE_MAX 65536

/* CFS period used for CPU bandwidth limits, in microseconds. */
#define DW_CGROUP_CPU_PERIOD_US 100000

/* How often kill and removal retry while the kernel finishes exits. */
#define DW_CGROUP_RETRY_MS 10

/* Directory name a v2 worker moves itself into so that its own group can
 * delegate controllers (a v2 group with processes cannot have children with
 * controllers enabled). */
#define DW_CGROUP_SUPERVISOR "supervisor"

typedef enum {
    DW_HIER_V2 = 0,
    DW_HIER_MEMORY,
    DW_HIER_PIDS,
    DW_HIER_CPU,
    DW_HIER_CPUACCT,
    DW_HIER_FREEZER
} dw_hier_kind_t;

struct dw_cgroup_t {
    dw_cgroup_version_t version;
    int count;
    dw_hier_kind_t kinds[DW_CGROUP_HIER_MAX];
    char dirs[DW_CGROUP_HIER_MAX][PATH_MAX];
    /* DIR/cgroup.procs, built before fork so the child only opens it. */
    char procs_paths[DW_CGROUP_HIER_MAX][PATH_MAX];
    int memory_enforced;
    int pids_enforced;
    int cpu_enforced;
    pthread_mutex_t kill_lock;
};

/* snprintf for paths and small values; returns -1 when OUT was too small
 * (the caller then sees a truncated path that does not exist). */
static int __attribute__ ((format (printf, 3, 4)))
s_fmt (char *out, size_t len, const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    int n = vsnprintf (out, len, fmt, args);
    va_end (args);
    return n < 0 || (size_t) n >= len ? -1 : n;
}

static void
s_set_err (char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list args;
    va_start (args, fmt);
    vsnprintf (err, errlen, fmt, args);
    va_end (args);
}

static int
s_exists (const char *path)
{
    struct stat st;
    return stat (path, &st) == 0;
}

static void
s_sleep_ms (unsigned ms)
{
    struct timespec ts = { ms / 1000, (long) (ms % 1000) * 1000000L };
    nanosleep (&ts, NULL);
}

/* Write TEXT to DIR/FILE without creating it: cgroup files always exist,
 * so a missing one means the controller is not there. */
static int
s_write_file (const char *dir, const char *file, const char *text)
{
    char path[PATH_MAX];
    if (s_fmt (path, sizeof path, "%s/%s", dir, file) < 0) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = open (path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t len = strlen (text);
    ssize_t written = write (fd, text, len);
    int saved = errno;
    close (fd);
    if (written != (ssize_t) len) {
        errno = written < 0 ? saved : EIO;
        return -1;
    }
    return 0;
}

static char *
s_read_file (const char *dir, const char *file)
{
    char path[PATH_MAX];
    if (s_fmt (path, sizeof path, "%s/%s", dir, file) < 0)
        return NULL;
    return dw_read_file (path, DW_CGROUP_FILE_MAX, NULL);
}

/* Read a file holding one unsigned number ("max" reads as 0). */
static int
s_read_u64 (const char *dir, const char *file, uint64_t *value)
{
    char *text = s_read_file (dir, file);
    if (!text)
        return -1;
    *value = strtoull (text, NULL, 10);
    free (text);
    return 0;
}

/* Read "KEY N" from a flat keyed file such as memory.events. */
static int
s_read_keyed (const char *dir, const char *file, const char *key, uint64_t *value)
{
    char *text = s_read_file (dir, file);
    if (!text)
        return -1;

    int found = -1;
    size_t keylen = strlen (key);
    for (char *line = text; line && *line; ) {
        char *next = strchr (line, '\n');
        if (next)
            *next++ = '\0';
        if (strncmp (line, key, keylen) == 0 && line[keylen] == ' ') {
            *value = strtoull (line + keylen + 1, NULL, 10);
            found = 0;
            break;
        }
        line = next;
    }
    free (text);
    return found;
}

/* Return nonzero if the space-separated LIST contains WORD. */
static int
s_list_has (const char *list, const char *word)
{
    size_t len = strlen (word);
    for (const char *p = list; (p = strstr (p, word)) != NULL; p += len) {
        int starts = p == list || p[-1] == ' ' || p[-1] == ',';
        int ends = p[len] == '\0' || p[len] == ' ' || p[len] == '\n' || p[len] == ',';
        if (starts && ends)
            return 1;
    }
    return 0;
}

/* Fill MOUNT with ROOT/NAME when that directory is a v1 hierarchy. */
static void
s_find_v1 (const char *root, const char *const names[], char mount[PATH_MAX])
{
    mount[0] = '\0';
    for (int i = 0; names[i]; i++) {
        char path[PATH_MAX];
        s_fmt (path, sizeof path, "%s/%s/cgroup.procs", root, names[i]);
        if (s_exists (path)) {
            s_fmt (mount, PATH_MAX, "%s/%s", root, names[i]);
            return;
        }
    }
}

int
dw_cgroup_detect (const char *root, const char *self_cgroup, dw_cgroup_layout_t *layout,
                  char *err, size_t errlen)
{
    memset (layout, 0, sizeof *layout);
    root = root ? root : DW_CGROUP_ROOT;
    self_cgroup = self_cgroup ? self_cgroup : "/proc/self/cgroup";

    /* Mount points: the unified hierarchy is the root itself (pure v2) or
     * ROOT/unified (hybrid); v1 controllers are directories under ROOT. */
    char path[PATH_MAX];
    s_fmt (path, sizeof path, "%s/cgroup.controllers", root);
    if (s_exists (path))
        s_fmt (layout->v2_mount, PATH_MAX, "%s", root);
    else {
        s_fmt (path, sizeof path, "%s/unified/cgroup.controllers", root);
        if (s_exists (path))
            s_fmt (layout->v2_mount, PATH_MAX, "%s/unified", root);

        static const char *const memory[] = { "memory", NULL };
        static const char *const pids[] = { "pids", NULL };
        static const char *const cpu[] = { "cpu", "cpu,cpuacct", "cpuacct,cpu", NULL };
        static const char *const cpuacct[] = { "cpuacct", "cpu,cpuacct", "cpuacct,cpu", NULL };
        static const char *const freezer[] = { "freezer", NULL };
        s_find_v1 (root, memory, layout->v1_memory);
        s_find_v1 (root, pids, layout->v1_pids);
        s_find_v1 (root, cpu, layout->v1_cpu);
        s_find_v1 (root, cpuacct, layout->v1_cpuacct);
        s_find_v1 (root, freezer, layout->v1_freezer);
        if (layout->v1_memory[0]) {
            s_fmt (path, sizeof path, "%s/memory.memsw.limit_in_bytes", layout->v1_memory);
            layout->v1_memsw = s_exists (path);
        }
    }

    /* The worker's own position in each hierarchy. */
    char *text = dw_read_file (self_cgroup, DW_CGROUP_FILE_MAX, NULL);
    if (!text) {
        s_set_err (err, errlen, "cannot read %s: %s", self_cgroup, strerror (errno));
        return -1;
    }
    for (char *line = text; line && *line; ) {
        char *next = strchr (line, '\n');
        if (next)
            *next++ = '\0';
        char *colon1 = strchr (line, ':');
        char *colon2 = colon1 ? strchr (colon1 + 1, ':') : NULL;
        if (colon2) {
            *colon2 = '\0';
            const char *controllers = colon1 + 1;
            const char *where = colon2 + 1;
            if (*controllers == '\0')
                s_fmt (layout->v2_self, PATH_MAX, "%s", where);
            if (s_list_has (controllers, "memory"))
                s_fmt (layout->v1_memory_self, PATH_MAX, "%s", where);
            if (s_list_has (controllers, "pids"))
                s_fmt (layout->v1_pids_self, PATH_MAX, "%s", where);
            if (s_list_has (controllers, "cpu"))
                s_fmt (layout->v1_cpu_self, PATH_MAX, "%s", where);
            if (s_list_has (controllers, "cpuacct"))
                s_fmt (layout->v1_cpuacct_self, PATH_MAX, "%s", where);
            if (s_list_has (controllers, "freezer"))
                s_fmt (layout->v1_freezer_self, PATH_MAX, "%s", where);
        }
        line = next;
    }
    free (text);

    if (layout->v2_mount[0]) {
        if (!layout->v2_self[0])
            s_fmt (layout->v2_self, PATH_MAX, "/");
        char dir[PATH_MAX];
        s_fmt (dir, sizeof dir, "%s%s", layout->v2_mount, layout->v2_self);
        char *controllers = s_read_file (dir, "cgroup.controllers");
        if (controllers) {
            layout->v2_memory = s_list_has (controllers, "memory");
            layout->v2_pids = s_list_has (controllers, "pids");
            layout->v2_cpu = s_list_has (controllers, "cpu");
            free (controllers);
        }
    }

    /* Prefer v2 when it carries the memory controller; on hybrid hosts
     * whose unified hierarchy is empty the v1 controllers do the work. */
    if (layout->v2_mount[0] && layout->v2_memory)
        layout->version = DW_CGROUP_V2;
    else if (layout->v1_memory[0] || layout->v1_pids[0])
        layout->version = DW_CGROUP_V1;
    else if (layout->v2_mount[0])
        layout->version = DW_CGROUP_V2;
    else
        layout->version = DW_CGROUP_NONE;
    return 0;
}

/* Join MOUNT, PARENT and NAME (NAME may be NULL) into OUT. An absolute
 * PARENT starts at MOUNT, a relative one at SELF inside MOUNT. */
static int
s_join_dir (char out[PATH_MAX], const char *mount, const char *self, const char *parent,
            const char *name)
{
    const char *anchor = parent[0] == '/' ? "" : self;
    int n = s_fmt (out, PATH_MAX, "%s%s%s%s%s%s", mount,
                   anchor[0] && strcmp (anchor, "/") != 0 ? anchor : "",
                   parent[0] == '/' ? "" : "/", parent, name ? "/" : "", name ? name : "");
    return n < 0 ? -1 : 0;
}

static int
s_mkdir (const char *dir)
{
    if (dw_mkdir_p (dir, 0755) != 0 && errno != EEXIST)
        return -1;
    return 0;
}

/* Enable the available controllers for the children of DIR. A group that
 * still holds processes rejects this with EBUSY. */
static int
s_v2_enable (const char *dir, const dw_cgroup_layout_t *layout)
{
    char change[64] = "";
    if (layout->v2_memory)
        strcat (change, "+memory ");
    if (layout->v2_pids)
        strcat (change, "+pids ");
    if (layout->v2_cpu)
        strcat (change, "+cpu ");
    if (!change[0])
        return 0;
    change[strlen (change) - 1] = '\0';
    if (s_write_file (dir, "cgroup.subtree_control", change) != 0 && errno == EBUSY)
        return -1;
    return 0;
}

/* Create every level from the anchor down to the parent on v2 and enable
 * the controllers at each level. */
static int
s_v2_prepare_parent (const dw_cgroup_layout_t *layout, const char *parent, char *err,
                     size_t errlen)
{
    char anchor[PATH_MAX];
    if (parent[0] == '/')
        s_fmt (anchor, sizeof anchor, "%s", layout->v2_mount);
    else if (s_join_dir (anchor, layout->v2_mount, layout->v2_self, ".", NULL) != 0) {
        s_set_err (err, errlen, "cgroup path too long under %s", layout->v2_mount);
        return -1;
    }

    /* No internal processes: a worker in its own delegated group moves into
     * a leaf first, then the group can hand controllers down.
     * NOTE: only the fake-tree test covers v2 here; this move has not run
     * on a real delegated v2 host. */
    if (s_v2_enable (anchor, layout) != 0 && errno == EBUSY) {
        char leaf[PATH_MAX];
        s_fmt (leaf, sizeof leaf, "%s/%s", anchor, DW_CGROUP_SUPERVISOR);
        char pid[32];
        s_fmt (pid, sizeof pid, "%d", (int) getpid ());
        if (s_mkdir (leaf) != 0 || s_write_file (leaf, "cgroup.procs", pid) != 0) {
            s_set_err (err, errlen, "cannot move the worker into %s: %s; give the worker a "
                       "delegated cgroup (systemd Delegate=yes)", leaf, strerror (errno));
            return -1;
        }
        dw_info ("cgroup moved worker into leaf path=%s", leaf);
        s_v2_enable (anchor, layout);
    }

    /* Walk down the parent's components. */
    char rel[PATH_MAX];
    s_fmt (rel, sizeof rel, "%s", parent[0] == '/' ? parent + 1 : parent);
    char dir[PATH_MAX];
    s_fmt (dir, sizeof dir, "%s", anchor);
    for (char *part = strtok (rel, "/"); part; part = strtok (NULL, "/")) {
        if (strcmp (part, ".") == 0)
            continue;
        size_t used = strlen (dir);
        if (used + 1 + strlen (part) >= sizeof dir) {
            s_set_err (err, errlen, "cgroup parent path too long: %s", parent);
            return -1;
        }
        s_fmt (dir + used, sizeof dir - used, "/%s", part);
        if (s_mkdir (dir) != 0) {
            s_set_err (err, errlen, "cannot create cgroup %s: %s; run the worker as root or "
                       "delegate this subtree to it", dir, strerror (errno));
            return -1;
        }
        s_v2_enable (dir, layout);
    }
    return 0;
}

static void
s_add_hier (dw_cgroup_t *self, dw_hier_kind_t kind, const char *mount, const char *mount_self,
            const char *parent, const char *name)
{
    if (!mount[0])
        return;
    for (int i = 0; i < self->count; i++)
        if (strncmp (self->dirs[i], mount, strlen (mount)) == 0
            && self->dirs[i][strlen (mount)] == '/')
            return;
    if (s_join_dir (self->dirs[self->count], mount, mount_self, parent, name) != 0)
        return;
    self->kinds[self->count] = kind;
    self->count++;
}

static int
s_find_dir (const dw_cgroup_t *self, dw_hier_kind_t kind)
{
    for (int i = 0; i < self->count; i++)
        if (self->kinds[i] == kind)
            return i;
    return -1;
}

static void
s_write_limits_v2 (dw_cgroup_t *self, const dw_cgroup_limits_t *limits)
{
    const char *dir = self->dirs[0];
    char text[64];
    if (limits->memory_bytes) {
        s_fmt (text, sizeof text, "%llu", (unsigned long long) limits->memory_bytes);
        self->memory_enforced = s_write_file (dir, "memory.max", text) == 0;
        /* Without this the group could push its excess into swap. */
        s_write_file (dir, "memory.swap.max", "0");
    }
    if (limits->max_pids) {
        s_fmt (text, sizeof text, "%llu", (unsigned long long) limits->max_pids);
        self->pids_enforced = s_write_file (dir, "pids.max", text) == 0;
    }
    if (limits->cpu_percent) {
        s_fmt (text, sizeof text, "%llu %d",
                  (unsigned long long) limits->cpu_percent * DW_CGROUP_CPU_PERIOD_US / 100,
                  DW_CGROUP_CPU_PERIOD_US);
        self->cpu_enforced = s_write_file (dir, "cpu.max", text) == 0;
    }
}

static void
s_write_limits_v1 (dw_cgroup_t *self, const dw_cgroup_limits_t *limits, int memsw)
{
    char text[64];
    int memory = s_find_dir (self, DW_HIER_MEMORY);
    if (limits->memory_bytes && memory >= 0) {
        s_fmt (text, sizeof text, "%llu", (unsigned long long) limits->memory_bytes);
        self->memory_enforced = s_write_file (self->dirs[memory], "memory.limit_in_bytes",
                                              text) == 0;
        /* memsw must be written after the memory limit, never below it. */
        if (memsw)
            s_write_file (self->dirs[memory], "memory.memsw.limit_in_bytes", text);
    }
    int pids = s_find_dir (self, DW_HIER_PIDS);
    if (limits->max_pids && pids >= 0) {
        s_fmt (text, sizeof text, "%llu", (unsigned long long) limits->max_pids);
        self->pids_enforced = s_write_file (self->dirs[pids], "pids.max", text) == 0;
    }
    int cpu = s_find_dir (self, DW_HIER_CPU);
    if (limits->cpu_percent && cpu >= 0) {
        s_fmt (text, sizeof text, "%d", DW_CGROUP_CPU_PERIOD_US);
        s_write_file (self->dirs[cpu], "cpu.cfs_period_us", text);
        s_fmt (text, sizeof text, "%llu",
                  (unsigned long long) limits->cpu_percent * DW_CGROUP_CPU_PERIOD_US / 100);
        self->cpu_enforced = s_write_file (self->dirs[cpu], "cpu.cfs_quota_us", text) == 0;
    }
}

dw_cgroup_t *
dw_cgroup_new (const dw_cgroup_layout_t *layout, const char *parent, const char *name,
               const dw_cgroup_limits_t *limits, char *err, size_t errlen)
{
    if (layout->version == DW_CGROUP_NONE) {
        s_set_err (err, errlen, "no usable cgroup hierarchy under %s; mount cgroup2 there or "
                   "run without cgroup limits", DW_CGROUP_ROOT);
        return NULL;
    }
    if (!name || !*name || strchr (name, '/') || strcmp (name, ".") == 0
        || strcmp (name, "..") == 0) {
        s_set_err (err, errlen, "invalid cgroup name '%s': expected one path component",
                   name ? name : "(null)");
        return NULL;
    }
    parent = parent && *parent ? parent : DW_CGROUP_PARENT;
    if (strstr (parent, "..")) {
        s_set_err (err, errlen, "invalid cgroup parent '%s': '..' is not allowed", parent);
        return NULL;
    }

    dw_cgroup_t *self = calloc (1, sizeof *self);
    if (!self) {
        s_set_err (err, errlen, "out of memory");
        return NULL;
    }
    self->version = layout->version;
    pthread_mutex_init (&self->kill_lock, NULL);

    if (layout->version == DW_CGROUP_V2) {
        if (s_v2_prepare_parent (layout, parent, err, errlen) != 0) {
            dw_cgroup_destroy (&self);
            return NULL;
        }
        s_add_hier (self, DW_HIER_V2, layout->v2_mount, layout->v2_self, parent, name);
    }
    else {
        /* v1: a relative parent hangs off the hierarchy root, so the worker
         * does not need to own the group it was started in. */
        char absolute[PATH_MAX];
        s_fmt (absolute, sizeof absolute, "%s%s", parent[0] == '/' ? "" : "/", parent);
        s_add_hier (self, DW_HIER_MEMORY, layout->v1_memory, "/", absolute, name);
        s_add_hier (self, DW_HIER_PIDS, layout->v1_pids, "/", absolute, name);
        s_add_hier (self, DW_HIER_CPU, layout->v1_cpu, "/", absolute, name);
        s_add_hier (self, DW_HIER_CPUACCT, layout->v1_cpuacct, "/", absolute, name);
        s_add_hier (self, DW_HIER_FREEZER, layout->v1_freezer, "/", absolute, name);
    }

    for (int i = 0; i < self->count; i++) {
        if (s_mkdir (self->dirs[i]) != 0) {
            s_set_err (err, errlen, "cannot create cgroup %s: %s; run the worker as root or "
                       "delegate the parent group to the worker's user", self->dirs[i],
                       strerror (errno));
            dw_cgroup_destroy (&self);
            return NULL;
        }
        /* A missing or read-only file fails the creation here rather than
         * the child's join. */
        char *procs = self->procs_paths[i];
        if (s_fmt (procs, PATH_MAX, "%s/cgroup.procs", self->dirs[i]) < 0
            || access (procs, W_OK) != 0) {
            s_set_err (err, errlen, "cannot write %s: %s", procs, strerror (errno));
            dw_cgroup_destroy (&self);
            return NULL;
        }
    }

    if (layout->version == DW_CGROUP_V2)
        s_write_limits_v2 (self, limits);
    else
        s_write_limits_v1 (self, limits, layout->v1_memsw);

    if ((limits->memory_bytes && !self->memory_enforced)
        || (limits->max_pids && !self->pids_enforced))
        dw_warn ("cgroup limits partly unenforced path=%s memory=%s pids=%s", self->dirs[0],
                 self->memory_enforced ? "yes" : "no", self->pids_enforced ? "yes" : "no");
    return self;
}

int
dw_cgroup_enter (const dw_cgroup_t *self)
{
    int result = 0;
    for (int i = 0; i < self->count; i++) {
        int fd = open (self->procs_paths[i], O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write (fd, "0", 1) != 1)
            result = -1;
        if (fd >= 0)
            close (fd);
    }
    return result;
}

int
dw_cgroup_add_pid (dw_cgroup_t *self, pid_t pid)
{
    char text[32];
    s_fmt (text, sizeof text, "%d", (int) pid);
    int result = 0;
    for (int i = 0; i < self->count; i++)
        if (s_write_file (self->dirs[i], "cgroup.procs", text) != 0)
            result = -1;
    return result;
}

int
dw_cgroup_pids (dw_cgroup_t *self, pid_t *pids, size_t max)
{
    if (self->count == 0)
        return 0;
    char *text = s_read_file (self->dirs[0], "cgroup.procs");
    if (!text)
        return -1;

    size_t count = 0;
    for (char *p = text; *p && count < max; ) {
        char *end;
        long pid = strtol (p, &end, 10);
        if (end == p)
            break;
        if (pid > 0)
            pids[count++] = (pid_t) pid;
        p = end;
        while (*p == '\n')
            p++;
    }
    free (text);
    return (int) count;
}

/* Kill every listed pid once; returns how many were listed. */
static int
s_kill_listed (dw_cgroup_t *self)
{
    return dw_cgroup_signal (self, SIGKILL);
}

int
dw_cgroup_signal (dw_cgroup_t *self, int signal)
{
    static __thread pid_t pids[DW_CGROUP_PIDS_MAX];
    int count = dw_cgroup_pids (self, pids, DW_CGROUP_PIDS_MAX);
    for (int i = 0; i < count; i++)
        kill (pids[i], signal);
    return count;
}

/* Freeze the v1 group and wait until the kernel reports it frozen. */
static void
s_v1_freeze (const char *dir, const char *state)
{
    s_write_file (dir, "freezer.state", state);
    if (strcmp (state, "FROZEN") != 0)
        return;
    for (int i = 0; i < 100; i++) {
        char *now = s_read_file (dir, "freezer.state");
        int frozen = now && strncmp (now, "FROZEN", 6) == 0;
        free (now);
        if (frozen)
            return;
        s_sleep_ms (1);
    }
}

int
dw_cgroup_kill (dw_cgroup_t *self)
{
    if (!self || self->count == 0)
        return 0;
    pthread_mutex_lock (&self->kill_lock);

    uint64_t deadline = dw_mono_ms () + DW_CGROUP_KILL_WAIT_MS;
    int freezer = s_find_dir (self, DW_HIER_FREEZER);
    pid_t probe[1];
    int remaining = dw_cgroup_pids (self, probe, 1);
    while (remaining > 0) {
        if (self->version == DW_CGROUP_V2 && s_write_file (self->dirs[0], "cgroup.kill", "1") == 0)
            ;
        else if (freezer >= 0) {
            /* Frozen tasks cannot fork, so one pass reaches all of them;
             * the thaw lets the pending SIGKILL take effect. */
            s_v1_freeze (self->dirs[freezer], "FROZEN");
            s_kill_listed (self);
            s_v1_freeze (self->dirs[freezer], "THAWED");
        }
        else
            s_kill_listed (self);

        remaining = dw_cgroup_pids (self, probe, 1);
        if (remaining <= 0 || dw_mono_ms () >= deadline)
            break;
        s_sleep_ms (DW_CGROUP_RETRY_MS);
    }
    pthread_mutex_unlock (&self->kill_lock);

    if (remaining > 0)
        dw_warn ("cgroup kill left processes path=%s", self->dirs[0]);
    return remaining > 0 ? -1 : 0;
}

int
dw_cgroup_usage (dw_cgroup_t *self, dw_cgroup_usage_t *usage)
{
    memset (usage, 0, sizeof *usage);
    if (!self || self->count == 0)
        return -1;

    if (self->version == DW_CGROUP_V2) {
        const char *dir = self->dirs[0];
        if (!s_exists (dir))
            return -1;
        s_read_u64 (dir, "memory.peak", &usage->memory_peak_bytes);
        s_read_keyed (dir, "memory.events", "oom_kill", &usage->oom_kills);
        s_read_u64 (dir, "pids.current", &usage->pids_current);
        s_read_keyed (dir, "pids.events", "max", &usage->pids_rejected);
        s_read_keyed (dir, "cpu.stat", "usage_usec", &usage->cpu_usage_usec);
        return 0;
    }

    int memory = s_find_dir (self, DW_HIER_MEMORY);
    if (memory >= 0) {
        s_read_u64 (self->dirs[memory], "memory.max_usage_in_bytes", &usage->memory_peak_bytes);
        s_read_keyed (self->dirs[memory], "memory.oom_control", "oom_kill", &usage->oom_kills);
    }
    int pids = s_find_dir (self, DW_HIER_PIDS);
    if (pids >= 0) {
        s_read_u64 (self->dirs[pids], "pids.current", &usage->pids_current);
        s_read_keyed (self->dirs[pids], "pids.events", "max", &usage->pids_rejected);
    }
    int cpuacct = s_find_dir (self, DW_HIER_CPUACCT);
    if (cpuacct < 0)
        cpuacct = s_find_dir (self, DW_HIER_CPU);
    uint64_t nanoseconds = 0;
    if (cpuacct >= 0 && s_read_u64 (self->dirs[cpuacct], "cpuacct.usage", &nanoseconds) == 0)
        usage->cpu_usage_usec = nanoseconds / 1000;
    return 0;
}

const char *
dw_cgroup_path (const dw_cgroup_t *self)
{
    return self && self->count ? self->dirs[0] : "";
}

int
dw_cgroup_enforces_memory (const dw_cgroup_t *self)
{
    return self && self->memory_enforced;
}

int
dw_cgroup_enforces_pids (const dw_cgroup_t *self)
{
    return self && self->pids_enforced;
}

void
dw_cgroup_destroy (dw_cgroup_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dw_cgroup_t *self = *self_p;

    if (self->count > 0 && s_exists (self->dirs[0]))
        dw_cgroup_kill (self);

    for (int i = 0; i < self->count; i++) {
        if (!s_exists (self->dirs[i]))
            continue;

        /* Exiting tasks can keep a group busy for a moment after the kill. */
        int removed = 0;
        for (int attempt = 0; attempt < DW_CGROUP_KILL_WAIT_MS / DW_CGROUP_RETRY_MS; attempt++) {
            if (rmdir (self->dirs[i]) == 0 || errno == ENOENT) {
                removed = 1;
                break;
            }
            if (errno != EBUSY)
                break;
            s_sleep_ms (DW_CGROUP_RETRY_MS);
        }
        if (!removed)
            dw_warn ("cgroup remove failed path=%s error=%s", self->dirs[i], strerror (errno));
    }

    pthread_mutex_destroy (&self->kill_lock);
    free (self);
    *self_p = NULL;
}

static void
s_entry (dw_limit_report_t *report, int index, const char *limit, int enforced,
         const char *mechanism)
{
    report->entries[index].limit = limit;
    report->entries[index].enforced = enforced;
    s_fmt (report->entries[index].mechanism, sizeof report->entries[index].mechanism, "%s",
              mechanism);
}

int
dw_cgroup_probe_layout (const dw_cgroup_layout_t *layout, const char *parent,
                        dw_limit_report_t *report)
{
    memset (report, 0, sizeof *report);
    report->version = layout->version;

    /* A real group shows whether the limit files accept writes. */
    int memory = 0, pids = 0, cpu_accounting = 0;
    if (layout->version != DW_CGROUP_NONE) {
        char name[64], err[512];
        s_fmt (name, sizeof name, "probe-%d", (int) getpid ());
        dw_cgroup_limits_t limits = { .memory_bytes = 64ull << 20, .max_pids = 64 };
        dw_cgroup_t *group = dw_cgroup_new (layout, parent, name, &limits, err, sizeof err);
        if (group) {
            memory = group->memory_enforced;
            pids = group->pids_enforced;
            if (layout->version == DW_CGROUP_V2)
                cpu_accounting = s_exists (group->dirs[0]);
            else
                cpu_accounting = s_find_dir (group, DW_HIER_CPUACCT) >= 0;
            dw_cgroup_destroy (&group);
        }
        else
            dw_warn ("cgroup probe failed error=\"%s\"", err);
    }

    const char *version = layout->version == DW_CGROUP_V2 ? "cgroup v2" : "cgroup v1";
    char text[96];
    if (memory)
        s_fmt (text, sizeof text, "%s %s", version,
                  layout->version == DW_CGROUP_V2 ? "memory.max"
                  : layout->v1_memsw ? "memory.limit_in_bytes+memsw" : "memory.limit_in_bytes");
    else
        s_fmt (text, sizeof text, "rlimit RLIMIT_DATA per process only");
    s_entry (report, DW_LIMIT_MEMORY, "memory", 1, text);

    if (pids)
        s_fmt (text, sizeof text, "%s pids.max", version);
    else
        s_fmt (text, sizeof text, "rlimit RLIMIT_NPROC in the sandbox user namespace");
    s_entry (report, DW_LIMIT_PROCESSES, "processes", 1, text);

    s_entry (report, DW_LIMIT_CPU_TIME, "cpu_time", 1,
             cpu_accounting ? "rlimit RLIMIT_CPU + watchdog on the group's CPU usage"
                            : "rlimit RLIMIT_CPU per process only");
    s_entry (report, DW_LIMIT_WALL_TIME, "wall_time", 1,
             "worker timer (process runner) + sandbox watchdog");
    s_entry (report, DW_LIMIT_WORKSPACE_SIZE, "workspace_size", 1,
             "periodic size check by the sandbox watchdog + rlimit RLIMIT_FSIZE");
    s_entry (report, DW_LIMIT_OUTPUT_SIZE, "output_size", 1, "process runner output cap");
    return 0;
}

int
dw_cgroup_probe (dw_limit_report_t *report)
{
    dw_cgroup_layout_t layout;
    char err[512];
    if (dw_cgroup_detect (NULL, NULL, &layout, err, sizeof err) != 0) {
        dw_warn ("cgroup detect failed error=\"%s\"", err);
        memset (&layout, 0, sizeof layout);
    }
    return dw_cgroup_probe_layout (&layout, NULL, report);
}

void
dw_limit_report_format (const dw_limit_report_t *report, char *out, size_t outlen)
{
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < DW_LIMIT_COUNT && used < outlen; i++) {
        const dw_limit_entry_t *entry = &report->entries[i];
        int n = s_fmt (out + used, outlen - used, "%s enforced=%s by=%s\n",
                          entry->limit ? entry->limit : "?", entry->enforced ? "yes" : "no",
                          entry->mechanism);
        if (n < 0)
            break;
        used += (size_t) n;
    }
}
