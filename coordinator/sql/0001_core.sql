-- Core schema of the driftwatch coordinator: suites and their tasks, daily
-- runs and their jobs, workers, leased attempts, results and agent events.
-- Outcome text values: resolved, unresolved, agent_error, timeout,
-- infra_error, harness_error, cancelled (proto enum Outcome 1..7).
-- The migration runner wraps this file in a transaction and records it in
-- schema_migrations, so it contains no BEGIN or COMMIT of its own.

CREATE TABLE schema_migrations (
    version int PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE suites (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    content_hash text NOT NULL,
    source_path text NOT NULL,
    task_count int NOT NULL,
    imported_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (name, content_hash)
);

CREATE TABLE tasks (
    id bigserial PRIMARY KEY,
    suite_id bigint NOT NULL REFERENCES suites (id),
    instance_id text NOT NULL,
    repo text NOT NULL,
    repo_language text NOT NULL,
    base_commit text NOT NULL,
    -- The normalised suite row (repo_url resolved by the suite loader).
    spec jsonb NOT NULL,
    UNIQUE (suite_id, instance_id)
);

CREATE TABLE runs (
    id bigserial PRIMARY KEY,
    day date NOT NULL,
    -- Series that the detector follows.
    track text NOT NULL DEFAULT 'default',
    config_hash text NOT NULL,
    suite_id bigint NOT NULL REFERENCES suites (id),
    -- Panel, repeats, agent and limits, for reports.
    config jsonb NOT NULL,
    status text NOT NULL DEFAULT 'running'
        CHECK (status IN ('running', 'complete', 'harness_failure', 'stopped')),
    created_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    UNIQUE (day, config_hash)
);

CREATE TABLE jobs (
    id bigserial PRIMARY KEY,
    run_id bigint NOT NULL REFERENCES runs (id),
    task_id bigint NOT NULL REFERENCES tasks (id),
    repeat_index int NOT NULL,
    -- Attempts used so far; an attempt handed back unfinished does not count.
    attempts int NOT NULL DEFAULT 0,
    -- Both NULL until the job is final.
    final_attempt_id uuid,
    final_outcome text,
    UNIQUE (run_id, task_id, repeat_index)
);

CREATE TABLE workers (
    id text PRIMARY KEY,
    hostname text NOT NULL,
    slots int NOT NULL,
    worker_version text,
    agent_version text,
    capabilities jsonb,
    limits jsonb,
    status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'lost', 'gone')),
    first_seen timestamptz NOT NULL DEFAULT now(),
    last_seen timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE attempts (
    id uuid PRIMARY KEY,
    job_id bigint NOT NULL REFERENCES jobs (id),
    attempt_number int NOT NULL,
    worker_id text NOT NULL,
    state text NOT NULL CHECK (state IN ('leased', 'finished', 'expired', 'returned')),
    leased_at timestamptz NOT NULL DEFAULT now(),
    lease_expires_at timestamptz NOT NULL,
    ended_at timestamptz,
    UNIQUE (job_id, attempt_number)
);

-- Live leases, scanned by the expiry sweep and the pending-job query.
CREATE INDEX attempts_leased ON attempts (job_id) WHERE state = 'leased';

CREATE TABLE results (
    attempt_id uuid PRIMARY KEY REFERENCES attempts (id),
    job_id bigint NOT NULL REFERENCES jobs (id),
    outcome text NOT NULL,
    outcome_reason text,
    detail text,
    disposition text NOT NULL CHECK (disposition IN ('final', 'retried', 'superseded')),
    agent_diff bytea,
    diff_truncated boolean,
    -- [{"name": ..., "status": "passed|failed|skipped|error|missing"}]
    tests jsonb,
    -- AgentMetrics fields; tool_calls is an object tool -> count.
    metrics jsonb,
    agent_exit_code int,
    setup_ms bigint,
    agent_ms bigint,
    grade_ms bigint,
    started_at timestamptz,
    finished_at timestamptz,
    log_tail bytea,
    cli_version_before text,
    cli_version_after text,
    events_total bigint,
    worker_id text NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX results_job ON results (job_id);

CREATE TABLE events (
    attempt_id uuid NOT NULL REFERENCES attempts (id),
    seq bigint NOT NULL,
    ts timestamptz,
    kind text,
    payload bytea NOT NULL,
    -- The payload as jsonb when it is valid JSON, else NULL.
    doc jsonb,
    truncated boolean NOT NULL DEFAULT false,
    PRIMARY KEY (attempt_id, seq)
);
