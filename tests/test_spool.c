/* Tests of the worker's result spool: durable put/get/remove, ordering and
 * rejection of ids that could escape the spool directory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dw_spool.h"
#include "dw_util.h"

static int s_failures = 0;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf (stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                  \
            fprintf (stderr, __VA_ARGS__);                                                         \
            fprintf (stderr, "\n");                                                                \
            s_failures++;                                                                          \
        }                                                                                          \
    } while (0)

int main (void)
{
    char dir[] = "/tmp/dw-spool-test-XXXXXX";
    CHECK (mkdtemp (dir) != NULL, "mkdtemp failed");
    char path[256];
    snprintf (path, sizeof path, "%s/spool", dir);

    char err[256];
    dw_spool_t *spool = dw_spool_new (path, err, sizeof err);
    CHECK (spool != NULL, "spool_new failed: %s", err);

    CHECK (dw_spool_put (spool, "attempt-1", "first", 5) == 0, "put attempt-1 failed");
    sleep (1);
    CHECK (dw_spool_put (spool, "attempt-2", "second", 6) == 0, "put attempt-2 failed");

    size_t len = 0;
    uint8_t *data = dw_spool_get (spool, "attempt-1", &len);
    CHECK (data && len == 5 && memcmp (data, "first", 5) == 0, "get attempt-1 returned wrong data");
    free (data);

    zlist_t *ids = dw_spool_list (spool);
    CHECK (zlist_size (ids) == 2, "expected 2 spooled ids, got %zu", zlist_size (ids));
    CHECK (ids && strcmp (zlist_first (ids), "attempt-1") == 0, "oldest entry must come first");
    zlist_destroy (&ids);

    CHECK (dw_spool_put (spool, "../escape", "x", 1) == -1, "an id with a path was accepted");
    CHECK (dw_spool_put (spool, "a/b", "x", 1) == -1, "an id with a slash was accepted");
    CHECK (dw_spool_put (spool, "", "x", 1) == -1, "an empty id was accepted");
    CHECK (!dw_spool_valid_id ("0123456789012345678901234567890123456789012345678901234567890123"),
           "a 64-character id was accepted");

    CHECK (dw_spool_remove (spool, "attempt-1") == 0, "remove failed");
    CHECK (dw_spool_remove (spool, "attempt-1") == 0, "removing a missing entry must succeed");
    ids = dw_spool_list (spool);
    CHECK (zlist_size (ids) == 1, "expected 1 spooled id after remove, got %zu", zlist_size (ids));
    zlist_destroy (&ids);

    /* A quarantined entry is kept on disk but no longer listed. */
    CHECK (dw_spool_put (spool, "attempt-3", "bad", 3) == 0, "put attempt-3 failed");
    CHECK (dw_spool_quarantine (spool, "attempt-3") == 0, "quarantine failed");
    ids = dw_spool_list (spool);
    CHECK (zlist_size (ids) == 1, "a quarantined entry is still listed (%zu ids)", zlist_size (ids));
    zlist_destroy (&ids);
    snprintf (path, sizeof path, "%s/spool/attempt-3.corrupt", dir);
    CHECK (access (path, F_OK) == 0, "quarantined file %s missing", path);
    snprintf (path, sizeof path, "%s/spool", dir);

    /* A reopened spool still holds the entry (it is on disk, not in memory). */
    dw_spool_destroy (&spool);
    CHECK (spool == NULL, "destroy must null the pointer");
    spool = dw_spool_new (path, err, sizeof err);
    data = dw_spool_get (spool, "attempt-2", &len);
    CHECK (data && len == 6, "entry lost across reopen");
    free (data);
    dw_spool_destroy (&spool);

    dw_rm_rf (dir);
    if (s_failures) {
        fprintf (stderr, "%d check(s) failed\n", s_failures);
        return 1;
    }
    printf ("test_spool: all checks passed\n");
    return 0;
}
