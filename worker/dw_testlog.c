/* Test output parsers; the formats and the duplicate rule are described in
 * dw_testlog.h. Every parser works line by line on the raw bytes and never
 * copies the whole log. */
#include "dw_testlog.h"

#include <ctype.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct {
    char *name;
    dw_test_status_t status;
} dw_testlog_entry_t;

struct dw_testlog {
    dw_testlog_entry_t *entries;
    size_t size;
    size_t capacity;
    /* Open-addressing table of entry index + 1 (0 = empty slot). */
    size_t *slots;
    size_t slot_count;
    size_t dropped;
};

/* A line without its newline (and without a trailing carriage return). */
typedef struct {
    const char *text;
    size_t len;
} dw_line_t;

static void
s_set_error (char *err, size_t err_size, const char *fmt, ...)
{
    if (!err || err_size == 0)
        return;
    va_list args;
    va_start (args, fmt);
    vsnprintf (err, err_size, fmt, args);
    va_end (args);
}

dw_testlog_t *
dw_testlog_new (void)
{
    return calloc (1, sizeof (dw_testlog_t));
}

void
dw_testlog_destroy (dw_testlog_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dw_testlog_t *self = *self_p;
    for (size_t i = 0; i < self->size; i++)
        free (self->entries[i].name);
    free (self->entries);
    free (self->slots);
    free (self);
    *self_p = NULL;
}

static uint64_t
s_hash (const char *text, size_t len)
{
    uint64_t hash = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) {
        hash ^= (unsigned char) text[i];
        hash *= 1099511628211ULL;
    }
    return hash;
}

/* Slot holding NAME, or the empty slot where it would go. */
static size_t
s_find_slot (const dw_testlog_t *self, const char *name, size_t len)
{
    size_t mask = self->slot_count - 1;
    size_t slot = (size_t) s_hash (name, len) & mask;
    while (self->slots[slot]) {
        const char *existing = self->entries[self->slots[slot] - 1].name;
        if (strlen (existing) == len && memcmp (existing, name, len) == 0)
            return slot;
        slot = (slot + 1) & mask;
    }
    return slot;
}

static int
s_grow (dw_testlog_t *self)
{
    size_t capacity = self->capacity ? self->capacity * 2 : 64;
    dw_testlog_entry_t *entries = realloc (self->entries, capacity * sizeof *entries);
    if (!entries)
        return -1;
    self->entries = entries;
    self->capacity = capacity;

    size_t slot_count = capacity * 2;
    size_t *slots = calloc (slot_count, sizeof *slots);
    if (!slots)
        return -1;
    free (self->slots);
    self->slots = slots;
    self->slot_count = slot_count;
    for (size_t i = 0; i < self->size; i++) {
        const char *name = self->entries[i].name;
        self->slots[s_find_slot (self, name, strlen (name))] = i + 1;
    }
    return 0;
}

int
dw_testlog_add (dw_testlog_t *self, const char *name, size_t name_len, dw_test_status_t status)
{
    if (name_len == 0)
        return 0;
    if (name_len > DW_TESTLOG_NAME_MAX || memchr (name, 0, name_len)) {
        self->dropped++;
        return 0;
    }
    if (self->slot_count) {
        size_t slot = s_find_slot (self, name, name_len);
        if (self->slots[slot]) {
            dw_testlog_entry_t *entry = &self->entries[self->slots[slot] - 1];
            if (entry->status != DW_TEST_FAILED && entry->status != DW_TEST_ERROR)
                entry->status = status;
            return 0;
        }
    }
    if (self->size >= DW_TESTLOG_MAX_TESTS) {
        self->dropped++;
        return 0;
    }
    if (self->size == self->capacity && s_grow (self) != 0)
        return -1;

    char *copy = strndup (name, name_len);
    if (!copy)
        return -1;
    self->entries[self->size] = (dw_testlog_entry_t) { .name = copy, .status = status };
    self->size++;
    self->slots[s_find_slot (self, copy, name_len)] = self->size;
    return 0;
}

size_t
dw_testlog_size (const dw_testlog_t *self)
{
    return self->size;
}

const char *
dw_testlog_name (const dw_testlog_t *self, size_t index)
{
    return index < self->size ? self->entries[index].name : NULL;
}

