/* PostgreSQL store of the coordinator: see dw_store.h.
 *
 * Every statement lives in the table below under a name that appears in
 * logs. Statements are prepared on first use on each connection, so a
 * reconnect only has to forget which ones were prepared. Lock order, so two
 * coordinators on one database cannot deadlock: a job row (FOR UPDATE)
 * before any attempt row of that job.
 */
#include "dw_store.h"

#include <inttypes.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dw_log.h"

/* The embedded migrations, generated from coordinator/sql by build.cmake. */
typedef struct {
    int version;
    const char *name;
    const char *sql;
} dw_migration_t;

extern const dw_migration_t dw_migrations[];
extern const size_t dw_migrations_count;

/* Key of the advisory lock that serialises migrations across coordinators. */
#define STORE_MIGRATION_LOCK_KEY "7526466420146176"

#define STORE_ERROR_MAX 1024
#define STORE_MAX_PARAMS 24
#define STORE_NUMBER_MAX 32

/* Outcome text values, indexed by Driftwatch__V1__Outcome. */
static const char *const s_outcome_names[DW_OUTCOME_COUNT] = {
    NULL, "resolved", "unresolved", "agent_error", "timeout",
    "infra_error", "harness_error", "cancelled"
};

typedef enum {
    ST_MIGRATIONS_TABLE,
    ST_MAX_VERSION,
    ST_HAS_VERSION,
    ST_MIGRATION_LOCK,
    ST_RECORD_MIGRATION,
    ST_SUITE_INSERT,
    ST_SUITE_FIND_HASH,
    ST_SUITE_FIND_NAME,
    ST_TASK_INSERT,
    ST_SUITE_TASKS,
    ST_TASK_SPEC,
    ST_RUN_INSERT,
    ST_RUN_FIND,
    ST_JOBS_INSERT,
    ST_RUN_STATUS,
    ST_PENDING_JOBS,
    ST_JOB_LOCK,
    ST_JOB_HAS_LIVE,
    ST_ATTEMPT_INSERT,
    ST_JOB_COUNT_ATTEMPT,
    ST_LEASES_RENEW,
    ST_EXPIRED_LIST,
    ST_ATTEMPT_EXPIRE,
    ST_JOB_FINALISE,
    ST_ATTEMPT_RETURN,
    ST_JOB_UNCOUNT_ATTEMPT,
    ST_ATTEMPT_OWNER,
    ST_ATTEMPT_LOCK,
    ST_RESULT_INSERT,
    ST_ATTEMPT_FINISH,
    ST_EVENT_INSERT,
    ST_EVENTS_THROUGH,
    ST_WORKER_UPSERT,
    ST_WORKER_STATUS,
    ST_RUN_COUNTS,
    ST_COUNT
} stmt_id_t;

typedef struct {
    const char *name;
    const char *sql;
    bool prepare;           /* false for statements on tables that may not exist yet */
} stmt_t;

