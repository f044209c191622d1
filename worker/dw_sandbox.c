/* Sandbox for one run of an untrusted program. See dw_sandbox.h. */
#include "dw_sandbox.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dw_container.h"
#include "dw_log.h"
#include "dw_util.h"

/* Size of the private /tmp tmpfs when neither a tmp dir nor a workspace
 * limit is configured. */
#define DW_SANDBOX_TMPFS_DEFAULT (512ull << 20)

/* Default RLIMIT_NOFILE. */
#define DW_SANDBOX_OPEN_FILES 1024

/* Seconds between the soft RLIMIT_CPU (SIGXCPU) and the hard one (SIGKILL). */
#define DW_SANDBOX_CPU_GRACE_S 5

/* Deepest directory level the size walk descends into. */
#define DW_SANDBOX_WALK_DEPTH 256

#define DW_SANDBOX_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* Host paths that may hold secrets and are hidden even though /etc is
 * bound: directories get an empty tmpfs, files are replaced by /dev/null. */
static const char *const s_secret_paths[] = {
    "/etc/driftwatch", "/etc/ssh", "/etc/ssl/private", "/etc/postgresql",
    "/etc/postgresql-common", "/etc/sudoers.d", "/etc/shadow", "/etc/gshadow",
    "/etc/shadow-", "/etc/gshadow-", "/etc/sudoers", "/etc/machine-id", NULL
};

/* System directories bound read-only (or recreated as symlinks when the
 * host has merged /usr). */
static const char *const s_system_dirs[] = { "/bin", "/sbin", "/lib", "/lib32", "/lib64",
                                             "/libx32", NULL };

/* State shared with the forked child: written there, read by the worker. */
typedef struct {
    volatile pid_t child_pid;
} dw_sandbox_shared_t;

struct dw_sandbox_t {
    dw_sandbox_backend_t backend;
    dw_sandbox_purpose_t purpose;
    char *workspace_dir, *home_dir, *tmp_dir, *gateway_dir;
    char *ro_binds[DW_SANDBOX_BINDS_MAX + 1];
    char *hidden[DW_SANDBOX_BINDS_MAX + 1];
    char *env[DW_SANDBOX_ENV_MAX + 1];
    char *bwrap_path;
    char *name;
    uid_t uid, host_uid;
    gid_t gid, host_gid;
    int switch_user;
    dw_sandbox_limits_t limits;

    dw_cgroup_t *cgroup;
    dw_container_t *container;

    /* Rlimits applied in the child, computed before fork. */
    int rlimit_count;
    int rlimit_resources[8];
    struct rlimit rlimit_values[8];

    dw_sandbox_shared_t *shared;

    pthread_t watchdog;
    int watchdog_running;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int stopping;
    uint64_t started_ms;
    uint64_t workspace_bytes;
    int limit_exceeded;
    char exceeded_limit[32];
};

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
s_is_dir (const char *path)
{
    struct stat st;
    return stat (path, &st) == 0 && S_ISDIR (st.st_mode);
}

/* Copy a NULL-terminated list of at most MAX strings; -1 if longer. */
static int
s_copy_list (char **out, const char *const *list, int max)
{
    int count = 0;
    for (; list && list[count]; count++) {
        if (count >= max)
            return -1;
        out[count] = strdup (list[count]);
        if (!out[count])
            return -1;
    }
    out[count] = NULL;
    return 0;
}

/* Find PROGRAM in PATH; returns a heap string or NULL. */
static char *
s_which (const char *program)
{
    if (strchr (program, '/'))
        return access (program, X_OK) == 0 ? strdup (program) : NULL;
    const char *path = getenv ("PATH");
    char *copy = strdup (path && *path ? path : DW_SANDBOX_PATH);
    if (!copy)
        return NULL;
    char *found = NULL;
    char *saveptr = NULL;
    for (char *dir = strtok_r (copy, ":", &saveptr); dir && !found;
         dir = strtok_r (NULL, ":", &saveptr)) {
        char *candidate = dw_strdup_printf ("%s/%s", dir, program);
        if (candidate && access (candidate, X_OK) == 0)
            found = candidate;
        else
            free (candidate);
    }
    free (copy);
    return found;
}

