/* dw_proc: exit status, line delivery, limits, timeouts and cancellation,
 * with real child processes. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "dw_proc.h"
#include "dw_util.h"

static int failures;

#define CHECK(cond, ...)                                                                \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf (stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                       \
            fprintf (stderr, __VA_ARGS__);                                              \
            fprintf (stderr, "\n");                                                     \
            failures++;                                                                 \
        }                                                                               \
    } while (0)

static char *const base_env[] = { "PATH=/usr/bin:/bin", "LANG=C", NULL };

/* Lines collected by the callback: only the first 8, at most 256 bytes each,
 * plus the length and flag of every line. */
typedef struct {
    int count;
    char text[8][256];
    size_t len[8];
    int truncated[8];
} lines_t;

static void
s_collect (void *arg, const char *line, size_t len, int truncated)
{
    lines_t *lines = arg;
    if (lines->count < 8) {
        size_t copy = len < 255 ? len : 255;
        memcpy (lines->text[lines->count], line, copy);
        lines->text[lines->count][copy] = 0;
        lines->len[lines->count] = len;
        lines->truncated[lines->count] = truncated;
    }
    lines->count++;
}

static int
s_run_sh (const char *script, dw_proc_spec_t *spec, dw_proc_result_t *result, lines_t *lines)
{
    static char *argv[4];
    argv[0] = "sh";
    argv[1] = "-c";
    argv[2] = (char *) script;
    argv[3] = NULL;
    spec->argv = argv;
    if (!spec->envp && !spec->inherit_env)
        spec->envp = base_env;
    if (lines) {
        memset (lines, 0, sizeof *lines);
        spec->on_line = s_collect;
        spec->line_arg = lines;
    }
    return dw_proc_run (spec, result);
}

/* 1 when PID no longer runs: gone, or a zombie not reaped yet. */
static int
s_pid_dead (pid_t pid)
{
    for (int i = 0; i < 50; i++) {
        char path[64];
        snprintf (path, sizeof path, "/proc/%d/stat", (int) pid);
        FILE *file = fopen (path, "r");
        if (!file)
            return 1;
        char state = 0;
        int matched = fscanf (file, "%*d (%*[^)]) %c", &state);
        fclose (file);
        if (matched == 1 && state == 'Z')
            return 1;
        usleep (20 * 1000);
    }
    return 0;
}

static void
test_exit_codes (void)
{
    dw_proc_spec_t spec = { 0 };
    dw_proc_result_t result;
    int rc = s_run_sh ("exit 7", &spec, &result, NULL);
    CHECK (rc == 0, "run returned %d (%s)", rc, result.error);
    CHECK (result.exited == 1, "expected a normal exit");
    CHECK (result.exit_code == 7, "expected exit code 7, got %d", result.exit_code);
    CHECK (dw_proc_status (&result) == 7, "expected status 7");

    memset (&spec, 0, sizeof spec);
    s_run_sh ("kill -9 $$", &spec, &result, NULL);
    CHECK (result.exited == 0, "expected no normal exit after SIGKILL");
    CHECK (result.term_signal == SIGKILL, "expected SIGKILL, got %d", result.term_signal);
    CHECK (dw_proc_status (&result) == 128 + SIGKILL, "expected status 137");

    memset (&spec, 0, sizeof spec);
    char *argv[] = { "dw-no-such-program", NULL };
    spec.argv = argv;
    spec.envp = base_env;
    rc = dw_proc_run (&spec, &result);
    CHECK (rc == -1, "expected -1 for a missing program");
    CHECK (strstr (result.error, "not found") != NULL, "expected 'not found' in '%s'",
           result.error);
}

static void
test_env_and_cwd (void)
{
    setenv ("DW_TEST_PROC_SECRET", "leaked", 1);
    dw_proc_spec_t spec = { .cwd = "/tmp" };
    dw_proc_result_t result;
    lines_t lines;
    s_run_sh ("echo \"[$DW_TEST_PROC_SECRET]\"; pwd", &spec, &result, &lines);
    CHECK (lines.count == 2, "expected 2 lines, got %d", lines.count);
    CHECK (strcmp (lines.text[0], "[]") == 0, "parent environment leaked: %s", lines.text[0]);
    CHECK (strcmp (lines.text[1], "/tmp") == 0, "expected cwd /tmp, got %s", lines.text[1]);

    memset (&spec, 0, sizeof spec);
    spec.inherit_env = 1;
    s_run_sh ("echo \"[$DW_TEST_PROC_SECRET]\"", &spec, &result, &lines);
    CHECK (strcmp (lines.text[0], "[leaked]") == 0, "inherit_env did not pass the variable");

    memset (&spec, 0, sizeof spec);
    s_run_sh ("read x; echo \"rc=$?\"; ls /proc/self/fd | wc -l", &spec, &result, &lines);
    CHECK (strcmp (lines.text[0], "rc=1") == 0, "stdin is not /dev/null: %s", lines.text[0]);
    /* ls lists 0, 1, 2 and its own directory descriptor. */
    CHECK (atoi (lines.text[1]) == 4, "expected 4 open fds in the child, got %s",
           lines.text[1]);
}

