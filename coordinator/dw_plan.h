/* Planning a day's run: which tasks form the panel and what identifies the
 * run's configuration.
 *
 * The panel is a fixed, deterministic subset of the suite: tasks are ordered
 * by SHA-1 of (panel seed, instance id) and the first N are taken, so the
 * same suite and N give the same tasks every day, and adding a task to the
 * suite changes the panel by at most that task. The configuration hash
 * covers everything that changes what is measured (suite, panel, repeats,
 * agent, limits, track); the same day and hash resume the same run.
 */
#ifndef DW_PLAN_H
#define DW_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "driftwatch.pb-c.h"
#include "dw_store.h"

/* Largest panel file accepted. */
#define DW_PLAN_PANEL_FILE_MAX (4 * 1024 * 1024)

/* Select the panel from TASKS (a suite's tasks). PANEL is NULL or "" (all
 * tasks), a positive number N, or the path of a file with one instance id
 * per line ('#' starts a comment). SEED names the panel ordering. On
 * success *SELECTED holds indexes into TASKS (caller frees). */
int dw_plan_select_panel (const dw_store_task_ref_t *tasks, size_t ntasks, const char *panel,
                          const char *seed, size_t **selected, size_t *count, char *err,
                          size_t errlen);

typedef struct {
    int64_t suite_id;
    const char *suite_name;
    const char *track;
    const char *panel_seed;
    int repeats;
    const Driftwatch__V1__AgentConfig *agent;
    const Driftwatch__V1__Limits *limits;
    const char *infra_policy;
} dw_plan_config_t;

/* Canonical JSON of the configuration with the panel's instance ids (caller
 * frees), and its SHA-1 hex in HASH. */
char *dw_plan_config_json (const dw_plan_config_t *config, const dw_store_task_ref_t *tasks,
                           const size_t *selected, size_t count, char hash[41]);

#endif