/* Make PATH and everything below it owned by UID:GID, without following
 * symlinks, so the unprivileged host user can write the workspace. */
static int
s_chown_tree (int dirfd, const char *name, uid_t uid, gid_t gid, int depth)
{
    if (fchownat (dirfd, name, uid, gid, AT_SYMLINK_NOFOLLOW) != 0)
        return -1;
    struct stat st;
    if (fstatat (dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR (st.st_mode))
        return 0;
    if (depth >= DW_SANDBOX_WALK_DEPTH)
        return -1;

    int fd = openat (dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -1;
    DIR *dir = fdopendir (fd);
    if (!dir) {
        close (fd);
        return -1;
    }
    int result = 0;
    struct dirent *entry;
    while ((entry = readdir (dir)) != NULL) {
        if (strcmp (entry->d_name, ".") == 0 || strcmp (entry->d_name, "..") == 0)
            continue;
        if (s_chown_tree (fd, entry->d_name, uid, gid, depth + 1) != 0)
            result = -1;
    }
    closedir (dir);
    return result;
}

static uint64_t
s_tree_size_at (int dirfd, const char *name, dev_t dev, int depth)
{
    struct stat st;
    if (fstatat (dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 || st.st_dev != dev)
        return 0;
    uint64_t total = (uint64_t) st.st_blocks * 512;
    if (!S_ISDIR (st.st_mode) || depth >= DW_SANDBOX_WALK_DEPTH)
        return total;

    int fd = openat (dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return total;
    DIR *dir = fdopendir (fd);
    if (!dir) {
        close (fd);
        return total;
    }
    struct dirent *entry;
    while ((entry = readdir (dir)) != NULL) {
        if (strcmp (entry->d_name, ".") == 0 || strcmp (entry->d_name, "..") == 0)
            continue;
        total += s_tree_size_at (fd, entry->d_name, dev, depth + 1);
    }
    closedir (dir);
    return total;
}

uint64_t
dw_sandbox_tree_size (const char *path)
{
    struct stat st;
    if (!path || lstat (path, &st) != 0)
        return 0;
    return s_tree_size_at (AT_FDCWD, path, st.st_dev, 0);
}

static int
s_validate (const dw_sandbox_config_t *cfg, char *err, size_t errlen)
{
    if (!cfg->workspace_dir || !s_is_dir (cfg->workspace_dir)) {
        s_set_err (err, errlen, "workspace directory '%s' does not exist; create it before "
                   "the sandbox", cfg->workspace_dir ? cfg->workspace_dir : "(null)");
        return -1;
    }
    if (!cfg->home_dir || !s_is_dir (cfg->home_dir)) {
        s_set_err (err, errlen, "home directory '%s' does not exist; create it before the "
                   "sandbox", cfg->home_dir ? cfg->home_dir : "(null)");
        return -1;
    }
    if (cfg->tmp_dir && !s_is_dir (cfg->tmp_dir)) {
        s_set_err (err, errlen, "tmp directory '%s' does not exist", cfg->tmp_dir);
        return -1;
    }
    if (cfg->purpose == DW_SANDBOX_GRADING && cfg->gateway_dir) {
        s_set_err (err, errlen, "gateway_dir is set for a grading sandbox; grading runs must "
                   "have no way out, pass NULL");
        return -1;
    }
    if (cfg->gateway_dir && !s_is_dir (cfg->gateway_dir)) {
        s_set_err (err, errlen, "gateway socket directory '%s' does not exist",
                   cfg->gateway_dir);
        return -1;
    }
    for (int i = 0; cfg->ro_binds && cfg->ro_binds[i]; i++) {
        const char *bind = cfg->ro_binds[i];
        if (bind[0] != '/' || access (bind, F_OK) != 0) {
            s_set_err (err, errlen, "read-only bind '%s' is not an existing absolute path",
                       bind);
            return -1;
        }
    }
    for (int i = 0; cfg->env && cfg->env[i]; i++) {
        const char *equals = strchr (cfg->env[i], '=');
        if (!equals || equals == cfg->env[i]) {
            s_set_err (err, errlen, "invalid environment entry '%s': expected NAME=value",
                       cfg->env[i]);
            return -1;
        }
    }
    if (cfg->backend == DW_SANDBOX_PODMAN && (!cfg->image || !*cfg->image)) {
        s_set_err (err, errlen, "podman backend needs an image name");
        return -1;
    }
    return 0;
}

/* Name for cgroups and containers: "dw-<attempt>-<pid>-<n>" with unsafe
 * characters replaced, so two sandboxes never share one. */
static char *
s_make_name (const char *attempt_id)
{
    static volatile int counter = 0;
    int n = __atomic_add_fetch (&counter, 1, __ATOMIC_SEQ_CST);
    char clean[64];
    const char *source = attempt_id && *attempt_id ? attempt_id : "attempt";
    size_t i = 0;
    for (; source[i] && i < sizeof clean - 1; i++) {
        char c = source[i];
        int safe = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
                   || c == '-' || c == '_';
        clean[i] = safe ? c : '_';
    }
    clean[i] = '\0';
    return dw_strdup_printf ("dw-%s-%d-%d", clean, (int) getpid (), n);
}

static void
s_add_rlimit (dw_sandbox_t *self, int resource, rlim_t soft, rlim_t hard)
{
    self->rlimit_resources[self->rlimit_count] = resource;
    self->rlimit_values[self->rlimit_count].rlim_cur = soft;
    self->rlimit_values[self->rlimit_count].rlim_max = hard;
    self->rlimit_count++;
}

/* Rlimits back up the cgroup limits and cover what cgroups cannot. */
static void
s_plan_rlimits (dw_sandbox_t *self)
{
    const dw_sandbox_limits_t *limits = &self->limits;

    /* The kernel caps memory and processes per group when the cgroup
     * enforces them. Per-process rlimits would only break programs that
     * reserve large writable mappings, and RLIMIT_NPROC would be shared
     * by every attempt running as the same host user. */
    if (limits->memory_bytes && !dw_cgroup_enforces_memory (self->cgroup))
        s_add_rlimit (self, RLIMIT_DATA, limits->memory_bytes, limits->memory_bytes);
    if (limits->max_processes && !dw_cgroup_enforces_pids (self->cgroup))
        s_add_rlimit (self, RLIMIT_NPROC, limits->max_processes, limits->max_processes);
    if (limits->cpu_seconds)
        s_add_rlimit (self, RLIMIT_CPU, limits->cpu_seconds,
                      limits->cpu_seconds + DW_SANDBOX_CPU_GRACE_S);
    if (limits->workspace_bytes)
        s_add_rlimit (self, RLIMIT_FSIZE, limits->workspace_bytes, limits->workspace_bytes);
    s_add_rlimit (self, RLIMIT_CORE, 0, 0);
    rlim_t files = limits->open_files ? limits->open_files : DW_SANDBOX_OPEN_FILES;
    s_add_rlimit (self, RLIMIT_NOFILE, files, files);
}

dw_sandbox_t *
dw_sandbox_new (const dw_sandbox_config_t *cfg, char *err, size_t errlen)
{
    if (s_validate (cfg, err, errlen) != 0)
        return NULL;

    dw_sandbox_t *self = calloc (1, sizeof *self);
    if (!self) {
        s_set_err (err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init (&self->lock, NULL);
    pthread_cond_init (&self->wake, NULL);
    self->backend = cfg->backend;
    self->purpose = cfg->purpose;
    self->limits = cfg->limits;
    self->uid = cfg->uid ? cfg->uid : DW_SANDBOX_UID;
    self->gid = cfg->gid ? cfg->gid : DW_SANDBOX_GID;
    self->host_uid = cfg->host_uid;
    self->host_gid = cfg->host_gid ? cfg->host_gid : cfg->host_uid;
    self->switch_user = geteuid () == 0 && cfg->host_uid != 0;
    self->workspace_dir = strdup (cfg->workspace_dir);
    self->home_dir = strdup (cfg->home_dir);
    self->tmp_dir = cfg->tmp_dir ? strdup (cfg->tmp_dir) : NULL;
    self->gateway_dir = cfg->gateway_dir ? strdup (cfg->gateway_dir) : NULL;
    self->name = s_make_name (cfg->attempt_id);

    /* Shared with the forked child so kill can reach bwrap's process even
     * without a cgroup. */
    self->shared = mmap (NULL, sizeof *self->shared, PROT_READ | PROT_WRITE,
                         MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (self->shared == MAP_FAILED)
        self->shared = NULL;

    if (!self->workspace_dir || !self->home_dir || !self->name || !self->shared
        || (cfg->tmp_dir && !self->tmp_dir) || (cfg->gateway_dir && !self->gateway_dir)
        || s_copy_list (self->ro_binds, cfg->ro_binds, DW_SANDBOX_BINDS_MAX) != 0
        || s_copy_list (self->hidden, cfg->hidden_paths, DW_SANDBOX_BINDS_MAX) != 0
        || s_copy_list (self->env, cfg->env, DW_SANDBOX_ENV_MAX) != 0) {
        s_set_err (err, errlen, "out of memory, or more than %d binds / %d environment "
                   "entries", DW_SANDBOX_BINDS_MAX, DW_SANDBOX_ENV_MAX);
        dw_sandbox_destroy (&self);
        return NULL;
    }

    /* The writable trees must belong to the user the sandbox runs as on
     * the host: the chosen host user for bubblewrap, the container user
     * for rootful podman (no user namespace there). */
    uid_t owner = self->backend == DW_SANDBOX_PODMAN ? self->uid : self->host_uid;
    gid_t group = self->backend == DW_SANDBOX_PODMAN ? self->gid : self->host_gid;
    if (geteuid () == 0 && (self->switch_user || self->backend == DW_SANDBOX_PODMAN)) {
        const char *trees[] = { self->workspace_dir, self->home_dir, self->tmp_dir };
        for (int i = 0; i < 3; i++) {
            if (trees[i] && s_chown_tree (AT_FDCWD, trees[i], owner, group, 0) != 0) {
                s_set_err (err, errlen, "cannot hand %s to host uid %d: %s", trees[i],
                           (int) owner, strerror (errno));
                dw_sandbox_destroy (&self);
                return NULL;
            }
        }
    }

    if (self->backend == DW_SANDBOX_PODMAN) {
        self->container = dw_container_new (cfg, self->name, err, errlen);
        if (!self->container) {
            dw_sandbox_destroy (&self);
            return NULL;
        }
        return self;
    }

    self->bwrap_path = s_which (cfg->bwrap_path ? cfg->bwrap_path : "bwrap");
    if (!self->bwrap_path) {
        s_set_err (err, errlen, "bubblewrap not found (%s); install it: apt-get install "
                   "bubblewrap", cfg->bwrap_path ? cfg->bwrap_path : "bwrap in PATH");
        dw_sandbox_destroy (&self);
        return NULL;
    }

    if (!cfg->no_cgroup) {
        dw_cgroup_layout_t detected;
        const dw_cgroup_layout_t *layout = cfg->cgroup_layout;
        if (!layout) {
            if (dw_cgroup_detect (NULL, NULL, &detected, err, errlen) != 0) {
                dw_sandbox_destroy (&self);
                return NULL;
            }
            layout = &detected;
        }
        dw_cgroup_limits_t limits = {
            .memory_bytes = cfg->limits.memory_bytes,
            .max_pids = cfg->limits.max_processes,
        };
        self->cgroup = dw_cgroup_new (layout, cfg->cgroup_parent, self->name, &limits, err,
                                      errlen);
        if (!self->cgroup) {
            dw_sandbox_destroy (&self);
            return NULL;
        }
    }

    s_plan_rlimits (self);
    dw_info ("sandbox created name=%s run=%s attempt=%s backend=bwrap cgroup=%s", self->name,
             cfg->run_id ? cfg->run_id : "-", cfg->attempt_id ? cfg->attempt_id : "-",
             self->cgroup ? dw_cgroup_path (self->cgroup) : "none");
    return self;
}

/* Growable argv under construction. */
typedef struct {
    char **items;
    int count;
    int failed;
} dw_argv_t;

static void
s_push (dw_argv_t *list, const char *item)
{
    if (list->failed)
        return;
    if (list->count + 2 > DW_SANDBOX_ARGV_MAX) {
        list->failed = 1;
        return;
    }
    list->items[list->count] = strdup (item);
    if (!list->items[list->count]) {
        list->failed = 1;
        return;
    }
    list->count++;
    list->items[list->count] = NULL;
}

static void
s_push3 (dw_argv_t *list, const char *a, const char *b, const char *c)
{
    s_push (list, a);
    s_push (list, b);
    if (c)
        s_push (list, c);
}

static void
s_push_number (dw_argv_t *list, const char *option, unsigned long long value)
{
    char text[32];
    snprintf (text, sizeof text, "%llu", value);
    s_push3 (list, option, text, NULL);
}

/* Bind a system directory: a symlink on merged-/usr hosts, a read-only
 * bind otherwise, nothing if absent. */
static void
s_push_system_dir (dw_argv_t *list, const char *path)
{
    struct stat st;
    if (lstat (path, &st) != 0)
        return;
    if (S_ISLNK (st.st_mode)) {
        char target[PATH_MAX];
        ssize_t len = readlink (path, target, sizeof target - 1);
        if (len <= 0)
            return;
        target[len] = '\0';
        s_push3 (list, "--symlink", target, path);
    }
    else if (S_ISDIR (st.st_mode))
        s_push3 (list, "--ro-bind", path, path);
}

/* Hide a secret path that exists on the host and is visible through a
 * read-only bind. */
static void
s_push_hidden (dw_argv_t *list, const char *path)
{
    struct stat st;
    if (lstat (path, &st) != 0)
        return;
    if (S_ISDIR (st.st_mode))
        s_push3 (list, "--tmpfs", path, NULL);
    else if (!S_ISLNK (st.st_mode))
        s_push3 (list, "--ro-bind", "/dev/null", path);
}

static void
s_build_bwrap (dw_sandbox_t *self, char *const argv[], dw_argv_t *list)
{
    s_push (list, self->bwrap_path);

    /* Namespaces: no network at all (the gateway socket is a file), own
     * pids so the whole tree dies with its init, own session so the agent
     * cannot push input into the worker's terminal. */
    s_push3 (list, "--unshare-user", "--unshare-pid", "--unshare-net");
    s_push3 (list, "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try");
    s_push3 (list, "--die-with-parent", "--new-session", "--disable-userns");
    s_push3 (list, "--hostname", "sandbox", NULL);
    s_push_number (list, "--uid", self->uid);
    s_push_number (list, "--gid", self->gid);

    s_push3 (list, "--ro-bind", "/usr", "/usr");
    for (int i = 0; s_system_dirs[i]; i++)
        s_push_system_dir (list, s_system_dirs[i]);
    s_push3 (list, "--ro-bind", "/etc", "/etc");
    for (int i = 0; s_secret_paths[i]; i++)
        s_push_hidden (list, s_secret_paths[i]);
    for (int i = 0; self->hidden[i]; i++)
        s_push_hidden (list, self->hidden[i]);

    s_push3 (list, "--proc", "/proc", NULL);
    s_push3 (list, "--dev", "/dev", NULL);
    if (self->tmp_dir)
        s_push3 (list, "--bind", self->tmp_dir, "/tmp");
    else {
        uint64_t size = self->limits.workspace_bytes ? self->limits.workspace_bytes
                                                     : DW_SANDBOX_TMPFS_DEFAULT;
        s_push_number (list, "--size", size);
        s_push3 (list, "--tmpfs", "/tmp", NULL);
    }
    s_push3 (list, "--symlink", "../tmp", "/var/tmp");
    s_push3 (list, "--bind", self->workspace_dir, DW_SANDBOX_WORKSPACE);
    s_push3 (list, "--bind", self->home_dir, DW_SANDBOX_HOME);
    if (self->gateway_dir && self->purpose == DW_SANDBOX_AGENT)
        s_push3 (list, "--ro-bind", self->gateway_dir, DW_SANDBOX_GATEWAY);
    /* After /tmp, so an install dir under the host's /tmp stays visible. */
    for (int i = 0; self->ro_binds[i]; i++)
        s_push3 (list, "--ro-bind", self->ro_binds[i], self->ro_binds[i]);

    /* The root itself is bwrap's tmpfs; keep it read-only as well. */
    s_push3 (list, "--remount-ro", "/", NULL);

    s_push (list, "--clearenv");
    s_push3 (list, "--setenv", "HOME", DW_SANDBOX_HOME);
    s_push3 (list, "--setenv", "USER", "agent");
    s_push3 (list, "--setenv", "PATH", DW_SANDBOX_PATH);
    s_push3 (list, "--setenv", "TMPDIR", "/tmp");
    s_push3 (list, "--setenv", "LANG", "C.UTF-8");
    for (int i = 0; self->env[i]; i++) {
        char *copy = strdup (self->env[i]);
        if (!copy) {
            list->failed = 1;
            break;
        }
        char *equals = strchr (copy, '=');
        *equals = '\0';
        s_push3 (list, "--setenv", copy, equals + 1);
        free (copy);
    }
    s_push3 (list, "--chdir", DW_SANDBOX_WORKSPACE, NULL);
    s_push (list, "--");
    for (int i = 0; argv[i]; i++)
        s_push (list, argv[i]);
}

static void
s_exceed (dw_sandbox_t *self, const char *limit, uint64_t value)
{
    pthread_mutex_lock (&self->lock);
    int first = !self->limit_exceeded;
    self->limit_exceeded = 1;
    if (first)
        snprintf (self->exceeded_limit, sizeof self->exceeded_limit, "%s", limit);
    pthread_mutex_unlock (&self->lock);
    if (first)
        dw_warn ("sandbox limit exceeded name=%s limit=%s value=%llu", self->name, limit,
                 (unsigned long long) value);
    dw_sandbox_kill (self);
}

/* Enforce the limits no kernel mechanism covers: tree size, total CPU
 * time of the group, and a backup wall-clock deadline. */
static void *
s_watchdog (void *arg)
{
    dw_sandbox_t *self = arg;
    pthread_mutex_lock (&self->lock);
    while (!self->stopping) {
        pthread_mutex_unlock (&self->lock);

        const dw_sandbox_limits_t *limits = &self->limits;
        if (limits->workspace_bytes) {
            uint64_t size = dw_sandbox_tree_size (self->workspace_dir)
                            + dw_sandbox_tree_size (self->home_dir)
                            + (self->tmp_dir ? dw_sandbox_tree_size (self->tmp_dir) : 0);
            pthread_mutex_lock (&self->lock);
            self->workspace_bytes = size;
            pthread_mutex_unlock (&self->lock);
            if (size > limits->workspace_bytes)
                s_exceed (self, "workspace_size", size);
        }
        dw_cgroup_usage_t usage;
        if (limits->cpu_seconds && self->cgroup
            && dw_cgroup_usage (self->cgroup, &usage) == 0
            && usage.cpu_usage_usec > limits->cpu_seconds * 1000000ull)
            s_exceed (self, "cpu_time", usage.cpu_usage_usec / 1000000);
        uint64_t elapsed_s = (dw_mono_ms () - self->started_ms) / 1000;
        if (limits->wall_seconds && elapsed_s > limits->wall_seconds + DW_SANDBOX_WALL_GRACE_S)
            s_exceed (self, "wall_time", elapsed_s);

        pthread_mutex_lock (&self->lock);
        if (self->stopping)
            break;
        struct timespec until;
        clock_gettime (CLOCK_REALTIME, &until);
        until.tv_nsec += (long) DW_SANDBOX_WATCH_MS * 1000000L;
        until.tv_sec += until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        pthread_cond_timedwait (&self->wake, &self->lock, &until);
    }
    pthread_mutex_unlock (&self->lock);
    return NULL;
}

static void
s_start_watchdog (dw_sandbox_t *self)
{
    pthread_mutex_lock (&self->lock);
    self->started_ms = dw_mono_ms ();
    int start = !self->watchdog_running;
    pthread_mutex_unlock (&self->lock);
    if (!start)
        return;
    if (!self->limits.workspace_bytes && !self->limits.cpu_seconds && !self->limits.wall_seconds)
        return;
    if (pthread_create (&self->watchdog, NULL, s_watchdog, self) == 0)
        self->watchdog_running = 1;
    else
        dw_error ("sandbox watchdog start failed name=%s", self->name);
}

static void
s_stop_watchdog (dw_sandbox_t *self)
{
    if (!self->watchdog_running)
        return;
    pthread_mutex_lock (&self->lock);
    self->stopping = 1;
    pthread_cond_broadcast (&self->wake);
    pthread_mutex_unlock (&self->lock);
    pthread_join (self->watchdog, NULL);
    self->watchdog_running = 0;
}

int
dw_sandbox_wrap (dw_sandbox_t *self, char *const argv[], char ***out_argv)
{
    *out_argv = NULL;
    if (!argv || !argv[0])
        return -1;

    if (self->backend == DW_SANDBOX_PODMAN) {
        if (dw_container_argv (self->container, argv, out_argv) != 0)
            return -1;
        s_start_watchdog (self);
        return 0;
    }

    dw_argv_t list = { calloc (DW_SANDBOX_ARGV_MAX, sizeof (char *)), 0, 0 };
    if (!list.items)
        return -1;
    s_build_bwrap (self, argv, &list);
    if (list.failed) {
        dw_error ("sandbox command line too long name=%s max_args=%d", self->name,
                  DW_SANDBOX_ARGV_MAX);
        dw_sandbox_argv_free (&list.items);
        return -1;
    }
    *out_argv = list.items;
    s_start_watchdog (self);
    return 0;
}

void
dw_sandbox_argv_free (char ***argv_p)
{
    if (!argv_p || !*argv_p)
        return;
    for (char **item = *argv_p; *item; item++)
        free (*item);
    free (*argv_p);
    *argv_p = NULL;
}

void
dw_sandbox_pre_exec (void *sandbox)
{
    dw_sandbox_t *self = sandbox;
    if (self->shared)
        self->shared->child_pid = getpid ();

    /* Containers get their limits from the container runtime. */
    if (self->backend == DW_SANDBOX_PODMAN)
        return;

    /* The cgroup first: joining needs the worker's privileges. */
    if (self->cgroup && dw_cgroup_enter (self->cgroup) != 0)
        _exit (126);
    for (int i = 0; i < self->rlimit_count; i++)
        if (setrlimit (self->rlimit_resources[i], &self->rlimit_values[i]) != 0)
            _exit (126);
    if (self->switch_user) {
        if (setgroups (0, NULL) != 0 || setgid (self->host_gid) != 0
            || setuid (self->host_uid) != 0)
            _exit (126);
    }
}

void
dw_sandbox_kill (void *sandbox)
{
    dw_sandbox_t *self = sandbox;
    if (!self)
        return;
    if (self->container) {
        dw_container_kill (self->container);
        return;
    }
    if (self->cgroup) {
        dw_cgroup_kill (self->cgroup);
        return;
    }

    /* Without a cgroup: bwrap's death takes its pid namespace with it
     * (--die-with-parent kills the namespace's init, and the kernel kills
     * every other process in the namespace). */
    pid_t pid = self->shared ? self->shared->child_pid : 0;
    if (pid > 0)
        kill (pid, SIGKILL);
}

void
dw_sandbox_kill_hook (void *sandbox, pid_t pgid, int signal)
{
    dw_sandbox_t *self = sandbox;
    (void) pgid;
    if (!self)
        return;
    if (signal == SIGKILL) {
        dw_sandbox_kill (self);
        return;
    }
    if (self->container) {
        dw_container_signal (self->container, signal);
        return;
    }
    if (self->cgroup)
        dw_cgroup_signal (self->cgroup, signal);

    /* Without a cgroup, bwrap ends on the signal and its pid namespace
     * goes with it. */
    else if (self->shared && self->shared->child_pid > 0)
        kill (self->shared->child_pid, signal);
}

int
dw_sandbox_usage (dw_sandbox_t *self, dw_sandbox_usage_t *usage)
{
    memset (usage, 0, sizeof *usage);
    if (!self)
        return -1;

    if (self->cgroup) {
        dw_cgroup_usage_t group;
        if (dw_cgroup_usage (self->cgroup, &group) == 0) {
            usage->memory_peak_bytes = group.memory_peak_bytes;
            usage->oom_kills = group.oom_kills;
            usage->pids_current = group.pids_current;
            usage->pids_rejected = group.pids_rejected;
            usage->cpu_usage_usec = group.cpu_usage_usec;
        }
    }
    if (self->container) {
        dw_container_state_t state;
        if (dw_container_state (self->container, &state) == 0)
            usage->oom_kills = state.oom_killed ? 1 : 0;
    }

    pthread_mutex_lock (&self->lock);
    usage->workspace_bytes = self->workspace_bytes;
    usage->limit_exceeded = self->limit_exceeded;
    snprintf (usage->exceeded_limit, sizeof usage->exceeded_limit, "%s", self->exceeded_limit);
    pthread_mutex_unlock (&self->lock);
    return 0;
}

int
dw_sandbox_pids (dw_sandbox_t *self, pid_t *pids, size_t max)
{
    if (!self || !self->cgroup)
        return -1;
    return dw_cgroup_pids (self->cgroup, pids, max);
}

void
dw_sandbox_destroy (dw_sandbox_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dw_sandbox_t *self = *self_p;

    s_stop_watchdog (self);
    dw_sandbox_kill (self);

    if (self->cgroup) {
        pid_t left[1];
        if (dw_cgroup_pids (self->cgroup, left, 1) > 0)
            dw_error ("sandbox processes survived the kill name=%s cgroup=%s", self->name,
                      dw_cgroup_path (self->cgroup));
        dw_cgroup_destroy (&self->cgroup);
    }
    dw_container_destroy (&self->container);

    if (self->name)
        dw_debug ("sandbox destroyed name=%s", self->name);
    free (self->workspace_dir);
    free (self->home_dir);
    free (self->tmp_dir);
    free (self->gateway_dir);
    free (self->bwrap_path);
    free (self->name);
    for (int i = 0; self->ro_binds[i]; i++)
        free (self->ro_binds[i]);
    for (int i = 0; self->hidden[i]; i++)
        free (self->hidden[i]);
    for (int i = 0; self->env[i]; i++)
        free (self->env[i]);
    if (self->shared)
        munmap (self->shared, sizeof *self->shared);
    pthread_cond_destroy (&self->wake);
    pthread_mutex_destroy (&self->lock);
    free (self);
    *self_p = NULL;
}
