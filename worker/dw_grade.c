/* Grading with hidden tests; the steps are listed in dw_grade.h. */
#include "dw_grade.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "driftwatch.pb-c.h"
#include "dw_gitcache.h"
#include "dw_log.h"
#include "dw_util.h"

/* Most files of test_patch that are restored before it is applied. */
#define DW_GRADE_PATCH_PATHS_MAX 4096
/* Largest output.json read for format "json". */
#define DW_GRADE_JSON_MAX (64 * 1024 * 1024)
/* Maximum length of a test log line; longer lines are truncated. */
#define DW_GRADE_LINE_MAX (64 * 1024)

static void
s_set (dw_grade_result_t *result, int outcome, const char *reason, const char *fmt, ...)
{
    result->outcome = outcome;
    snprintf (result->reason, sizeof result->reason, "%s", reason);
    va_list args;
    va_start (args, fmt);
    vsnprintf (result->detail, sizeof result->detail, fmt, args);
    va_end (args);
}

/* Undo git's C-style quoting of a path ("a/b\tc" with escapes) in place.
 * TEXT starts after the opening quote; returns its length or 0 if invalid. */
static size_t
s_unquote (char *text)
{
    char *out = text;
    for (char *in = text; *in; in++) {
        if (*in == '"') {
            *out = 0;
            return (size_t) (out - text);
        }
        if (*in != '\\') {
            *out++ = *in;
            continue;
        }
        in++;
        switch (*in) {
        case 'n':
            *out++ = '\n';
            break;
        case 't':
            *out++ = '\t';
            break;
        case '\\':
        case '"':
            *out++ = *in;
            break;
        default:
            if (in[0] >= '0' && in[0] <= '3' && in[1] >= '0' && in[1] <= '7' && in[2] >= '0'
                && in[2] <= '7') {
                *out++ = (char) ((in[0] - '0') * 64 + (in[1] - '0') * 8 + (in[2] - '0'));
                in += 2;
            }
            else
                return 0;
        }
    }
    return 0;
}

static int
s_safe_path (const char *path)
{
    if (!*path || path[0] == '/')
        return 0;
    const char *part = path;
    while (part) {
        if (strncmp (part, "..", 2) == 0 && (part[2] == '/' || part[2] == 0))
            return 0;
        if (strncmp (part, ".git", 4) == 0 && (part[4] == '/' || part[4] == 0))
            return 0;
        part = strchr (part, '/');
        if (part)
            part++;
    }
    return 1;
}

/* Add the path in TEXT (LEN bytes, maybe quoted, with PREFIX like "a/" to
 * strip) to PATHS unless present. */
static void
s_add_path (const char *text, size_t len, const char *prefix, char **paths, size_t *count,
            size_t max)
{
    char *path = strndup (text, len);
    if (!path)
        return;
    char *start = path;
    if (start[0] == '"') {
        start++;
        if (s_unquote (start) == 0) {
            free (path);
            return;
        }
    }
    size_t prefix_len = strlen (prefix);
    if (prefix_len && strncmp (start, prefix, prefix_len) != 0) {
        free (path);
        return;
    }
    start += prefix_len;

    int keep = s_safe_path (start) && *count < max;
    for (size_t i = 0; keep && i < *count; i++)
        if (strcmp (paths[i], start) == 0)
            keep = 0;
    if (keep) {
        paths[*count] = strdup (start);
        if (paths[*count])
            (*count)++;
    }
    free (path);
}

