/* Task suite loader: see dw_suite.h. */
#include "dw_suite.h"
#include "dw_util.h"

#include <assert.h>
#include <czmq.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The fix that every test-list error suggests. */
#define LIST_FIX "write it as [\"test_a\", ...]"

/* Fields that dw_task_t holds. Every other field is extra and travels to
 * workers untouched. */
static const char *const KNOWN_FIELDS[] = {
    "instance_id", "repo", "repo_url", "base_commit", "problem_statement", "requirements",
    "interface", "patch", "test_patch", "repo_language", "test_cmd", "test_format", "image",
    "fail_to_pass", "pass_to_pass", "selected_test_files_to_run", "FAIL_TO_PASS",
    "PASS_TO_PASS", NULL
};

struct dw_suite_t {
    dw_task_t **tasks;
    size_t count;
    size_t capacity;
    zhashx_t *by_id;            /* instance_id -> dw_task_t*, not owned */
    char hash[41];
};

/* ---- string lists --------------------------------------------------------- */

void dw_strlist_clear (dw_strlist_t *list)
{
    if (!list)
        return;
    for (size_t i = 0; i < list->count; i++)
        free (list->items[i]);
    free (list->items);
    list->items = NULL;
    list->count = 0;
}

/* Append a copy of the LEN bytes at TEXT. CAPACITY tracks the items array. */
static int strlist_push (dw_strlist_t *list, size_t *capacity, const char *text, size_t len)
{
    if (list->count == *capacity) {
        size_t bigger = *capacity ? *capacity * 2 : 8;
        char **items = realloc (list->items, bigger * sizeof *items);
        if (!items)
            return -1;
        list->items = items;
        *capacity = bigger;
    }

    char *copy = malloc (len + 1);
    if (!copy)
        return -1;
    memcpy (copy, text, len);
    copy[len] = '\0';
    list->items[list->count++] = copy;
    return 0;
}

static int strlist_equal (const dw_strlist_t *a, const dw_strlist_t *b)
{
    if (a->count != b->count)
        return 0;
    for (size_t i = 0; i < a->count; i++)
        if (strcmp (a->items[i], b->items[i]) != 0)
            return 0;
    return 1;
}

/* ---- Python list literal parser ------------------------------------------- */