static const stmt_t s_stmts[ST_COUNT] = {
    /* A plain scan of pg_class, not to_regclass(): name lookups without a
     * lock may use a catalog cache that predates another coordinator's
     * committed migration, and this runs right after waiting for its lock. */
    [ST_MIGRATIONS_TABLE] = { "migrations_table",
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relname = 'schema_migrations' AND n.nspname = current_schema())", false },
    [ST_MAX_VERSION] = { "max_version",
        "SELECT coalesce(max(version), 0) FROM schema_migrations", false },
    [ST_HAS_VERSION] = { "has_version",
        "SELECT 1 FROM schema_migrations WHERE version = $1::int", false },
    [ST_MIGRATION_LOCK] = { "migration_lock",
        "SELECT pg_advisory_xact_lock($1::bigint)", false },
    [ST_RECORD_MIGRATION] = { "record_migration",
        "INSERT INTO schema_migrations (version, name) VALUES ($1::int, $2)", false },

    [ST_SUITE_INSERT] = { "suite_insert",
        "INSERT INTO suites (name, content_hash, source_path, task_count)"
        " VALUES ($1, $2, $3, $4::int) ON CONFLICT (name, content_hash) DO NOTHING"
        " RETURNING id", true },
    /* Importing a version again makes it the name's current one. */
    [ST_SUITE_FIND_HASH] = { "suite_find_hash",
        "UPDATE suites SET imported_at = now() WHERE name = $1 AND content_hash = $2"
        " RETURNING id", true },
    [ST_SUITE_FIND_NAME] = { "suite_find_name",
        "SELECT id FROM suites WHERE name = $1 ORDER BY imported_at DESC, id DESC LIMIT 1",
        true },
    /* The suite row keeps repo_url as written, relative to the suite file;
     * the resolved one replaces it so workers can clone from it. */
    [ST_TASK_INSERT] = { "task_insert",
        "INSERT INTO tasks (suite_id, instance_id, repo, repo_language, base_commit, spec)"
        " VALUES ($1::bigint, $2, $3, $4, $5,"
        " $6::jsonb || jsonb_build_object('repo_url', $7::text))", true },
    [ST_SUITE_TASKS] = { "suite_tasks",
        "SELECT id, instance_id, repo, repo_language FROM tasks WHERE suite_id = $1::bigint"
        " ORDER BY instance_id", true },
    [ST_TASK_SPEC] = { "task_spec",
        "SELECT spec::text FROM tasks WHERE id = $1::bigint", true },

    [ST_RUN_INSERT] = { "run_insert",
        "INSERT INTO runs (day, config_hash, suite_id, config, track)"
        " VALUES ($1::date, $2, $3::bigint, $4::jsonb,"
        " coalesce($4::jsonb ->> 'track', 'default'))"
        " ON CONFLICT (day, config_hash) DO NOTHING RETURNING id", true },
    [ST_RUN_FIND] = { "run_find",
        "SELECT id FROM runs WHERE day = $1::date AND config_hash = $2", true },
    [ST_JOBS_INSERT] = { "jobs_insert",
        "INSERT INTO jobs (run_id, task_id, repeat_index)"
        " SELECT $1::bigint, t.id, r.i FROM unnest($2::bigint[]) AS t (id),"
        " generate_series(0, $3::int - 1) AS r (i)"
        " ORDER BY t.id, r.i ON CONFLICT (run_id, task_id, repeat_index) DO NOTHING", true },
    [ST_RUN_STATUS] = { "run_status",
        "UPDATE runs SET status = $2,"
        " finished_at = CASE WHEN $2 = 'running' THEN NULL ELSE now() END"
        " WHERE id = $1::bigint", true },
    [ST_PENDING_JOBS] = { "pending_jobs",
        "SELECT j.id, j.task_id, j.repeat_index, j.attempts FROM jobs j"
        " WHERE j.run_id = $1::bigint AND j.final_outcome IS NULL AND NOT EXISTS"
        " (SELECT 1 FROM attempts a WHERE a.job_id = j.id AND a.state = 'leased')"
        " ORDER BY j.id LIMIT $2::bigint", true },

    [ST_JOB_LOCK] = { "job_lock",
        "SELECT final_outcome IS NOT NULL, attempts FROM jobs WHERE id = $1::bigint"
        " FOR UPDATE", true },
    [ST_JOB_HAS_LIVE] = { "job_has_live",
        "SELECT coalesce(bool_or(state = 'leased'), false), coalesce(max(attempt_number), 0)"
        " FROM attempts WHERE job_id = $1::bigint", true },
    [ST_ATTEMPT_INSERT] = { "attempt_insert",
        "INSERT INTO attempts (id, job_id, attempt_number, worker_id, state, lease_expires_at)"
        " VALUES (gen_random_uuid (), $1::bigint, $2::int, $3, 'leased',"
        " now() + $4::bigint * interval '1 millisecond') RETURNING id::text", true },
    [ST_JOB_COUNT_ATTEMPT] = { "job_count_attempt",
        "UPDATE jobs SET attempts = attempts + 1 WHERE id = $1::bigint", true },
    [ST_LEASES_RENEW] = { "leases_renew",
        "UPDATE attempts SET lease_expires_at = now() + $3::bigint * interval '1 millisecond'"
        " WHERE id = ANY ($1::uuid[]) AND worker_id = $2 AND state = 'leased'", true },
    [ST_EXPIRED_LIST] = { "expired_list",
        "SELECT a.id::text, a.job_id, a.worker_id FROM attempts a JOIN jobs j ON j.id = a.job_id"
        " WHERE j.run_id = $1::bigint AND a.state = 'leased' AND a.lease_expires_at < now()"
        " ORDER BY a.job_id, a.attempt_number", true },
    [ST_ATTEMPT_EXPIRE] = { "attempt_expire",
        "UPDATE attempts SET state = 'expired', ended_at = now()"
        " WHERE id = $1::uuid AND state = 'leased' AND lease_expires_at < now()", true },
    [ST_JOB_FINALISE] = { "job_finalise",
        "UPDATE jobs SET final_outcome = $2, final_attempt_id = $3::uuid"
        " WHERE id = $1::bigint AND final_outcome IS NULL", true },
    [ST_ATTEMPT_RETURN] = { "attempt_return",
        "UPDATE attempts SET state = 'returned', ended_at = now()"
        " WHERE id = $1::uuid AND worker_id = $2 AND state = 'leased'", true },
    [ST_JOB_UNCOUNT_ATTEMPT] = { "job_uncount_attempt",
        "UPDATE jobs SET attempts = greatest(attempts - 1, 0) WHERE id = $1::bigint", true },

    [ST_ATTEMPT_OWNER] = { "attempt_owner",
        "SELECT job_id, worker_id FROM attempts WHERE id = $1::uuid", true },
    [ST_ATTEMPT_LOCK] = { "attempt_lock",
        "SELECT a.state, EXISTS (SELECT 1 FROM results r WHERE r.attempt_id = a.id),"
        " (SELECT r.outcome FROM results r WHERE r.attempt_id = a.id)"
        " FROM attempts a WHERE a.id = $1::uuid FOR UPDATE OF a", true },
    [ST_RESULT_INSERT] = { "result_insert",
        "INSERT INTO results (attempt_id, job_id, outcome, outcome_reason, detail, disposition,"
        " agent_diff, diff_truncated, tests, metrics, agent_exit_code, setup_ms, agent_ms,"
        " grade_ms, started_at, finished_at, log_tail, cli_version_before, cli_version_after,"
        " events_total, worker_id)"
        " VALUES ($1::uuid, $2::bigint, $3, $4, $5, $6, $7::bytea, $8::boolean, $9::jsonb,"
        " $10::jsonb, $11::int, $12::bigint, $13::bigint, $14::bigint,"
        " CASE WHEN $15::bigint > 0 THEN to_timestamp ($15::bigint / 1000.0::float8) END,"
        " CASE WHEN $16::bigint > 0 THEN to_timestamp ($16::bigint / 1000.0::float8) END,"
        " $17::bytea, $18, $19, $20::bigint, $21)", true },
    [ST_ATTEMPT_FINISH] = { "attempt_finish",
        "UPDATE attempts SET state = 'finished', ended_at = coalesce(ended_at, now())"
        " WHERE id = $1::uuid", true },

    [ST_EVENT_INSERT] = { "event_insert",
        "INSERT INTO events (attempt_id, seq, ts, kind, payload, doc, truncated)"
        " VALUES ($1::uuid, $2::bigint,"
        " CASE WHEN $3::bigint > 0 THEN to_timestamp ($3::bigint / 1000.0::float8) END,"
        " $4, $5::bytea, $6::jsonb, $7::boolean)"
        " ON CONFLICT (attempt_id, seq) DO NOTHING", true },
    /* The first seq that differs from its rank ends the contiguous prefix. */
    [ST_EVENTS_THROUGH] = { "events_through",
        "SELECT coalesce(min(s.rank) - 1,"
        " (SELECT count(*) FROM events WHERE attempt_id = $1::uuid))"
        " FROM (SELECT seq, row_number() OVER (ORDER BY seq) AS rank"
        " FROM events WHERE attempt_id = $1::uuid) AS s WHERE s.seq <> s.rank", true },

    [ST_WORKER_UPSERT] = { "worker_upsert",
        "INSERT INTO workers (id, hostname, slots, worker_version, agent_version,"
        " capabilities, limits) VALUES ($1, $2, $3::int, $4, $5, $6::jsonb, $7::jsonb)"
        " ON CONFLICT (id) DO UPDATE SET hostname = excluded.hostname,"
        " slots = excluded.slots, worker_version = excluded.worker_version,"
        " agent_version = excluded.agent_version, capabilities = excluded.capabilities,"
        " limits = excluded.limits, status = 'active', last_seen = now()", true },
    [ST_WORKER_STATUS] = { "worker_status",
        "UPDATE workers SET status = $2,"
        " last_seen = CASE WHEN $2 = 'active' THEN now() ELSE last_seen END"
        " WHERE id = $1", true },

    [ST_RUN_COUNTS] = { "run_counts",
        "SELECT count(*),"
        " count(*) FILTER (WHERE s.final_outcome IS NOT NULL),"
        " count(*) FILTER (WHERE s.final_outcome IS NULL AND s.live),"
        " count(*) FILTER (WHERE s.final_outcome IS NULL AND NOT s.live),"
        " count(*) FILTER (WHERE s.final_outcome = 'resolved'),"
        " count(*) FILTER (WHERE s.final_outcome = 'unresolved'),"
        " count(*) FILTER (WHERE s.final_outcome = 'agent_error'),"
        " count(*) FILTER (WHERE s.final_outcome = 'timeout'),"
        " count(*) FILTER (WHERE s.final_outcome = 'infra_error'),"
        " count(*) FILTER (WHERE s.final_outcome = 'harness_error'),"
        " count(*) FILTER (WHERE s.final_outcome = 'cancelled'),"
        " (SELECT count(*) FROM attempts a JOIN jobs j ON j.id = a.job_id"
        "  WHERE j.run_id = $1::bigint),"
        " (SELECT count(*) FROM results r JOIN jobs j ON j.id = r.job_id"
        "  WHERE j.run_id = $1::bigint AND r.disposition = 'superseded')"
        " FROM (SELECT j.final_outcome, EXISTS (SELECT 1 FROM attempts a"
        "  WHERE a.job_id = j.id AND a.state = 'leased') AS live"
        "  FROM jobs j WHERE j.run_id = $1::bigint) AS s", true },
};

struct dw_store_t {
    PGconn *conn;
    bool prepared[ST_COUNT];
    char error[STORE_ERROR_MAX];
};

/* Parameters of one statement: text values, or binary for bytea. */
typedef struct {
    const char *values[STORE_MAX_PARAMS];
    int lengths[STORE_MAX_PARAMS];
    int formats[STORE_MAX_PARAMS];
    char numbers[STORE_MAX_PARAMS][STORE_NUMBER_MAX];
    int count;
} params_t;

static void p_text (params_t *p, const char *value)
{
    /* More parameters than any statement here has is a programming error. */
    if (p->count >= STORE_MAX_PARAMS)
        abort ();
    p->values[p->count] = value;
    p->lengths[p->count] = 0;
    p->formats[p->count] = 0;
    p->count++;
}

static void p_int (params_t *p, int64_t value)
{
    snprintf (p->numbers[p->count], STORE_NUMBER_MAX, "%" PRId64, value);
    p_text (p, p->numbers[p->count]);
}

/* Unsigned protobuf counters go to bigint columns, capped at its maximum. */
static void p_uint (params_t *p, uint64_t value)
{
    p_int (p, value > (uint64_t) INT64_MAX ? INT64_MAX : (int64_t) value);
}

static void p_bool (params_t *p, bool value)
{
    p_text (p, value ? "t" : "f");
}

static void p_bytes (params_t *p, const void *data, size_t len)
{
    static const char empty[1] = "";
    p_text (p, data ? (const char *) data : empty);
    p->lengths[p->count - 1] = (int) len;
    p->formats[p->count - 1] = 1;
}

static void set_error (dw_store_t *self, const char *stmt, const char *message)
{
    snprintf (self->error, sizeof self->error, "%s: %s", stmt, message ? message : "");
    size_t len = strlen (self->error);
    while (len > 0 && (self->error[len - 1] == '\n' || self->error[len - 1] == ' '))
        self->error[--len] = '\0';
}

static void fail (dw_store_t *self, const char *stmt, const char *message)
{
    set_error (self, stmt, message);
    size_t skip = strlen (stmt) + 2;
    dw_error ("store: statement=\"%s\" error=\"%s\"", stmt,
              strlen (self->error) >= skip ? self->error + skip : self->error);
}

