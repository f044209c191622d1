/* Execution of one job on a worker: workspace, agent, grading.
 *
 * dw_jobrun_execute runs in its own thread and blocks until the attempt is
 * over. It never touches ZeroMQ: agent events go to a callback and the
 * result comes back as a packed Driftwatch__V1__JobResult, ready for the
 * spool and the wire.
 *
 * Steps: (1) workspace: clone the task's repository through a local mirror
 * cache (one mirror per repository, shared by concurrent jobs under a file
 * lock), check out base_commit, and remove every ref and object after it so
 * the fix cannot be looked up; (2) agent: run the configured agent command in
 * the workspace with a wall-clock limit, killing its whole process group;
 * (3) grading, in a fresh checkout: apply the agent's diff, restore the files
 * that test_patch touches, apply test_patch, run test_cmd, parse the
 * per-test statuses, and decide resolved only if every fail_to_pass and
 * pass_to_pass test passed.
 */
#ifndef DW_JOBRUN_H
#define DW_JOBRUN_H

#include <stddef.h>
#include <stdint.h>

#include "driftwatch.pb-c.h"

/* Bounds on what one attempt sends back. */
#define DW_JOBRUN_DIFF_MAX (1024 * 1024)
#define DW_JOBRUN_LOG_TAIL_MAX (16 * 1024)
#define DW_JOBRUN_DETAIL_MAX 1024

/* Called from the job's thread for each line the agent prints on stdout
 * (without the newline), truncated to DW_EVENT_PAYLOAD_MAX bytes. */
typedef void (dw_jobrun_event_fn) (void *arg, const char *line, size_t len, int truncated);

typedef struct {
    /* Directory for this attempt's workspaces; created and removed here. */
    const char *work_root;
    /* Directory of git mirrors shared by all jobs of this worker. */
    const char *cache_dir;
    /* Agent program for kind "stub" when the assignment names none. */
    const char *stub_agent;
    /* Set to nonzero from another thread to cancel; checked every 100 ms. */
    volatile int *cancel;
    /* Keep workspaces after the attempt (debugging). */
    int keep_workspace;
    dw_jobrun_event_fn *on_event;
    void *event_arg;
} dw_jobrun_options_t;

/* Run JOB and return its result, packed, in *PACKED (malloc'd, caller
 * frees) and *LEN. Every failure of the job itself becomes a result with an
 * outcome; -1 only for out-of-memory. */
int dw_jobrun_execute (const Driftwatch__V1__JobAssignment *job, const dw_jobrun_options_t *opts,
                       uint8_t **packed, size_t *len);

#endif