static void
test_long_line (void)
{
    dw_proc_spec_t spec = { .line_max = 64 * 1024 };
    dw_proc_result_t result;
    lines_t lines;
    struct rusage before;
    getrusage (RUSAGE_SELF, &before);
    s_run_sh ("echo first; head -c 2097152 /dev/zero | tr '\\0' a; echo; echo last; "
              "printf 'no newline'",
              &spec, &result, &lines);
    struct rusage after;
    getrusage (RUSAGE_SELF, &after);

    CHECK (lines.count == 4, "expected 4 lines, got %d", lines.count);
    CHECK (strcmp (lines.text[0], "first") == 0 && !lines.truncated[0], "bad first line");
    CHECK (lines.len[1] == 64 * 1024, "expected the long line cut to 65536, got %zu",
           lines.len[1]);
    CHECK (lines.truncated[1] == 1, "expected the truncation flag on the long line");
    CHECK (lines.text[1][0] == 'a', "long line content wrong");
    CHECK (strcmp (lines.text[2], "last") == 0 && !lines.truncated[2],
           "line after the long one wrong: %s", lines.text[2]);
    CHECK (strcmp (lines.text[3], "no newline") == 0, "final partial line lost");
    CHECK (result.stdout_bytes == 6 + 2097152 + 1 + 5 + 10, "stdout byte count %llu",
           (unsigned long long) result.stdout_bytes);
    /* The 2 MB line must never sit in memory whole. */
    CHECK (after.ru_maxrss - before.ru_maxrss < 1024, "max RSS grew by %ld KB",
           after.ru_maxrss - before.ru_maxrss);

    memset (&spec, 0, sizeof spec);
    spec.stdout_max = 100;
    s_run_sh ("for i in $(seq 1 100); do echo line-$i; done", &spec, &result, &lines);
    CHECK (result.stdout_truncated == 1, "expected stdout_truncated past stdout_max");
    CHECK (lines.count > 5 && lines.count < 20, "expected about 12 lines, got %d", lines.count);
    CHECK (result.stdout_lines == (uint64_t) lines.count, "stdout_lines %llu != %d",
           (unsigned long long) result.stdout_lines, lines.count);
}

static void
test_merge_stderr (void)
{
    dw_proc_spec_t spec = { .merge_stderr = 1 };
    dw_proc_result_t result;
    lines_t lines;
    s_run_sh ("echo out; echo err >&2; echo out2", &spec, &result, &lines);
    CHECK (lines.count == 3, "expected 3 merged lines, got %d", lines.count);
    CHECK (strcmp (lines.text[1], "err") == 0, "stderr line not merged in order: %s",
           lines.text[1]);
}

static void
test_stderr_cap (void)
{
    char path[] = "/tmp/dw-test-proc-XXXXXX";
    int fd = mkstemp (path);
    close (fd);
    dw_proc_spec_t spec = { .stderr_path = path, .stderr_max = 1000 };
    dw_proc_result_t result;
    s_run_sh ("{ printf HEAD; head -c 100000 /dev/zero | tr '\\0' x; printf TAIL; } >&2", &spec,
              &result, NULL);
    size_t len = 0;
    char *text = dw_read_file (path, 1 << 20, &len);
    CHECK (text != NULL, "stderr file missing");
    if (text) {
        CHECK (len < 1100, "stderr file has %zu bytes, cap 1000 plus marker", len);
        CHECK (strncmp (text, "HEAD", 4) == 0, "stderr head lost");
        CHECK (len >= 4 && strcmp (text + len - 4, "TAIL") == 0, "stderr tail lost");
        CHECK (strstr (text, "bytes of stderr dropped") != NULL, "drop marker missing");
    }
    CHECK (result.stderr_bytes == 100008, "stderr byte count %llu",
           (unsigned long long) result.stderr_bytes);
    free (text);
    unlink (path);
}

typedef struct {
    int term;
    int kill;
} kill_counts_t;

