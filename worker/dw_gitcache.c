/* Git mirror cache and clean checkouts; see dw_gitcache.h. */
#include "dw_gitcache.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dw_log.h"
#include "dw_util.h"

/* Most arguments one git command gets, including the fixed prefix. */
#define DW_GIT_ARGS_MAX 32
/* Bytes of git's stderr quoted in an error message. */
#define DW_GIT_ERR_TAIL 400

/* Variables taken from the worker's environment so git can reach a remote
 * through the same proxy and trust store; nothing else is inherited. */
static const char *const s_passthrough[] = {
    "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "GIT_SSL_CAINFO", NULL,
};

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

/* Last line of stderr with content, at most DW_GIT_ERR_TAIL bytes. */
static void
s_stderr_tail (const char *path, char *out, size_t out_size)
{
    out[0] = 0;
    size_t len = 0;
    char *text = dw_read_file (path, 4 * 1024 * 1024, &len);
    if (!text)
        return;
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' '))
        text[--len] = 0;
    size_t start = len > DW_GIT_ERR_TAIL ? len - DW_GIT_ERR_TAIL : 0;
    for (size_t i = start; i < len; i++)
        if (text[i] == '\n')
            text[i] = ' ';
    snprintf (out, out_size, "%s", text + start);
    free (text);
}

int
dw_git_run (const dw_git_options_t *options, const char *const *args,
            dw_proc_result_t *result, char *err, size_t err_size)
{
    dw_proc_result_t local_result;
    if (!result)
        result = &local_result;

    const char *argv[DW_GIT_ARGS_MAX + 1];
    size_t argc = 0;
    /* The agent controls the workspace's .git/config, and git runs here
     * outside any sandbox, so every setting that can start a program is
     * pinned on the command line, which wins over the repository's file.
     * safe.directory is needed because the agent's files may belong to
     * another uid; it is honoured only from the command line or global
     * config. */
    argv[argc++] = "git";
    argv[argc++] = "-c";
    argv[argc++] = "core.hooksPath=/dev/null";
    argv[argc++] = "-c";
    argv[argc++] = "core.fsmonitor=false";
    argv[argc++] = "-c";
    argv[argc++] = "safe.directory=*";
    /* Short-lived checkouts never need background maintenance, and starting
     * it after every fetch costs several processes per attempt. */
    argv[argc++] = "-c";
    argv[argc++] = "maintenance.auto=false";
    argv[argc++] = "-c";
    argv[argc++] = "gc.auto=0";
    for (size_t i = 0; args[i]; i++) {
        if (argc == DW_GIT_ARGS_MAX) {
            s_set_error (err, err_size, "too many git arguments (max %d)", DW_GIT_ARGS_MAX);
            return -1;
        }
        argv[argc++] = args[i];
    }
    argv[argc] = NULL;

    char *envp[32];
    size_t envc = 0;
    envp[envc++] = "PATH=/usr/local/bin:/usr/bin:/bin";
    envp[envc++] = "HOME=/nonexistent";
    envp[envc++] = "LANG=C";
    envp[envc++] = "GIT_TERMINAL_PROMPT=0";
    envp[envc++] = "GIT_CONFIG_NOSYSTEM=1";
    envp[envc++] = "GIT_CONFIG_GLOBAL=/dev/null";
    envp[envc++] = "GIT_ASKPASS=/bin/true";
    envp[envc++] = "SSH_ASKPASS=/bin/true";
    char *owned[16];
    size_t owned_count = 0;
    for (size_t i = 0; s_passthrough[i]; i++) {
        const char *value = getenv (s_passthrough[i]);
        if (value && owned_count < 16) {
            owned[owned_count] = dw_strdup_printf ("%s=%s", s_passthrough[i], value);
            if (owned[owned_count])
                envp[envc++] = owned[owned_count++];
        }
    }
    envp[envc] = NULL;

    char stderr_path[] = "/tmp/dw-git-stderr-XXXXXX";
    int fd = mkstemp (stderr_path);
    if (fd >= 0)
        close (fd);

    dw_proc_spec_t spec = {
        .argv = (char *const *) argv,
        .envp = envp,
        .cwd = options->cwd,
        .on_line = options->on_line,
        .line_arg = options->line_arg,
        .line_max = options->line_max,
        .stdout_max = options->stdout_max,
        .stderr_path = fd >= 0 ? stderr_path : NULL,
        .stderr_max = 64 * 1024,
        .wall_ms = options->timeout_ms ? options->timeout_ms : DW_GIT_LOCAL_TIMEOUT_MS,
        .cancel = options->cancel,
    };
    int rc = dw_proc_run (&spec, result);

    char tail[DW_GIT_ERR_TAIL + 1] = "";
    if (fd >= 0) {
        s_stderr_tail (stderr_path, tail, sizeof tail);
        unlink (stderr_path);
    }
    for (size_t i = 0; i < owned_count; i++)
        free (owned[i]);

    if (rc != 0) {
        s_set_error (err, err_size, "git %s could not run: %s", args[0], result->error);
        return -1;
    }
    if (result->timed_out) {
        s_set_error (err, err_size, "git %s timed out after %llu ms", args[0],
                     (unsigned long long) spec.wall_ms);
        return -1;
    }
    if (result->cancelled) {
        s_set_error (err, err_size, "git %s cancelled", args[0]);
        return -1;
    }
    if (dw_proc_status (result) != 0) {
        s_set_error (err, err_size, "git %s failed with status %d: %s", args[0],
                     dw_proc_status (result), tail);
        return -1;
    }
    return 0;
}