/* Run statement ID with P. Returns the result (caller clears it) when it
 * returned rows or completed, else NULL with the error set and logged. */
static PGresult *run (dw_store_t *self, stmt_id_t id, const params_t *p)
{
    const stmt_t *stmt = &s_stmts[id];
    int n = p ? p->count : 0;
    const char *const *values = p ? p->values : NULL;
    const int *lengths = p ? p->lengths : NULL;
    const int *formats = p ? p->formats : NULL;
    PGresult *res;

    if (stmt->prepare && !self->prepared[id]) {
        res = PQprepare (self->conn, stmt->name, stmt->sql, 0, NULL);
        if (PQresultStatus (res) != PGRES_COMMAND_OK) {
            fail (self, stmt->name, res ? PQresultErrorMessage (res)
                                        : PQerrorMessage (self->conn));
            PQclear (res);
            return NULL;
        }
        PQclear (res);
        self->prepared[id] = true;
    }

    if (stmt->prepare)
        res = PQexecPrepared (self->conn, stmt->name, n, values, lengths, formats, 0);
    else
        res = PQexecParams (self->conn, stmt->sql, n, NULL, values, lengths, formats, 0);

    ExecStatusType status = PQresultStatus (res);
    if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) {
        fail (self, stmt->name, res ? PQresultErrorMessage (res) : PQerrorMessage (self->conn));
        PQclear (res);
        return NULL;
    }
    return res;
}

/* Run a statement whose rows are not needed. */
static int run_command (dw_store_t *self, stmt_id_t id, const params_t *p, int64_t *affected)
{
    PGresult *res = run (self, id, p);
    if (!res)
        return -1;
    if (affected)
        *affected = strtoll (PQcmdTuples (res), NULL, 10);
    PQclear (res);
    return 0;
}

static int exec_simple (dw_store_t *self, const char *sql)
{
    PGresult *res = PQexec (self->conn, sql);
    ExecStatusType status = PQresultStatus (res);
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
        fail (self, sql, res ? PQresultErrorMessage (res) : PQerrorMessage (self->conn));
        PQclear (res);
        return -1;
    }
    PQclear (res);
    return 0;
}

static int begin (dw_store_t *self)
{
    return exec_simple (self, "BEGIN");
}

static int commit (dw_store_t *self)
{
    return exec_simple (self, "COMMIT");
}

/* Roll back after a failure, keeping the error of the statement that failed. */
static void rollback (dw_store_t *self)
{
    PGresult *res = PQexec (self->conn, "ROLLBACK");
    PQclear (res);
}

static int64_t get_int (const PGresult *res, int row, int col)
{
    return strtoll (PQgetvalue (res, row, col), NULL, 10);
}

static bool get_bool (const PGresult *res, int row, int col)
{
    return PQgetvalue (res, row, col)[0] == 't';
}

static char *xstrdup (const char *text)
{
    char *copy = strdup (text ? text : "");
    if (!copy)
        abort ();
    return copy;
}

/* A UUID in the canonical text form gen_random_uuid() produces. Checked
 * before it reaches a uuid parameter, so a malformed id from a worker is
 * "unknown" rather than an SQL error. */
static bool is_uuid (const char *text)
{
    if (!text || strlen (text) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        char c = text[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return false;
        }
        else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            return false;
    }
    return true;
}

/* Length of the valid UTF-8 sequence at S (at most LEN bytes), or 0. */
static size_t utf8_sequence (const unsigned char *s, size_t len)
{
    if (s[0] < 0x80)
        return 1;

    size_t need;
    uint32_t cp;
    if ((s[0] & 0xe0) == 0xc0) {
        need = 2;
        cp = s[0] & 0x1f;
    }
    else if ((s[0] & 0xf0) == 0xe0) {
        need = 3;
        cp = s[0] & 0x0f;
    }
    else if ((s[0] & 0xf8) == 0xf0) {
        need = 4;
        cp = s[0] & 0x07;
    }
    else
        return 0;
    if (len < need)
        return 0;
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }

    /* Reject overlong forms, surrogates and code points past U+10FFFF. */
    static const uint32_t min_cp[5] = { 0, 0, 0x80, 0x800, 0x10000 };
    if (cp < min_cp[need] || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
        return 0;
    return need;
}

/* Heap copy of TEXT with each byte that is not valid UTF-8 replaced by '?'.
 * Workers cut agent output at byte limits, which can split a character, and
 * PostgreSQL text and jsonb reject invalid UTF-8. */
static char *utf8_clean (const char *text)
{
    if (!text)
        text = "";
    size_t len = strlen (text);
    char *copy = xstrdup (text);
    const unsigned char *s = (const unsigned char *) text;

    for (size_t i = 0; i < len;) {
        size_t n = utf8_sequence (s + i, len - i);
        if (n == 0) {
            copy[i++] = '?';
            continue;
        }
        i += n;
    }
    return copy;
}

/* --- connection and migrations ------------------------------------------- */

static void notice_to_log (void *arg, const char *message)
{
    (void) arg;
    dw_debug ("store: notice=\"%s\"", message);
}

dw_store_t *dw_store_connect (const char *conninfo, char *err, size_t errlen)
{
    /* dbname with expand_dbname takes a whole connection string; an empty
     * value is ignored, so libpq falls back to the PG* variables. */
    const char *keywords[] = { "dbname", "fallback_application_name", NULL };
    const char *values[] = { conninfo ? conninfo : "", "driftwatch-coordinator", NULL };

    PGconn *conn = PQconnectdbParams (keywords, values, 1);
    if (!conn) {
        snprintf (err, errlen, "cannot connect to PostgreSQL: out of memory");
        return NULL;
    }
    if (PQstatus (conn) != CONNECTION_OK) {
        snprintf (err, errlen, "cannot connect to PostgreSQL: %s", PQerrorMessage (conn));
        size_t len = strlen (err);
        while (len > 0 && err[len - 1] == '\n')
            err[--len] = '\0';
        PQfinish (conn);
        return NULL;
    }
    PQsetNoticeProcessor (conn, notice_to_log, NULL);

    dw_store_t *self = calloc (1, sizeof *self);
    if (!self) {
        snprintf (err, errlen, "out of memory");
        PQfinish (conn);
        return NULL;
    }
    self->conn = conn;
    return self;
}

void dw_store_destroy (dw_store_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dw_store_t *self = *self_p;
    PQfinish (self->conn);
    free (self);
    *self_p = NULL;
}

const char *dw_store_error (const dw_store_t *self)
{
    return self->error;
}

PGconn *dw_store_conn (dw_store_t *self)
{
    return self->conn;
}

int dw_store_reconnect (dw_store_t *self)
{
    PQreset (self->conn);
    memset (self->prepared, 0, sizeof self->prepared);
    if (PQstatus (self->conn) != CONNECTION_OK) {
        fail (self, "reconnect", PQerrorMessage (self->conn));
        return -1;
    }
    PQsetNoticeProcessor (self->conn, notice_to_log, NULL);

    /* Prepare every statement again now, so a schema problem shows here. */
    int version = dw_store_schema_version (self);
    if (version < 0)
        return -1;
    for (int id = 0; version > 0 && id < ST_COUNT; id++) {
        if (!s_stmts[id].prepare)
            continue;
        PGresult *res = PQprepare (self->conn, s_stmts[id].name, s_stmts[id].sql, 0, NULL);
        if (PQresultStatus (res) != PGRES_COMMAND_OK) {
            fail (self, s_stmts[id].name, PQresultErrorMessage (res));
            PQclear (res);
            return -1;
        }
        PQclear (res);
        self->prepared[id] = true;
    }
    dw_info ("store: reconnected");
    return 0;
}

int dw_store_schema_version (dw_store_t *self)
{
    PGresult *res = run (self, ST_MIGRATIONS_TABLE, NULL);
    if (!res)
        return -1;
    bool exists = get_bool (res, 0, 0);
    PQclear (res);
    if (!exists)
        return 0;

    res = run (self, ST_MAX_VERSION, NULL);
    if (!res)
        return -1;
    int version = (int) get_int (res, 0, 0);
    PQclear (res);
    return version;
}

static int newest_known_version (void)
{
    int newest = 0;
    for (size_t i = 0; i < dw_migrations_count; i++)
        if (dw_migrations[i].version > newest)
            newest = dw_migrations[i].version;
    return newest;
}

