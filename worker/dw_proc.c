/* Child process supervision; see dw_proc.h for the contract. */
#include "dw_proc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dw_util.h"

extern char **environ;

/* Bytes read from a pipe per read call. */
#define DW_PROC_READ_CHUNK (64 * 1024)

/* State of the stdout line splitter. */
typedef struct {
    const dw_proc_spec_t *spec;
    dw_proc_result_t *result;
    size_t line_max;
    uint64_t stdout_max;
    char *line;
    size_t len;
    /* Inside the rest of an over-long line that was already delivered. */
    int discarding;
    /* Bytes handed to the callback so far (line bytes plus newlines). */
    uint64_t delivered;
} dw_proc_lines_t;

/* State of the capped stderr file: head written directly, tail in a ring. */
typedef struct {
    int fd;
    size_t head_max;
    size_t head_len;
    char *ring;
    size_t ring_max;
    size_t ring_pos;
    size_t ring_len;
    uint64_t dropped;
} dw_proc_stderr_t;

char *
dw_proc_which (const char *program, const char *path)
{
    if (!program || !*program)
        return NULL;
    if (strchr (program, '/'))
        return strdup (program);
    if (!path || !*path)
        path = "/usr/bin:/bin";

    const char *start = path;
    while (1) {
        const char *end = strchr (start, ':');
        size_t dir_len = end ? (size_t) (end - start) : strlen (start);
        char *candidate = dir_len == 0 ? dw_strdup_printf ("./%s", program)
                                       : dw_strdup_printf ("%.*s/%s", (int) dir_len, start, program);
        if (!candidate)
            return NULL;
        if (access (candidate, X_OK) == 0)
            return candidate;
        free (candidate);
        if (!end)
            break;
        start = end + 1;
    }
    return NULL;
}

static const char *
s_env_lookup (char *const *envp, const char *name)
{
    size_t name_len = strlen (name);
    for (size_t i = 0; envp && envp[i]; i++)
        if (strncmp (envp[i], name, name_len) == 0 && envp[i][name_len] == '=')
            return envp[i] + name_len + 1;
    return NULL;
}

int
dw_proc_status (const dw_proc_result_t *result)
{
    if (result->exited)
        return result->exit_code;
    if (result->term_signal)
        return 128 + result->term_signal;
    return -1;
}

static void
s_lines_emit (dw_proc_lines_t *self, int truncated)
{
    const dw_proc_spec_t *spec = self->spec;
    if (self->result->stdout_truncated || self->delivered + self->len > self->stdout_max) {
        self->result->stdout_truncated = 1;
        return;
    }
    self->delivered += self->len + 1;
    self->result->stdout_lines++;
    if (spec->on_line)
        spec->on_line (spec->line_arg, self->line, self->len, truncated);
}

/* Split DATA into lines. Memory stays at line_max bytes whatever the input:
 * an over-long line is delivered once, truncated, and its rest skipped. */
static void
s_lines_feed (dw_proc_lines_t *self, const char *data, size_t size)
{
    while (size > 0) {
        const char *newline = memchr (data, '\n', size);
        size_t chunk = newline ? (size_t) (newline - data) : size;

        if (!self->discarding) {
            size_t room = self->line_max - self->len;
            size_t take = chunk < room ? chunk : room;
            memcpy (self->line + self->len, data, take);
            self->len += take;
            if (chunk > take) {
                s_lines_emit (self, 1);
                self->len = 0;
                self->discarding = 1;
            }
        }
        if (newline) {
            if (!self->discarding)
                s_lines_emit (self, 0);
            self->len = 0;
            self->discarding = 0;
            chunk++;
        }
        data += chunk;
        size -= chunk;
    }
}

static void
s_lines_finish (dw_proc_lines_t *self)
{
    if (self->len > 0 && !self->discarding)
        s_lines_emit (self, 0);
    self->len = 0;
}