size_t
dw_grade_patch_paths (const char *patch, char **paths, size_t max)
{
    size_t count = 0;
    const char *line = patch;
    while (line && *line) {
        const char *end = strchr (line, '\n');
        size_t len = end ? (size_t) (end - line) : strlen (line);
        if (len > 0 && line[len - 1] == '\r')
            len--;

        if (len > 4 && (strncmp (line, "--- ", 4) == 0 || strncmp (line, "+++ ", 4) == 0)) {
            /* Git ends the name with a tab only when it adds a timestamp. */
            const char *name = line + 4;
            size_t name_len = len - 4;
            const char *tab = memchr (name, '\t', name_len);
            if (tab && name[0] != '"')
                name_len = (size_t) (tab - name);
            if (!(name_len == 9 && strncmp (name, "/dev/null", 9) == 0))
                s_add_path (name, name_len, line[0] == '-' ? "a/" : "b/", paths, &count, max);
        }
        else if (len > 12 && strncmp (line, "rename from ", 12) == 0)
            s_add_path (line + 12, len - 12, "", paths, &count, max);
        else if (len > 10 && strncmp (line, "rename to ", 10) == 0)
            s_add_path (line + 10, len - 10, "", paths, &count, max);
        else if (len > 8 && strncmp (line, "copy to ", 8) == 0)
            s_add_path (line + 8, len - 8, "", paths, &count, max);
        else if (len > 11 && strncmp (line, "diff --git ", 11) == 0 && line[11] != '"') {
            /* "diff --git a/P b/P": binary patches have no ---/+++ lines.
             * Only the unambiguous form with equal names is used. */
            size_t names_len = len - 11;
            if (names_len % 2 == 1) {
                size_t half = (names_len - 1) / 2;
                const char *first = line + 11;
                const char *second = first + half + 1;
                if (first[half] == ' ' && half > 2 && memcmp (first + 2, second + 2, half - 2) == 0)
                    s_add_path (first, half, "a/", paths, &count, max);
            }
        }
        line = end ? end + 1 : NULL;
    }
    return count;
}

static int
s_write_patch (const char *path, const char *data, size_t len, dw_grade_result_t *result)
{
    if (dw_write_file_atomic (path, data, len, 0600) != 0) {
        s_set (result, DRIFTWATCH__V1__OUTCOME__OUTCOME_INFRA_ERROR, "scratch_write_failed",
               "cannot write %s: %s", path, strerror (errno));
        return -1;
    }
    return 0;
}

/* Step 2: put back the base version of every file test_patch touches. */
static int
s_restore_test_files (const dw_grade_input_t *input, dw_grade_result_t *result)
{
    char **paths = calloc (DW_GRADE_PATCH_PATHS_MAX, sizeof *paths);
    if (!paths)
        return -1;
    size_t count = dw_grade_patch_paths (input->test_patch, paths, DW_GRADE_PATCH_PATHS_MAX);
    dw_git_options_t options = { .cwd = input->dir, .cancel = input->cancel };
    int rc = 0;
    for (size_t i = 0; i < count; i++) {
        const char *args[] = { "checkout", "--quiet", input->base_commit, "--", paths[i], NULL };
        char err[256];
        if (dw_git_run (&options, args, NULL, err, sizeof err) == 0)
            continue;

        /* Not in the base commit: the agent created it, so it goes. */
        char *full = dw_strdup_printf ("%s/%s", input->dir, paths[i]);
        if (!full || dw_rm_rf (full) != 0) {
            s_set (result, DRIFTWATCH__V1__OUTCOME__OUTCOME_INFRA_ERROR, "restore_failed",
                   "cannot remove %s before applying test_patch: %s", paths[i],
                   strerror (errno));
            rc = 1;
        }
        free (full);
        if (rc)
            break;
    }
    for (size_t i = 0; i < count; i++)
        free (paths[i]);
    free (paths);
    return rc;
}

typedef struct {
    FILE *file;
    uint64_t written;
} dw_grade_log_t;

static void
s_log_line (void *arg, const char *line, size_t len, int truncated)
{
    (void) truncated;
    dw_grade_log_t *log = arg;
    if (!log->file || log->written + len + 1 > DW_GRADE_LOG_MAX)
        return;
    fwrite (line, 1, len, log->file);
    fputc ('\n', log->file);
    log->written += len + 1;
}

/* Step 4: run test_cmd; returns 0 when it ran (any status), 1 when the
 * outcome is already decided, -1 when out of memory. */