static int check_not_newer (dw_store_t *self, int version)
{
    int known = newest_known_version ();
    if (version <= known)
        return 0;
    snprintf (self->error, sizeof self->error,
              "database schema version %d is newer than this coordinator supports (%d); "
              "upgrade driftwatch", version, known);
    dw_error ("store: %s", self->error);
    return -1;
}

/* Apply one migration in its own transaction unless it is already recorded.
 * Returns 1 applied, 0 already there, -1 error. */
static int apply_migration (dw_store_t *self, const dw_migration_t *m)
{
    params_t p = { .count = 0 };
    p_text (&p, STORE_MIGRATION_LOCK_KEY);

    if (begin (self) != 0)
        return -1;
    if (run_command (self, ST_MIGRATION_LOCK, &p, NULL) != 0)
        goto failed;

    /* Under the lock, look again: another coordinator may have migrated. */
    int version = dw_store_schema_version (self);
    if (version < 0 || check_not_newer (self, version) != 0)
        goto failed;
    if (version > 0) {
        params_t q = { .count = 0 };
        p_int (&q, m->version);
        PGresult *res = run (self, ST_HAS_VERSION, &q);
        if (!res)
            goto failed;
        int present = PQntuples (res);
        PQclear (res);
        if (present) {
            rollback (self);
            return 0;
        }
    }

    PGresult *res = PQexec (self->conn, m->sql);
    if (PQresultStatus (res) != PGRES_COMMAND_OK && PQresultStatus (res) != PGRES_TUPLES_OK) {
        char stmt[64];
        snprintf (stmt, sizeof stmt, "migration %04d_%s", m->version, m->name);
        fail (self, stmt, PQresultErrorMessage (res));
        PQclear (res);
        goto failed;
    }
    PQclear (res);

    params_t r = { .count = 0 };
    p_int (&r, m->version);
    p_text (&r, m->name);
    if (run_command (self, ST_RECORD_MIGRATION, &r, NULL) != 0 || commit (self) != 0)
        goto failed;
    dw_info ("store: migration applied version=%d name=%s", m->version, m->name);
    return 1;

failed:
    rollback (self);
    return -1;
}

int dw_store_migrate (dw_store_t *self)
{
    int version = dw_store_schema_version (self);
    if (version < 0 || check_not_newer (self, version) != 0)
        return -1;

    int applied = 0;
    for (size_t i = 0; i < dw_migrations_count; i++) {
        if (dw_migrations[i].version <= 0)
            continue;
        int rc = apply_migration (self, &dw_migrations[i]);
        if (rc < 0)
            return -1;
        applied += rc;
    }
    return applied;
}

/* --- suites and tasks ------------------------------------------------------ */

int dw_store_import_suite (dw_store_t *self, const char *name, const dw_suite_t *suite,
                           int64_t *suite_id, int *already)
{
    size_t count = dw_suite_size (suite);
    *already = 0;

    if (begin (self) != 0)
        return -1;

    /* NOTE: dw_suite_t does not expose the file it was loaded from, so the
     * suite name is recorded as its source. */
    params_t p = { .count = 0 };
    p_text (&p, name);
    p_text (&p, dw_suite_content_hash (suite));
    p_text (&p, name);
    p_int (&p, (int64_t) count);
    PGresult *res = run (self, ST_SUITE_INSERT, &p);
    if (!res)
        goto failed;
    if (PQntuples (res) == 0) {
        PQclear (res);
        params_t q = { .count = 0 };
        p_text (&q, name);
        p_text (&q, dw_suite_content_hash (suite));
        res = run (self, ST_SUITE_FIND_HASH, &q);
        if (!res)
            goto failed;
        if (PQntuples (res) != 1) {
            PQclear (res);
            fail (self, "suite_find_hash", "suite vanished during import; retry");
            goto failed;
        }
        *suite_id = get_int (res, 0, 0);
        *already = 1;
        PQclear (res);
        return commit (self);
    }
    *suite_id = get_int (res, 0, 0);
    PQclear (res);

    for (size_t i = 0; i < count; i++) {
        const dw_task_t *task = dw_suite_task (suite, i);
        params_t t = { .count = 0 };
        p_int (&t, *suite_id);
        p_text (&t, task->instance_id);
        p_text (&t, task->repo);
        p_text (&t, task->repo_language ? task->repo_language : "");
        p_text (&t, task->base_commit);
        p_text (&t, task->raw_json);
        p_text (&t, task->repo_url ? task->repo_url : "");
        if (run_command (self, ST_TASK_INSERT, &t, NULL) != 0) {
            /* Name the task in the error; a long message is cut. */
            char cause[STORE_ERROR_MAX];
            memcpy (cause, self->error, sizeof cause);
            if (snprintf (self->error, sizeof self->error, "task %.200s: %s", task->instance_id,
                          cause)
                >= (int) sizeof self->error)
                dw_debug ("store: error message truncated");
            goto failed;
        }
    }
    if (commit (self) != 0)
        goto failed;
    dw_info ("store: suite imported name=%s suite=%" PRId64 " tasks=%zu", name, *suite_id, count);
    return 0;

failed:
    rollback (self);
    return -1;
}

int dw_store_find_suite (dw_store_t *self, const char *name, int64_t *suite_id)
{
    params_t p = { .count = 0 };
    p_text (&p, name);
    PGresult *res = run (self, ST_SUITE_FIND_NAME, &p);
    if (!res)
        return -1;
    int rc = 1;
    if (PQntuples (res) == 1) {
        *suite_id = get_int (res, 0, 0);
        rc = 0;
    }
    PQclear (res);
    return rc;
}

