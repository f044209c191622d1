/* Test helpers for the sandbox tests and benchmark: a tiny fork/exec
 * runner that calls the sandbox's pre-exec hook, a /proc scan for marked
 * processes, and a loopback TCP listener. */
#ifndef DW_SANDBOX_HELPERS_H
#define DW_SANDBOX_HELPERS_H

#include <stddef.h>
#include <sys/types.h>

/* Captured stdout + stderr kept by sbx_run. */
#define SBX_OUTPUT_MAX 65536

typedef struct {
    /* Exit code, or 128 + signal number; -1 if the program could not run. */
    int status;
    int timed_out;
    char output[SBX_OUTPUT_MAX];
} sbx_result_t;

/* Hook called in the child after fork, before exec (may be NULL). */
typedef void (sbx_pre_exec_fn) (void *arg);

/* Run ARGV in its own process group with stdin from /dev/null, collecting
 * output. After TIMEOUT_MS the group gets SIGTERM, then KILL_FN(ARG) is
 * called (if set) and the group gets SIGKILL. Returns 0 or -1. */
int sbx_run (char *const argv[], sbx_pre_exec_fn *pre_exec, void *arg, int timeout_ms,
             void (*kill_fn) (void *), sbx_result_t *result);

/* Start ARGV like sbx_run but return at once with the pid; the output goes
 * to the file OUTPUT_PATH. */
pid_t sbx_start (char *const argv[], sbx_pre_exec_fn *pre_exec, void *arg,
                 const char *output_path);

/* Count live (non-zombie) processes whose argv or environment contains
 * MARKER; the caller's own process is skipped. */
int sbx_count_marked (const char *marker);

/* Listen on 127.0.0.1 on a free port; returns the socket and sets *PORT. */
int sbx_listen_tcp (int *port);

/* Listen on the Unix socket PATH (mode 0777); returns the socket. */
int sbx_listen_unix (const char *path);

/* Read a whole file into BUF (NUL-terminated); returns length or -1. */
long sbx_read (const char *path, char *buf, size_t len);

/* Write TEXT to PATH with MODE. */
int sbx_write (const char *path, const char *text, mode_t mode);

/* Compare doubles for qsort. */
int sbx_compare_double (const void *a, const void *b);

#endif
