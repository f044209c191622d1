/* Helpers: see dw_util.h. */
#include "dw_util.h"

#include <czmq.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

uint64_t dw_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    return (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
}

uint64_t dw_mono_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
}

int dw_mkdir_p (const char *path, mode_t mode)
{
    char buf[PATH_MAX];
    size_t len = strlen (path);
    if (len == 0 || len >= sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy (buf, path, len + 1);

    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir (buf, mode) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir (buf, mode) != 0 && errno != EEXIST)
        return -1;
    return 0;
}

static int rm_rf_at (int parent, const char *name)
{
    struct stat st;
    if (fstatat (parent, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return errno == ENOENT ? 0 : -1;
    if (!S_ISDIR (st.st_mode))
        return unlinkat (parent, name, 0) == 0 || errno == ENOENT ? 0 : -1;

    int fd = openat (parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -1;
    /* A directory made read-only by its owner must still be removable. */
    fchmod (fd, 0700);
    DIR *dir = fdopendir (fd);
    if (!dir) {
        close (fd);
        return -1;
    }
    int rc = 0;
    struct dirent *entry;
    while ((entry = readdir (dir)) != NULL) {
        if (strcmp (entry->d_name, ".") == 0 || strcmp (entry->d_name, "..") == 0)
            continue;
        if (rm_rf_at (dirfd (dir), entry->d_name) != 0)
            rc = -1;
    }
    closedir (dir);
    if (unlinkat (parent, name, AT_REMOVEDIR) != 0 && errno != ENOENT)
        rc = -1;
    return rc;
}

int dw_rm_rf (const char *path)
{
    return rm_rf_at (AT_FDCWD, path);
}

char *dw_read_file (const char *path, size_t max, size_t *len)
{
    int fd = open (path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;

    size_t cap = 4096, used = 0;
    char *buf = malloc (cap);
    if (!buf) {
        close (fd);
        return NULL;
    }
    for (;;) {
        if (used + 1 >= cap) {
            if (cap > max + 1) {
                free (buf);
                close (fd);
                errno = EFBIG;
                return NULL;
            }
            char *bigger = realloc (buf, cap * 2);
            if (!bigger) {
                free (buf);
                close (fd);
                return NULL;
            }
            buf = bigger;
            cap *= 2;
        }
        ssize_t n = read (fd, buf + used, cap - used - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            free (buf);
            close (fd);
            return NULL;
        }
        if (n == 0)
            break;
        used += (size_t) n;
        if (used > max) {
            free (buf);
            close (fd);
            errno = EFBIG;
            return NULL;
        }
    }
    close (fd);
    buf[used] = '\0';
    if (len)
        *len = used;
    return buf;
}

static int fsync_parent (const char *path)
{
    char dir[PATH_MAX];
    snprintf (dir, sizeof dir, "%s", path);
    char *slash = strrchr (dir, '/');
    if (slash == dir)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf (dir, sizeof dir, ".");
    int fd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync (fd);
    close (fd);
    return rc;
}

int dw_write_file_atomic (const char *path, const void *data, size_t len, mode_t mode)
{
    char tmp[PATH_MAX];
    if (snprintf (tmp, sizeof tmp, "%s.tmp.%d", path, (int) getpid ()) >= (int) sizeof tmp) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = open (tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return -1;

    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t n = write (fd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto fail;
        p += n;
        left -= (size_t) n;
    }
    if (fsync (fd) != 0)
        goto fail;
    if (close (fd) != 0) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    if (rename (tmp, path) != 0)
        goto fail;
    return fsync_parent (path);

fail:;
    int saved = errno;
    if (fd >= 0)
        close (fd);
    unlink (tmp);
    errno = saved;
    return -1;
}

char *dw_strdup_printf (const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    char *out = NULL;
    if (vasprintf (&out, fmt, args) < 0)
        out = NULL;
    va_end (args);
    return out;
}

void dw_sha1_hex (const void *data, size_t len, char out[41])
{
    zdigest_t *digest = zdigest_new ();
    zdigest_update (digest, (const byte *) data, len);
    const char *hex = zdigest_string (digest);
    for (int i = 0; i < 40; i++)
        out[i] = (char) tolower ((unsigned char) hex[i]);
    out[40] = '\0';
    zdigest_destroy (&digest);
}

const char *dw_self_dir (void)
{
    static char dir[PATH_MAX];
    if (dir[0])
        return dir;
    ssize_t n = readlink ("/proc/self/exe", dir, sizeof dir - 1);
    if (n <= 0) {
        snprintf (dir, sizeof dir, ".");
        return dir;
    }
    dir[n] = '\0';
    char *slash = strrchr (dir, '/');
    if (slash && slash != dir)
        *slash = '\0';
    return dir;
}

void dw_today (char out[11])
{
    time_t now = time (NULL);
    struct tm tm;
    localtime_r (&now, &tm);
    strftime (out, 11, "%Y-%m-%d", &tm);
}

int dw_parse_day (const char *text)
{
    int y, m, d;
    char tail;
    if (!text || strlen (text) != 10 || sscanf (text, "%4d-%2d-%2d%c", &y, &m, &d, &tail) != 3)
        return -1;
    if (y < 1970 || y > 9999 || m < 1 || m > 12 || d < 1)
        return -1;
    static const int days[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    int max = days[m - 1];
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        max = 29;
    return d <= max ? 0 : -1;
}