dw_test_status_t
dw_testlog_status (const dw_testlog_t *self, size_t index)
{
    return index < self->size ? self->entries[index].status : DW_TEST_UNKNOWN;
}

dw_test_status_t
dw_testlog_lookup (const dw_testlog_t *self, const char *name)
{
    if (!self->slot_count)
        return DW_TEST_MISSING;
    size_t slot = s_find_slot (self, name, strlen (name));
    return self->slots[slot] ? self->entries[self->slots[slot] - 1].status : DW_TEST_MISSING;
}

size_t
dw_testlog_dropped (const dw_testlog_t *self)
{
    return self->dropped;
}

const char *
dw_test_status_name (dw_test_status_t status)
{
    switch (status) {
    case DW_TEST_PASSED:
        return "PASSED";
    case DW_TEST_FAILED:
        return "FAILED";
    case DW_TEST_SKIPPED:
        return "SKIPPED";
    case DW_TEST_ERROR:
        return "ERROR";
    case DW_TEST_MISSING:
        return "MISSING";
    default:
        return "UNKNOWN";
    }
}

/* --- line helpers ------------------------------------------------------- */

/* Advance *POS over TEXT and return the next line; 0 at the end. */
static int
s_next_line (const char *text, size_t len, size_t *pos, dw_line_t *line)
{
    if (*pos >= len)
        return 0;
    const char *start = text + *pos;
    const char *newline = memchr (start, '\n', len - *pos);
    size_t line_len = newline ? (size_t) (newline - start) : len - *pos;
    *pos += line_len + (newline ? 1 : 0);
    if (line_len > 0 && start[line_len - 1] == '\r')
        line_len--;
    line->text = start;
    line->len = line_len;
    return 1;
}

static void
s_trim (dw_line_t *line)
{
    while (line->len > 0 && isspace ((unsigned char) line->text[0])) {
        line->text++;
        line->len--;
    }
    while (line->len > 0 && isspace ((unsigned char) line->text[line->len - 1]))
        line->len--;
}

static int
s_starts_with (const dw_line_t *line, const char *prefix)
{
    size_t prefix_len = strlen (prefix);
    return line->len >= prefix_len && memcmp (line->text, prefix, prefix_len) == 0;
}

static int
s_equals (const dw_line_t *line, const char *word)
{
    return line->len == strlen (word) && memcmp (line->text, word, line->len) == 0;
}

static void
s_skip (dw_line_t *line, size_t count)
{
    line->text += count;
    line->len -= count;
}

/* Length of the leading token of LINE: up to the first space that is not
 * inside [...], so pytest parameter ids with spaces stay whole. */
static size_t
s_token_len (const dw_line_t *line)
{
    int depth = 0;
    for (size_t i = 0; i < line->len; i++) {
        char c = line->text[i];
        if (c == '[')
            depth++;
        else if (c == ']' && depth > 0)
            depth--;
        else if (c == ' ' && depth == 0)
            return i;
    }
    return line->len;
}

/* --- tap ---------------------------------------------------------------- */

