/* Run planning: see dw_plan.h. */
#include "dw_plan.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dw_util.h"

typedef struct {
    size_t index;
    char key[41];
} ranked_t;

static int compare_ranked (const void *a, const void *b)
{
    return strcmp (((const ranked_t *) a)->key, ((const ranked_t *) b)->key);
}

static int select_first_n (const dw_store_task_ref_t *tasks, size_t ntasks, size_t n,
                           const char *seed, size_t *out)
{
    ranked_t *ranked = calloc (ntasks ? ntasks : 1, sizeof *ranked);
    if (!ranked)
        return -1;
    for (size_t i = 0; i < ntasks; i++) {
        char *text = dw_strdup_printf ("%s|%s", seed, tasks[i].instance_id);
        ranked[i].index = i;
        dw_sha1_hex (text, strlen (text), ranked[i].key);
        free (text);
    }
    qsort (ranked, ntasks, sizeof *ranked, compare_ranked);
    for (size_t i = 0; i < n; i++)
        out[i] = ranked[i].index;
    free (ranked);
    return 0;
}

static int compare_size (const void *a, const void *b)
{
    size_t x = *(const size_t *) a, y = *(const size_t *) b;
    return x < y ? -1 : x > y;
}

static int select_from_file (const dw_store_task_ref_t *tasks, size_t ntasks, const char *path,
                             size_t *out, size_t *count, char *err, size_t errlen)
{
    char *text = dw_read_file (path, DW_PLAN_PANEL_FILE_MAX, NULL);
    if (!text) {
        snprintf (err, errlen, "cannot read panel file %s: %s", path, strerror (errno));
        return -1;
    }
    size_t used = 0, line_no = 0;
    char *save = NULL;
    for (char *line = strtok_r (text, "\n", &save); line; line = strtok_r (NULL, "\n", &save)) {
        line_no++;
        char *hash = strchr (line, '#');
        if (hash)
            *hash = '\0';
        while (*line && isspace ((unsigned char) *line))
            line++;
        size_t len = strlen (line);
        while (len > 0 && isspace ((unsigned char) line[len - 1]))
            line[--len] = '\0';
        if (len == 0)
            continue;

        size_t found = ntasks;
        for (size_t i = 0; i < ntasks; i++)
            if (strcmp (tasks[i].instance_id, line) == 0) {
                found = i;
                break;
            }
        if (found == ntasks) {
            /* The file may not be text at all: show only printable bytes. */
            for (char *c = line; *c; c++)
                if (!isprint ((unsigned char) *c))
                    *c = '?';
            if (len > 80)
                line[80] = '\0';
            snprintf (err, errlen,
                      "%s:%zu: instance id '%s' is not in the suite; remove it from the panel "
                      "file or import a suite that has it",
                      path, line_no, line);
            free (text);
            return -1;
        }
        int duplicate = 0;
        for (size_t i = 0; i < used; i++)
            duplicate |= out[i] == found;
        if (!duplicate)
            out[used++] = found;
    }
    free (text);
    if (used == 0) {
        snprintf (err, errlen, "panel file %s lists no instance ids", path);
        return -1;
    }
    qsort (out, used, sizeof *out, compare_size);
    *count = used;
    return 0;
}

int dw_plan_select_panel (const dw_store_task_ref_t *tasks, size_t ntasks, const char *panel,
                          const char *seed, size_t **selected, size_t *count, char *err,
                          size_t errlen)
{
    *selected = NULL;
    *count = 0;
    if (ntasks == 0) {
        snprintf (err, errlen, "the suite has no tasks");
        return -1;
    }
    size_t *out = calloc (ntasks, sizeof *out);
    if (!out) {
        snprintf (err, errlen, "out of memory");
        return -1;
    }

    char *end = NULL;
    long n = panel && *panel ? strtol (panel, &end, 10) : 0;
    int rc = 0;
    if (!panel || !*panel) {
        for (size_t i = 0; i < ntasks; i++)
            out[i] = i;
        *count = ntasks;
    }
    else if (end && *end == '\0') {
        if (n < 1 || (size_t) n > ntasks) {
            snprintf (err, errlen,
                      "invalid --panel %s: the suite has %zu tasks; use a number from 1 to %zu",
                      panel, ntasks, ntasks);
            rc = -1;
        }
        else {
            rc = select_first_n (tasks, ntasks, (size_t) n, seed, out);
            qsort (out, (size_t) n, sizeof *out, compare_size);
            *count = (size_t) n;
        }
    }
    else
        rc = select_from_file (tasks, ntasks, panel, out, count, err, errlen);

    if (rc != 0) {
        free (out);
        *count = 0;
        return -1;
    }
    *selected = out;
    return 0;
}

char *dw_plan_config_json (const dw_plan_config_t *config, const dw_store_task_ref_t *tasks,
                           const size_t *selected, size_t count, char hash[41])
{
    json_t *root = json_object ();
    json_object_set_new (root, "suite", json_pack ("{s:I, s:s}", "id", (json_int_t) config->suite_id,
                                                   "name", config->suite_name));
    json_object_set_new (root, "track", json_string (config->track));
    json_object_set_new (root, "repeats", json_integer (config->repeats));
    json_object_set_new (root, "panel_seed", json_string (config->panel_seed));
    json_object_set_new (root, "infra_policy", json_string (config->infra_policy));

    json_t *panel = json_array ();
    for (size_t i = 0; i < count; i++)
        json_array_append_new (panel, json_string (tasks[selected[i]].instance_id));
    json_object_set_new (root, "panel", panel);

    const Driftwatch__V1__AgentConfig *agent = config->agent;
    json_t *extra = json_array ();
    for (size_t i = 0; i < agent->n_extra_args; i++)
        json_array_append_new (extra, json_string (agent->extra_args[i]));
    json_object_set_new (root, "agent",
                         json_pack ("{s:s, s:s, s:s, s:s, s:i, s:f, s:o}", "kind", agent->kind,
                                    "command", agent->command, "model", agent->model,
                                    "cli_version", agent->cli_version, "max_turns",
                                    (int) agent->max_turns, "max_budget_usd",
                                    agent->max_budget_usd, "extra_args", extra));

    const Driftwatch__V1__Limits *limits = config->limits;
    json_object_set_new (root, "limits",
                         json_pack ("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "wall_seconds",
                                    (json_int_t) limits->wall_seconds, "grade_wall_seconds",
                                    (json_int_t) limits->grade_wall_seconds, "memory_bytes",
                                    (json_int_t) limits->memory_bytes, "max_processes",
                                    (json_int_t) limits->max_processes, "cpu_seconds",
                                    (json_int_t) limits->cpu_seconds, "workspace_bytes",
                                    (json_int_t) limits->workspace_bytes, "output_bytes",
                                    (json_int_t) limits->output_bytes));

    char *text = json_dumps (root, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref (root);
    if (text)
        dw_sha1_hex (text, strlen (text), hash);
    return text;
}
