CREATE TABLE dags (
    dag_id       TEXT PRIMARY KEY,
    fileloc      TEXT NOT NULL,
    hash         TEXT NOT NULL,
    is_paused    BOOLEAN NOT NULL DEFAULT FALSE,
    is_active    BOOLEAN NOT NULL DEFAULT TRUE,
    schedule     TEXT,
    timezone     TEXT NOT NULL,
    description  TEXT,
    tags         JSONB NOT NULL DEFAULT '[]',
    updated_at   TIMESTAMPTZ NOT NULL
);

CREATE TABLE dag_versions (
    hash        TEXT PRIMARY KEY,
    dag_id      TEXT NOT NULL,
    fileloc     TEXT NOT NULL,
    source      TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE import_errors (
    fileloc     TEXT PRIMARY KEY,
    errors      JSONB NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE dag_runs (
    pk                   BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dag_id               TEXT NOT NULL,
    run_id               TEXT NOT NULL,
    run_type             TEXT NOT NULL,
    state                TEXT NOT NULL,
    logical_date         TIMESTAMPTZ NOT NULL,
    data_interval_start  TIMESTAMPTZ NOT NULL,
    data_interval_end    TIMESTAMPTZ NOT NULL,
    dag_hash             TEXT NOT NULL,
    params               JSONB NOT NULL DEFAULT '{}',
    triggered_by         TEXT NOT NULL,
    queued_at            TIMESTAMPTZ NOT NULL,
    started_at           TIMESTAMPTZ,
    ended_at             TIMESTAMPTZ,
    UNIQUE (dag_id, logical_date),
    UNIQUE (dag_id, run_id)
);
CREATE INDEX dag_runs_by_state ON dag_runs (state, dag_id);

CREATE TABLE task_instances (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_pk              BIGINT NOT NULL REFERENCES dag_runs (pk) ON DELETE CASCADE,
    task_id             TEXT NOT NULL,
    map_index           INTEGER NOT NULL DEFAULT -1,
    state               TEXT NOT NULL,
    try_number          INTEGER NOT NULL DEFAULT 0,
    max_tries           INTEGER NOT NULL,
    retry_delay_ms      BIGINT NOT NULL,
    retry_exponential   BOOLEAN NOT NULL DEFAULT FALSE,
    max_retry_delay_ms  BIGINT,
    timeout_ms          BIGINT,
    upstream            JSONB NOT NULL DEFAULT '[]',
    trigger_rule        TEXT NOT NULL,
    queue               TEXT NOT NULL,
    pool                TEXT,
    priority            INTEGER NOT NULL DEFAULT 0,
    next_try_at         TIMESTAMPTZ,
    queued_at           TIMESTAMPTZ,
    started_at          TIMESTAMPTZ,
    ended_at            TIMESTAMPTZ,
    UNIQUE (run_pk, task_id, map_index)
);
CREATE INDEX task_instances_claimable ON task_instances (state, queue, priority DESC, id);

CREATE TABLE task_attempts (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ti_id         BIGINT NOT NULL REFERENCES task_instances (id) ON DELETE CASCADE,
    run_pk        BIGINT NOT NULL REFERENCES dag_runs (pk) ON DELETE CASCADE,
    try_number    INTEGER NOT NULL,
    state         TEXT NOT NULL,
    worker_id     TEXT NOT NULL,
    lease_token   TEXT NOT NULL,
    started_at    TIMESTAMPTZ NOT NULL,
    ended_at      TIMESTAMPTZ,
    heartbeat_at  TIMESTAMPTZ NOT NULL,
    exit_code     INTEGER,
    error         TEXT,
    UNIQUE (ti_id, try_number)
);
CREATE INDEX task_attempts_by_run ON task_attempts (run_pk);
CREATE INDEX task_attempts_running ON task_attempts (state, heartbeat_at);

CREATE TABLE task_logs (
    attempt_id  BIGINT NOT NULL REFERENCES task_attempts (id) ON DELETE CASCADE,
    seq         BIGINT NOT NULL,
    content     TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (attempt_id, seq)
);

CREATE TABLE task_outputs (
    attempt_id  BIGINT NOT NULL REFERENCES task_attempts (id) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    value       JSONB NOT NULL,
    PRIMARY KEY (attempt_id, key)
);

CREATE TABLE workers (
    worker_id     TEXT PRIMARY KEY,
    host          TEXT NOT NULL,
    queues        JSONB NOT NULL,
    slots         INTEGER NOT NULL,
    slots_in_use  INTEGER NOT NULL,
    started_at    TIMESTAMPTZ NOT NULL,
    heartbeat_at  TIMESTAMPTZ NOT NULL
);
