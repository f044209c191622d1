/* Git for the worker: a cache of bare mirrors and clean checkouts made
 * from it.
 *
 * Each repository URL gets one mirror, CACHE_DIR/<sha1 of url>.git, made
 * once with "git clone --mirror" and refreshed with "git fetch" only when
 * a requested commit is missing. A lock file next to it (flock) keeps
 * concurrent jobs from corrupting it: exclusive while cloning or fetching,
 * shared while a checkout copies objects out of it.
 *
 * A checkout is a new repository ("git init") into which only the base
 * commit is fetched from the mirror. Its objects are copied, never shared
 * through alternates, and nothing after the base commit exists in it. It
 * has no remotes, no branches or tags, no FETCH_HEAD, an empty reflog, and
 * HEAD detached at the base commit. The agent therefore cannot
 * look up the fix in the history, and cannot reach the cache through the
 * checkout's configuration.
 *
 * Every git command runs through dw_proc with a timeout, an environment
 * built from scratch (GIT_TERMINAL_PROMPT=0, no system or global config)
 * and core.hooksPath=/dev/null.
 */
#ifndef DW_GITCACHE_H
#define DW_GITCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "dw_proc.h"

/* Limit for commands that talk to a remote (clone, fetch). */
#define DW_GIT_REMOTE_TIMEOUT_MS (30 * 60 * 1000)
/* Limit for local commands (init, local fetch, checkout, diff). */
#define DW_GIT_LOCAL_TIMEOUT_MS (10 * 60 * 1000)
/* Identity set in every checkout, so agents and grading can commit. */
#define DW_GIT_USER_NAME "driftwatch"
#define DW_GIT_USER_EMAIL "driftwatch@localhost"

typedef struct {
    /* Working directory; NULL keeps the caller's. */
    const char *cwd;
    /* 0 means DW_GIT_LOCAL_TIMEOUT_MS. */
    uint64_t timeout_ms;
    volatile int *cancel;
    /* Optional stdout consumer, as in dw_proc_spec_t. */
    dw_proc_line_fn *on_line;
    void *line_arg;
    size_t line_max;
    uint64_t stdout_max;
} dw_git_options_t;

/* Run "git ARGS..." (ARGS NULL-terminated, without "git"). Returns 0 when
 * git exited with 0. Otherwise returns -1 with ERR set to the command, its
 * status and the end of its stderr. RESULT may be NULL. */
int dw_git_run (const dw_git_options_t *options, const char *const *args,
                dw_proc_result_t *result, char *err, size_t err_size);

/* Like dw_git_run, and copy the first line of stdout into OUT. */
int dw_git_output (const dw_git_options_t *options, const char *const *args, char *out,
                   size_t out_size, char *err, size_t err_size);

/* Clone URL for a task: REPO_URL when set, else https://github.com/REPO.git.
 * Returns a heap string, or NULL when both are empty. */
char *dw_gitcache_url (const char *repo_url, const char *repo);

/* Make sure the mirror of URL in CACHE_DIR contains COMMIT, cloning or
 * fetching as needed. On success stores the mirror path (heap, caller
 * frees) in *MIRROR_PATH and the full commit id in SHA. Returns 0 or -1
 * with ERR set. */
int dw_gitcache_mirror (const char *cache_dir, const char *url, const char *commit,
                        volatile int *cancel, char **mirror_path, char sha[41], char *err,
                        size_t err_size);

/* Create DEST (which must not exist or be empty) as a clean checkout of
 * COMMIT from URL, through the mirror cache. DEPTH 0 copies the full
 * history up to COMMIT; DEPTH 1 copies COMMIT alone. SHA receives the full
 * commit id. Returns 0 or -1 with ERR set. */
int dw_gitcache_checkout (const char *cache_dir, const char *url, const char *commit,
                          const char *dest, unsigned depth, volatile int *cancel, char sha[41],
                          char *err, size_t err_size);

/* Create GIT_DIR as a bare repository holding only COMMIT (depth 1), for
 * use with --git-dir and --work-tree on a tree that must not be trusted
 * (the agent's workspace, whose own .git the agent controls). Returns 0
 * or -1 with ERR set. */
int dw_gitcache_snapshot (const char *cache_dir, const char *url, const char *commit,
                          const char *git_dir, volatile int *cancel, char *err, size_t err_size);

#endif