static int
s_parse_tap (dw_testlog_t *self, const char *text, size_t len)
{
    size_t pos = 0;
    dw_line_t line;
    int in_yaml = 0;
    size_t yaml_indent = 0;
    char *name = malloc (DW_TESTLOG_NAME_MAX + 1);
    if (!name)
        return -1;

    while (s_next_line (text, len, &pos, &line)) {
        size_t indent = 0;
        while (indent < line.len && (line.text[indent] == ' ' || line.text[indent] == '\t'))
            indent++;
        s_trim (&line);
        /* A YAML block ends at "...", or (when a producer omits that) at
         * the first non-empty line indented less than its "---". */
        if (in_yaml && line.len > 0 && indent < yaml_indent)
            in_yaml = 0;
        if (in_yaml) {
            if (s_equals (&line, "..."))
                in_yaml = 0;
            continue;
        }
        if (s_equals (&line, "---")) {
            in_yaml = 1;
            yaml_indent = indent;
            continue;
        }

        dw_test_status_t status;
        if (s_starts_with (&line, "not ok")) {
            status = DW_TEST_FAILED;
            s_skip (&line, 6);
        }
        else if (s_starts_with (&line, "ok")) {
            status = DW_TEST_PASSED;
            s_skip (&line, 2);
        }
        else
            continue;
        if (line.len > 0 && line.text[0] != ' ')
            continue;

        /* "ok 12 - description # SKIP reason": number and dash are optional. */
        s_trim (&line);
        while (line.len > 0 && isdigit ((unsigned char) line.text[0]))
            s_skip (&line, 1);
        s_trim (&line);
        if (line.len > 0 && line.text[0] == '-')
            s_skip (&line, 1);
        s_trim (&line);

        size_t name_len = 0;
        size_t i = 0;
        for (; i < line.len; i++) {
            char c = line.text[i];
            if (c == '\\' && i + 1 < line.len && (line.text[i + 1] == '#' || line.text[i + 1] == '\\')) {
                c = line.text[++i];
            }
            else if (c == '#')
                break;
            if (name_len < DW_TESTLOG_NAME_MAX + 1)
                name[name_len++] = c;
        }
        if (i < line.len) {
            dw_line_t directive = { line.text + i + 1, line.len - i - 1 };
            s_trim (&directive);
            if (directive.len >= 4
                && (strncasecmp (directive.text, "SKIP", 4) == 0
                    || strncasecmp (directive.text, "TODO", 4) == 0))
                status = DW_TEST_SKIPPED;
        }
        while (name_len > 0 && isspace ((unsigned char) name[name_len - 1]))
            name_len--;
        if (dw_testlog_add (self, name, name_len, status) != 0) {
            free (name);
            return -1;
        }
    }
    free (name);
    return 0;
}

/* --- unittest ----------------------------------------------------------- */

/* Status for the text unittest prints after " ... ", or UNKNOWN. */
static dw_test_status_t
s_unittest_word (const dw_line_t *word)
{
    if (s_equals (word, "ok"))
        return DW_TEST_PASSED;
    if (s_equals (word, "FAIL"))
        return DW_TEST_FAILED;
    if (s_equals (word, "ERROR"))
        return DW_TEST_ERROR;
    if (s_equals (word, "expected failure"))
        return DW_TEST_PASSED;
    if (s_equals (word, "unexpected success"))
        return DW_TEST_FAILED;
    if (s_starts_with (word, "skipped"))
        return DW_TEST_SKIPPED;
    return DW_TEST_UNKNOWN;
}

/* Parse "test_x (module.Class.test_x)" or "test_x (module.Class)" at the
 * start of LINE into NAME ("module.Class.test_x"); returns the length of
 * the header matched, or 0. */
static size_t
s_unittest_header (const dw_line_t *line, char *name, size_t *name_len)
{
    size_t method_len = 0;
    while (method_len < line->len
           && (isalnum ((unsigned char) line->text[method_len]) || line->text[method_len] == '_'))
        method_len++;
    if (method_len == 0 || method_len + 2 >= line->len || line->text[method_len] != ' '
        || line->text[method_len + 1] != '(')
        return 0;

    const char *qual = line->text + method_len + 2;
    size_t qual_len = 0;
    size_t room = line->len - method_len - 2;
    while (qual_len < room
           && (isalnum ((unsigned char) qual[qual_len]) || qual[qual_len] == '_'
               || qual[qual_len] == '.'))
        qual_len++;
    if (qual_len == 0 || qual_len >= room || qual[qual_len] != ')')
        return 0;
    if (qual_len + method_len + 1 > DW_TESTLOG_NAME_MAX)
        return 0;

    memcpy (name, qual, qual_len);
    *name_len = qual_len;
    /* Python 3.10 and older print only the class; 3.11 adds the method. */
    int has_method = qual_len > method_len + 1 && qual[qual_len - method_len - 1] == '.'
                     && memcmp (qual + qual_len - method_len, line->text, method_len) == 0;
    if (!has_method) {
        name[(*name_len)++] = '.';
        memcpy (name + *name_len, line->text, method_len);
        *name_len += method_len;
    }
    return method_len + 2 + qual_len + 1;
}

/* Find the last " ... " in LINE and return what follows it, trimmed. */
static int
s_unittest_result (const dw_line_t *line, dw_line_t *word)
{
    for (size_t i = line->len; i >= 5; i--) {
        if (memcmp (line->text + i - 5, " ... ", 5) == 0) {
            word->text = line->text + i;
            word->len = line->len - i;
            s_trim (word);
            return 1;
        }
    }
    if (line->len >= 4 && memcmp (line->text + line->len - 4, " ...", 4) == 0) {
        word->text = line->text + line->len;
        word->len = 0;
        return 1;
    }
    return 0;
}

