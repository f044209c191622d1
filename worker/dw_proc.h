/* Running one child process under limits: the building block for git, the
 * agent and the test command.
 *
 * The child runs in a new session (setsid), so its process id is also the
 * id of its process group, and every kill below targets the whole group.
 * Stdin is /dev/null. Stdout goes through a pipe and is delivered line by
 * line to a callback in bounded memory. Stderr goes to a file, capped.
 *
 * Spawning uses fork + execve. The parent has ZeroMQ threads, so between
 * fork and exec the child only makes async-signal-safe calls: it resets the
 * signal mask and dispositions, changes directory, wires its descriptors,
 * closes every descriptor >= 3, runs the optional pre_exec callback and
 * execs. The program is looked up in PATH in the parent, before fork.
 *
 * Processes that leave the group (setsid, or a double fork into another
 * session) escape the kills below. The kill_hook exists so that a sandbox
 * can kill a whole cgroup or container instead.
 */
#ifndef DW_PROC_H
#define DW_PROC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Default maximum length of one stdout line passed to the callback. */
#define DW_PROC_LINE_MAX (256 * 1024)
/* Default maximum of stdout bytes passed to the callback in one run. */
#define DW_PROC_STDOUT_MAX (256ULL * 1024 * 1024)
/* Default cap on the stderr file. */
#define DW_PROC_STDERR_MAX (1024 * 1024)
/* Default time between SIGTERM and SIGKILL. */
#define DW_PROC_KILL_GRACE_MS 2000
/* Interval at which the cancel flag and the wall clock are checked. */
#define DW_PROC_TICK_MS 100

/* One stdout line, without its newline, LEN <= line_max. TRUNCATED is 1
 * when the line was longer and the rest of it was discarded. The buffer is
 * valid only during the call. */
typedef void (dw_proc_line_fn) (void *arg, const char *line, size_t len, int truncated);

/* Runs in the child after fork and before exec. Must be async-signal-safe:
 * no malloc, no stdio, no locks. A failure should _exit (126). */
typedef void (dw_proc_pre_exec_fn) (void *arg);

/* Called in the parent each time the run is signalled (SIGTERM on timeout
 * or cancel, SIGKILL after the grace period or after the leader exited),
 * after the process group itself got SIGNAL. PGID is the child's pid. */
typedef void (dw_proc_kill_fn) (void *arg, pid_t pgid, int signal);

typedef struct {
    /* Program and arguments, NULL-terminated. argv[0] without a slash is
     * looked up in the PATH of envp (or of the parent when inheriting). */
    char *const *argv;
    /* Complete environment, NULL-terminated. NULL means an empty
     * environment unless inherit_env is set. */
    char *const *envp;
    int inherit_env;
    /* Working directory of the child; NULL keeps the parent's. */
    const char *cwd;

    dw_proc_line_fn *on_line;
    void *line_arg;
    /* 0 means DW_PROC_LINE_MAX. */
    size_t line_max;
    /* Bytes of stdout delivered to on_line at most; later output is read
     * and dropped so the child never blocks. 0 means DW_PROC_STDOUT_MAX. */
    uint64_t stdout_max;

    /* File that receives stderr, truncated first; NULL sends stderr to
     * /dev/null. At most stderr_max bytes are kept: the first half of
     * the cap as written, then a marker line saying how many bytes were
     * dropped, then the last half. 0 means DW_PROC_STDERR_MAX. */
    const char *stderr_path;
    size_t stderr_max;
    /* Send stderr into the stdout pipe instead (stderr_path is ignored),
     * for test runners that report on stderr, like python -m unittest. */
    int merge_stderr;

    /* Wall-clock limit in ms; 0 means none. */
    uint64_t wall_ms;
    /* Time between SIGTERM and SIGKILL; 0 means DW_PROC_KILL_GRACE_MS. */
    uint64_t kill_grace_ms;
    /* Set to nonzero by another thread to stop the run; may be NULL. */
    volatile int *cancel;

    dw_proc_pre_exec_fn *pre_exec;
    void *pre_exec_arg;
    dw_proc_kill_fn *kill_hook;
    void *kill_arg;
} dw_proc_spec_t;

typedef struct {
    pid_t pid;
    /* 1 when the child exited normally, then exit_code is its status. */
    int exited;
    int exit_code;
    /* Signal that ended the child, 0 if none. */
    int term_signal;
    int timed_out;
    int cancelled;
    uint64_t duration_ms;
    /* Time from start to the first stdout byte; -1 if there was none. */
    int64_t first_stdout_ms;
    uint64_t stdout_bytes;
    uint64_t stdout_lines;
    /* 1 when stdout passed stdout_max and the rest was dropped. */
    int stdout_truncated;
    uint64_t stderr_bytes;
    /* Why the run could not start or be supervised; empty otherwise. */
    char error[256];
} dw_proc_result_t;

/* Run SPEC to completion and fill RESULT. Returns 0 when the child ran
 * (whatever its status) and -1 when it could not be started or supervised,
 * with RESULT->error set; a program that cannot be executed is reported
 * as exit code 127 with the reason in the stderr file. */
int dw_proc_run (const dw_proc_spec_t *spec, dw_proc_result_t *result);

/* Exit status in shell convention: the exit code, or 128 + signal, or -1
 * when the run never started. */
int dw_proc_status (const dw_proc_result_t *result);

/* Look PROGRAM up in PATH (a colon-separated list; NULL means "/usr/bin:/bin")
 * and return a heap copy of the first executable match, or NULL. A name
 * containing a slash is returned as is. */
char *dw_proc_which (const char *program, const char *path);

#endif
