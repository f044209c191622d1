/* Tests for the task-suite loader (common/dw_suite.c) on the published
 * SWE-Bench-Pro instance list, hand-written suites in both list notations and
 * a directory of malformed suites with their expected errors. */
#include "dw_suite.h"
#include "dw_util.h"

#include <dirent.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int failures;
static int checks;

#define CHECK(cond, ...)                                                     \
    do {                                                                     \
        checks++;                                                            \
        if (!(cond)) {                                                       \
            failures++;                                                      \
            fprintf (stderr, "FAIL %s:%d: ", __FILE__, __LINE__);            \
            fprintf (stderr, __VA_ARGS__);                                   \
            fprintf (stderr, "\n");                                          \
        }                                                                    \
    } while (0)

#define CHECK_STR(got, expected, what) check_str (__LINE__, (got), (expected), (what))

static void check_str (int line, const char *got, const char *expected, const char *what)
{
    checks++;
    if (got && strcmp (got, expected) == 0)
        return;
    failures++;
    fprintf (stderr, "FAIL %s:%d: %s: expected \"%s\", got \"%s\"\n", __FILE__, line, what,
             expected, got ? got : "(null)");
}

static char source_dir[PATH_MAX];
static char temp_dir[PATH_MAX];

/* Path of a file under tests/data into OUT. */
static void data_path (const char *relative, char *out, size_t outlen)
{
    if (snprintf (out, outlen, "%s/tests/data/%s", source_dir, relative) >= (int) outlen) {
        fprintf (stderr, "test data path too long: %s\n", relative);
        exit (2);
    }
}

/* Write TEXT to NAME inside the temporary directory and store its path in OUT. */
static void write_temp (const char *name, const char *text, char *out, size_t outlen)
{
    if (snprintf (out, outlen, "%s/%s", temp_dir, name) >= (int) outlen) {
        fprintf (stderr, "temporary path too long: %s\n", name);
        exit (2);
    }
    if (dw_write_file_atomic (out, text, strlen (text), 0644) != 0) {
        fprintf (stderr, "cannot write %s\n", out);
        exit (2);
    }
}

static void check_list (const dw_strlist_t *list, const char *const *expected, const char *what)
{
    size_t count = 0;
    while (expected[count])
        count++;
    CHECK (list->count == count, "%s: expected %zu items, got %zu", what, count, list->count);
    for (size_t i = 0; i < count && i < list->count; i++)
        CHECK (strcmp (list->items[i], expected[i]) == 0,
               "%s item %zu: expected \"%s\", got \"%s\"", what, i, expected[i], list->items[i]);
}

/* ---- the published SWE-Bench-Pro list ---------------------------------- */