static int
s_parse_unittest (dw_testlog_t *self, const char *text, size_t len)
{
    size_t pos = 0;
    dw_line_t line;
    char *name = malloc (DW_TESTLOG_NAME_MAX + 1);
    char *pending = malloc (DW_TESTLOG_NAME_MAX + 1);
    size_t pending_len = 0;
    int rc = 0;
    if (!name || !pending) {
        rc = -1;
        goto done;
    }

    while (s_next_line (text, len, &pos, &line)) {
        size_t name_len = 0;

        /* Failure sections: "FAIL: test_x (module.Class.test_x)". */
        dw_test_status_t section = DW_TEST_UNKNOWN;
        dw_line_t rest = line;
        if (s_starts_with (&line, "FAIL: ")) {
            section = DW_TEST_FAILED;
            s_skip (&rest, 6);
        }
        else if (s_starts_with (&line, "ERROR: ")) {
            section = DW_TEST_ERROR;
            s_skip (&rest, 7);
        }
        if (section != DW_TEST_UNKNOWN) {
            if (s_unittest_header (&rest, name, &name_len)
                && dw_testlog_add (self, name, name_len, section) != 0)
                rc = -1;
            continue;
        }

        size_t header_len = s_unittest_header (&line, name, &name_len);
        dw_line_t word;
        if (header_len > 0) {
            memcpy (pending, name, name_len);
            pending_len = name_len;
            dw_line_t after = { line.text + header_len, line.len - header_len };
            if (!s_unittest_result (&after, &word))
                continue;
        }
        else if (pending_len == 0)
            continue;
        else if (!s_unittest_result (&line, &word)) {
            /* The result alone on a line, after output the test printed. */
            word = line;
            s_trim (&word);
        }

        dw_test_status_t status = s_unittest_word (&word);
        if (status == DW_TEST_UNKNOWN || pending_len == 0)
            continue;
        if (dw_testlog_add (self, pending, pending_len, status) != 0)
            rc = -1;
        pending_len = 0;
    }

done:
    free (name);
    free (pending);
    return rc;
}

/* --- pytest ------------------------------------------------------------- */

static dw_test_status_t
s_pytest_word (const char *text, size_t len)
{
    static const struct {
        const char *word;
        dw_test_status_t status;
    } words[] = {
        { "PASSED", DW_TEST_PASSED },   { "FAILED", DW_TEST_FAILED }, { "ERROR", DW_TEST_ERROR },
        { "SKIPPED", DW_TEST_SKIPPED }, { "XFAIL", DW_TEST_PASSED },  { "XPASS", DW_TEST_PASSED },
    };
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strlen (words[i].word) == len && memcmp (words[i].word, text, len) == 0)
            return words[i].status;
    return DW_TEST_UNKNOWN;
}

static int
s_parse_pytest (dw_testlog_t *self, const char *text, size_t len)
{
    size_t pos = 0;
    dw_line_t line;
    while (s_next_line (text, len, &pos, &line)) {
        s_trim (&line);

        /* pytest-xdist prefixes: "[gw0] [ 50%] PASSED path::test". */
        while (line.len > 0 && line.text[0] == '[') {
            const char *close = memchr (line.text, ']', line.len);
            if (!close)
                break;
            s_skip (&line, (size_t) (close - line.text) + 1);
            s_trim (&line);
        }

        size_t first_len = s_token_len (&line);
        dw_test_status_t status = s_pytest_word (line.text, first_len);
        if (status != DW_TEST_UNKNOWN) {
            /* Summary form: "FAILED path::test - message". */
            dw_line_t rest = { line.text + first_len, line.len - first_len };
            s_trim (&rest);
            size_t id_len = s_token_len (&rest);
            if (memmem (rest.text, id_len, "::", 2)
                && dw_testlog_add (self, rest.text, id_len, status) != 0)
                return -1;
            continue;
        }

        /* Verbose form: "path::test PASSED [ 50%]" or "path::test SKIPPED (reason)". */
        if (!memmem (line.text, first_len, "::", 2))
            continue;
        dw_line_t rest = { line.text + first_len, line.len - first_len };
        s_trim (&rest);
        size_t word_len = 0;
        while (word_len < rest.len && rest.text[word_len] != ' ')
            word_len++;
        status = s_pytest_word (rest.text, word_len);
        if (status != DW_TEST_UNKNOWN && dw_testlog_add (self, line.text, first_len, status) != 0)
            return -1;
    }
    return 0;
}