int dw_store_suite_tasks (dw_store_t *self, int64_t suite_id, dw_store_task_ref_t **tasks,
                          size_t *count)
{
    *tasks = NULL;
    *count = 0;

    params_t p = { .count = 0 };
    p_int (&p, suite_id);
    PGresult *res = run (self, ST_SUITE_TASKS, &p);
    if (!res)
        return -1;

    size_t n = (size_t) PQntuples (res);
    dw_store_task_ref_t *refs = calloc (n ? n : 1, sizeof *refs);
    if (!refs) {
        PQclear (res);
        fail (self, "suite_tasks", "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        refs[i].task_id = get_int (res, (int) i, 0);
        refs[i].instance_id = xstrdup (PQgetvalue (res, (int) i, 1));
        refs[i].repo = xstrdup (PQgetvalue (res, (int) i, 2));
        refs[i].repo_language = xstrdup (PQgetvalue (res, (int) i, 3));
    }
    PQclear (res);
    *tasks = refs;
    *count = n;
    return 0;
}

void dw_store_task_refs_free (dw_store_task_ref_t **tasks, size_t count)
{
    if (!tasks || !*tasks)
        return;
    for (size_t i = 0; i < count; i++) {
        free ((*tasks)[i].instance_id);
        free ((*tasks)[i].repo);
        free ((*tasks)[i].repo_language);
    }
    free (*tasks);
    *tasks = NULL;
}

/* Suite row fields that map to TaskSpec fields; the rest is extra_json. */
static const char *const s_known_fields[] = {
    "instance_id", "repo", "repo_url", "base_commit", "problem_statement", "requirements",
    "interface", "patch", "test_patch", "repo_language", "fail_to_pass", "pass_to_pass",
    "selected_test_files_to_run", "FAIL_TO_PASS", "PASS_TO_PASS", "test_cmd", "test_format",
    "image", NULL
};

static bool is_known_field (const char *key)
{
    for (size_t i = 0; s_known_fields[i]; i++)
        if (strcmp (key, s_known_fields[i]) == 0)
            return true;
    return false;
}

static char *spec_string (json_t *spec, const char *key)
{
    json_t *value = json_object_get (spec, key);
    return xstrdup (json_is_string (value) ? json_string_value (value) : "");
}

/* Copy a test list into a protobuf repeated string field. The loader stores
 * lists as JSON arrays; a JSON array held in a string is accepted too. */
static void spec_list (json_t *spec, const char *key, const char *alias, size_t *n_out,
                       char ***items_out)
{
    json_t *value = json_object_get (spec, key);
    if (!value && alias)
        value = json_object_get (spec, alias);

    json_t *parsed = NULL;
    if (json_is_string (value)) {
        parsed = json_loads (json_string_value (value), JSON_DECODE_ANY, NULL);
        value = parsed;
    }

    *n_out = 0;
    *items_out = NULL;
    if (json_is_array (value) && json_array_size (value) > 0) {
        char **items = calloc (json_array_size (value), sizeof *items);
        if (!items)
            abort ();
        size_t n = 0;
        size_t i;
        json_t *item;
        json_array_foreach (value, i, item) {
            if (json_is_string (item))
                items[n++] = xstrdup (json_string_value (item));
        }
        *items_out = items;
        *n_out = n;
    }
    json_decref (parsed);
}

Driftwatch__V1__TaskSpec *dw_store_task_spec (dw_store_t *self, int64_t task_id)
{
    params_t p = { .count = 0 };
    p_int (&p, task_id);
    PGresult *res = run (self, ST_TASK_SPEC, &p);
    if (!res)
        return NULL;
    if (PQntuples (res) != 1) {
        PQclear (res);
        char message[96];
        snprintf (message, sizeof message, "task %" PRId64 " not found", task_id);
        fail (self, "task_spec", message);
        return NULL;
    }

    json_error_t jerr;
    json_t *spec = json_loads (PQgetvalue (res, 0, 0), 0, &jerr);
    PQclear (res);
    if (!json_is_object (spec)) {
        json_decref (spec);
        char message[256];
        snprintf (message, sizeof message, "task %" PRId64 ": spec is not a JSON object: %s",
                  task_id, jerr.text);
        fail (self, "task_spec", message);
        return NULL;
    }

    Driftwatch__V1__TaskSpec *out = malloc (sizeof *out);
    if (!out)
        abort ();
    driftwatch__v1__task_spec__init (out);
    out->instance_id = spec_string (spec, "instance_id");
    out->repo = spec_string (spec, "repo");
    out->repo_url = spec_string (spec, "repo_url");
    out->base_commit = spec_string (spec, "base_commit");
    out->problem_statement = spec_string (spec, "problem_statement");
    out->requirements = spec_string (spec, "requirements");
    out->interface = spec_string (spec, "interface");
    out->patch = spec_string (spec, "patch");
    out->test_patch = spec_string (spec, "test_patch");
    out->repo_language = spec_string (spec, "repo_language");
    out->test_cmd = spec_string (spec, "test_cmd");
    out->test_format = spec_string (spec, "test_format");
    out->image = spec_string (spec, "image");
    spec_list (spec, "fail_to_pass", "FAIL_TO_PASS", &out->n_fail_to_pass, &out->fail_to_pass);
    spec_list (spec, "pass_to_pass", "PASS_TO_PASS", &out->n_pass_to_pass, &out->pass_to_pass);
    spec_list (spec, "selected_test_files_to_run", NULL, &out->n_selected_test_files,
               &out->selected_test_files);

    json_t *extra = json_object ();
    const char *key;
    json_t *value;
    json_object_foreach (spec, key, value) {
        if (!is_known_field (key))
            json_object_set (extra, key, value);
    }
    char *extra_text = json_dumps (extra, JSON_COMPACT | JSON_SORT_KEYS);
    out->extra_json = xstrdup (extra_text ? extra_text : "{}");
    free (extra_text);
    json_decref (extra);
    json_decref (spec);
    return out;
}

void dw_store_task_spec_free (Driftwatch__V1__TaskSpec **spec_p)
{
    if (!spec_p || !*spec_p)
        return;
    /* Every string and array was malloc'ed, which is what free_unpacked
     * with the default allocator releases. */
    driftwatch__v1__task_spec__free_unpacked (*spec_p, NULL);
    *spec_p = NULL;
}

/* --- runs and jobs ---------------------------------------------------------- */

int dw_store_open_run (dw_store_t *self, const char *day, const char *config_hash,
                       const char *config_json, int64_t suite_id, int64_t *run_id, int *resumed)
{
    params_t p = { .count = 0 };
    p_text (&p, day);
    p_text (&p, config_hash);
    p_int (&p, suite_id);
    p_text (&p, config_json && *config_json ? config_json : "{}");
    PGresult *res = run (self, ST_RUN_INSERT, &p);
    if (!res)
        return -1;
    if (PQntuples (res) == 1) {
        *run_id = get_int (res, 0, 0);
        *resumed = 0;
        PQclear (res);
        dw_info ("store: run created run=%" PRId64 " day=%s config=%s", *run_id, day,
                 config_hash);
        return 0;
    }
    PQclear (res);

    params_t q = { .count = 0 };
    p_text (&q, day);
    p_text (&q, config_hash);
    res = run (self, ST_RUN_FIND, &q);
    if (!res)
        return -1;
    if (PQntuples (res) != 1) {
        PQclear (res);
        fail (self, "run_find", "run vanished while opening it; retry");
        return -1;
    }
    *run_id = get_int (res, 0, 0);
    *resumed = 1;
    PQclear (res);
    dw_info ("store: run resumed run=%" PRId64 " day=%s config=%s", *run_id, day, config_hash);
    return 0;
}

int dw_store_add_jobs (dw_store_t *self, int64_t run_id, const int64_t *task_ids, size_t ntasks,
                       int repeats, size_t *inserted)
{
    if (inserted)
        *inserted = 0;
    if (ntasks == 0 || repeats <= 0)
        return 0;

    /* One array literal "{1,2,3}" keeps this a single statement. */
    size_t cap = ntasks * 21 + 3;
    char *array = malloc (cap);
    if (!array) {
        fail (self, "jobs_insert", "out of memory");
        return -1;
    }
    size_t len = 0;
    array[len++] = '{';
    for (size_t i = 0; i < ntasks; i++)
        len += (size_t) snprintf (array + len, cap - len, "%s%" PRId64, i ? "," : "",
                                  task_ids[i]);
    array[len++] = '}';
    array[len] = '\0';

    params_t p = { .count = 0 };
    p_int (&p, run_id);
    p_text (&p, array);
    p_int (&p, repeats);
    int64_t affected = 0;
    int rc = run_command (self, ST_JOBS_INSERT, &p, &affected);
    free (array);
    if (rc != 0)
        return -1;
    if (inserted)
        *inserted = (size_t) affected;
    return 0;
}

int dw_store_set_run_status (dw_store_t *self, int64_t run_id, const char *status)
{
    static const char *const valid[] = { "running", "complete", "harness_failure", "stopped" };
    bool ok = false;
    for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++)
        if (status && strcmp (status, valid[i]) == 0)
            ok = true;
    if (!ok) {
        fail (self, "run_status", "invalid run status; use running, complete, "
                                  "harness_failure or stopped");
        return -1;
    }

    params_t p = { .count = 0 };
    p_int (&p, run_id);
    p_text (&p, status);
    int64_t affected = 0;
    if (run_command (self, ST_RUN_STATUS, &p, &affected) != 0)
        return -1;
    if (affected == 0) {
        fail (self, "run_status", "run not found");
        return -1;
    }
    return 0;
}

int dw_store_pending_jobs (dw_store_t *self, int64_t run_id, dw_store_job_ref_t *out, size_t max,
                           size_t *count)
{
    *count = 0;
    if (max == 0)
        return 0;

    params_t p = { .count = 0 };
    p_int (&p, run_id);
    p_uint (&p, max);
    PGresult *res = run (self, ST_PENDING_JOBS, &p);
    if (!res)
        return -1;
    size_t n = (size_t) PQntuples (res);
    for (size_t i = 0; i < n && i < max; i++) {
        out[i].job_id = get_int (res, (int) i, 0);
        out[i].task_id = get_int (res, (int) i, 1);
        out[i].repeat_index = (int) get_int (res, (int) i, 2);
        out[i].attempts = (int) get_int (res, (int) i, 3);
    }
    *count = n < max ? n : max;
    PQclear (res);
    return 0;
}

/* Lock the job row. Returns 0 with *FINAL and *ATTEMPTS set, 1 if there is
 * no such job, -1 on error. */
static int lock_job (dw_store_t *self, int64_t job_id, bool *final, int *attempts)
{
    params_t p = { .count = 0 };
    p_int (&p, job_id);
    PGresult *res = run (self, ST_JOB_LOCK, &p);
    if (!res)
        return -1;
    if (PQntuples (res) != 1) {
        PQclear (res);
        return 1;
    }
    *final = get_bool (res, 0, 0);
    *attempts = (int) get_int (res, 0, 1);
    PQclear (res);
    return 0;
}

