/* Task suites: JSONL files with one SWE-Bench-Pro style task per line.
 *
 * Accepted row format (JSON object per line, blank lines ignored):
 *   instance_id, repo, base_commit            required strings
 *   problem_statement, requirements, interface, patch, test_patch,
 *   repo_language                             optional strings ("" if absent)
 *   fail_to_pass, pass_to_pass, selected_test_files_to_run
 *       a JSON array of strings, or a string holding a Python list literal
 *       ("['a', \"b\"]", as the published SWE-Bench-Pro dataset stores them)
 *       or a JSON array in a string. FAIL_TO_PASS / PASS_TO_PASS (original
 *       SWE-bench spelling, JSON strings) are accepted as aliases, and a row
 *       that holds both spellings with different lists is rejected.
 *   driftwatch extensions: repo_url, test_cmd, test_format, image (strings).
 *       repo_url is the clone source. A value containing "://" or "git@" is
 *       a URL and an absolute path is kept as written. Any other path is
 *       resolved against the directory named in the suite path (a symlinked
 *       suite file is not followed). An absent repo_url becomes "".
 * Unknown fields are kept in the row's raw JSON. A JSON null in an optional
 * field counts as absent.
 */
#ifndef DW_SUITE_H
#define DW_SUITE_H

#include <stddef.h>

/* Limits on one suite file. */
#define DW_SUITE_MAX_LINE (16 * 1024 * 1024)
/* The whole file is read into memory once, so the hash covers exactly the
 * bytes that were parsed. */
#define DW_SUITE_MAX_FILE (1024 * 1024 * 1024)
#define DW_SUITE_MAX_TASKS 100000
#define DW_SUITE_MAX_TESTS_PER_LIST 100000

typedef struct {
    char **items;
    size_t count;
} dw_strlist_t;

typedef struct {
    char *instance_id;
    char *repo;
    char *repo_url;        /* resolved: absolute path, URL, or "" to derive from repo */
    char *base_commit;
    char *problem_statement;
    char *requirements;
    char *interface;
    char *patch;
    char *test_patch;
    char *repo_language;
    char *test_cmd;
    char *test_format;
    char *image;
    dw_strlist_t fail_to_pass;
    dw_strlist_t pass_to_pass;
    dw_strlist_t selected_test_files;
    char *raw_json;        /* the row as a compact JSON object: the test lists that are
                              present become JSON arrays under their lower-case names,
                              every other field (repo_url too) is kept as written */
    size_t line;           /* 1-based line number in the file */
} dw_task_t;

typedef struct dw_suite_t dw_suite_t;

/* Load a suite from PATH. On any malformed row, returns NULL and writes
 * "PATH:LINE: field NAME: problem; fix" into ERR. Duplicate instance ids are
 * an error, and so is a file without any task. */
dw_suite_t *dw_suite_load (const char *path, char *err, size_t errlen);

void dw_suite_destroy (dw_suite_t **self_p);

size_t dw_suite_size (const dw_suite_t *self);

/* Task at INDEX (0-based, file order); NULL if out of range. */
const dw_task_t *dw_suite_task (const dw_suite_t *self, size_t index);

/* Task with this instance id, or NULL. */
const dw_task_t *dw_suite_find (const dw_suite_t *self, const char *instance_id);

/* SHA-1 hex of the file's bytes: a suite's identity for runs. */
const char *dw_suite_content_hash (const dw_suite_t *self);

/* Build a compact JSON object holding only the row fields that driftwatch
 * does not interpret (e.g. stub_solve_rate, dockerhub_tag), or "{}" when
 * there are none. The coordinator sends it to workers as TaskSpec.extra_json.
 * Returns a heap string the caller frees, or NULL when out of memory. */
char *dw_task_extra_json (const dw_task_t *task);

/* Parse a Python list literal of strings ("['a', \"b\\n\"]") into OUT, which
 * must be empty. TEXT is UTF-8. Accepts str escapes (\\ \' \" \n \t \r \xNN
 * \uNNNN \UNNNNNNNN, octal, the other single-letter ones) and a trailing
 * comma. Returns 0, or -1 with the reason in ERR and OUT left empty. */
int dw_suite_parse_pylist (const char *text, dw_strlist_t *out, char *err, size_t errlen);

/* Free the items of LIST and leave it empty. */
void dw_strlist_clear (dw_strlist_t *list);

#endif
