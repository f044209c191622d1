/* Result spool: see dw_spool.h. One file per attempt, "<attempt_id>.result". */
#include "dw_spool.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dw_util.h"

#define SPOOL_SUFFIX ".result"
#define EVENTS_SUFFIX ".events"

struct dw_spool_t {
    char *dir;
};

int dw_spool_valid_id (const char *id)
{
    size_t len = id ? strlen (id) : 0;
    if (len == 0 || len > 63)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = id[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || c == '-'))
            return 0;
    }
    return 1;
}

dw_spool_t *dw_spool_new (const char *dir, char *err, size_t errlen)
{
    if (dw_mkdir_p (dir, 0700) != 0) {
        snprintf (err, errlen, "cannot create spool directory %s: %s", dir, strerror (errno));
        return NULL;
    }
    if (access (dir, W_OK) != 0) {
        snprintf (err, errlen, "spool directory %s is not writable: %s", dir, strerror (errno));
        return NULL;
    }
    dw_spool_t *self = calloc (1, sizeof *self);
    if (!self || !(self->dir = strdup (dir))) {
        free (self);
        snprintf (err, errlen, "out of memory");
        return NULL;
    }
    return self;
}

void dw_spool_destroy (dw_spool_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free ((*self_p)->dir);
    free (*self_p);
    *self_p = NULL;
}

static int entry_path (dw_spool_t *self, const char *attempt_id, char *path, size_t size)
{
    if (!dw_spool_valid_id (attempt_id)) {
        errno = EINVAL;
        return -1;
    }
    snprintf (path, size, "%s/%s" SPOOL_SUFFIX, self->dir, attempt_id);
    return 0;
}

int dw_spool_put (dw_spool_t *self, const char *attempt_id, const void *data, size_t len)
{
    char path[PATH_MAX];
    if (entry_path (self, attempt_id, path, sizeof path) != 0)
        return -1;
    return dw_write_file_atomic (path, data, len, 0600);
}

uint8_t *dw_spool_get (dw_spool_t *self, const char *attempt_id, size_t *len)
{
    char path[PATH_MAX];
    if (entry_path (self, attempt_id, path, sizeof path) != 0)
        return NULL;
    return (uint8_t *) dw_read_file (path, DW_SPOOL_ENTRY_MAX, len);
}

int dw_spool_remove (dw_spool_t *self, const char *attempt_id)
{
    char path[PATH_MAX];
    if (entry_path (self, attempt_id, path, sizeof path) != 0)
        return -1;
    if (unlink (path) != 0 && errno != ENOENT)
        return -1;
    return 0;
}

static int events_path (dw_spool_t *self, const char *attempt_id, char *path, size_t size)
{
    if (!dw_spool_valid_id (attempt_id)) {
        errno = EINVAL;
        return -1;
    }
    snprintf (path, size, "%s/%s" EVENTS_SUFFIX, self->dir, attempt_id);
    return 0;
}

int dw_spool_put_events (dw_spool_t *self, const char *attempt_id, const void *data, size_t len)
{
    char path[PATH_MAX];
    if (events_path (self, attempt_id, path, sizeof path) != 0)
        return -1;
    return dw_write_file_atomic (path, data, len, 0600);
}

uint8_t *dw_spool_get_events (dw_spool_t *self, const char *attempt_id, size_t *len)
{
    char path[PATH_MAX];
    if (events_path (self, attempt_id, path, sizeof path) != 0)
        return NULL;
    return (uint8_t *) dw_read_file (path, DW_SPOOL_ENTRY_MAX, len);
}

int dw_spool_remove_events (dw_spool_t *self, const char *attempt_id)
{
    char path[PATH_MAX];
    if (events_path (self, attempt_id, path, sizeof path) != 0)
        return -1;
    if (unlink (path) != 0 && errno != ENOENT)
        return -1;
    return 0;
}

int dw_spool_quarantine (dw_spool_t *self, const char *attempt_id)
{
    char path[PATH_MAX], aside[PATH_MAX + 16];
    if (entry_path (self, attempt_id, path, sizeof path) != 0)
        return -1;
    snprintf (aside, sizeof aside, "%s/%s.corrupt", self->dir, attempt_id);
    return rename (path, aside);
}

typedef struct {
    char id[64];
    time_t mtime;
} spool_entry_t;

static int compare_entries (const void *a, const void *b)
{
    const spool_entry_t *x = a, *y = b;
    if (x->mtime != y->mtime)
        return x->mtime < y->mtime ? -1 : 1;
    return strcmp (x->id, y->id);
}

zlist_t *dw_spool_list (dw_spool_t *self)
{
    zlist_t *ids = zlist_new ();
    zlist_autofree (ids);
    DIR *dir = opendir (self->dir);
    if (!dir)
        return ids;

    size_t count = 0, cap = 16;
    spool_entry_t *entries = malloc (cap * sizeof *entries);
    struct dirent *entry;
    while (entries && (entry = readdir (dir)) != NULL) {
        size_t len = strlen (entry->d_name), suffix = strlen (SPOOL_SUFFIX);
        if (len <= suffix || len - suffix >= 64
            || strcmp (entry->d_name + len - suffix, SPOOL_SUFFIX) != 0)
            continue;
        if (count == cap) {
            spool_entry_t *bigger = realloc (entries, cap * 2 * sizeof *entries);
            if (!bigger)
                break;
            entries = bigger;
            cap *= 2;
        }
        memcpy (entries[count].id, entry->d_name, len - suffix);
        entries[count].id[len - suffix] = '\0';
        if (!dw_spool_valid_id (entries[count].id))
            continue;
        char path[PATH_MAX];
        struct stat st;
        snprintf (path, sizeof path, "%s/%s", self->dir, entry->d_name);
        entries[count].mtime = stat (path, &st) == 0 ? st.st_mtime : 0;
        count++;
    }
    closedir (dir);

    if (entries) {
        qsort (entries, count, sizeof *entries, compare_entries);
        for (size_t i = 0; i < count; i++)
            zlist_append (ids, entries[i].id);
        free (entries);
    }
    return ids;
}
