/* Podman / Docker backend of the sandbox. See dw_container.h. */
#include "dw_container.h"

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

#include "dw_log.h"
#include "dw_util.h"

/* Smallest nproc / nofile ulimits passed to the runtime. The host's values
 * are not inherited reliably (runc on a hybrid cgroup host rejects the
 * defaults), so explicit ones are always given. */
#define DW_CONTAINER_NPROC_MIN 1024
#define DW_CONTAINER_NOFILE 1024

/* Size of /tmp inside the container when no workspace limit is set. */
#define DW_CONTAINER_TMPFS_DEFAULT (512ull << 20)

/* Most arguments a container command line can have. */
#define DW_CONTAINER_ARGV_MAX 512

struct dw_container_t {
    char *cli;
    char *runtime;
    char *image;
    char *name;
    char *run_id;
    char *attempt_id;
    char *workspace_dir, *home_dir, *gateway_dir;
    const char *const *ro_binds;
    const char *const *env;
    char **owned_lists;
    uid_t uid;
    gid_t gid;
    dw_sandbox_limits_t limits;
    int is_podman;
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

/* Absolute path of PROGRAM found in PATH (heap string), or NULL. */
static char *
s_resolve (const char *program)
{
    if (strchr (program, '/'))
        return access (program, X_OK) == 0 ? strdup (program) : NULL;
    const char *path = getenv ("PATH");
    char *copy = strdup (path && *path ? path : "/usr/local/bin:/usr/bin:/bin");
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

static int
s_in_path (const char *program)
{
    char *found = s_resolve (program);
    free (found);
    return found != NULL;
}

const char *
dw_container_default_cli (const char *cli)
{
    if (cli && *cli)
        return cli;
    if (s_in_path ("podman"))
        return "podman";
    if (s_in_path ("docker"))
        return "docker";
    return NULL;
}

int
dw_container_cli (char *const argv[], char *out, size_t outlen, int timeout_ms)
{
    if (out && outlen)
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
        execvp (argv[0], argv);
        _exit (127);
    }
    close (fds[1]);

    /* Collect output until EOF or the deadline; excess output is dropped. */
    size_t used = 0;
    uint64_t deadline = dw_mono_ms () + (uint64_t) timeout_ms;
    int timed_out = 0;
    for (;;) {
        uint64_t now = dw_mono_ms ();
        if (now >= deadline) {
            timed_out = 1;
            break;
        }
        struct pollfd pfd = { fds[0], POLLIN, 0 };
        int ready = poll (&pfd, 1, (int) (deadline - now));
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready <= 0) {
            timed_out = ready == 0;
            break;
        }
        char chunk[4096];
        ssize_t got = read (fds[0], chunk, sizeof chunk);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        if (out && outlen > 1 && used < outlen - 1) {
            size_t room = outlen - 1 - used;
            size_t take = (size_t) got < room ? (size_t) got : room;
            memcpy (out + used, chunk, take);
            used += take;
            out[used] = '\0';
        }
    }
    close (fds[0]);

