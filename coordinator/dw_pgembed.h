/* Embedded default PostgreSQL: a private cluster the coordinator creates and
 * runs itself when no database is configured.
 *
 * The cluster lives in DATA_DIR/postgres. It accepts connections only on a
 * unix socket in /tmp/driftwatch-pg-<hash of DATA_DIR>/ (mode 0700, so only
 * the server's user and root can connect) with trust authentication, and has
 * a database "driftwatch". Binaries come from `pg_config --bindir`, else the
 * newest /usr/lib/postgresql/N/bin.
 *
 * initdb and postgres refuse to run as root. So when the coordinator runs as
 * root, the cluster belongs to the "postgres" system user, which must be able
 * to reach DATA_DIR: a data directory under /root is not reachable, but one
 * under /var/lib is. As any other user the cluster belongs to that user.
 *
 * One coordinator per data directory: dw_pgembed_start holds an flock on
 * DATA_DIR/postgres.lock until dw_pgembed_stop. A server left running by a
 * coordinator that crashed is reused; a stale postmaster.pid is handled by
 * PostgreSQL's own crash recovery on start.
 */
#ifndef DW_PGEMBED_H
#define DW_PGEMBED_H

#include <stddef.h>

typedef struct dw_pgembed_t dw_pgembed_t;

/* Maximum wait for the server to start or stop, in seconds. */
#define DW_PGEMBED_TIMEOUT_S 120

/* Create the cluster under DATA_DIR if it is missing (creating DATA_DIR
 * too), start its server unless one is already running, and create the
 * database "driftwatch". Returns NULL with the reason and the fix in ERR. */
dw_pgembed_t *dw_pgembed_start (const char *data_dir, char *err, size_t errlen);

/* libpq connection string of the "driftwatch" database (no password). */
const char *dw_pgembed_conninfo (const dw_pgembed_t *self);

/* Stop the server (fast shutdown: open sessions are ended, committed data is
 * kept), release the data directory lock and free SELF. Accepts NULL. */
void dw_pgembed_stop (dw_pgembed_t **self_p);

#endif