typedef struct {
    char *out;
    size_t out_size;
    int seen;
} dw_first_line_t;

static void
s_first_line (void *arg, const char *line, size_t len, int truncated)
{
    (void) truncated;
    dw_first_line_t *first = arg;
    if (first->seen++)
        return;
    size_t copy = len < first->out_size - 1 ? len : first->out_size - 1;
    memcpy (first->out, line, copy);
    first->out[copy] = 0;
}

int
dw_git_output (const dw_git_options_t *options, const char *const *args, char *out,
               size_t out_size, char *err, size_t err_size)
{
    dw_first_line_t first = { out, out_size, 0 };
    dw_git_options_t with_output = *options;
    with_output.on_line = s_first_line;
    with_output.line_arg = &first;
    out[0] = 0;
    return dw_git_run (&with_output, args, NULL, err, err_size);
}

char *
dw_gitcache_url (const char *repo_url, const char *repo)
{
    if (repo_url && *repo_url)
        return strdup (repo_url);
    if (repo && *repo)
        return dw_strdup_printf ("https://github.com/%s.git", repo);
    return NULL;
}

/* Take LOCK_EX or LOCK_SH on PATH, polling so that CANCEL is honoured.
 * Returns the locked descriptor or -1. */
static int
s_lock (const char *path, int mode, volatile int *cancel, char *err, size_t err_size)
{
    int fd = open (path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        s_set_error (err, err_size, "cannot open lock file %s: %s", path, strerror (errno));
        return -1;
    }
    while (flock (fd, mode | LOCK_NB) != 0) {
        if (errno != EWOULDBLOCK && errno != EINTR) {
            s_set_error (err, err_size, "cannot lock %s: %s", path, strerror (errno));
            close (fd);
            return -1;
        }
        if (cancel && *cancel) {
            s_set_error (err, err_size, "cancelled while waiting for lock %s", path);
            close (fd);
            return -1;
        }
        usleep (DW_PROC_TICK_MS * 1000);
    }
    return fd;
}

static void
s_unlock (int fd)
{
    if (fd >= 0) {
        flock (fd, LOCK_UN);
        close (fd);
    }
}

/* Resolve COMMIT in the repository at GIT_DIR to a full id; 0 if found. */
static int
s_resolve (const char *git_dir, const char *commit, volatile int *cancel, char sha[41])
{
    char *spec = dw_strdup_printf ("%s^{commit}", commit);
    if (!spec)
        return -1;
    dw_git_options_t options = { .cwd = git_dir, .cancel = cancel };
    const char *args[] = { "rev-parse", "--verify", "--quiet", spec, NULL };
    char out[128];
    int rc = dw_git_output (&options, args, out, sizeof out, NULL, 0);
    free (spec);
    if (rc != 0 || strlen (out) != 40)
        return -1;
    memcpy (sha, out, 41);
    return 0;
}