static void test_published_set (void)
{
    char path[PATH_MAX];
    char err[1024] = "";
    data_path ("swebench-pro/swebench_pro_public_instances.jsonl", path, sizeof path);
    dw_suite_t *suite = dw_suite_load (path, err, sizeof err);
    CHECK (suite != NULL, "published set: load failed: %s", err);
    if (!suite)
        return;

    CHECK (dw_suite_size (suite) == 731, "published set: expected 731 tasks, got %zu",
           dw_suite_size (suite));
    CHECK (dw_suite_task (suite, 731) == NULL, "published set: index 731 must be out of range");

    /* Distinct repositories and tasks per language. */
    const char *repos[32];
    size_t repo_count = 0;
    size_t python = 0, go = 0, js = 0, ts = 0, other = 0;
    for (size_t i = 0; i < dw_suite_size (suite); i++) {
        const dw_task_t *task = dw_suite_task (suite, i);
        size_t r = 0;
        while (r < repo_count && strcmp (repos[r], task->repo) != 0)
            r++;
        if (r == repo_count && repo_count < 32)
            repos[repo_count++] = task->repo;

        if (strcmp (task->repo_language, "python") == 0)
            python++;
        else if (strcmp (task->repo_language, "go") == 0)
            go++;
        else if (strcmp (task->repo_language, "js") == 0)
            js++;
        else if (strcmp (task->repo_language, "ts") == 0)
            ts++;
        else
            other++;

        CHECK (task->line == i + 1, "published set: task %zu: expected line %zu, got %zu",
               i, i + 1, task->line);
        CHECK (task->repo_url[0] == '\0', "published set: repo_url must default to \"\"");
        CHECK (dw_suite_find (suite, task->instance_id) == task,
               "published set: find(%s) must return task %zu", task->instance_id, i);
    }
    CHECK (repo_count == 11, "published set: expected 11 repositories, got %zu", repo_count);
    CHECK (python == 266, "published set: expected 266 python tasks, got %zu", python);
    CHECK (go == 280, "published set: expected 280 go tasks, got %zu", go);
    CHECK (js == 165, "published set: expected 165 js tasks, got %zu", js);
    CHECK (ts == 20, "published set: expected 20 ts tasks, got %zu", ts);
    CHECK (other == 0, "published set: expected no other language, got %zu", other);

    /* Line 396 of the file. */
    const dw_task_t *task = dw_suite_find (suite, "instance_gravitational__teleport-"
        "b1bcd8b90c474a35bb11cc3ef4cc8941e1f8eab2-vee9b09fb20c43af7e520f57e9239bbcf46b7113d");
    CHECK (task != NULL, "published set: the teleport task must be found");
    if (task) {
        CHECK (task->line == 396, "teleport task: expected line 396, got %zu", task->line);
        CHECK_STR (task->repo, "gravitational/teleport", "teleport task repo");
        CHECK_STR (task->base_commit, "b054261bc1cce536d307cbdad358f7c6c941b851",
                   "teleport task base_commit");
        CHECK_STR (task->repo_language, "go", "teleport task language");
        const char *const f2p[] = { "TestHTTPConnStateReporter/without_client_certs",
                                    "TestHTTPConnStateReporter", NULL };
        const char *const p2p[] = { "TestHTTPConnStateReporter/with_client_certs", NULL };
        const char *const files[] = { "TestHTTPConnStateReporter",
                                      "TestHTTPConnStateReporter/without_client_certs", NULL };
        check_list (&task->fail_to_pass, f2p, "teleport fail_to_pass");
        check_list (&task->pass_to_pass, p2p, "teleport pass_to_pass");
        check_list (&task->selected_test_files, files, "teleport selected_test_files");
        CHECK_STR (task->problem_statement, "", "teleport absent problem_statement");

        char *extra = dw_task_extra_json (task);
        CHECK_STR (extra, "{}", "teleport extra_json");
        free (extra);
    }
    CHECK (dw_suite_find (suite, "no-such-id") == NULL, "find of an unknown id must be NULL");

    /* The content hash is the SHA-1 of the file bytes. */
    size_t len = 0;
    char *bytes = dw_read_file (path, DW_SUITE_MAX_FILE, &len);
    char expected[41] = "";
    if (bytes)
        dw_sha1_hex (bytes, len, expected);
    free (bytes);
    CHECK_STR (dw_suite_content_hash (suite), expected, "published set content hash");

    dw_suite_destroy (&suite);
    CHECK (suite == NULL, "destroy must set the pointer to NULL");
    dw_suite_destroy (&suite);
}

/* ---- Python list literals ---------------------------------------------- */

typedef struct {
    const char *text;
    const char *items[8];
} good_case_t;

typedef struct {
    const char *text;
    const char *reason;
} bad_case_t;