static void
s_count_kills (void *arg, pid_t pgid, int signal)
{
    (void) pgid;
    kill_counts_t *counts = arg;
    if (signal == SIGTERM)
        counts->term++;
    if (signal == SIGKILL)
        counts->kill++;
}

static void
test_timeout_kills_group (void)
{
    kill_counts_t counts = { 0 };
    dw_proc_spec_t spec = {
        .wall_ms = 300, .kill_grace_ms = 300, .kill_hook = s_count_kills, .kill_arg = &counts
    };
    dw_proc_result_t result;
    lines_t lines;
    /* The shell ignores SIGTERM, and so does the background child it starts. */
    s_run_sh ("trap '' TERM; sleep 60 & echo $!; while :; do sleep 1; done", &spec, &result,
              &lines);
    CHECK (result.timed_out == 1, "expected timed_out");
    CHECK (result.term_signal == SIGKILL, "expected the leader killed by SIGKILL, got %d",
           result.term_signal);
    CHECK (result.duration_ms < 2500, "timeout took %llu ms",
           (unsigned long long) result.duration_ms);
    CHECK (counts.term == 1, "kill_hook saw %d SIGTERM", counts.term);
    CHECK (counts.kill >= 1, "kill_hook saw no SIGKILL");
    pid_t child = (pid_t) atoi (lines.text[0]);
    CHECK (child > 0, "no background pid printed");
    if (child > 0)
        CHECK (s_pid_dead (child), "background process %d survived the timeout", (int) child);
}

static void
test_leader_exit_kills_rest (void)
{
    dw_proc_spec_t spec = { 0 };
    dw_proc_result_t result;
    lines_t lines;
    s_run_sh ("sleep 60 & echo $!; exit 0", &spec, &result, &lines);
    CHECK (result.exited && result.exit_code == 0, "expected exit 0");
    CHECK (result.duration_ms < 1500, "run waited %llu ms for the background process",
           (unsigned long long) result.duration_ms);
    pid_t child = (pid_t) atoi (lines.text[0]);
    CHECK (child > 0 && s_pid_dead (child), "background process %d survived the leader",
           (int) child);
}

static volatile int cancel_flag;

static void *
s_cancel_later (void *arg)
{
    (void) arg;
    usleep (300 * 1000);
    cancel_flag = 1;
    return NULL;
}

static void
test_cancel (void)
{
    cancel_flag = 0;
    dw_proc_spec_t spec = { .cancel = &cancel_flag };
    dw_proc_result_t result;
    pthread_t thread;
    pthread_create (&thread, NULL, s_cancel_later, NULL);
    s_run_sh ("sleep 30", &spec, &result, NULL);
    pthread_join (thread, NULL);
    CHECK (result.cancelled == 1, "expected cancelled");
    CHECK (result.timed_out == 0, "cancel reported as timeout");
    CHECK (result.term_signal == SIGTERM, "expected SIGTERM, got %d", result.term_signal);
    CHECK (result.duration_ms >= 250 && result.duration_ms < 1500, "cancel took %llu ms",
           (unsigned long long) result.duration_ms);
}

static void
s_limit_files (void *arg)
{
    (void) arg;
    struct rlimit limit = { 50, 50 };
    setrlimit (RLIMIT_NOFILE, &limit);
}

static void
test_pre_exec_and_first_byte (void)
{
    dw_proc_spec_t spec = { .pre_exec = s_limit_files };
    dw_proc_result_t result;
    lines_t lines;
    s_run_sh ("sleep 0.3; ulimit -n", &spec, &result, &lines);
    CHECK (strcmp (lines.text[0], "50") == 0, "pre_exec limit not applied: %s", lines.text[0]);
    CHECK (result.first_stdout_ms >= 250, "first stdout byte at %lld ms, expected >= 250",
           (long long) result.first_stdout_ms);

    memset (&spec, 0, sizeof spec);
    s_run_sh ("true", &spec, &result, NULL);
    CHECK (result.first_stdout_ms == -1, "expected no first byte time without output");
}

int
main (void)
{
    /* The worker ignores SIGPIPE; the child must still get the default. */
    signal (SIGPIPE, SIG_IGN);

    test_exit_codes ();
    test_env_and_cwd ();
    test_long_line ();
    test_stderr_cap ();
    test_merge_stderr ();
    test_timeout_kills_group ();
    test_leader_exit_kills_rest ();
    test_cancel ();
    test_pre_exec_and_first_byte ();

    if (failures) {
        fprintf (stderr, "test_proc: %d check(s) failed\n", failures);
        return 1;
    }
    printf ("test_proc: all checks passed\n");
    return 0;
}
