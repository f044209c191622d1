/* Test helpers for the sandbox tests. See sandbox_helpers.h. */
#include "sandbox_helpers.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long
s_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
s_child (char *const argv[], sbx_pre_exec_fn *pre_exec, void *arg, int out_fd)
{
    setpgid (0, 0);
    int null_fd = open ("/dev/null", O_RDONLY);
    if (null_fd >= 0)
        dup2 (null_fd, STDIN_FILENO);
    dup2 (out_fd, STDOUT_FILENO);
    dup2 (out_fd, STDERR_FILENO);
    if (pre_exec)
        pre_exec (arg);
    execv (argv[0], argv);
    _exit (127);
}

static int
s_decode (int status)
{
    if (WIFEXITED (status))
        return WEXITSTATUS (status);
    if (WIFSIGNALED (status))
        return 128 + WTERMSIG (status);
    return -1;
}

int
sbx_run (char *const argv[], sbx_pre_exec_fn *pre_exec, void *arg, int timeout_ms,
         void (*kill_fn) (void *), sbx_result_t *result)
{
    memset (result, 0, sizeof *result);
    result->status = -1;
    int fds[2];
    if (pipe2 (fds, O_CLOEXEC) != 0)
        return -1;
    pid_t pid = fork ();
    if (pid < 0)
        return -1;
    if (pid == 0)
        s_child (argv, pre_exec, arg, fds[1]);
    close (fds[1]);
    setpgid (pid, pid);

    size_t used = 0;
    long long deadline = s_now_ms () + timeout_ms;
    int open_pipe = 1;
    int status = 0;
    int reaped = 0;
    while (!reaped) {
        long long left = deadline - s_now_ms ();
        if (left <= 0 && !result->timed_out) {
            result->timed_out = 1;
            kill (-pid, SIGTERM);
            if (kill_fn)
                kill_fn (arg);
            kill (-pid, SIGKILL);
        }
        if (open_pipe) {
            struct pollfd pfd = { fds[0], POLLIN, 0 };
            int wait_ms = 50;
            if (left > 0 && left < wait_ms)
                wait_ms = (int) left;
            int ready = poll (&pfd, 1, wait_ms);
            if (ready > 0) {
                char chunk[4096];
                ssize_t got = read (fds[0], chunk, sizeof chunk);
                if (got <= 0)
                    open_pipe = 0;
                else if (used < SBX_OUTPUT_MAX - 1) {
                    size_t take = (size_t) got;
                    if (take > SBX_OUTPUT_MAX - 1 - used)
                        take = SBX_OUTPUT_MAX - 1 - used;
                    memcpy (result->output + used, chunk, take);
                    used += take;
                    result->output[used] = '\0';
                }
            }
        }
        else {
            struct timespec ts = { 0, 1000000L };
            nanosleep (&ts, NULL);
        }
        pid_t done = waitpid (pid, &status, WNOHANG);
        if (done == pid && !open_pipe)
            reaped = 1;
        else if (done == pid) {
            /* Drain what is left; background processes may keep the pipe
             * open, so stop at the deadline. */
            reaped = 1;
            while (open_pipe && s_now_ms () < deadline) {
                struct pollfd pfd = { fds[0], POLLIN, 0 };
                if (poll (&pfd, 1, 100) <= 0)
                    break;
                char chunk[4096];
                ssize_t got = read (fds[0], chunk, sizeof chunk);
                if (got <= 0)
                    break;
                if (used < SBX_OUTPUT_MAX - 1) {
                    size_t take = (size_t) got;
                    if (take > SBX_OUTPUT_MAX - 1 - used)
                        take = SBX_OUTPUT_MAX - 1 - used;
                    memcpy (result->output + used, chunk, take);
                    used += take;
                    result->output[used] = '\0';
                }
            }
        }
    }
    close (fds[0]);
    result->status = s_decode (status);
    return 0;
}

pid_t
sbx_start (char *const argv[], sbx_pre_exec_fn *pre_exec, void *arg, const char *output_path)
{
    int out_fd = open (output_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out_fd < 0)
        return -1;
    pid_t pid = fork ();
    if (pid == 0)
        s_child (argv, pre_exec, arg, out_fd);
    close (out_fd);
    if (pid > 0)
        setpgid (pid, pid);
    return pid;
}

/* Return nonzero if the NUL-separated file PATH contains MARKER. */
static int
s_file_has (const char *path, const char *marker)
{
    static char buf[1 << 16];
    int fd = open (path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t len = read (fd, buf, sizeof buf - 1);
    close (fd);
    if (len <= 0)
        return 0;
    size_t mlen = strlen (marker);
    for (ssize_t i = 0; i + (ssize_t) mlen <= len; i++)
        if (memcmp (buf + i, marker, mlen) == 0)
            return 1;
    return 0;
}

int
sbx_count_marked (const char *marker)
{
    DIR *proc = opendir ("/proc");
    if (!proc)
        return -1;
    int count = 0;
    struct dirent *entry;
    while ((entry = readdir (proc)) != NULL) {
        char *end;
        long pid = strtol (entry->d_name, &end, 10);
        if (*end || pid <= 0 || pid == getpid ())
            continue;
        char path[64], stat_text[512];
        snprintf (path, sizeof path, "/proc/%ld/stat", pid);
        if (sbx_read (path, stat_text, sizeof stat_text) < 0)
            continue;
        char *close_paren = strrchr (stat_text, ')');
        if (close_paren && close_paren[2] == 'Z')
            continue;
        snprintf (path, sizeof path, "/proc/%ld/cmdline", pid);
        int marked = s_file_has (path, marker);
        snprintf (path, sizeof path, "/proc/%ld/environ", pid);
        marked = marked || s_file_has (path, marker);
        count += marked;
    }
    closedir (proc);
    return count;
}

int
sbx_listen_tcp (int *port)
{
    int fd = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = 0,
                                .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    socklen_t len = sizeof addr;
    if (fd < 0 || bind (fd, (struct sockaddr *) &addr, sizeof addr) != 0
        || listen (fd, 16) != 0 || getsockname (fd, (struct sockaddr *) &addr, &len) != 0)
        return -1;
    *port = ntohs (addr.sin_port);
    return fd;
}

int
sbx_listen_unix (const char *path)
{
    int fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    snprintf (addr.sun_path, sizeof addr.sun_path, "%s", path);
    unlink (path);
    if (fd < 0 || bind (fd, (struct sockaddr *) &addr, sizeof addr) != 0 || listen (fd, 16) != 0)
        return -1;
    chmod (path, 0777);
    return fd;
}

long
sbx_read (const char *path, char *buf, size_t len)
{
    int fd = open (path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t got = read (fd, buf, len - 1);
    close (fd);
    if (got < 0)
        return -1;
    buf[got] = '\0';
    return (long) got;
}

int
sbx_write (const char *path, const char *text, mode_t mode)
{
    int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return -1;
    ssize_t len = (ssize_t) strlen (text);
    int ok = write (fd, text, (size_t) len) == len;
    close (fd);
    chmod (path, mode);
    return ok ? 0 : -1;
}

int
sbx_compare_double (const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return x < y ? -1 : x > y;
}
