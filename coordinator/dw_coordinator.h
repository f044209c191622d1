/* The coordinator's commands (run, import, migrate, detect), shared by the
 * command line in main.c and the tests. Each returns a process exit status. */
#ifndef DW_COORDINATOR_H
#define DW_COORDINATOR_H

/* Exit statuses of the coordinator. */
#define DW_EXIT_OK 0
#define DW_EXIT_ERROR 1
#define DW_EXIT_USAGE 2
#define DW_EXIT_HARNESS_FAILURE 3
#define DW_EXIT_INTERRUPTED 4

typedef struct {
    const char *date;
    const char *suite;
    const char *suite_name;
    const char *panel;
    int repeats;
    const char *track;
    int local_workers;
    const char *bind;
    const char *agent_kind;
    const char *agent_command;
    const char *model;
    int max_turns;
    int wall_seconds;
    int grade_seconds;
    int max_attempts;
    const char *infra_policy;
    int heartbeat_ms;
    const char *db;
    const char *data_dir;
    /* Plain TCP without CURVE (loopback endpoints only). */
    int insecure;
    /* Detector settings passed to the daily detection ("" = its defaults). */
    const char *baseline_days;
    const char *baseline_min_runs;
    int force;
    /* Model API base URL given to local workers ("" = the public API, or the
     * scripted model server when no API key is set). */
    const char *upstream;
    /* Claude Code version every worker must run (agent claude-code). */
    const char *cli_version;
} dw_options_t;

int dw_coordinator_run (const dw_options_t *opts);
int dw_coordinator_import (const dw_options_t *opts, const char *path);
int dw_coordinator_migrate (const dw_options_t *opts);
int dw_coordinator_detect (const dw_options_t *opts, int argc, char **argv);

/* Create the coordinator's CURVE key pair in DATA_DIR/keys and the worker
 * allow-list directory, and print what workers need. */
int dw_coordinator_keygen (const dw_options_t *opts);

#endif