/* --- gotest ------------------------------------------------------------- */

static int
s_parse_gotest (dw_testlog_t *self, const char *text, size_t len)
{
    size_t pos = 0;
    dw_line_t line;
    while (s_next_line (text, len, &pos, &line)) {
        s_trim (&line);
        dw_test_status_t status;
        if (s_starts_with (&line, "--- PASS: "))
            status = DW_TEST_PASSED;
        else if (s_starts_with (&line, "--- FAIL: "))
            status = DW_TEST_FAILED;
        else if (s_starts_with (&line, "--- SKIP: "))
            status = DW_TEST_SKIPPED;
        else
            continue;
        s_skip (&line, 10);
        size_t name_len = 0;
        while (name_len < line.len && line.text[name_len] != ' ')
            name_len++;
        if (dw_testlog_add (self, line.text, name_len, status) != 0)
            return -1;
    }
    return 0;
}

/* --- json --------------------------------------------------------------- */

static dw_test_status_t
s_json_status (const char *text)
{
    if (strcasecmp (text, "PASSED") == 0 || strcasecmp (text, "PASS") == 0)
        return DW_TEST_PASSED;
    if (strcasecmp (text, "FAILED") == 0 || strcasecmp (text, "FAIL") == 0)
        return DW_TEST_FAILED;
    if (strcasecmp (text, "SKIPPED") == 0 || strcasecmp (text, "SKIP") == 0)
        return DW_TEST_SKIPPED;
    if (strcasecmp (text, "ERROR") == 0)
        return DW_TEST_ERROR;
    return DW_TEST_UNKNOWN;
}

static int
s_parse_json (dw_testlog_t *self, const char *text, size_t len, char *err, size_t err_size)
{
    json_error_t json_err;
    json_t *root = json_loadb (text, len, 0, &json_err);
    if (!root) {
        s_set_error (err, err_size, "invalid JSON test report at line %d: %s", json_err.line,
                     json_err.text);
        return -1;
    }
    json_t *tests = json_object_get (root, "tests");
    if (!json_is_array (tests)) {
        s_set_error (err, err_size, "JSON test report has no \"tests\" array");
        json_decref (root);
        return -1;
    }

    int rc = 0;
    size_t index;
    json_t *test;
    json_array_foreach (tests, index, test) {
        const char *name = json_string_value (json_object_get (test, "name"));
        const char *status_text = json_string_value (json_object_get (test, "status"));
        if (!name || !status_text)
            continue;
        dw_test_status_t status = s_json_status (status_text);
        if (status != DW_TEST_UNKNOWN && dw_testlog_add (self, name, strlen (name), status) != 0) {
            rc = -1;
            break;
        }
    }
    json_decref (root);
    return rc;
}

int
dw_testlog_format_known (const char *format)
{
    static const char *const formats[] = { "tap", "unittest", "pytest", "gotest", "json" };
    for (size_t i = 0; format && i < sizeof formats / sizeof formats[0]; i++)
        if (strcmp (format, formats[i]) == 0)
            return 1;
    return 0;
}

int
dw_testlog_parse (dw_testlog_t *self, const char *format, const char *text, size_t len,
                  char *err, size_t err_size)
{
    int rc;
    if (!format || !dw_testlog_format_known (format)) {
        s_set_error (err, err_size,
                     "unknown test_format '%s' (expected tap, unittest, pytest, gotest or json)",
                     format ? format : "");
        return -1;
    }
    if (strcmp (format, "json") == 0)
        return s_parse_json (self, text, len, err, err_size);

    if (strcmp (format, "tap") == 0)
        rc = s_parse_tap (self, text, len);
    else if (strcmp (format, "unittest") == 0)
        rc = s_parse_unittest (self, text, len);
    else if (strcmp (format, "pytest") == 0)
        rc = s_parse_pytest (self, text, len);
    else
        rc = s_parse_gotest (self, text, len);
    if (rc != 0)
        s_set_error (err, err_size, "out of memory while parsing the %s log", format);
    return rc;
}