static void
s_stderr_feed (dw_proc_stderr_t *self, const char *data, size_t size)
{
    if (self->fd < 0)
        return;
    if (self->head_len < self->head_max) {
        size_t take = self->head_max - self->head_len;
        if (take > size)
            take = size;
        ssize_t written = write (self->fd, data, take);
        if (written > 0)
            self->head_len += (size_t) written;
        data += take;
        size -= take;
    }
    if (size == 0 || self->ring_max == 0) {
        self->dropped += size;
        return;
    }

    /* Only the last ring_max bytes of DATA can survive. */
    if (size > self->ring_max) {
        self->dropped += size - self->ring_max;
        data += size - self->ring_max;
        size = self->ring_max;
    }
    for (size_t i = 0; i < size; i++) {
        if (self->ring_len == self->ring_max)
            self->dropped++;
        else
            self->ring_len++;
        self->ring[self->ring_pos] = data[i];
        self->ring_pos = (self->ring_pos + 1) % self->ring_max;
    }
}

static void
s_stderr_finish (dw_proc_stderr_t *self)
{
    if (self->fd < 0)
        return;
    if (self->dropped > 0) {
        char marker[96];
        int marker_len = snprintf (marker, sizeof marker,
                                   "\n[dw_proc: %llu bytes of stderr dropped]\n",
                                   (unsigned long long) self->dropped);
        if (write (self->fd, marker, (size_t) marker_len) < 0)
            goto done;
    }
    if (self->ring_len > 0) {
        size_t start = (self->ring_pos + self->ring_max - self->ring_len) % self->ring_max;
        size_t first = self->ring_max - start;
        if (first > self->ring_len)
            first = self->ring_len;
        if (write (self->fd, self->ring + start, first) < 0)
            goto done;
        if (self->ring_len > first && write (self->fd, self->ring, self->ring_len - first) < 0)
            goto done;
    }
done:
    close (self->fd);
    self->fd = -1;
}