int dw_store_lease_attempt (dw_store_t *self, int64_t job_id, const char *worker_id,
                            uint32_t lease_ms, char attempt_id[DW_ATTEMPT_ID_MAX],
                            int *attempt_number)
{
    bool final = false;
    int attempts = 0;

    if (begin (self) != 0)
        return -1;
    int rc = lock_job (self, job_id, &final, &attempts);
    if (rc < 0)
        goto failed;
    if (rc > 0) {
        char message[96];
        snprintf (message, sizeof message, "job %" PRId64 " not found", job_id);
        fail (self, "job_lock", message);
        goto failed;
    }
    if (final) {
        rollback (self);
        return 1;
    }

    params_t p = { .count = 0 };
    p_int (&p, job_id);
    PGresult *res = run (self, ST_JOB_HAS_LIVE, &p);
    if (!res)
        goto failed;
    bool live = get_bool (res, 0, 0);
    int number = (int) get_int (res, 0, 1) + 1;
    PQclear (res);
    if (live) {
        rollback (self);
        return 1;
    }

    params_t a = { .count = 0 };
    p_int (&a, job_id);
    p_int (&a, number);
    p_text (&a, worker_id);
    p_int (&a, lease_ms);
    res = run (self, ST_ATTEMPT_INSERT, &a);
    if (!res)
        goto failed;
    snprintf (attempt_id, DW_ATTEMPT_ID_MAX, "%s", PQgetvalue (res, 0, 0));
    PQclear (res);

    if (run_command (self, ST_JOB_COUNT_ATTEMPT, &p, NULL) != 0 || commit (self) != 0)
        goto failed;
    *attempt_number = number;
    dw_debug ("store: attempt leased job=%" PRId64 " attempt=%s number=%d worker=%s", job_id,
              attempt_id, number, worker_id);
    return 0;

failed:
    rollback (self);
    return -1;
}

/* Text array literal of the valid attempt ids, e.g. {"a","b"}; NULL when
 * none is valid. */
static char *uuid_array (char **ids, size_t n)
{
    char *array = malloc (n * 40 + 3);
    if (!array)
        abort ();
    size_t len = 0;
    size_t valid = 0;
    array[len++] = '{';
    for (size_t i = 0; i < n; i++) {
        if (!is_uuid (ids[i]))
            continue;
        if (valid++)
            array[len++] = ',';
        memcpy (array + len, ids[i], 36);
        len += 36;
    }
    array[len++] = '}';
    array[len] = '\0';
    if (valid == 0) {
        free (array);
        return NULL;
    }
    return array;
}

int dw_store_renew_leases (dw_store_t *self, const char *worker_id, char **attempt_ids, size_t n,
                           uint32_t lease_ms)
{
    char *array = uuid_array (attempt_ids, n);
    if (!array)
        return 0;

    params_t p = { .count = 0 };
    p_text (&p, array);
    p_text (&p, worker_id);
    p_int (&p, lease_ms);
    int rc = run_command (self, ST_LEASES_RENEW, &p, NULL);
    free (array);
    return rc;
}

/* Expire one attempt and apply the retry rule to its job, in one
 * transaction. Returns 1 expired, 0 already handled elsewhere, -1 error. */
static int expire_one (dw_store_t *self, const char *attempt_id, int64_t job_id,
                       const char *worker_id, int max_attempts)
{
    bool final = false;
    int attempts = 0;

    if (begin (self) != 0)
        return -1;
    if (lock_job (self, job_id, &final, &attempts) != 0)
        goto failed;

    params_t p = { .count = 0 };
    p_text (&p, attempt_id);
    int64_t affected = 0;
    if (run_command (self, ST_ATTEMPT_EXPIRE, &p, &affected) != 0)
        goto failed;
    if (affected == 0) {
        rollback (self);
        return 0;
    }

    /* The lease counted as an attempt when it was granted. At the limit the
     * job ends as infra_error with the expired attempt as its final one and
     * no results row, because no worker reported anything. */
    bool finalised = false;
    if (!final && attempts >= max_attempts) {
        params_t f = { .count = 0 };
        p_int (&f, job_id);
        p_text (&f, "infra_error");
        p_text (&f, attempt_id);
        if (run_command (self, ST_JOB_FINALISE, &f, NULL) != 0)
            goto failed;
        finalised = true;
    }
    if (commit (self) != 0)
        goto failed;
    dw_warn ("store: lease expired job=%" PRId64 " attempt=%s worker=%s attempts=%d final=%s",
             job_id, attempt_id, worker_id, attempts, finalised ? "infra_error" : "no");
    return 1;

failed:
    rollback (self);
    return -1;
}

int dw_store_expire_leases (dw_store_t *self, int64_t run_id, int max_attempts, size_t *expired)
{
    *expired = 0;
    if (max_attempts < 1)
        max_attempts = 1;

    params_t p = { .count = 0 };
    p_int (&p, run_id);
    PGresult *res = run (self, ST_EXPIRED_LIST, &p);
    if (!res)
        return -1;

    int rc = 0;
    for (int i = 0; i < PQntuples (res); i++) {
        int one = expire_one (self, PQgetvalue (res, i, 0), get_int (res, i, 1),
                              PQgetvalue (res, i, 2), max_attempts);
        if (one < 0) {
            rc = -1;
            break;
        }
        *expired += (size_t) one;
    }
    PQclear (res);
    return rc;
}

int dw_store_return_attempt (dw_store_t *self, const char *attempt_id, const char *worker_id,
                             const char *reason)
{
    if (!is_uuid (attempt_id))
        return 1;

    params_t o = { .count = 0 };
    p_text (&o, attempt_id);
    PGresult *res = run (self, ST_ATTEMPT_OWNER, &o);
    if (!res)
        return -1;
    if (PQntuples (res) != 1) {
        PQclear (res);
        return 1;
    }
    int64_t job_id = get_int (res, 0, 0);
    PQclear (res);

    bool final = false;
    int attempts = 0;
    if (begin (self) != 0)
        return -1;
    if (lock_job (self, job_id, &final, &attempts) != 0)
        goto failed;

    params_t p = { .count = 0 };
    p_text (&p, attempt_id);
    p_text (&p, worker_id);
    int64_t affected = 0;
    if (run_command (self, ST_ATTEMPT_RETURN, &p, &affected) != 0)
        goto failed;
    if (affected == 0) {
        rollback (self);
        return 1;
    }

    params_t j = { .count = 0 };
    p_int (&j, job_id);
    if (run_command (self, ST_JOB_UNCOUNT_ATTEMPT, &j, NULL) != 0 || commit (self) != 0)
        goto failed;
    dw_info ("store: attempt returned job=%" PRId64 " attempt=%s worker=%s reason=\"%s\"", job_id,
             attempt_id, worker_id, reason ? reason : "");
    return 0;

failed:
    rollback (self);
    return -1;
}

/* --- results ---------------------------------------------------------------- */

const char *dw_store_disposition_name (dw_store_disposition_t disposition)
{
    switch (disposition) {
    case DW_STORE_STORED:
        return "stored";
    case DW_STORE_DUPLICATE:
        return "duplicate";
    case DW_STORE_SUPERSEDED:
        return "superseded";
    case DW_STORE_UNKNOWN_ATTEMPT:
        return "unknown_attempt";
    }
    return "unknown";
}

static const char *test_status_name (Driftwatch__V1__TestStatus status)
{
    switch (status) {
    case DRIFTWATCH__V1__TEST_STATUS__TEST_PASSED:
        return "passed";
    case DRIFTWATCH__V1__TEST_STATUS__TEST_FAILED:
        return "failed";
    case DRIFTWATCH__V1__TEST_STATUS__TEST_SKIPPED:
        return "skipped";
    case DRIFTWATCH__V1__TEST_STATUS__TEST_MISSING:
        return "missing";
    default:
        /* An unset or unknown status cannot count as a pass. */
        return "error";
    }
}

static json_t *json_clean_string (const char *text)
{
    char *clean = utf8_clean (text);
    json_t *value = json_string (clean);
    free (clean);
    return value;
}

static json_t *json_uint (uint64_t value)
{
    return json_integer (value > (uint64_t) INT64_MAX ? INT64_MAX : (json_int_t) value);
}