static int is_py_space (char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static int hex_value (char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Describe the character at P for an error message. */
static void describe_char (const char *p, char *out, size_t outlen)
{
    unsigned char c = (unsigned char) *p;
    if (c == '\0')
        snprintf (out, outlen, "the end of the text");
    else if ((c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.')
        snprintf (out, outlen, "a number");
    else if (c == '[')
        snprintf (out, outlen, "a nested list");
    else if (c >= 0x21 && c < 0x7f)
        snprintf (out, outlen, "'%c'", c);
    else
        snprintf (out, outlen, "byte 0x%02x", c);
}

/* Encode code point CP as UTF-8 into OUT and return the byte count. */
static size_t utf8_encode (uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char) cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char) (0xc0 | (cp >> 6));
        out[1] = (char) (0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char) (0xe0 | (cp >> 12));
        out[1] = (char) (0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char) (0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char) (0xf0 | (cp >> 18));
    out[1] = (char) (0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char) (0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char) (0x80 | (cp & 0x3f));
    return 4;
}

/* Decode the escape sequence whose backslash is at *P into OUT + *USED and
 * advance *P past it. Returns 0, or -1 with the reason in ERR. No escape
 * produces more bytes than it consumes, so OUT never needs more room than
 * the input text. */
static int pylist_escape (const char **p, const char *text, char *out, size_t *used,
                          char *err, size_t errlen)
{
    const char *s = *p;
    size_t offset = (size_t) (s - text);
    char e = s[1];
    uint32_t cp;
    size_t digits = 0;

    switch (e) {
    case '\0':
        snprintf (err, errlen, "backslash at offset %zu ends the text; close the string", offset);
        return -1;
    case '\n':                  /* a backslash before a newline joins the lines */
        *p = s + 2;
        return 0;
    case '\r':
        *p = s[2] == '\n' ? s + 3 : s + 2;
        return 0;
    case '\\': case '\'': case '"':
        out[(*used)++] = e;
        *p = s + 2;
        return 0;
    case 'n': out[(*used)++] = '\n'; *p = s + 2; return 0;
    case 't': out[(*used)++] = '\t'; *p = s + 2; return 0;
    case 'r': out[(*used)++] = '\r'; *p = s + 2; return 0;
    case 'a': out[(*used)++] = '\a'; *p = s + 2; return 0;
    case 'b': out[(*used)++] = '\b'; *p = s + 2; return 0;
    case 'f': out[(*used)++] = '\f'; *p = s + 2; return 0;
    case 'v': out[(*used)++] = '\v'; *p = s + 2; return 0;
    case 'x': digits = 2; break;
    case 'u': digits = 4; break;
    case 'U': digits = 8; break;
    case 'N':
        snprintf (err, errlen, "named escape \\N{...} at offset %zu is not supported; "
                  "write the character itself or use \\uNNNN", offset);
        return -1;
    default:
        break;
    }

    if (e >= '0' && e <= '7') {
        /* Octal: one to three digits, as in Python. */
        const char *q = s + 1;
        cp = 0;
        for (int i = 0; i < 3 && *q >= '0' && *q <= '7'; i++, q++)
            cp = cp * 8 + (uint32_t) (*q - '0');
        *p = q;
    }
    else if (digits > 0) {
        cp = 0;
        for (size_t i = 0; i < digits; i++) {
            int v = hex_value (s[2 + i]);
            if (v < 0) {
                snprintf (err, errlen, "escape \\%c at offset %zu needs %zu hex digits; "
                          "write it as \\%c followed by %zu digits 0-9a-f",
                          e, offset, digits, e, digits);
                return -1;
            }
            cp = cp * 16 + (uint32_t) v;
        }
        *p = s + 2 + digits;
    }
    else {
        /* Python keeps an unknown escape as the backslash and the character. */
        out[(*used)++] = '\\';
        *p = s + 1;
        return 0;
    }

    if (cp == 0) {
        snprintf (err, errlen, "escape at offset %zu is a NUL character, which a test name "
                  "cannot contain; remove it", offset);
        return -1;
    }
    if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        snprintf (err, errlen, "escape at offset %zu is U+%X, which is not a Unicode scalar "
                  "value; use a code point up to U+10FFFF outside U+D800-U+DFFF",
                  offset, (unsigned) cp);
        return -1;
    }
    *used += utf8_encode (cp, out + *used);
    return 0;
}

/* Parse the quoted string at *P into SCRATCH and append it to OUT. */
static int pylist_string (const char **p, const char *text, char *scratch,
                          dw_strlist_t *out, size_t *capacity, char *err, size_t errlen)
{
    const char *s = *p;
    char quote = *s;
    size_t start = (size_t) (s - text);

    if (s[1] == quote && s[2] == quote) {
        snprintf (err, errlen, "triple-quoted string at offset %zu is not supported; "
                  "use a single-quoted string", start);
        return -1;
    }

    size_t used = 0;
    s++;
    for (;;) {
        char c = *s;
        if (c == '\0' || c == '\n' || c == '\r') {
            snprintf (err, errlen, "unterminated string starting at offset %zu; "
                      "close it with %c on the same line", start, quote);
            return -1;
        }
        if (c == quote)
            break;
        if (c == '\\') {
            if (pylist_escape (&s, text, scratch, &used, err, errlen) != 0)
                return -1;
            continue;
        }
        scratch[used++] = c;
        s++;
    }
    *p = s + 1;

    if (out->count >= DW_SUITE_MAX_TESTS_PER_LIST) {
        snprintf (err, errlen, "more than %d items; split the task", DW_SUITE_MAX_TESTS_PER_LIST);
        return -1;
    }
    if (strlist_push (out, capacity, scratch, used) != 0) {
        snprintf (err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static void skip_py_space (const char **p)
{
    while (is_py_space (**p))
        (*p)++;
}

int dw_suite_parse_pylist (const char *text, dw_strlist_t *out, char *err, size_t errlen)
{
    assert (text);
    assert (out);
    out->items = NULL;
    out->count = 0;

    /* Every decoded string fits in the input's length, see pylist_escape. */
    char *scratch = malloc (strlen (text) + 1);
    if (!scratch) {
        snprintf (err, errlen, "out of memory");
        return -1;
    }

    size_t capacity = 0;
    char found[32];
    const char *p = text;
    skip_py_space (&p);
    if (*p != '[') {
        describe_char (p, found, sizeof found);
        snprintf (err, errlen, "expected '[' at offset %zu, found %s",
                  (size_t) (p - text), found);
        goto fail;
    }
    p++;

    for (;;) {
        skip_py_space (&p);
        if (*p == ']')
            break;
        if (*p != '\'' && *p != '"') {
            describe_char (p, found, sizeof found);
            snprintf (err, errlen, "expected a quoted string or ']' at offset %zu, found %s",
                      (size_t) (p - text), found);
            goto fail;
        }
        if (pylist_string (&p, text, scratch, out, &capacity, err, errlen) != 0)
            goto fail;

        skip_py_space (&p);
        if (*p == ',') {
            p++;
            continue;           /* a ']' may follow: Python allows a trailing comma */
        }
        if (*p == ']')
            break;
        describe_char (p, found, sizeof found);
        snprintf (err, errlen, "expected ',' or ']' at offset %zu, found %s",
                  (size_t) (p - text), found);
        goto fail;
    }
    p++;

    skip_py_space (&p);
    if (*p != '\0') {
        snprintf (err, errlen, "unexpected text at offset %zu after the closing ']'",
                  (size_t) (p - text));
        goto fail;
    }
    free (scratch);
    return 0;

fail:
    free (scratch);
    dw_strlist_clear (out);
    return -1;
}

/* ---- row parsing ---------------------------------------------------------- */

/* Where the row being parsed sits, for error messages. */
typedef struct {
    const char *path;
    size_t line;
    char *err;
    size_t errlen;
} row_ctx_t;

static void field_error (row_ctx_t *ctx, const char *field, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

static void field_error (row_ctx_t *ctx, const char *field, const char *fmt, ...)
{
    char what[1024];
    va_list args;
    va_start (args, fmt);
    vsnprintf (what, sizeof what, fmt, args);
    va_end (args);
    snprintf (ctx->err, ctx->errlen, "%s:%zu: field %s: %s", ctx->path, ctx->line, field, what);
}

static const char *json_type_name (const json_t *value)
{
    switch (json_typeof (value)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "an unknown JSON type";
}

static int has_control_char (const char *s)
{
    for (; *s; s++)
        if ((unsigned char) *s < 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

static int required_string (row_ctx_t *ctx, json_t *row, const char *field, char **out)
{
    json_t *value = json_object_get (row, field);
    if (!value || json_is_null (value)) {
        field_error (ctx, field, "missing; every row needs instance_id, repo and base_commit");
        return -1;
    }
    if (!json_is_string (value)) {
        field_error (ctx, field, "expected a string, got %s; write it as a JSON string",
                     json_type_name (value));
        return -1;
    }
    const char *text = json_string_value (value);
    if (text[0] == '\0') {
        field_error (ctx, field, "is empty; give it a value");
        return -1;
    }
    if (has_control_char (text)) {
        field_error (ctx, field, "contains a control character; remove it");
        return -1;
    }
    *out = strdup (text);
    if (!*out) {
        field_error (ctx, field, "out of memory");
        return -1;
    }
    return 0;
}

/* An absent or null optional field becomes "". */
static int optional_string (row_ctx_t *ctx, json_t *row, const char *field, char **out)
{
    json_t *value = json_object_get (row, field);
    const char *text = "";
    if (value && !json_is_null (value)) {
        if (!json_is_string (value)) {
            field_error (ctx, field, "expected a string, got %s; write it as a JSON string",
                         json_type_name (value));
            return -1;
        }
        text = json_string_value (value);
    }
    *out = strdup (text);
    if (!*out) {
        field_error (ctx, field, "out of memory");
        return -1;
    }
    return 0;
}

static int list_from_array (row_ctx_t *ctx, const char *field, json_t *array, dw_strlist_t *out)
{
    size_t count = json_array_size (array);
    if (count > DW_SUITE_MAX_TESTS_PER_LIST) {
        field_error (ctx, field, "has %zu items, more than the limit of %d; split the task",
                     count, DW_SUITE_MAX_TESTS_PER_LIST);
        return -1;
    }

    size_t capacity = 0;
    for (size_t i = 0; i < count; i++) {
        json_t *item = json_array_get (array, i);
        if (!json_is_string (item)) {
            field_error (ctx, field, "expected a list of strings, item %zu is %s; " LIST_FIX,
                         i, json_type_name (item));
            dw_strlist_clear (out);
            return -1;
        }
        if (strlist_push (out, &capacity, json_string_value (item),
                          json_string_length (item)) != 0) {
            field_error (ctx, field, "out of memory");
            dw_strlist_clear (out);
            return -1;
        }
    }
    return 0;
}

/* Parse a test list stored as a JSON array, a JSON array inside a string or a
 * Python list literal inside a string. Absent or null gives an empty list. */
static int test_list (row_ctx_t *ctx, const char *field, json_t *value, dw_strlist_t *out)
{
    if (!value || json_is_null (value))
        return 0;
    if (json_is_array (value))
        return list_from_array (ctx, field, value, out);
    if (!json_is_string (value)) {
        field_error (ctx, field, "expected a list of strings, got %s; " LIST_FIX,
                     json_type_name (value));
        return -1;
    }

    /* Try JSON first because original SWE-bench stores JSON arrays in
     * strings. Any repr() output that also parses as JSON means the same in
     * both notations, since repr() never writes the escapes \/ \b \f. */
    const char *text = json_string_value (value);
    json_t *inner = json_loadb (text, json_string_length (value), 0, NULL);
    if (inner) {
        int rc = -1;
        if (json_is_array (inner))
            rc = list_from_array (ctx, field, inner, out);
        else
            field_error (ctx, field, "expected a list of strings, got a string holding %s; "
                         LIST_FIX, json_type_name (inner));
        json_decref (inner);
        return rc;
    }

    char why[512];
    if (dw_suite_parse_pylist (text, out, why, sizeof why) != 0) {
        field_error (ctx, field, "invalid list literal: %s; " LIST_FIX, why);
        return -1;
    }
    return 0;
}

/* Parse the lower-case list FIELD and its upper-case SWE-bench alias ALIAS
 * (NULL if none), and store the result as a JSON array under FIELD in ROW so
 * that raw_json carries the normalised form. */
static int normalised_list (row_ctx_t *ctx, json_t *row, const char *field, const char *alias,
                            dw_strlist_t *out)
{
    json_t *lower = json_object_get (row, field);
    json_t *upper = alias ? json_object_get (row, alias) : NULL;
    if (lower && json_is_null (lower))
        lower = NULL;
    if (upper && json_is_null (upper))
        upper = NULL;

    if (test_list (ctx, field, lower, out) != 0)
        return -1;
    if (upper) {
        dw_strlist_t other = { NULL, 0 };
        if (test_list (ctx, alias, upper, &other) != 0) {
            dw_strlist_clear (out);
            return -1;
        }
        if (lower && !strlist_equal (out, &other)) {
            field_error (ctx, alias, "differs from %s in the same row; keep only one of the "
                         "two spellings", field);
            dw_strlist_clear (&other);
            dw_strlist_clear (out);
            return -1;
        }
        if (!lower) {
            *out = other;
            other.items = NULL;
            other.count = 0;
        }
        dw_strlist_clear (&other);
        json_object_del (row, alias);
    }
    if (!lower && !upper)
        return 0;

    json_t *array = json_array ();
    for (size_t i = 0; array && i < out->count; i++)
        if (json_array_append_new (array, json_string (out->items[i])) != 0) {
            json_decref (array);
            array = NULL;
        }
    if (!array || json_object_set_new (row, field, array) != 0) {
        field_error (ctx, field, "out of memory");
        dw_strlist_clear (out);
        return -1;
    }
    return 0;
}

/* Resolve a repo_url relative to the suite's directory SUITE_DIR. URLs and
 * absolute paths stay as written. */
static int resolve_repo_url (row_ctx_t *ctx, const char *suite_dir, char **url)
{
    const char *text = *url;
    if (text[0] == '\0' || text[0] == '/' || strstr (text, "://") || strstr (text, "git@"))
        return 0;

    char joined[PATH_MAX];
    if (snprintf (joined, sizeof joined, "%s/%s", suite_dir, text) >= (int) sizeof joined) {
        field_error (ctx, "repo_url", "resolved path is longer than %d bytes; move the "
                     "repository closer to the suite file", PATH_MAX - 1);
        return -1;
    }

    /* realpath removes "." and ".." when the repository exists; a missing
     * one is kept as joined so the worker reports it by name. */
    char canonical[PATH_MAX];
    const char *resolved = realpath (joined, canonical) ? canonical : joined;
    char *copy = strdup (resolved);
    if (!copy) {
        field_error (ctx, "repo_url", "out of memory");
        return -1;
    }
    free (*url);
    *url = copy;
    return 0;
}

static void task_destroy (dw_task_t **task_p)
{
    if (!task_p || !*task_p)
        return;
    dw_task_t *task = *task_p;
    free (task->instance_id);
    free (task->repo);
    free (task->repo_url);
    free (task->base_commit);
    free (task->problem_statement);
    free (task->requirements);
    free (task->interface);
    free (task->patch);
    free (task->test_patch);
    free (task->repo_language);
    free (task->test_cmd);
    free (task->test_format);
    free (task->image);
    dw_strlist_clear (&task->fail_to_pass);
    dw_strlist_clear (&task->pass_to_pass);
    dw_strlist_clear (&task->selected_test_files);
    free (task->raw_json);
    free (task);
    *task_p = NULL;
}

/* Build a task from ROW, which this function modifies (normalised lists). */
static dw_task_t *task_from_row (row_ctx_t *ctx, json_t *row, const char *suite_dir)
{
    dw_task_t *task = calloc (1, sizeof *task);
    if (!task) {
        snprintf (ctx->err, ctx->errlen, "%s:%zu: out of memory", ctx->path, ctx->line);
        return NULL;
    }
    task->line = ctx->line;

    if (required_string (ctx, row, "instance_id", &task->instance_id) != 0
        || required_string (ctx, row, "repo", &task->repo) != 0
        || required_string (ctx, row, "base_commit", &task->base_commit) != 0)
        goto fail;

    struct {
        const char *name;
        char **slot;
    } optional[] = {
        { "problem_statement", &task->problem_statement },
        { "requirements", &task->requirements },
        { "interface", &task->interface },
        { "patch", &task->patch },
        { "test_patch", &task->test_patch },
        { "repo_language", &task->repo_language },
        { "repo_url", &task->repo_url },
        { "test_cmd", &task->test_cmd },
        { "test_format", &task->test_format },
        { "image", &task->image },
    };
    for (size_t i = 0; i < sizeof optional / sizeof optional[0]; i++)
        if (optional_string (ctx, row, optional[i].name, optional[i].slot) != 0)
            goto fail;
    if (resolve_repo_url (ctx, suite_dir, &task->repo_url) != 0)
        goto fail;

    if (normalised_list (ctx, row, "fail_to_pass", "FAIL_TO_PASS", &task->fail_to_pass) != 0
        || normalised_list (ctx, row, "pass_to_pass", "PASS_TO_PASS", &task->pass_to_pass) != 0
        || normalised_list (ctx, row, "selected_test_files_to_run", NULL,
                            &task->selected_test_files) != 0)
        goto fail;

    task->raw_json = json_dumps (row, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!task->raw_json) {
        snprintf (ctx->err, ctx->errlen, "%s:%zu: out of memory", ctx->path, ctx->line);
        goto fail;
    }
    return task;

fail:
    task_destroy (&task);
    return NULL;
}

char *dw_task_extra_json (const dw_task_t *task)
{
    assert (task);
    json_t *row = json_loads (task->raw_json, 0, NULL);
    if (!row)
        return NULL;
    for (size_t i = 0; KNOWN_FIELDS[i]; i++)
        json_object_del (row, KNOWN_FIELDS[i]);
    char *text = json_dumps (row, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref (row);
    return text;
}

/* ---- suite ------------------------------------------------------------------ */

void dw_suite_destroy (dw_suite_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dw_suite_t *self = *self_p;
    for (size_t i = 0; i < self->count; i++)
        task_destroy (&self->tasks[i]);
    free (self->tasks);
    zhashx_destroy (&self->by_id);
    free (self);
    *self_p = NULL;
}

static int is_blank (const char *line, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!is_py_space (line[i]))
            return 0;
    return 1;
}

/* Parse one non-blank line and append its task. */
static int suite_add_line (dw_suite_t *self, row_ctx_t *ctx, const char *line, size_t len,
                           const char *suite_dir)
{
    json_error_t jerr;
    json_t *row = json_loadb (line, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!row) {
        if (json_error_code (&jerr) == json_error_invalid_utf8)
            snprintf (ctx->err, ctx->errlen, "%s:%zu: invalid UTF-8 near column %d: %s; "
                      "save the file as UTF-8", ctx->path, ctx->line, jerr.column, jerr.text);
        else
            snprintf (ctx->err, ctx->errlen, "%s:%zu: invalid JSON at column %d: %s; "
                      "write one JSON object per line", ctx->path, ctx->line, jerr.column,
                      jerr.text);
        return -1;
    }
    if (!json_is_object (row)) {
        snprintf (ctx->err, ctx->errlen, "%s:%zu: row is %s, expected a JSON object; "
                  "write one {...} object per line", ctx->path, ctx->line, json_type_name (row));
        json_decref (row);
        return -1;
    }

    dw_task_t *task = task_from_row (ctx, row, suite_dir);
    json_decref (row);
    if (!task)
        return -1;

    dw_task_t *first = zhashx_lookup (self->by_id, task->instance_id);
    if (first) {
        field_error (ctx, "instance_id", "duplicate id \"%s\", first used on line %zu; give "
                     "each task a unique instance_id", task->instance_id, first->line);
        task_destroy (&task);
        return -1;
    }
    if (self->count == DW_SUITE_MAX_TASKS) {
        snprintf (ctx->err, ctx->errlen, "%s:%zu: more than %d tasks; split the suite",
                  ctx->path, ctx->line, DW_SUITE_MAX_TASKS);
        task_destroy (&task);
        return -1;
    }
    if (self->count == self->capacity) {
        size_t bigger = self->capacity ? self->capacity * 2 : 64;
        dw_task_t **tasks = realloc (self->tasks, bigger * sizeof *tasks);
        if (!tasks) {
            snprintf (ctx->err, ctx->errlen, "%s:%zu: out of memory", ctx->path, ctx->line);
            task_destroy (&task);
            return -1;
        }
        self->tasks = tasks;
        self->capacity = bigger;
    }
    self->tasks[self->count++] = task;
    zhashx_insert (self->by_id, task->instance_id, task);
    return 0;
}

/* Absolute directory of PATH into OUT, for resolving relative repo_url. The
 * file name is dropped before realpath so a symlinked suite file resolves
 * against the directory it is linked from. */
static int suite_directory (const char *path, char out[PATH_MAX])
{
    char dir[PATH_MAX];
    if (snprintf (dir, sizeof dir, "%s", path) >= (int) sizeof dir) {
        errno = ENAMETOOLONG;
        return -1;
    }
    char *slash = strrchr (dir, '/');
    if (!slash)
        snprintf (dir, sizeof dir, ".");
    else if (slash == dir)
        slash[1] = '\0';
    else
        *slash = '\0';
    return realpath (dir, out) ? 0 : -1;
}

dw_suite_t *dw_suite_load (const char *path, char *err, size_t errlen)
{
    assert (path);
    assert (err);

    /* One read, so the hash covers exactly the bytes that are parsed. */
    size_t size = 0;
    char *data = dw_read_file (path, DW_SUITE_MAX_FILE, &size);
    if (!data) {
        if (errno == EFBIG)
            snprintf (err, errlen, "%s: file is larger than %d bytes; split the suite",
                      path, DW_SUITE_MAX_FILE);
        else
            snprintf (err, errlen, "%s: cannot read: %s", path, strerror (errno));
        return NULL;
    }

    char suite_dir[PATH_MAX];
    if (suite_directory (path, suite_dir) != 0) {
        snprintf (err, errlen, "%s: cannot resolve the directory: %s", path, strerror (errno));
        free (data);
        return NULL;
    }

    dw_suite_t *self = calloc (1, sizeof *self);
    if (self)
        self->by_id = zhashx_new ();
    if (!self || !self->by_id) {
        snprintf (err, errlen, "%s: out of memory", path);
        free (self);
        free (data);
        return NULL;
    }
    dw_sha1_hex (data, size, self->hash);

    row_ctx_t ctx = { path, 0, err, errlen };
    const char *cursor = data;
    if (size >= 3 && memcmp (data, "\xef\xbb\xbf", 3) == 0)
        cursor += 3;            /* some editors start UTF-8 files with a byte order mark */
    const char *end = data + size;
    while (cursor < end) {
        ctx.line++;
        const char *newline = memchr (cursor, '\n', (size_t) (end - cursor));
        size_t len = newline ? (size_t) (newline - cursor) : (size_t) (end - cursor);
        const char *line = cursor;
        cursor = newline ? newline + 1 : end;

        if (len > DW_SUITE_MAX_LINE) {
            snprintf (err, errlen, "%s:%zu: line is %zu bytes, longer than the limit of %d "
                      "bytes; shorten the row's fields", path, ctx.line, len, DW_SUITE_MAX_LINE);
            goto fail;
        }
        if (is_blank (line, len))
            continue;
        if (suite_add_line (self, &ctx, line, len, suite_dir) != 0)
            goto fail;
    }

    if (self->count == 0) {
        snprintf (err, errlen, "%s: contains no tasks; add one JSON object per line", path);
        goto fail;
    }
    free (data);
    return self;

fail:
    free (data);
    dw_suite_destroy (&self);
    return NULL;
}

size_t dw_suite_size (const dw_suite_t *self)
{
    assert (self);
    return self->count;
}

const dw_task_t *dw_suite_task (const dw_suite_t *self, size_t index)
{
    assert (self);
    return index < self->count ? self->tasks[index] : NULL;
}

const dw_task_t *dw_suite_find (const dw_suite_t *self, const char *instance_id)
{
    assert (self);
    if (!instance_id)
        return NULL;
    return zhashx_lookup (self->by_id, instance_id);
}

const char *dw_suite_content_hash (const dw_suite_t *self)
{
    assert (self);
    return self->hash;
}