static void test_pylist_cases (void)
{
    static const good_case_t good[] = {
        { "[]", { NULL } },
        { "  [ ]  ", { NULL } },
        { "['a']", { "a", NULL } },
        { "['a', \"b\"]", { "a", "b", NULL } },
        { "['a',]", { "a", NULL } },
        { "[\n  'a',\n\t'b' ,\r\n]\n", { "a", "b", NULL } },
        { "[\"it's\"]", { "it's", NULL } },
        { "['it\\'s', \"say \\\"hi\\\"\"]", { "it's", "say \"hi\"", NULL } },
        { "['a, b', 'x[1]', \"]\", '[']", { "a, b", "x[1]", "]", "[", NULL } },
        { "['back\\\\slash']", { "back\\slash", NULL } },
        { "['n\\nt\\tr\\r']", { "n\nt\tr\r", NULL } },
        { "['a\\x41\\x7e']", { "aA~", NULL } },
        { "['caf\\xe9']", { "caf\xc3\xa9", NULL } },
        { "['\\u00e9t\\u00E9']", { "\xc3\xa9t\xc3\xa9", NULL } },
        { "['\\u20ac']", { "\xe2\x82\xac", NULL } },
        { "['\\U0001F600']", { "\xf0\x9f\x98\x80", NULL } },
        { "['\\101\\60\\0101']", { "A0\x08" "1", NULL } },
        { "['\\q']", { "\\q", NULL } },
        { "['join\\\nlines']", { "joinlines", NULL } },
        { "['']", { "", NULL } },
        { "['\xc3\xa9']", { "\xc3\xa9", NULL } },
    };
    static const bad_case_t bad[] = {
        { "", "expected '[' at offset 0, found the end of the text" },
        { "a", "expected '[' at offset 0, found 'a'" },
        { "[", "expected a quoted string or ']' at offset 1, found the end of the text" },
        { "[1, 2]", "found a number" },
        { "['a', 2]", "expected a quoted string or ']' at offset 6, found a number" },
        { "[['a']]", "found a nested list" },
        { "['a'", "expected ',' or ']' at offset 4" },
        { "['a' 'b']", "expected ',' or ']' at offset 5" },
        { "['a',,]", "expected a quoted string or ']' at offset 5, found ','" },
        { "[,]", "expected a quoted string or ']' at offset 1, found ','" },
        { "['a'] x", "unexpected text at offset 6 after the closing ']'" },
        { "['abc", "unterminated string starting at offset 1" },
        { "['a\nb']", "unterminated string starting at offset 1" },
        { "['a\\", "ends the text" },
        { "['\\x4']", "needs 2 hex digits" },
        { "['\\u12g4']", "needs 4 hex digits" },
        { "['\\U0011ffff']", "not a Unicode scalar value" },
        { "['\\ud800']", "not a Unicode scalar value" },
        { "['\\x00']", "NUL character" },
        { "['\\0']", "NUL character" },
        { "['\\N{BULLET}']", "named escape" },
        { "['''a''']", "triple-quoted" },
        { "[None]", "found 'N'" },
        { "{'a'}", "expected '['" },
    };

    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        dw_strlist_t list = { NULL, 0 };
        char err[256] = "";
        int rc = dw_suite_parse_pylist (good[i].text, &list, err, sizeof err);
        CHECK (rc == 0, "pylist good case %zu (%s): rejected: %s", i, good[i].text, err);
        char what[64];
        snprintf (what, sizeof what, "pylist good case %zu", i);
        if (rc == 0)
            check_list (&list, good[i].items, what);
        dw_strlist_clear (&list);
    }

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dw_strlist_t list = { NULL, 0 };
        char err[256] = "";
        int rc = dw_suite_parse_pylist (bad[i].text, &list, err, sizeof err);
        CHECK (rc == -1, "pylist bad case %zu (%s): expected rejection", i, bad[i].text);
        CHECK (strstr (err, bad[i].reason) != NULL,
               "pylist bad case %zu (%s): expected reason \"%s\", got \"%s\"",
               i, bad[i].text, bad[i].reason, err);
        CHECK (list.count == 0 && list.items == NULL,
               "pylist bad case %zu: the list must be left empty", i);
        dw_strlist_clear (&list);
    }
}