static int
s_run_tests (const dw_grade_input_t *input, const char *log_path, dw_grade_result_t *result)
{
    size_t selected_len = 1;
    for (size_t i = 0; i < input->selected_tests_count; i++)
        selected_len += strlen (input->selected_tests[i]) + 1;
    char *selected = malloc (strlen ("DW_SELECTED_TESTS=") + selected_len);
    if (!selected)
        return -1;
    strcpy (selected, "DW_SELECTED_TESTS=");
    for (size_t i = 0; i < input->selected_tests_count; i++) {
        if (i > 0)
            strcat (selected, ",");
        strcat (selected, input->selected_tests[i]);
    }

    size_t env_count = 0;
    while (input->envp && input->envp[env_count])
        env_count++;
    char **envp = calloc (env_count + 2, sizeof *envp);
    if (!envp) {
        free (selected);
        return -1;
    }
    for (size_t i = 0; i < env_count; i++)
        envp[i] = input->envp[i];
    envp[env_count] = selected;

    dw_grade_log_t log = { .file = fopen (log_path, "we") };
    if (!log.file) {
        s_set (result, DRIFTWATCH__V1__OUTCOME__OUTCOME_INFRA_ERROR, "scratch_write_failed",
               "cannot create %s: %s", log_path, strerror (errno));
        free (envp);
        free (selected);
        return 1;
    }

    char *argv[] = { "/bin/sh", "-c", (char *) input->test_cmd, NULL };
    dw_proc_spec_t spec = {
        .argv = argv,
        .envp = envp,
        .cwd = input->dir,
        .on_line = s_log_line,
        .line_arg = &log,
        .line_max = DW_GRADE_LINE_MAX,
        .stdout_max = DW_GRADE_LOG_MAX,
        .merge_stderr = 1,
        .wall_ms = input->wall_ms,
        .cancel = input->cancel,
    };
    int rc = 0;
    char err[256] = "";
    if (input->prepare && input->prepare (input->prepare_arg, &spec, err, sizeof err) != 0) {
        s_set (result, DRIFTWATCH__V1__OUTCOME__OUTCOME_INFRA_ERROR, "sandbox_failed",
               "sandbox setup for the tests failed: %s", err);
        rc = 1;
        goto done;
    }

    dw_proc_result_t proc;
    if (dw_proc_run (&spec, &proc) != 0) {
        s_set (result, DRIFTWATCH__V1__OUTCOME__OUTCOME_INFRA_ERROR, "tests_not_started",
               "test command could not start: %s", proc.error);
        rc = 1;
        goto done;
    }
    result->test_exit_code = dw_proc_status (&proc);
    result->test_ms = proc.duration_ms;
    if (proc.cancelled) {
        s_set (result, DRIFTWATCH__V1__OUTCOME__OUTCOME_CANCELLED, "cancelled",
               "cancelled while the tests ran");
        rc = 1;
    }
    else if (proc.timed_out) {
        s_set (result, DRIFTWATCH__V1__OUTCOME__OUTCOME_UNRESOLVED, "tests_timed_out",
               "tests ran past the %llu ms limit", (unsigned long long) input->wall_ms);
        rc = 1;
    }

done:
    fclose (log.file);
    free (envp);
    free (selected);
    return rc;
}

static void
s_append (char *buffer, size_t size, const char *fmt, ...)
{
    size_t used = strlen (buffer);
    if (used + 1 >= size)
        return;
    va_list args;
    va_start (args, fmt);
    vsnprintf (buffer + used, size - used, fmt, args);
    va_end (args);
}

static int
s_push_test (dw_grade_result_t *result, size_t *capacity, const char *name,
             dw_test_status_t status)
{
    if (result->tests_count == *capacity) {
        size_t grown = *capacity ? *capacity * 2 : 64;
        dw_grade_test_t *tests = realloc (result->tests, grown * sizeof *tests);
        if (!tests)
            return -1;
        result->tests = tests;
        *capacity = grown;
    }
    char *copy = strdup (name);
    if (!copy)
        return -1;
    result->tests[result->tests_count++] = (dw_grade_test_t) { copy, status };
    return 0;
}