/* Child side of fork: only async-signal-safe calls from here to execve. */
static void
s_child (const dw_proc_spec_t *spec, const char *program, char *const *envp, int out_fd,
         int err_fd)
{
    sigset_t empty;
    sigemptyset (&empty);
    sigprocmask (SIG_SETMASK, &empty, NULL);

    /* Ignored signals stay ignored across exec, and the worker ignores
     * SIGPIPE, so reset every catchable signal to its default. */
    struct sigaction dfl;
    memset (&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            sigaction (sig, &dfl, NULL);

    setsid ();

    if (spec->cwd && chdir (spec->cwd) != 0) {
        static const char msg[] = "dw_proc: cannot change to the working directory\n";
        if (write (err_fd, msg, sizeof msg - 1) < 0) {
        }
        _exit (127);
    }

    int null_fd = open ("/dev/null", O_RDONLY);
    if (spec->merge_stderr)
        err_fd = out_fd;
    if (null_fd < 0 || dup2 (null_fd, 0) < 0 || dup2 (out_fd, 1) < 0 || dup2 (err_fd, 2) < 0)
        _exit (127);

    /* Descriptors of the worker (ZeroMQ sockets, other jobs' pipes) must
     * not leak into the child. */
    if (close_range (3, ~0U, 0) != 0) {
        for (int fd = 3; fd < 65536; fd++)
            close (fd);
    }

    if (spec->pre_exec)
        spec->pre_exec (spec->pre_exec_arg);

    execve (program, spec->argv, envp);

    static const char msg[] = "dw_proc: execve failed for ";
    if (write (2, msg, sizeof msg - 1) < 0 || write (2, program, strlen (program)) < 0
        || write (2, "\n", 1) < 0) {
    }
    _exit (127);
}

static void
s_signal_group (const dw_proc_spec_t *spec, pid_t pid, int sig)
{
    kill (-pid, sig);
    if (spec->kill_hook)
        spec->kill_hook (spec->kill_arg, pid, sig);
}

static int
s_read_pipe (int *fd, char *buf, void (*feed) (void *, const char *, size_t), void *state,
             dw_proc_result_t *result, uint64_t start_ms, int is_stdout)
{
    /* A few chunks per wakeup so one chatty pipe cannot starve the clock. */
    for (int round = 0; round < 16; round++) {
        ssize_t got = read (*fd, buf, DW_PROC_READ_CHUNK);
        if (got > 0) {
            if (is_stdout) {
                if (result->first_stdout_ms < 0)
                    result->first_stdout_ms = (int64_t) (dw_mono_ms () - start_ms);
                result->stdout_bytes += (uint64_t) got;
            }
            else
                result->stderr_bytes += (uint64_t) got;
            feed (state, buf, (size_t) got);
            continue;
        }
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        close (*fd);
        *fd = -1;
        return 0;
    }
    return 0;
}

static void
s_feed_stdout (void *state, const char *data, size_t size)
{
    s_lines_feed (state, data, size);
}

static void
s_feed_stderr (void *state, const char *data, size_t size)
{
    s_stderr_feed (state, data, size);
}

/* Check without reaping whether the leader has exited, so its pid stays
 * reserved (as a zombie) while the rest of its group is killed. */
static int
s_leader_exited (pid_t pid)
{
    siginfo_t info;
    memset (&info, 0, sizeof info);
    if (waitid (P_PID, (id_t) pid, &info, WEXITED | WNOHANG | WNOWAIT) != 0)
        return errno == ECHILD;
    return info.si_pid == pid;
}

static int
s_supervise (const dw_proc_spec_t *spec, dw_proc_result_t *result, pid_t pid, int out_fd,
             int err_fd, dw_proc_lines_t *lines, dw_proc_stderr_t *stderr_state,
             uint64_t start_ms)
{
    uint64_t grace_ms = spec->kill_grace_ms ? spec->kill_grace_ms : DW_PROC_KILL_GRACE_MS;
    char *buf = malloc (DW_PROC_READ_CHUNK);
    if (!buf) {
        snprintf (result->error, sizeof result->error, "out of memory");
        kill (-pid, SIGKILL);
        return -1;
    }

    int pid_fd = (int) syscall (SYS_pidfd_open, pid, 0);
    int leader_done = 0;
    uint64_t leader_done_at = 0;
    int term_sent = 0;
    int kill_sent = 0;
    uint64_t term_at = 0;

    while (1) {
        struct pollfd fds[3];
        int nfds = 0;
        int out_index = -1;
        int err_index = -1;
        if (out_fd >= 0) {
            out_index = nfds;
            fds[nfds++] = (struct pollfd) { .fd = out_fd, .events = POLLIN };
        }
        if (err_fd >= 0) {
            err_index = nfds;
            fds[nfds++] = (struct pollfd) { .fd = err_fd, .events = POLLIN };
        }
        int timeout = DW_PROC_TICK_MS;
        if (!leader_done && pid_fd >= 0)
            fds[nfds++] = (struct pollfd) { .fd = pid_fd, .events = POLLIN };
        else if (!leader_done)
            timeout = 10;

        int ready = poll (fds, (nfds_t) nfds, timeout);
        if (ready < 0 && errno != EINTR) {
            snprintf (result->error, sizeof result->error, "poll failed: %s", strerror (errno));
            kill (-pid, SIGKILL);
            break;
        }
        if (ready > 0 && out_index >= 0 && fds[out_index].revents)
            s_read_pipe (&out_fd, buf, s_feed_stdout, lines, result, start_ms, 1);
        if (ready > 0 && err_index >= 0 && fds[err_index].revents)
            s_read_pipe (&err_fd, buf, s_feed_stderr, stderr_state, result, start_ms, 0);

        uint64_t now = dw_mono_ms ();
        if (!leader_done && s_leader_exited (pid)) {
            leader_done = 1;
            leader_done_at = now;
            /* Whatever the leader left running in its group goes now. */
            s_signal_group (spec, pid, SIGKILL);
        }
        if (leader_done) {
            if (out_fd < 0 && err_fd < 0)
                break;
            /* A process that left the group may hold the pipes forever. */
            if (now - leader_done_at >= grace_ms)
                break;
            continue;
        }

        if (!term_sent && spec->cancel && *spec->cancel) {
            result->cancelled = 1;
            term_sent = 1;
            term_at = now;
            s_signal_group (spec, pid, SIGTERM);
        }
        if (!term_sent && spec->wall_ms && now - start_ms >= spec->wall_ms) {
            result->timed_out = 1;
            term_sent = 1;
            term_at = now;
            s_signal_group (spec, pid, SIGTERM);
        }
        if (term_sent && !kill_sent && now - term_at >= grace_ms) {
            kill_sent = 1;
            s_signal_group (spec, pid, SIGKILL);
        }
    }

    if (out_fd >= 0)
        close (out_fd);
    if (err_fd >= 0)
        close (err_fd);
    if (pid_fd >= 0)
        close (pid_fd);
    free (buf);

    int status = 0;
    while (waitpid (pid, &status, 0) < 0) {
        if (errno != EINTR) {
            snprintf (result->error, sizeof result->error, "waitpid failed: %s",
                      strerror (errno));
            return -1;
        }
    }
    if (WIFEXITED (status)) {
        result->exited = 1;
        result->exit_code = WEXITSTATUS (status);
    }
    else if (WIFSIGNALED (status))
        result->term_signal = WTERMSIG (status);
    return result->error[0] ? -1 : 0;
}

int
dw_proc_run (const dw_proc_spec_t *spec, dw_proc_result_t *result)
{
    memset (result, 0, sizeof *result);
    result->first_stdout_ms = -1;
    result->exit_code = -1;
    if (!spec->argv || !spec->argv[0]) {
        snprintf (result->error, sizeof result->error, "empty argv");
        return -1;
    }

    static char *const empty_env[] = { NULL };
    char *const *envp = spec->envp;
    if (!envp)
        envp = spec->inherit_env ? environ : empty_env;
    const char *path = s_env_lookup (envp, "PATH");
    char *program = dw_proc_which (spec->argv[0], path);
    if (!program) {
        snprintf (result->error, sizeof result->error, "program '%s' not found in PATH=%s",
                  spec->argv[0], path ? path : "(unset)");
        return -1;
    }

    dw_proc_lines_t lines = {
        .spec = spec,
        .result = result,
        .line_max = spec->line_max ? spec->line_max : DW_PROC_LINE_MAX,
        .stdout_max = spec->stdout_max ? spec->stdout_max : DW_PROC_STDOUT_MAX,
    };
    dw_proc_stderr_t stderr_state = { .fd = -1 };
    size_t stderr_max = spec->stderr_max ? spec->stderr_max : DW_PROC_STDERR_MAX;
    int out_pipe[2] = { -1, -1 };
    int err_pipe[2] = { -1, -1 };
    int rc = -1;

    lines.line = malloc (lines.line_max);
    if (!lines.line) {
        snprintf (result->error, sizeof result->error, "out of memory");
        goto done;
    }
    if (spec->stderr_path && !spec->merge_stderr) {
        stderr_state.fd = open (spec->stderr_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (stderr_state.fd < 0) {
            snprintf (result->error, sizeof result->error, "cannot open stderr file %s: %s",
                      spec->stderr_path, strerror (errno));
            goto done;
        }
        stderr_state.head_max = stderr_max / 2;
        stderr_state.ring_max = stderr_max - stderr_state.head_max;
        stderr_state.ring = malloc (stderr_state.ring_max ? stderr_state.ring_max : 1);
        if (!stderr_state.ring) {
            snprintf (result->error, sizeof result->error, "out of memory");
            goto done;
        }
    }
    /* O_CLOEXEC so that children forked by other threads never keep our
     * pipes open (which would delay EOF). */
    if (pipe2 (out_pipe, O_CLOEXEC) != 0 || pipe2 (err_pipe, O_CLOEXEC) != 0) {
        snprintf (result->error, sizeof result->error, "pipe failed: %s", strerror (errno));
        goto done;
    }

    uint64_t start_ms = dw_mono_ms ();
    pid_t pid = fork ();
    if (pid < 0) {
        snprintf (result->error, sizeof result->error, "fork failed: %s", strerror (errno));
        goto done;
    }
    if (pid == 0)
        s_child (spec, program, envp, out_pipe[1], err_pipe[1]);

    result->pid = pid;
    close (out_pipe[1]);
    close (err_pipe[1]);
    out_pipe[1] = err_pipe[1] = -1;
    fcntl (out_pipe[0], F_SETFL, O_NONBLOCK);
    fcntl (err_pipe[0], F_SETFL, O_NONBLOCK);

    rc = s_supervise (spec, result, pid, out_pipe[0], err_pipe[0], &lines, &stderr_state,
                      start_ms);
    out_pipe[0] = err_pipe[0] = -1;
    s_lines_finish (&lines);
    result->duration_ms = dw_mono_ms () - start_ms;

done:
    for (int i = 0; i < 2; i++) {
        if (out_pipe[i] >= 0)
            close (out_pipe[i]);
        if (err_pipe[i] >= 0)
            close (err_pipe[i]);
    }
    s_stderr_finish (&stderr_state);
    free (stderr_state.ring);
    free (lines.line);
    free (program);
    return rc;
}