/* Large inputs must be rejected or parsed without recursion or overflow. */
static void test_pylist_hostile (void)
{
    size_t size = 4 * 1024 * 1024;
    char *text = malloc (size + 1);
    if (!text)
        return;
    char err[256];
    dw_strlist_t list = { NULL, 0 };

    memset (text, '[', size);
    text[size] = '\0';
    CHECK (dw_suite_parse_pylist (text, &list, err, sizeof err) == -1,
           "4 MiB of '[' must be rejected");

    text[0] = '[';
    text[1] = '\'';
    memset (text + 2, '\\', size - 2);
    CHECK (dw_suite_parse_pylist (text, &list, err, sizeof err) == -1,
           "an unterminated string of backslashes must be rejected");

    /* One item more than the limit: "['a','a',...,'a']". */
    size_t items = DW_SUITE_MAX_TESTS_PER_LIST + 1;
    size_t used = 0;
    text[used++] = '[';
    for (size_t i = 0; i < items && used + 5 < size; i++) {
        memcpy (text + used, "'a',", 4);
        used += 4;
    }
    text[used++] = ']';
    text[used] = '\0';
    CHECK (dw_suite_parse_pylist (text, &list, err, sizeof err) == -1,
           "a list over DW_SUITE_MAX_TESTS_PER_LIST items must be rejected");
    CHECK (strstr (err, "more than") != NULL, "over-limit reason: got \"%s\"", err);
    CHECK (list.count == 0, "an over-limit list must be left empty");

    /* Exactly at the limit is fine. */
    used = 1;
    for (size_t i = 0; i < DW_SUITE_MAX_TESTS_PER_LIST; i++) {
        memcpy (text + used, "'a',", 4);
        used += 4;
    }
    text[used++] = ']';
    text[used] = '\0';
    CHECK (dw_suite_parse_pylist (text, &list, err, sizeof err) == 0,
           "a list of exactly DW_SUITE_MAX_TESTS_PER_LIST items must load: %s", err);
    CHECK (list.count == DW_SUITE_MAX_TESTS_PER_LIST, "at-limit list: got %zu items",
           list.count);
    dw_strlist_clear (&list);
    free (text);
}

/* ---- suites in the published dataset's notation ------------------------- */