/* Steps 5 and 6: parse the output and decide. */
static int
s_decide (const dw_grade_input_t *input, const char *log_path, dw_grade_result_t *result)
{
    size_t text_len = 0;
    char *text = NULL;
    if (strcmp (input->test_format, "json") == 0) {
        char *json_path = dw_strdup_printf ("%s/output.json", input->dir);
        if (json_path)
            text = dw_read_file (json_path, DW_GRADE_JSON_MAX, &text_len);
        free (json_path);
    }
    if (!text)
        text = dw_read_file (log_path, DW_GRADE_LOG_MAX + 1, &text_len);
    if (!text) {
        s_set (result, DRIFTWATCH__V1__OUTCOME__OUTCOME_INFRA_ERROR, "test_log_unreadable",
               "cannot read the test log %s: %s", log_path, strerror (errno));
        return 0;
    }

    dw_testlog_t *log = dw_testlog_new ();
    if (!log) {
        free (text);
        return -1;
    }
    char err[256] = "";
    int parse_rc = dw_testlog_parse (log, input->test_format, text, text_len, err, sizeof err);
    free (text);

    size_t capacity = 0;
    size_t listed = input->fail_to_pass_count + input->pass_to_pass_count;
    size_t not_passed = 0;
    char failing[DW_GRADE_DETAIL_MAX / 2] = "";
    for (size_t i = 0; i < listed; i++) {
        const char *name = i < input->fail_to_pass_count
                               ? input->fail_to_pass[i]
                               : input->pass_to_pass[i - input->fail_to_pass_count];
        dw_test_status_t status = dw_testlog_lookup (log, name);
        if (s_push_test (result, &capacity, name, status) != 0) {
            dw_testlog_destroy (&log);
            return -1;
        }
        if (status != DW_TEST_PASSED) {
            not_passed++;
            s_append (failing, sizeof failing, "%s%s (%s)", not_passed > 1 ? ", " : "", name,
                      dw_test_status_name (status));
        }
    }

    /* Others from the output, bounded, for diagnosis. A second testlog
     * serves as the set of listed names. */
    dw_testlog_t *listed_set = dw_testlog_new ();
    if (!listed_set) {
        dw_testlog_destroy (&log);
        return -1;
    }
    for (size_t i = 0; i < listed; i++)
        dw_testlog_add (listed_set, result->tests[i].name, strlen (result->tests[i].name),
                        DW_TEST_PASSED);
    size_t extra = 0;
    int oom = 0;
    for (size_t i = 0; i < dw_testlog_size (log) && extra < DW_GRADE_EXTRA_TESTS_MAX; i++) {
        const char *name = dw_testlog_name (log, i);
        if (dw_testlog_lookup (listed_set, name) != DW_TEST_MISSING)
            continue;
        if (s_push_test (result, &capacity, name, dw_testlog_status (log, i)) != 0) {
            oom = 1;
            break;
        }
        extra++;
    }
    size_t parsed = dw_testlog_size (log);
    dw_testlog_destroy (&listed_set);
    dw_testlog_destroy (&log);
    if (oom)
        return -1;

    if (parse_rc != 0)
        s_set (result, DRIFTWATCH__V1__OUTCOME__OUTCOME_UNRESOLVED, "test_output_invalid",
               "test output could not be parsed as %s: %s", input->test_format, err);
    else if (not_passed == 0)
        s_set (result, DRIFTWATCH__V1__OUTCOME__OUTCOME_RESOLVED, "tests_passed",
               "all %zu listed tests passed (%zu tests in the output)", listed, parsed);
    else
        s_set (result, DRIFTWATCH__V1__OUTCOME__OUTCOME_UNRESOLVED, "tests_failed",
               "%zu of %zu listed tests did not pass (%zu tests in the output): %s", not_passed,
               listed, parsed, failing);
    return 0;
}