/* tests jsonb: [{"name": ..., "status": ...}, ...] */
static char *tests_json (const Driftwatch__V1__JobResult *result)
{
    json_t *tests = json_array ();
    for (size_t i = 0; i < result->n_tests; i++) {
        const Driftwatch__V1__TestResult *test = result->tests[i];
        if (!test)
            continue;
        json_t *entry = json_object ();
        json_object_set_new (entry, "name", json_clean_string (test->name));
        json_object_set_new (entry, "status", json_string (test_status_name (test->status)));
        json_array_append_new (tests, entry);
    }
    char *text = json_dumps (tests, JSON_COMPACT);
    json_decref (tests);
    return text;
}

/* metrics jsonb: the AgentMetrics fields, tool_calls as {"tool": count}. */
static char *metrics_json (const Driftwatch__V1__AgentMetrics *m)
{
    if (!m)
        return NULL;

    json_t *tools = json_object ();
    for (size_t i = 0; i < m->n_tool_calls; i++) {
        const Driftwatch__V1__ToolCount *tc = m->tool_calls[i];
        if (!tc)
            continue;
        char *tool = utf8_clean (tc->tool);
        json_int_t previous = json_integer_value (json_object_get (tools, tool));
        json_object_set_new (tools, tool, json_integer (previous + (json_int_t) tc->count));
        free (tool);
    }

    json_t *obj = json_object ();
    json_object_set_new (obj, "turns", json_integer (m->turns));
    json_object_set_new (obj, "tool_calls", tools);
    json_object_set_new (obj, "input_tokens", json_uint (m->input_tokens));
    json_object_set_new (obj, "output_tokens", json_uint (m->output_tokens));
    json_object_set_new (obj, "cache_creation_tokens", json_uint (m->cache_creation_tokens));
    json_object_set_new (obj, "cache_read_tokens", json_uint (m->cache_read_tokens));
    json_object_set_new (obj, "cost_usd", json_real (m->cost_usd));
    json_object_set_new (obj, "duration_ms", json_uint (m->duration_ms));
    json_object_set_new (obj, "time_to_first_event_ms", json_uint (m->time_to_first_event_ms));
    json_object_set_new (obj, "terminal_reason", json_clean_string (m->terminal_reason));
    json_object_set_new (obj, "permission_denials", json_integer (m->permission_denials));
    json_object_set_new (obj, "api_model", json_clean_string (m->api_model));
    json_object_set_new (obj, "api_error_status", json_integer (m->api_error_status));
    json_object_set_new (obj, "api_retries", json_integer (m->api_retries));
    json_object_set_new (obj, "result_event_seen", json_boolean (m->result_event_seen));

    /* NaN or infinity cost would make json_real fail; jsonb has neither. */
    if (!json_object_get (obj, "cost_usd"))
        json_object_set_new (obj, "cost_usd", json_null ());
    char *text = json_dumps (obj, JSON_COMPACT);
    json_decref (obj);
    return text;
}

/* Text columns of one result, cleaned to valid UTF-8. */
typedef struct {
    char *outcome_reason;
    char *detail;
    char *cli_before;
    char *cli_after;
    char *tests;
    char *metrics;
} result_text_t;

static void result_text_free (result_text_t *t)
{
    free (t->outcome_reason);
    free (t->detail);
    free (t->cli_before);
    free (t->cli_after);
    free (t->tests);
    free (t->metrics);
}

static int insert_result (dw_store_t *self, const Driftwatch__V1__JobResult *r, int64_t job_id,
                          const char *disposition, const char *worker_id,
                          const result_text_t *text)
{
    char job_text[STORE_NUMBER_MAX];
    snprintf (job_text, sizeof job_text, "%" PRId64, job_id);

    params_t p = { .count = 0 };
    p_text (&p, r->attempt_id);
    p_text (&p, job_text);
    p_text (&p, s_outcome_names[r->outcome]);
    p_text (&p, text->outcome_reason);
    p_text (&p, text->detail);
    p_text (&p, disposition);
    p_bytes (&p, r->agent_diff.data, r->agent_diff.len);
    p_bool (&p, r->diff_truncated);
    p_text (&p, text->tests);
    p_text (&p, text->metrics);
    p_int (&p, r->agent_exit_code);
    p_uint (&p, r->setup_ms);
    p_uint (&p, r->agent_ms);
    p_uint (&p, r->grade_ms);
    p_uint (&p, r->started_ms);
    p_uint (&p, r->finished_ms);
    p_bytes (&p, r->log_tail.data, r->log_tail.len);
    p_text (&p, text->cli_before);
    p_text (&p, text->cli_after);
    p_uint (&p, r->events_total);
    p_text (&p, worker_id);
    return run_command (self, ST_RESULT_INSERT, &p, NULL);
}

int dw_store_record_result (dw_store_t *self, const Driftwatch__V1__JobResult *result,
                            const char *worker_id, int max_attempts,
                            dw_store_disposition_t *disposition)
{
    *disposition = DW_STORE_UNKNOWN_ATTEMPT;
    if (max_attempts < 1)
        max_attempts = 1;
    if (!is_uuid (result->attempt_id)) {
        dw_warn ("store: result for malformed attempt id worker=%s", worker_id);
        return 0;
    }
    if (result->outcome < 1 || result->outcome >= DW_OUTCOME_COUNT) {
        char message[128];
        snprintf (message, sizeof message,
                  "attempt %s: invalid outcome %d; the worker must set an outcome 1..7",
                  result->attempt_id, (int) result->outcome);
        fail (self, "record_result", message);
        return -1;
    }

    /* Owner check first, without locks, to learn the job to lock. A late
     * result of an expired or returned attempt of this worker still counts. */
    params_t o = { .count = 0 };
    p_text (&o, result->attempt_id);
    PGresult *res = run (self, ST_ATTEMPT_OWNER, &o);
    if (!res)
        return -1;
    if (PQntuples (res) != 1 || strcmp (PQgetvalue (res, 0, 1), worker_id) != 0) {
        dw_warn ("store: result for unknown attempt attempt=%s worker=%s", result->attempt_id,
                 worker_id);
        PQclear (res);
        return 0;
    }
    int64_t job_id = get_int (res, 0, 0);
    PQclear (res);

    result_text_t text = {
        .outcome_reason = utf8_clean (result->outcome_reason),
        .detail = utf8_clean (result->detail),
        .cli_before = utf8_clean (result->cli_version_before),
        .cli_after = utf8_clean (result->cli_version_after),
        .tests = tests_json (result),
        .metrics = metrics_json (result->metrics),
    };

    bool final = false;
    int attempts = 0;
    if (begin (self) != 0)
        goto failed_outside;
    if (lock_job (self, job_id, &final, &attempts) != 0)
        goto failed;

    res = run (self, ST_ATTEMPT_LOCK, &o);
    if (!res)
        goto failed;
    bool was_returned = strcmp (PQgetvalue (res, 0, 0), "returned") == 0;
    bool have_result = get_bool (res, 0, 1);
    char stored_outcome[32];
    snprintf (stored_outcome, sizeof stored_outcome, "%s", PQgetvalue (res, 0, 2));
    PQclear (res);
    if (have_result) {
        rollback (self);
        result_text_free (&text);
        *disposition = DW_STORE_DUPLICATE;
        if (strcmp (stored_outcome, s_outcome_names[result->outcome]) != 0)
            dw_warn ("store: resent result differs attempt=%s stored=%s resent=%s",
                     result->attempt_id, stored_outcome, s_outcome_names[result->outcome]);
        return 0;
    }

    /* An attempt handed back and then reported after all uses an attempt
     * again. */
    params_t j = { .count = 0 };
    p_int (&j, job_id);
    if (was_returned) {
        if (run_command (self, ST_JOB_COUNT_ATTEMPT, &j, NULL) != 0)
            goto failed;
        attempts++;
    }

    const char *kind;
    bool infra = result->outcome == DRIFTWATCH__V1__OUTCOME__OUTCOME_INFRA_ERROR;
    if (final)
        kind = "superseded";
    else if (infra && attempts < max_attempts)
        kind = "retried";
    else
        kind = "final";

    if (insert_result (self, result, job_id, kind, worker_id, &text) != 0)
        goto failed;
    if (run_command (self, ST_ATTEMPT_FINISH, &o, NULL) != 0)
        goto failed;
    if (strcmp (kind, "final") == 0) {
        params_t f = { .count = 0 };
        p_int (&f, job_id);
        p_text (&f, s_outcome_names[result->outcome]);
        p_text (&f, result->attempt_id);
        if (run_command (self, ST_JOB_FINALISE, &f, NULL) != 0)
            goto failed;
    }
    if (commit (self) != 0)
        goto failed;

    result_text_free (&text);
    *disposition = strcmp (kind, "superseded") == 0 ? DW_STORE_SUPERSEDED : DW_STORE_STORED;
    dw_info ("store: result stored job=%" PRId64 " attempt=%s worker=%s outcome=%s "
             "disposition=%s", job_id, result->attempt_id, worker_id,
             s_outcome_names[result->outcome], kind);
    return 0;

failed:
    rollback (self);
failed_outside:
    result_text_free (&text);
    return -1;
}