    if (timed_out)
        kill (pid, SIGKILL);
    int status = 0;
    while (waitpid (pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (timed_out) {
        dw_warn ("container cli timed out program=%s action=%s timeout_ms=%d", argv[0],
                 argv[1] ? argv[1] : "-", timeout_ms);
        return -1;
    }
    if (!WIFEXITED (status) || WEXITSTATUS (status) == 127)
        return -1;
    return WEXITSTATUS (status);
}

dw_container_t *
dw_container_new (const dw_sandbox_config_t *cfg, const char *name, char *err, size_t errlen)
{
    const char *cli = dw_container_default_cli (cfg->container_cli);
    if (!cli) {
        s_set_err (err, errlen, "no container CLI found: install podman (apt-get install "
                   "podman) or set container_cli");
        return NULL;
    }
    if (!cfg->image || !*cfg->image) {
        s_set_err (err, errlen, "container backend needs an image name");
        return NULL;
    }

    dw_container_t *self = calloc (1, sizeof *self);
    if (!self) {
        s_set_err (err, errlen, "out of memory");
        return NULL;
    }
    self->is_podman = strstr (cli, "podman") != NULL;
    /* Absolute, because the process runner resolves argv[0] in the
     * child's (usually empty) environment. */
    self->cli = s_resolve (cli);
    if (!self->cli) {
        s_set_err (err, errlen, "container CLI '%s' not found in PATH: apt-get install "
                   "podman runc", cli);
        dw_container_destroy (&self);
        return NULL;
    }
    const char *runtime = cfg->container_runtime;
    if (!runtime && self->is_podman && s_in_path ("runc"))
        runtime = "runc";
    self->runtime = runtime ? strdup (runtime) : NULL;
    self->image = strdup (cfg->image);
    self->name = strdup (name);
    self->run_id = strdup (cfg->run_id ? cfg->run_id : "");
    self->attempt_id = strdup (cfg->attempt_id ? cfg->attempt_id : "");
    self->workspace_dir = strdup (cfg->workspace_dir);
    self->home_dir = strdup (cfg->home_dir);
    self->gateway_dir = cfg->gateway_dir && cfg->purpose == DW_SANDBOX_AGENT
                        ? strdup (cfg->gateway_dir) : NULL;
    self->uid = cfg->uid ? cfg->uid : DW_SANDBOX_UID;
    self->gid = cfg->gid ? cfg->gid : DW_SANDBOX_GID;
    self->limits = cfg->limits;

    /* Lists are copied into one owned array: binds, NULL, env, NULL. */
    int binds = 0, envs = 0;
    while (cfg->ro_binds && cfg->ro_binds[binds])
        binds++;
    while (cfg->env && cfg->env[envs])
        envs++;
    self->owned_lists = calloc ((size_t) binds + (size_t) envs + 2, sizeof (char *));
    int failed = !self->owned_lists;
    for (int i = 0; !failed && i < binds; i++)
        failed = !(self->owned_lists[i] = strdup (cfg->ro_binds[i]));
    for (int i = 0; !failed && i < envs; i++)
        failed = !(self->owned_lists[binds + 1 + i] = strdup (cfg->env[i]));
    if (!failed) {
        self->ro_binds = (const char *const *) self->owned_lists;
        self->env = (const char *const *) self->owned_lists + binds + 1;
    }
    if (failed || !self->cli || !self->image || !self->name || !self->run_id
        || !self->attempt_id || !self->workspace_dir || !self->home_dir
        || (runtime && !self->runtime)) {
        s_set_err (err, errlen, "out of memory");
        dw_container_destroy (&self);
        return NULL;
    }
    dw_info ("container prepared name=%s cli=%s runtime=%s image=%s run=%s attempt=%s",
             self->name, self->cli, self->runtime ? self->runtime : "default", self->image,
             self->run_id, self->attempt_id);
    return self;
}

typedef struct {
    char **items;
    int count;
    int failed;
} dw_args_t;

static void
s_arg (dw_args_t *args, const char *fmt, ...)
{
    if (args->failed)
        return;
    if (args->count + 2 > DW_CONTAINER_ARGV_MAX) {
        args->failed = 1;
        return;
    }
    va_list ap;
    va_start (ap, fmt);
    char *item = NULL;
    if (vasprintf (&item, fmt, ap) < 0)
        item = NULL;
    va_end (ap);
    if (!item) {
        args->failed = 1;
        return;
    }
    args->items[args->count++] = item;
    args->items[args->count] = NULL;
}

int
dw_container_argv (dw_container_t *self, char *const argv[], char ***out_argv)
{
    *out_argv = NULL;
    dw_args_t args = { calloc (DW_CONTAINER_ARGV_MAX, sizeof (char *)), 0, 0 };
    if (!args.items)
        return -1;
    const dw_sandbox_limits_t *limits = &self->limits;

    s_arg (&args, "%s", self->cli);
    if (self->runtime && self->is_podman) {
        s_arg (&args, "--runtime");
        s_arg (&args, "%s", self->runtime);
    }
    s_arg (&args, "run");
    if (self->runtime && !self->is_podman)
        s_arg (&args, "--runtime=%s", self->runtime);
    s_arg (&args, "--name");
    s_arg (&args, "%s", self->name);
    s_arg (&args, "--label");
    s_arg (&args, "%s=%s", DW_CONTAINER_LABEL_RUN, self->run_id);
    s_arg (&args, "--label");
    s_arg (&args, "%s=%s", DW_CONTAINER_LABEL_ATTEMPT, self->attempt_id);
    s_arg (&args, "--hostname");
    s_arg (&args, "sandbox");
    s_arg (&args, "--network");
    s_arg (&args, "none");
    s_arg (&args, "--read-only");
    s_arg (&args, "--cap-drop");
    s_arg (&args, "all");
    s_arg (&args, "--security-opt");
    s_arg (&args, "no-new-privileges");
    s_arg (&args, "--user");
    s_arg (&args, "%u:%u", (unsigned) self->uid, (unsigned) self->gid);
    s_arg (&args, "--log-driver");
    s_arg (&args, "none");

    if (limits->memory_bytes) {
        /* Equal swap limit: no swap on top of the memory limit. */
        s_arg (&args, "--memory");
        s_arg (&args, "%llu", (unsigned long long) limits->memory_bytes);
        s_arg (&args, "--memory-swap");
        s_arg (&args, "%llu", (unsigned long long) limits->memory_bytes);
    }
    if (limits->max_processes) {
        s_arg (&args, "--pids-limit");
        s_arg (&args, "%llu", (unsigned long long) limits->max_processes);
    }
    uint64_t nproc = limits->max_processes > DW_CONTAINER_NPROC_MIN ? limits->max_processes
                                                                    : DW_CONTAINER_NPROC_MIN;
    uint64_t nofile = limits->open_files ? limits->open_files : DW_CONTAINER_NOFILE;
    s_arg (&args, "--ulimit");
    s_arg (&args, "nofile=%llu:%llu", (unsigned long long) nofile, (unsigned long long) nofile);
    s_arg (&args, "--ulimit");
    s_arg (&args, "nproc=%llu:%llu", (unsigned long long) nproc, (unsigned long long) nproc);
    if (limits->cpu_seconds) {
        s_arg (&args, "--ulimit");
        s_arg (&args, "cpu=%llu:%llu", (unsigned long long) limits->cpu_seconds,
               (unsigned long long) limits->cpu_seconds + 5);
    }
    s_arg (&args, "--ulimit");
    s_arg (&args, "core=0:0");

    uint64_t tmp_size = limits->workspace_bytes ? limits->workspace_bytes
                                                : DW_CONTAINER_TMPFS_DEFAULT;
    s_arg (&args, "--tmpfs");
    s_arg (&args, "/tmp:rw,nosuid,nodev,size=%llu,mode=1777", (unsigned long long) tmp_size);
    s_arg (&args, "--volume");
    s_arg (&args, "%s:%s:rw", self->workspace_dir, DW_SANDBOX_WORKSPACE);
    s_arg (&args, "--volume");
    s_arg (&args, "%s:%s:rw", self->home_dir, DW_SANDBOX_HOME);
    if (self->gateway_dir) {
        s_arg (&args, "--volume");
        s_arg (&args, "%s:%s:ro", self->gateway_dir, DW_SANDBOX_GATEWAY);
    }
    for (int i = 0; self->ro_binds && self->ro_binds[i]; i++) {
        s_arg (&args, "--volume");
        s_arg (&args, "%s:%s:ro", self->ro_binds[i], self->ro_binds[i]);
    }
    s_arg (&args, "--workdir");
    s_arg (&args, "%s", DW_SANDBOX_WORKSPACE);
    s_arg (&args, "--env");
    s_arg (&args, "HOME=%s", DW_SANDBOX_HOME);
    s_arg (&args, "--env");
    s_arg (&args, "TMPDIR=/tmp");
    for (int i = 0; self->env && self->env[i]; i++) {
        s_arg (&args, "--env");
        s_arg (&args, "%s", self->env[i]);
    }
    s_arg (&args, "%s", self->image);
    for (int i = 0; argv[i]; i++)
        s_arg (&args, "%s", argv[i]);

    if (args.failed) {
        dw_sandbox_argv_free (&args.items);
        return -1;
    }
    *out_argv = args.items;
    return 0;
}

int
dw_container_signal (dw_container_t *self, int signal)
{
    if (!self)
        return -1;
    char number[16];
    snprintf (number, sizeof number, "%d", signal);
    char *const argv[] = { self->cli, "kill", "--signal", number, self->name, NULL };
    return dw_container_cli (argv, NULL, 0, DW_CONTAINER_CLI_TIMEOUT_MS) == 0 ? 0 : -1;
}

int
dw_container_kill (dw_container_t *self)
{
    return dw_container_signal (self, SIGKILL);
}

int
dw_container_state (dw_container_t *self, dw_container_state_t *state)
{
    memset (state, 0, sizeof *state);
    char out[512];
    char *const argv[] = { self->cli, "inspect", "--format",
                           "{{.State.Running}} {{.State.OOMKilled}} {{.State.ExitCode}}",
                           self->name, NULL };
    if (dw_container_cli (argv, out, sizeof out, DW_CONTAINER_CLI_TIMEOUT_MS) != 0)
        /* NOTE: a failed inspect is read as "no such container", also
         * when the CLI itself failed or timed out. */
        return 0;

    char running[16] = "", oom[16] = "";
    int code = 0;
    if (sscanf (out, "%15s %15s %d", running, oom, &code) != 3)
        return -1;
    state->exists = 1;
    state->running = strcmp (running, "true") == 0;
    state->oom_killed = strcmp (oom, "true") == 0;
    state->exit_code = code;
    return 0;
}

const char *
dw_container_name (const dw_container_t *self)
{
    return self ? self->name : "";
}

void
dw_container_destroy (dw_container_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dw_container_t *self = *self_p;

    if (self->cli && self->name) {
        char out[1024];
        char *const rm_podman[] = { self->cli, "rm", "--force", "--time", "0", self->name,
                                    NULL };
        char *const rm_docker[] = { self->cli, "rm", "--force", self->name, NULL };
        dw_container_cli (self->is_podman ? rm_podman : rm_docker, out, sizeof out,
                          DW_CONTAINER_CLI_TIMEOUT_MS);
        dw_container_state_t state;
        if (dw_container_state (self, &state) == 0 && state.exists)
            dw_error ("container survived removal name=%s cli=%s", self->name, self->cli);
    }

    free (self->cli);
    free (self->runtime);
    free (self->image);
    free (self->name);
    free (self->run_id);
    free (self->attempt_id);
    free (self->workspace_dir);
    free (self->home_dir);
    free (self->gateway_dir);
    if (self->owned_lists) {
        int i = 0;
        for (int nulls = 0; nulls < 2; i++) {
            if (!self->owned_lists[i])
                nulls++;
            free (self->owned_lists[i]);
        }
        free (self->owned_lists);
    }
    free (self);
    *self_p = NULL;
}

int
dw_container_reap (const char *cli, char *err, size_t errlen)
{
    cli = dw_container_default_cli (cli);
    if (!cli) {
        s_set_err (err, errlen, "no container CLI found (podman or docker)");
        return -1;
    }

    char out[DW_CONTAINER_OUTPUT_MAX];
    char *const ps[] = { (char *) cli, "ps", "--all", "--quiet", "--filter",
                         "label=" DW_CONTAINER_LABEL_ATTEMPT, NULL };
    int status = dw_container_cli (ps, out, sizeof out, DW_CONTAINER_CLI_TIMEOUT_MS);
    if (status != 0) {
        s_set_err (err, errlen, "%s ps failed (status %d): %.200s", cli, status, out);
        return -1;
    }

    int removed = 0;
    char *saveptr = NULL;
    for (char *id = strtok_r (out, " \n", &saveptr); id; id = strtok_r (NULL, " \n", &saveptr)) {
        char *const rm[] = { (char *) cli, "rm", "--force", id, NULL };
        if (dw_container_cli (rm, NULL, 0, DW_CONTAINER_CLI_TIMEOUT_MS) == 0) {
            dw_info ("container reaped id=%s cli=%s", id, cli);
            removed++;
        }
        else
            dw_warn ("container reap failed id=%s cli=%s", id, cli);
    }
    return removed;
}