static int
s_apply (const dw_grade_input_t *input, const char *patch_path, char *err, size_t err_size)
{
    dw_git_options_t options = { .cwd = input->dir, .cancel = input->cancel };
    const char *args[] = { "apply", "--binary", "--whitespace=nowarn", patch_path, NULL };
    return dw_git_run (&options, args, NULL, err, err_size);
}

int
dw_grade_run (const dw_grade_input_t *input, dw_grade_result_t *result)
{
    memset (result, 0, sizeof *result);
    result->test_exit_code = -1;
    int rc = 0;
    char err[512] = "";
    char *diff_path = dw_strdup_printf ("%s/agent.diff", input->scratch_dir);
    char *test_patch_path = dw_strdup_printf ("%s/test.patch", input->scratch_dir);
    char *log_path = dw_strdup_printf ("%s/test.log", input->scratch_dir);
    char *output_json = dw_strdup_printf ("%s/output.json", input->dir);
    if (!diff_path || !test_patch_path || !log_path || !output_json) {
        rc = -1;
        goto done;
    }

    if (input->fail_to_pass_count + input->pass_to_pass_count == 0) {
        s_set (result, DRIFTWATCH__V1__OUTCOME__OUTCOME_INFRA_ERROR, "no_tests_listed",
               "the task lists no fail_to_pass or pass_to_pass tests");
        goto done;
    }
    if (!dw_testlog_format_known (input->test_format)) {
        s_set (result, DRIFTWATCH__V1__OUTCOME__OUTCOME_INFRA_ERROR, "unknown_test_format",
               "unknown test_format '%s' (expected tap, unittest, pytest, gotest or json)",
               input->test_format ? input->test_format : "");
        goto done;
    }
    if (!input->test_cmd || !*input->test_cmd) {
        s_set (result, DRIFTWATCH__V1__OUTCOME__OUTCOME_INFRA_ERROR, "no_test_cmd",
               "the task has no test_cmd");
        goto done;
    }

    /* Step 1: the agent's diff. */
    if (input->agent_diff_len > 0) {
        if (s_write_patch (diff_path, input->agent_diff, input->agent_diff_len, result) != 0)
            goto done;
        if (s_apply (input, diff_path, err, sizeof err) != 0) {
            s_set (result, DRIFTWATCH__V1__OUTCOME__OUTCOME_UNRESOLVED, "patch_apply_failed",
                   "the agent's diff does not apply to the base commit: %s", err);
            goto done;
        }
    }

    /* Steps 2 and 3: hidden tests over whatever the agent did to them. */
    if (input->test_patch && *input->test_patch) {
        int restored = s_restore_test_files (input, result);
        if (restored != 0) {
            rc = restored < 0 ? -1 : 0;
            goto done;
        }
        if (s_write_patch (test_patch_path, input->test_patch, strlen (input->test_patch),
                           result)
            != 0)
            goto done;
        if (s_apply (input, test_patch_path, err, sizeof err) != 0) {
            s_set (result, DRIFTWATCH__V1__OUTCOME__OUTCOME_INFRA_ERROR,
                   "test_patch_apply_failed", "test_patch does not apply: %s", err);
            goto done;
        }
    }

    /* Step 4: a stale output.json (for example one the agent's diff added)
     * must not stand in for the real report. */
    if (dw_rm_rf (output_json) != 0) {
        s_set (result, DRIFTWATCH__V1__OUTCOME__OUTCOME_INFRA_ERROR, "restore_failed",
               "cannot remove %s: %s", output_json, strerror (errno));
        goto done;
    }
    int ran = s_run_tests (input, log_path, result);
    if (ran != 0) {
        rc = ran < 0 ? -1 : 0;
        goto done;
    }

    rc = s_decide (input, log_path, result);

done:
    free (diff_path);
    free (test_patch_path);
    free (log_path);
    free (output_json);
    return rc;
}

void
dw_grade_result_clear (dw_grade_result_t *result)
{
    for (size_t i = 0; i < result->tests_count; i++)
        free (result->tests[i].name);
    free (result->tests);
    result->tests = NULL;
    result->tests_count = 0;
}