static int
s_is_full_sha (const char *text)
{
    if (strlen (text) != 40)
        return 0;
    return strspn (text, "0123456789abcdef") == 40;
}

int
dw_gitcache_mirror (const char *cache_dir, const char *url, const char *commit,
                    volatile int *cancel, char **mirror_path, char sha[41], char *err,
                    size_t err_size)
{
    *mirror_path = NULL;
    if (!url || !*url || !commit || !*commit) {
        s_set_error (err, err_size, "repository url and base commit are required");
        return -1;
    }
    if (url[0] == '-' || commit[0] == '-') {
        s_set_error (err, err_size, "invalid url or commit '%s' (starts with '-')",
                     url[0] == '-' ? url : commit);
        return -1;
    }
    if (dw_mkdir_p (cache_dir, 0700) != 0) {
        s_set_error (err, err_size, "cannot create cache directory %s: %s", cache_dir,
                     strerror (errno));
        return -1;
    }

    char key[41];
    dw_sha1_hex (url, strlen (url), key);
    char *path = dw_strdup_printf ("%s/%.16s.git", cache_dir, key);
    char *lock_path = dw_strdup_printf ("%s/%.16s.lock", cache_dir, key);
    char *partial = dw_strdup_printf ("%s/%.16s.partial", cache_dir, key);
    int rc = -1;
    int lock_fd = -1;
    if (!path || !lock_path || !partial) {
        s_set_error (err, err_size, "out of memory");
        goto done;
    }

    /* Fast path: the mirror exists and has the commit. */
    lock_fd = s_lock (lock_path, LOCK_SH, cancel, err, err_size);
    if (lock_fd < 0)
        goto done;
    struct stat info;
    if (stat (path, &info) == 0 && s_resolve (path, commit, cancel, sha) == 0) {
        rc = 0;
        goto done;
    }
    s_unlock (lock_fd);

    lock_fd = s_lock (lock_path, LOCK_EX, cancel, err, err_size);
    if (lock_fd < 0)
        goto done;

    if (stat (path, &info) != 0) {
        /* Clone beside the final path and rename, so a crash mid-clone
         * never leaves a half mirror that later jobs would trust. */
        dw_rm_rf (partial);
        dw_info ("git mirror clone url=%s path=%s", url, path);
        dw_git_options_t options = { .timeout_ms = DW_GIT_REMOTE_TIMEOUT_MS, .cancel = cancel };
        const char *args[] = { "clone", "--mirror", "--quiet", "--", url, partial, NULL };
        if (dw_git_run (&options, args, NULL, err, err_size) != 0) {
            dw_rm_rf (partial);
            goto done;
        }
        if (rename (partial, path) != 0) {
            s_set_error (err, err_size, "cannot rename %s to %s: %s", partial, path,
                         strerror (errno));
            dw_rm_rf (partial);
            goto done;
        }
    }
    if (s_resolve (path, commit, cancel, sha) == 0) {
        rc = 0;
        goto done;
    }

    dw_info ("git mirror fetch url=%s commit=%s", url, commit);
    dw_git_options_t options = {
        .cwd = path, .timeout_ms = DW_GIT_REMOTE_TIMEOUT_MS, .cancel = cancel
    };
    const char *fetch_all[] = { "fetch", "--quiet", "--prune", "origin", NULL };
    if (dw_git_run (&options, fetch_all, NULL, err, err_size) == 0
        && s_resolve (path, commit, cancel, sha) == 0) {
        rc = 0;
        goto done;
    }
    /* Commits no ref points to any more can often still be fetched by id. */
    if (s_is_full_sha (commit)) {
        const char *fetch_one[] = { "fetch", "--quiet", "origin", commit, NULL };
        if (dw_git_run (&options, fetch_one, NULL, err, err_size) == 0
            && s_resolve (path, commit, cancel, sha) == 0) {
            rc = 0;
            goto done;
        }
    }
    s_set_error (err, err_size, "commit %s not found in %s", commit, url);

done:
    s_unlock (lock_fd);
    if (rc == 0) {
        *mirror_path = path;
        path = NULL;
    }
    free (path);
    free (lock_path);
    free (partial);
    return rc;
}