static void test_pylist_file (void)
{
    char path[PATH_MAX];
    char err[1024] = "";
    data_path ("suites/pylist.jsonl", path, sizeof path);
    dw_suite_t *suite = dw_suite_load (path, err, sizeof err);
    CHECK (suite != NULL, "pylist.jsonl: load failed: %s", err);
    if (!suite)
        return;
    CHECK (dw_suite_size (suite) == 4, "pylist.jsonl: expected 4 tasks, got %zu",
           dw_suite_size (suite));

    const dw_task_t *first = dw_suite_find (suite, "instance_demo__calc-0001");
    CHECK (first != NULL, "pylist.jsonl: task 0001 must be found");
    if (first) {
        const char *const f2p[] = { "tests/test_calc.py::test_add",
                                    "tests/test_calc.py::test_it's_fine", NULL };
        const char *const p2p[] = { NULL };
        const char *const files[] = { "tests/test_calc.py", "tests/test_util.py", NULL };
        check_list (&first->fail_to_pass, f2p, "0001 fail_to_pass");
        check_list (&first->pass_to_pass, p2p, "0001 pass_to_pass");
        check_list (&first->selected_test_files, files, "0001 selected_test_files");

        json_t *raw = json_loads (first->raw_json, 0, NULL);
        CHECK (raw != NULL, "0001 raw_json must be valid JSON: %s", first->raw_json);
        json_t *list = json_object_get (raw, "fail_to_pass");
        CHECK (json_is_array (list) && json_array_size (list) == 2,
               "0001 raw_json fail_to_pass must be a JSON array of 2: %s", first->raw_json);
        CHECK (json_is_array (json_object_get (raw, "pass_to_pass")),
               "0001 raw_json pass_to_pass must be an array: %s", first->raw_json);
        CHECK (json_is_string (json_object_get (raw, "issue_specificity")),
               "0001 raw_json must keep issue_specificity as written: %s", first->raw_json);
        CHECK (strstr (first->raw_json, "{\"instance_id\":\"instance_demo__calc-0001\","
                       "\"repo\":\"demo/calc\",") == first->raw_json,
               "0001 raw_json must be compact and keep the field order: %s", first->raw_json);
        json_decref (raw);

        char *extra = dw_task_extra_json (first);
        CHECK_STR (extra, "{\"issue_specificity\":\"['minor_bug', 'edge_case_bug']\","
                   "\"stub_solve_rate\":0.40000000000000002,"
                   "\"dockerhub_tag\":\"demo.calc-0001\"}", "0001 extra_json");
        free (extra);
    }

    const dw_task_t *second = dw_suite_find (suite, "instance_demo__calc-0002");
    CHECK (second != NULL, "pylist.jsonl: task 0002 must be found");
    if (second) {
        const char *const f2p[] = { "back\\slash", "tab\there", "caf\xc3\xa9",
                                    "\xc3\xa9t\xc3\xa9", "\xf0\x9f\x98\x80", "octA",
                                    "it's", "say \"hi\"", "line\nbreak", NULL };
        check_list (&second->fail_to_pass, f2p, "0002 fail_to_pass");
        const char *const p2p[] = { "test_x[1, 2]", "test_y[a]", "a, b", NULL };
        check_list (&second->pass_to_pass, p2p, "0002 pass_to_pass");
        CHECK (second->line == 2, "0002: expected line 2, got %zu", second->line);
    }

    const dw_task_t *django = dw_suite_find (suite, "django__django-11099");
    CHECK (django != NULL, "pylist.jsonl: the upper-case SWE-bench row must be found");
    if (django) {
        CHECK (django->line == 4, "django: expected line 4 (after a blank line), got %zu",
               django->line);
        const char *const f2p[] = {
            "test_ascii_validator (auth_tests.test_validators.UsernameValidatorsTests)",
            "test_unicode_validator (auth_tests.test_validators.UsernameValidatorsTests)",
            NULL };
        const char *const p2p[] = { NULL };
        check_list (&django->fail_to_pass, f2p, "django FAIL_TO_PASS");
        check_list (&django->pass_to_pass, p2p, "django PASS_TO_PASS");
        CHECK (strstr (django->raw_json, "\"FAIL_TO_PASS\"") == NULL,
               "django raw_json must drop the upper-case key: %s", django->raw_json);
        CHECK (strstr (django->raw_json, "\"fail_to_pass\":[\"test_ascii_validator") != NULL,
               "django raw_json must hold fail_to_pass as an array: %s", django->raw_json);

        char *extra = dw_task_extra_json (django);
        CHECK_STR (extra, "{\"version\":\"3.0\",\"environment_setup_commit\":"
                   "\"419a78300f7cd27611196e1e464d50fd0385ff27\"}", "django extra_json");
        free (extra);
    }

    const dw_task_t *third = dw_suite_find (suite, "instance_demo__calc-0003");
    CHECK (third != NULL, "pylist.jsonl: task 0003 must be found");
    if (third) {
        const char *const f2p[] = { "test_same", NULL };
        check_list (&third->fail_to_pass, f2p, "0003 equal spellings");
        CHECK_STR (third->test_cmd, "pytest -q", "0003 test_cmd");
        CHECK_STR (third->test_format, "junit", "0003 test_format");
        CHECK_STR (third->image, "demo/calc:latest", "0003 image");

        char dir[PATH_MAX];
        char expected[PATH_MAX + 32];
        data_path ("suites", path, sizeof path);
        if (realpath (path, dir)) {
            snprintf (expected, sizeof expected, "%s/repos/calc.git", dir);
            CHECK_STR (third->repo_url, expected, "0003 repo_url relative to the suite");
        }
        char *extra = dw_task_extra_json (third);
        CHECK_STR (extra, "{}", "0003 extra_json");
        free (extra);
    }
    dw_suite_destroy (&suite);
}

/* ---- malformed suites ---------------------------------------------------- */

