/* Start-up checks of what each sandbox backend needs, with messages that
 * name what is missing and how to fix it ("bubblewrap not found: apt-get
 * install bubblewrap").
 *
 * The checks cover unprivileged user namespaces
 * (kernel.unprivileged_userns_clone, user.max_user_namespaces, the Ubuntu
 * AppArmor restriction) and bubblewrap running /bin/true in the full
 * sandbox. They also create a limited cgroup and report how each limit is
 * enforced, and check podman or docker, with a trivial container run when
 * an image is given.
 */
#ifndef DW_PREFLIGHT_H
#define DW_PREFLIGHT_H

#include "dw_cgroup.h"

/* Maximum number of messages in one report, and their maximum length. */
#define DW_PREFLIGHT_MESSAGES_MAX 16
#define DW_PREFLIGHT_MESSAGE_LEN 512

typedef struct {
    /* Bubblewrap binary (NULL = "bwrap" from PATH). */
    const char *bwrap_path;
    /* Unprivileged host user the bwrap sandbox will run as (0 = root). */
    uid_t host_uid;
    /* Container CLI (NULL = podman or docker from PATH); SKIP_CONTAINER
     * leaves the container checks out. */
    const char *container_cli;
    int skip_container;
    /* Local image for the trivial container run (NULL = only check that
     * the CLI responds). */
    const char *container_image;
    /* Directory for the scratch workspace of the trial runs (NULL = /tmp). */
    const char *scratch_dir;
} dw_preflight_options_t;

typedef struct {
    int userns_ok;
    int bwrap_ok;
    int cgroup_ok;
    int container_ok;
    /* OCI runtime that worked for the trial container run ("" = default). */
    char container_runtime[32];
    dw_limit_report_t limits;
    int message_count;
    /* Each message states what is missing and how to fix it. */
    char messages[DW_PREFLIGHT_MESSAGES_MAX][DW_PREFLIGHT_MESSAGE_LEN];
} dw_preflight_report_t;

/* Run every check and fill REPORT. Logs one line per problem found.
 * Returns 0 when the bubblewrap backend is usable, -1 otherwise. */
int dw_preflight_run (const dw_preflight_options_t *options, dw_preflight_report_t *report);

#endif