/* --- events ----------------------------------------------------------------- */

/* Heap NUL-terminated copy of PAYLOAD when it is JSON that jsonb accepts,
 * else NULL. jansson without JSON_ALLOW_NUL rejects \u0000, which jsonb
 * cannot store, and rejects invalid UTF-8 as jsonb does. */
static char *payload_doc (const ProtobufCBinaryData *payload)
{
    if (!payload->data || payload->len == 0)
        return NULL;
    json_t *doc = json_loadb ((const char *) payload->data, payload->len, JSON_DECODE_ANY, NULL);
    if (!doc)
        return NULL;
    json_decref (doc);

    char *copy = malloc (payload->len + 1);
    if (!copy)
        abort ();
    memcpy (copy, payload->data, payload->len);
    copy[payload->len] = '\0';
    return copy;
}

static int insert_event (dw_store_t *self, const char *attempt_id,
                         const Driftwatch__V1__JobEvent *event, const char *kind, const char *doc)
{
    params_t p = { .count = 0 };
    p_text (&p, attempt_id);
    p_uint (&p, event->seq);
    p_uint (&p, event->time_ms);
    p_text (&p, kind);
    p_bytes (&p, event->payload.data, event->payload.len);
    p_text (&p, doc);
    p_bool (&p, event->truncated);
    return run_command (self, ST_EVENT_INSERT, &p, NULL);
}

int dw_store_record_events (dw_store_t *self, const Driftwatch__V1__JobEvents *batch,
                            const char *worker_id, uint64_t *through_seq)
{
    *through_seq = 0;

    params_t o = { .count = 0 };
    p_text (&o, batch->attempt_id);
    if (!is_uuid (batch->attempt_id)) {
        fail (self, "record_events", "malformed attempt id");
        return -1;
    }
    /* Any state of the attempt is fine: a worker may flush spooled events
     * after its result was stored or its lease expired. */
    PGresult *res = run (self, ST_ATTEMPT_OWNER, &o);
    if (!res)
        return -1;
    bool owned = PQntuples (res) == 1 && strcmp (PQgetvalue (res, 0, 1), worker_id) == 0;
    PQclear (res);
    if (!owned) {
        char message[160];
        snprintf (message, sizeof message, "attempt %s is not leased to worker %s",
                  batch->attempt_id, worker_id);
        fail (self, "record_events", message);
        return -1;
    }

    if (begin (self) != 0)
        return -1;
    for (size_t i = 0; i < batch->n_events; i++) {
        const Driftwatch__V1__JobEvent *event = batch->events[i];
        if (!event || event->seq == 0 || event->seq > (uint64_t) INT64_MAX)
            continue;

        char *kind = utf8_clean (event->kind);
        char *doc = payload_doc (&event->payload);
        int rc;
        if (doc) {
            /* jsonb may still reject what jansson accepted (deep nesting);
             * then the event is stored without its doc. */
            if (exec_simple (self, "SAVEPOINT dw_event") != 0) {
                free (kind);
                free (doc);
                goto failed;
            }
            rc = insert_event (self, batch->attempt_id, event, kind, doc);
            if (rc != 0) {
                if (exec_simple (self, "ROLLBACK TO SAVEPOINT dw_event") != 0) {
                    free (kind);
                    free (doc);
                    goto failed;
                }
                rc = insert_event (self, batch->attempt_id, event, kind, NULL);
            }
        }
        else
            rc = insert_event (self, batch->attempt_id, event, kind, NULL);
        free (kind);
        free (doc);
        if (rc != 0)
            goto failed;
    }
    if (commit (self) != 0)
        goto failed;

    res = run (self, ST_EVENTS_THROUGH, &o);
    if (!res)
        return -1;
    *through_seq = (uint64_t) get_int (res, 0, 0);
    PQclear (res);
    return 0;

failed:
    rollback (self);
    return -1;
}

/* --- workers ---------------------------------------------------------------- */

int dw_store_upsert_worker (dw_store_t *self, const char *identity,
                            const Driftwatch__V1__Hello *hello)
{
    json_t *caps = json_array ();
    for (size_t i = 0; i < hello->n_capabilities; i++)
        json_array_append_new (caps, json_clean_string (hello->capabilities[i]));
    json_t *limits = json_array ();
    for (size_t i = 0; i < hello->n_limits; i++) {
        const Driftwatch__V1__LimitSupport *l = hello->limits[i];
        if (!l)
            continue;
        json_t *entry = json_object ();
        json_object_set_new (entry, "name", json_clean_string (l->name));
        json_object_set_new (entry, "enforced", json_boolean (l->enforced));
        json_object_set_new (entry, "mechanism", json_clean_string (l->mechanism));
        json_array_append_new (limits, entry);
    }
    char *caps_text = json_dumps (caps, JSON_COMPACT);
    char *limits_text = json_dumps (limits, JSON_COMPACT);
    json_decref (caps);
    json_decref (limits);

    char *id = utf8_clean (identity);
    char *hostname = utf8_clean (hello->hostname);
    char *worker_version = utf8_clean (hello->worker_version);
    char *agent_version = utf8_clean (hello->agent_version);

    params_t p = { .count = 0 };
    p_text (&p, id);
    p_text (&p, hostname);
    p_int (&p, hello->slots);
    p_text (&p, worker_version);
    p_text (&p, agent_version);
    p_text (&p, caps_text);
    p_text (&p, limits_text);
    int rc = run_command (self, ST_WORKER_UPSERT, &p, NULL);

    free (caps_text);
    free (limits_text);
    free (id);
    free (hostname);
    free (worker_version);
    free (agent_version);
    return rc;
}

int dw_store_set_worker_status (dw_store_t *self, const char *identity, const char *status)
{
    if (!status || (strcmp (status, "active") != 0 && strcmp (status, "lost") != 0
                    && strcmp (status, "gone") != 0)) {
        fail (self, "worker_status", "invalid worker status; use active, lost or gone");
        return -1;
    }
    char *id = utf8_clean (identity);
    params_t p = { .count = 0 };
    p_text (&p, id);
    p_text (&p, status);
    int64_t affected = 0;
    int rc = run_command (self, ST_WORKER_STATUS, &p, &affected);
    free (id);
    if (rc != 0)
        return -1;
    return affected == 0 ? 1 : 0;
}

/* --- progress and summaries ------------------------------------------------- */

int dw_store_run_counts (dw_store_t *self, int64_t run_id, dw_run_counts_t *out)
{
    memset (out, 0, sizeof *out);

    params_t p = { .count = 0 };
    p_int (&p, run_id);
    PGresult *res = run (self, ST_RUN_COUNTS, &p);
    if (!res)
        return -1;

    out->jobs_total = (size_t) get_int (res, 0, 0);
    out->jobs_final = (size_t) get_int (res, 0, 1);
    out->jobs_leased = (size_t) get_int (res, 0, 2);
    out->jobs_pending = (size_t) get_int (res, 0, 3);
    size_t named = 0;
    for (int outcome = 1; outcome < DW_OUTCOME_COUNT; outcome++) {
        out->final_by_outcome[outcome] = (size_t) get_int (res, 0, 3 + outcome);
        named += out->final_by_outcome[outcome];
    }
    /* Index 0 (unspecified) counts final outcomes outside the known set. */
    out->final_by_outcome[0] = out->jobs_final - named;
    out->attempts = (size_t) get_int (res, 0, 11);
    out->superseded = (size_t) get_int (res, 0, 12);
    PQclear (res);
    return 0;
}