static void test_bad_files (void)
{
    char dir_path[PATH_MAX];
    data_path ("suites/bad", dir_path, sizeof dir_path);
    DIR *dir = opendir (dir_path);
    CHECK (dir != NULL, "cannot open %s", dir_path);
    if (!dir)
        return;

    size_t tested = 0;
    struct dirent *entry;
    while ((entry = readdir (dir))) {
        size_t len = strlen (entry->d_name);
        if (len < 7 || strcmp (entry->d_name + len - 6, ".jsonl") != 0)
            continue;

        char path[PATH_MAX + 256];
        char expected_path[PATH_MAX + 256];
        snprintf (path, sizeof path, "%s/%s", dir_path, entry->d_name);
        snprintf (expected_path, sizeof expected_path, "%s/%.*s.expected", dir_path,
                  (int) (len - 6), entry->d_name);
        char *expected = dw_read_file (expected_path, 4096, NULL);
        CHECK (expected != NULL, "%s: missing sidecar file %s", entry->d_name, expected_path);
        if (!expected)
            continue;
        expected[strcspn (expected, "\n")] = '\0';

        char err[1024] = "";
        dw_suite_t *suite = dw_suite_load (path, err, sizeof err);
        CHECK (suite == NULL, "%s: expected the load to fail", entry->d_name);
        CHECK (strstr (err, expected) != NULL, "%s: expected an error containing \"%s\", "
               "got \"%s\"", entry->d_name, expected, err);
        CHECK (strncmp (err, path, strlen (path)) == 0,
               "%s: the error must start with the file path: \"%s\"", entry->d_name, err);
        dw_suite_destroy (&suite);
        free (expected);
        tested++;
    }
    closedir (dir);
    CHECK (tested >= 20, "expected at least 20 malformed suites, found %zu", tested);
}

static void test_missing_file (void)
{
    char err[1024] = "";
    dw_suite_t *suite = dw_suite_load ("/nonexistent/suite.jsonl", err, sizeof err);
    CHECK (suite == NULL, "a missing file must fail");
    CHECK (strstr (err, "/nonexistent/suite.jsonl: cannot read") != NULL,
           "missing file error: got \"%s\"", err);
}

static void test_long_line (void)
{
    const char *first = "{\"instance_id\": \"i1\", \"repo\": \"o/r\", \"base_commit\": \"c\"}\n";
    const char *open = "{\"pad\": \"";
    size_t pad = DW_SUITE_MAX_LINE;
    size_t line_len = strlen (open) + pad + strlen ("\"}");
    size_t total = strlen (first) + line_len + 1;
    char *text = malloc (total + 1);
    if (!text)
        return;
    size_t used = 0;
    memcpy (text + used, first, strlen (first));
    used += strlen (first);
    memcpy (text + used, open, strlen (open));
    used += strlen (open);
    memset (text + used, 'x', pad);
    used += pad;
    memcpy (text + used, "\"}\n", 4);

    char path[PATH_MAX];
    write_temp ("long.jsonl", text, path, sizeof path);
    free (text);

    char err[1024] = "";
    dw_suite_t *suite = dw_suite_load (path, err, sizeof err);
    CHECK (suite == NULL, "a line over DW_SUITE_MAX_LINE must be rejected");
    char expected[128];
    snprintf (expected, sizeof expected, "long.jsonl:2: line is %zu bytes, longer than the "
              "limit of %d bytes", line_len, DW_SUITE_MAX_LINE);
    CHECK (strstr (err, expected) != NULL, "long line: expected \"%s\", got \"%s\"",
           expected, err);
    dw_suite_destroy (&suite);
    unlink (path);
}

static void test_duplicate_ids (void)
{
    char path[PATH_MAX];
    write_temp ("dup.jsonl",
                "{\"instance_id\": \"a\", \"repo\": \"o/r\", \"base_commit\": \"c\"}\n"
                "{\"instance_id\": \"b\", \"repo\": \"o/r\", \"base_commit\": \"c\"}\n"
                "\n"
                "{\"instance_id\": \"b\", \"repo\": \"o/q\", \"base_commit\": \"d\"}\n",
                path, sizeof path);
    char err[1024] = "";
    dw_suite_t *suite = dw_suite_load (path, err, sizeof err);
    CHECK (suite == NULL, "duplicate ids must be rejected");
    char expected[PATH_MAX + 256];
    snprintf (expected, sizeof expected, "%s:4: field instance_id: duplicate id \"b\", first "
              "used on line 2; give each task a unique instance_id", path);
    CHECK_STR (err, expected, "duplicate id error");
}

