/* dw_testlog: every tests/data/testlog/<case>.<format>.log must parse to
 * exactly the tests in <case>.expected ("name<TAB>STATUS" per line). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dw_testlog.h"
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

#define LOG_MAX (16 * 1024 * 1024)

static void
s_check_case (const char *dir, const char *file_name)
{
    /* "<case>.<format>.log" */
    char *base = strdup (file_name);
    base[strlen (base) - 4] = 0;
    char *dot = strrchr (base, '.');
    CHECK (dot != NULL, "%s: name is not <case>.<format>.log", file_name);
    if (!dot) {
        free (base);
        return;
    }
    *dot = 0;
    const char *format = dot + 1;

    char *log_path = dw_strdup_printf ("%s/%s", dir, file_name);
    char *expected_path = dw_strdup_printf ("%s/%s.expected", dir, base);
    size_t log_len = 0;
    char *log = dw_read_file (log_path, LOG_MAX, &log_len);
    char *expected = dw_read_file (expected_path, LOG_MAX, NULL);
    CHECK (log != NULL, "%s: cannot read", log_path);
    CHECK (expected != NULL, "%s: missing expected file", expected_path);

    dw_testlog_t *parsed = dw_testlog_new ();
    char err[256] = "";
    if (log && expected) {
        int rc = dw_testlog_parse (parsed, format, log, log_len, err, sizeof err);
        CHECK (rc == 0, "%s: parse failed: %s", file_name, err);

        size_t expected_count = 0;
        char *save = NULL;
        for (char *line = strtok_r (expected, "\n", &save); line;
             line = strtok_r (NULL, "\n", &save)) {
            char *tab = strchr (line, '\t');
            CHECK (tab != NULL, "%s: line without a tab: %s", expected_path, line);
            if (!tab)
                continue;
            *tab = 0;
            expected_count++;
            const char *got = dw_test_status_name (dw_testlog_lookup (parsed, line));
            CHECK (strcmp (got, tab + 1) == 0, "%s: test '%s' expected %s, got %s", file_name,
                   line, tab + 1, got);
        }
        CHECK (dw_testlog_size (parsed) == expected_count,
               "%s: expected %zu tests, parsed %zu", file_name, expected_count,
               dw_testlog_size (parsed));
        if (dw_testlog_size (parsed) != expected_count)
            for (size_t i = 0; i < dw_testlog_size (parsed); i++)
                fprintf (stderr, "  parsed: %s\t%s\n", dw_testlog_name (parsed, i),
                         dw_test_status_name (dw_testlog_status (parsed, i)));
    }

    dw_testlog_destroy (&parsed);
    CHECK (parsed == NULL, "destroy did not clear the pointer");
    free (log);
    free (expected);
    free (log_path);
    free (expected_path);
    free (base);
}

static int
s_compare_names (const void *a, const void *b)
{
    return strcmp (*(char *const *) a, *(char *const *) b);
}

static void
test_data_cases (void)
{
    const char *source = getenv ("DW_SOURCE_DIR");
    char *dir = dw_strdup_printf ("%s/tests/data/testlog", source ? source : ".");
    DIR *handle = opendir (dir);
    CHECK (handle != NULL, "cannot open %s (is DW_SOURCE_DIR set?)", dir);
    if (!handle) {
        free (dir);
        return;
    }
    char *names[256];
    size_t count = 0;
    struct dirent *entry;
    while ((entry = readdir (handle)) && count < 256) {
        size_t len = strlen (entry->d_name);
        if (len > 4 && strcmp (entry->d_name + len - 4, ".log") == 0)
            names[count++] = strdup (entry->d_name);
    }
    closedir (handle);
    qsort (names, count, sizeof names[0], s_compare_names);

    int formats_seen[5] = { 0 };
    const char *formats[5] = { ".tap.log", ".unittest.log", ".pytest.log", ".gotest.log",
                               ".json.log" };
    for (size_t i = 0; i < count; i++) {
        s_check_case (dir, names[i]);
        for (int f = 0; f < 5; f++)
            if (strstr (names[i], formats[f]))
                formats_seen[f] = 1;
        free (names[i]);
    }
    for (int f = 0; f < 5; f++)
        CHECK (formats_seen[f], "no data case for %s", formats[f]);
    printf ("test_testlog: %zu data cases\n", count);
    free (dir);
}

static void
test_errors_and_rules (void)
{
    dw_testlog_t *log = dw_testlog_new ();
    char err[256] = "";

    CHECK (dw_testlog_parse (log, "junit", "", 0, err, sizeof err) == -1,
           "unknown format accepted");
    CHECK (strstr (err, "junit") != NULL, "error does not name the format: %s", err);
    CHECK (dw_testlog_parse (log, "json", "{\"tests\": [", 11, err, sizeof err) == -1,
           "truncated JSON accepted");
    CHECK (dw_testlog_parse (log, "json", "{\"x\": 1}", 8, err, sizeof err) == -1,
           "JSON without tests accepted");
    CHECK (dw_testlog_parse (log, "pytest", "nothing here\n", 13, err, sizeof err) == 0,
           "a log without tests must not be an error");
    CHECK (dw_testlog_size (log) == 0, "tests found in an empty log");
    CHECK (dw_testlog_lookup (log, "a") == DW_TEST_MISSING, "lookup on empty log");

    dw_testlog_add (log, "a", 1, DW_TEST_SKIPPED);
    dw_testlog_add (log, "a", 1, DW_TEST_PASSED);
    CHECK (dw_testlog_lookup (log, "a") == DW_TEST_PASSED, "last status must win");
    dw_testlog_add (log, "b", 1, DW_TEST_FAILED);
    dw_testlog_add (log, "b", 1, DW_TEST_PASSED);
    CHECK (dw_testlog_lookup (log, "b") == DW_TEST_FAILED, "FAILED must stick");
    dw_testlog_add (log, "c", 1, DW_TEST_ERROR);
    dw_testlog_add (log, "c", 1, DW_TEST_PASSED);
    CHECK (dw_testlog_lookup (log, "c") == DW_TEST_ERROR, "ERROR must stick");

    /* Many names: the hash table must grow and keep every entry. */
    char name[32];
    for (int i = 0; i < 5000; i++) {
        snprintf (name, sizeof name, "t%d", i);
        dw_testlog_add (log, name, strlen (name), i % 2 ? DW_TEST_PASSED : DW_TEST_FAILED);
    }
    CHECK (dw_testlog_size (log) == 5003, "expected 5003 tests, got %zu", dw_testlog_size (log));
    CHECK (dw_testlog_lookup (log, "t4999") == DW_TEST_PASSED, "t4999 lost");
    CHECK (dw_testlog_lookup (log, "t4998") == DW_TEST_FAILED, "t4998 lost");
    CHECK (strcmp (dw_testlog_name (log, 0), "a") == 0, "first-seen order lost");

    char *long_name = malloc (DW_TESTLOG_NAME_MAX + 2);
    memset (long_name, 'x', DW_TESTLOG_NAME_MAX + 1);
    dw_testlog_add (log, long_name, DW_TESTLOG_NAME_MAX + 1, DW_TEST_PASSED);
    CHECK (dw_testlog_dropped (log) == 1, "over-long name not dropped");
    free (long_name);
    dw_testlog_destroy (&log);
}

int
main (void)
{
    test_data_cases ();
    test_errors_and_rules ();
    if (failures) {
        fprintf (stderr, "test_testlog: %d check(s) failed\n", failures);
        return 1;
    }
    printf ("test_testlog: all checks passed\n");
    return 0;
}