/* Remove everything from the new checkout that could lead past COMMIT or
 * back to the cache. */
static int
s_sanitize (const char *dest, int bare, volatile int *cancel, char *err, size_t err_size)
{
    char *fetch_head = dw_strdup_printf (bare ? "%s/FETCH_HEAD" : "%s/.git/FETCH_HEAD", dest);
    if (fetch_head) {
        unlink (fetch_head);
        free (fetch_head);
    }

    dw_git_options_t options = { .cwd = dest, .cancel = cancel };
    const char *expire[] = { "reflog", "expire", "--expire=now", "--all", NULL };
    if (dw_git_run (&options, expire, NULL, err, err_size) != 0)
        return -1;
    return 0;
}

/* Shared part of checkout and snapshot: a new repository at DEST (bare
 * when BARE) holding COMMIT fetched from the mirror, and no ref at all. */
static int
s_fetch_into (const char *cache_dir, const char *url, const char *commit, const char *dest,
              int bare, unsigned depth, volatile int *cancel, char sha[41], char *err,
              size_t err_size)
{
    char *mirror = NULL;
    if (dw_gitcache_mirror (cache_dir, url, commit, cancel, &mirror, sha, err, err_size) != 0)
        return -1;

    int rc = -1;
    char key[41];
    dw_sha1_hex (url, strlen (url), key);
    char *lock_path = dw_strdup_printf ("%s/%.16s.lock", cache_dir, key);
    char depth_arg[32];
    snprintf (depth_arg, sizeof depth_arg, "--depth=%u", depth);
    int lock_fd = -1;

    if (dw_mkdir_p (dest, 0755) != 0) {
        s_set_error (err, err_size, "cannot create %s: %s", dest, strerror (errno));
        goto done;
    }
    dw_git_options_t options = { .cwd = dest, .cancel = cancel };
    const char *init[] = { "-c", "init.defaultBranch=main", "init", "--quiet", "--template=",
                           bare ? "--bare" : ".", bare ? "." : NULL, NULL };
    if (dw_git_run (&options, init, NULL, err, err_size) != 0)
        goto done;
    const char *name[] = { "config", "user.name", DW_GIT_USER_NAME, NULL };
    const char *email[] = { "config", "user.email", DW_GIT_USER_EMAIL, NULL };
    if (dw_git_run (&options, name, NULL, err, err_size) != 0
        || dw_git_run (&options, email, NULL, err, err_size) != 0)
        goto done;

    /* Fetching the commit by id copies exactly its history (or, with a
     * depth, its tree) and creates no ref at all. */
    lock_fd = s_lock (lock_path, LOCK_SH, cancel, err, err_size);
    if (lock_fd < 0)
        goto done;
    const char *fetch_full[] = { "fetch", "--quiet", "--no-tags", "--", mirror, sha, NULL };
    const char *fetch_depth[] = { "fetch", "--quiet", "--no-tags", depth_arg, "--", mirror, sha,
                                  NULL };
    if (dw_git_run (&options, depth ? fetch_depth : fetch_full, NULL, err, err_size) != 0)
        goto done;
    s_unlock (lock_fd);
    lock_fd = -1;

    if (!bare) {
        const char *checkout[] = { "checkout", "--quiet", "--detach", sha, NULL };
        if (dw_git_run (&options, checkout, NULL, err, err_size) != 0)
            goto done;
    }
    if (s_sanitize (dest, bare, cancel, err, err_size) != 0)
        goto done;
    rc = 0;

done:
    s_unlock (lock_fd);
    free (lock_path);
    free (mirror);
    return rc;
}

int
dw_gitcache_checkout (const char *cache_dir, const char *url, const char *commit,
                      const char *dest, unsigned depth, volatile int *cancel, char sha[41],
                      char *err, size_t err_size)
{
    return s_fetch_into (cache_dir, url, commit, dest, 0, depth, cancel, sha, err, err_size);
}

int
dw_gitcache_snapshot (const char *cache_dir, const char *url, const char *commit,
                      const char *git_dir, volatile int *cancel, char *err, size_t err_size)
{
    char sha[41];
    return s_fetch_into (cache_dir, url, commit, git_dir, 1, 1, cancel, sha, err, err_size);
}