/* CRLF line ends, a byte order mark and a last line without a newline. */
static void test_line_ends (void)
{
    char path[PATH_MAX];
    write_temp ("crlf.jsonl",
                "\xef\xbb\xbf{\"instance_id\": \"a\", \"repo\": \"o/r\", \"base_commit\": \"c\"}\r\n"
                "\r\n"
                "{\"instance_id\": \"b\", \"repo\": \"o/r\", \"base_commit\": \"c\", "
                "\"fail_to_pass\": \"['x']\"}",
                path, sizeof path);
    char err[1024] = "";
    dw_suite_t *suite = dw_suite_load (path, err, sizeof err);
    CHECK (suite != NULL, "crlf.jsonl: load failed: %s", err);
    if (!suite)
        return;
    CHECK (dw_suite_size (suite) == 2, "crlf.jsonl: expected 2 tasks, got %zu",
           dw_suite_size (suite));
    const dw_task_t *task = dw_suite_find (suite, "b");
    CHECK (task && task->line == 3, "crlf.jsonl: task b must be on line 3");
    CHECK (task && task->fail_to_pass.count == 1, "crlf.jsonl: task b must have 1 test");
    dw_suite_destroy (&suite);
}

static void test_repo_url (void)
{
    char repos[PATH_MAX + 32];
    snprintf (repos, sizeof repos, "%s/suites/repos/calc", temp_dir);
    CHECK (dw_mkdir_p (repos, 0755) == 0, "cannot create %s", repos);
    char canonical_temp[PATH_MAX];
    if (!realpath (temp_dir, canonical_temp)) {
        CHECK (0, "cannot resolve %s", temp_dir);
        return;
    }

    char path[PATH_MAX];
    write_temp ("suites/urls.jsonl",
        "{\"instance_id\": \"rel\", \"repo\": \"o/r\", \"base_commit\": \"c\", "
        "\"repo_url\": \"repos/calc\"}\n"
        "{\"instance_id\": \"dots\", \"repo\": \"o/r\", \"base_commit\": \"c\", "
        "\"repo_url\": \"./repos/../repos/calc/\"}\n"
        "{\"instance_id\": \"missing\", \"repo\": \"o/r\", \"base_commit\": \"c\", "
        "\"repo_url\": \"gone/x.git\"}\n"
        "{\"instance_id\": \"https\", \"repo\": \"o/r\", \"base_commit\": \"c\", "
        "\"repo_url\": \"https://example.com/o/r.git\"}\n"
        "{\"instance_id\": \"file\", \"repo\": \"o/r\", \"base_commit\": \"c\", "
        "\"repo_url\": \"file:///srv/r.git\"}\n"
        "{\"instance_id\": \"scp\", \"repo\": \"o/r\", \"base_commit\": \"c\", "
        "\"repo_url\": \"git@example.com:o/r.git\"}\n"
        "{\"instance_id\": \"abs\", \"repo\": \"o/r\", \"base_commit\": \"c\", "
        "\"repo_url\": \"/srv/git/r\"}\n"
        "{\"instance_id\": \"none\", \"repo\": \"o/r\", \"base_commit\": \"c\"}\n"
        "{\"instance_id\": \"null\", \"repo\": \"o/r\", \"base_commit\": \"c\", "
        "\"repo_url\": null}\n",
        path, sizeof path);

    /* Load through a relative path so the suite directory must be made absolute. */
    char cwd[PATH_MAX];
    if (!getcwd (cwd, sizeof cwd) || chdir (temp_dir) != 0) {
        CHECK (0, "cannot change into %s", temp_dir);
        return;
    }
    char err[1024] = "";
    dw_suite_t *suite = dw_suite_load ("suites/urls.jsonl", err, sizeof err);
    if (chdir (cwd) != 0)
        CHECK (0, "cannot change back to %s", cwd);
    CHECK (suite != NULL, "urls.jsonl: load failed: %s", err);
    if (!suite)
        return;

    char expected[PATH_MAX * 2];
    snprintf (expected, sizeof expected, "%s/suites/repos/calc", canonical_temp);
    const dw_task_t *task = dw_suite_find (suite, "rel");
    CHECK_STR (task ? task->repo_url : NULL, expected, "relative repo_url");
    task = dw_suite_find (suite, "dots");
    CHECK_STR (task ? task->repo_url : NULL, expected, "repo_url with . and ..");
    snprintf (expected, sizeof expected, "%s/suites/gone/x.git", canonical_temp);
    task = dw_suite_find (suite, "missing");
    CHECK_STR (task ? task->repo_url : NULL, expected, "repo_url of a missing directory");
    task = dw_suite_find (suite, "https");
    CHECK_STR (task ? task->repo_url : NULL, "https://example.com/o/r.git", "https repo_url");
    task = dw_suite_find (suite, "file");
    CHECK_STR (task ? task->repo_url : NULL, "file:///srv/r.git", "file:// repo_url");
    task = dw_suite_find (suite, "scp");
    CHECK_STR (task ? task->repo_url : NULL, "git@example.com:o/r.git", "scp-style repo_url");
    task = dw_suite_find (suite, "abs");
    CHECK_STR (task ? task->repo_url : NULL, "/srv/git/r", "absolute repo_url");
    task = dw_suite_find (suite, "none");
    CHECK_STR (task ? task->repo_url : NULL, "", "absent repo_url");
    task = dw_suite_find (suite, "null");
    CHECK_STR (task ? task->repo_url : NULL, "", "null repo_url");

    /* A symlinked suite file resolves against the directory of the link. */
    char link_dir[PATH_MAX + 32];
    char link_path[PATH_MAX + 64];
    snprintf (link_dir, sizeof link_dir, "%s/linked", temp_dir);
    snprintf (link_path, sizeof link_path, "%s/urls.jsonl", link_dir);
    CHECK (dw_mkdir_p (link_dir, 0755) == 0, "cannot create %s", link_dir);
    CHECK (symlink ("../suites/urls.jsonl", link_path) == 0, "cannot create %s", link_path);
    dw_suite_t *linked = dw_suite_load (link_path, err, sizeof err);
    CHECK (linked != NULL, "linked urls.jsonl: load failed: %s", err);
    if (linked) {
        snprintf (expected, sizeof expected, "%s/linked/repos/calc", canonical_temp);
        task = dw_suite_find (linked, "rel");
        CHECK_STR (task ? task->repo_url : NULL, expected, "repo_url through a symlinked suite");
        dw_suite_destroy (&linked);
    }

    /* raw_json keeps repo_url as written. */
    task = dw_suite_find (suite, "rel");
    CHECK (task && strstr (task->raw_json, "\"repo_url\":\"repos/calc\"") != NULL,
           "raw_json must keep repo_url as written: %s", task ? task->raw_json : "(none)");
    dw_suite_destroy (&suite);
}

int main (void)
{
    const char *env = getenv ("DW_SOURCE_DIR");
    if (!env) {
        fprintf (stderr, "DW_SOURCE_DIR is not set; run this test through ctest\n");
        return 2;
    }
    snprintf (source_dir, sizeof source_dir, "%s", env);
    snprintf (temp_dir, sizeof temp_dir, "/tmp/dw-test-suite-XXXXXX");
    if (!mkdtemp (temp_dir)) {
        perror ("mkdtemp");
        return 2;
    }

    test_published_set ();
    test_pylist_cases ();
    test_pylist_hostile ();
    test_pylist_file ();
    test_bad_files ();
    test_missing_file ();
    test_long_line ();
    test_duplicate_ids ();
    test_line_ends ();
    test_repo_url ();

    dw_rm_rf (temp_dir);
    printf ("%d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
