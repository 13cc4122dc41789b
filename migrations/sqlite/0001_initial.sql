-- Timestamps are INTEGER microseconds since the Unix epoch (UTC): SQLite has no timestamp
-- type, and integers compare and index correctly where text of varying precision would not.

CREATE TABLE dags (
    dag_id       TEXT PRIMARY KEY,
    fileloc      TEXT NOT NULL,
    hash         TEXT NOT NULL,
    is_paused    INTEGER NOT NULL DEFAULT 0,
    is_active    INTEGER NOT NULL DEFAULT 1,
    schedule     TEXT,
    timezone     TEXT NOT NULL,
    description  TEXT,
    tags         TEXT NOT NULL DEFAULT '[]',
    updated_at   INTEGER NOT NULL
);

CREATE TABLE dag_versions (
    hash        TEXT PRIMARY KEY,
    dag_id      TEXT NOT NULL,
    fileloc     TEXT NOT NULL,
    source      TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE import_errors (
    fileloc     TEXT PRIMARY KEY,
    errors      TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE dag_runs (
    pk                   INTEGER PRIMARY KEY AUTOINCREMENT,
    dag_id               TEXT NOT NULL,
    run_id               TEXT NOT NULL,
    run_type             TEXT NOT NULL,
    state                TEXT NOT NULL,
    logical_date         INTEGER NOT NULL,
    data_interval_start  INTEGER NOT NULL,
    data_interval_end    INTEGER NOT NULL,
    dag_hash             TEXT NOT NULL,
    params               TEXT NOT NULL DEFAULT '{}',
    triggered_by         TEXT NOT NULL,
    queued_at            INTEGER NOT NULL,
    started_at           INTEGER,
    ended_at             INTEGER,
    UNIQUE (dag_id, logical_date),
    UNIQUE (dag_id, run_id)
);
CREATE INDEX dag_runs_by_state ON dag_runs (state, dag_id);

CREATE TABLE task_instances (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    run_pk              INTEGER NOT NULL REFERENCES dag_runs (pk) ON DELETE CASCADE,
    task_id             TEXT NOT NULL,
    map_index           INTEGER NOT NULL DEFAULT -1,
    state               TEXT NOT NULL,
    try_number          INTEGER NOT NULL DEFAULT 0,
    max_tries           INTEGER NOT NULL,
    retry_delay_ms      INTEGER NOT NULL,
    retry_exponential   INTEGER NOT NULL DEFAULT 0,
    max_retry_delay_ms  INTEGER,
    timeout_ms          INTEGER,
    upstream            TEXT NOT NULL DEFAULT '[]',
    trigger_rule        TEXT NOT NULL,
    queue               TEXT NOT NULL,
    pool                TEXT,
    priority            INTEGER NOT NULL DEFAULT 0,
    next_try_at         INTEGER,
    queued_at           INTEGER,
    started_at          INTEGER,
    ended_at            INTEGER,
    UNIQUE (run_pk, task_id, map_index)
);
CREATE INDEX task_instances_claimable ON task_instances (state, queue, priority DESC, id);

CREATE TABLE task_attempts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    ti_id         INTEGER NOT NULL REFERENCES task_instances (id) ON DELETE CASCADE,
    run_pk        INTEGER NOT NULL REFERENCES dag_runs (pk) ON DELETE CASCADE,
    try_number    INTEGER NOT NULL,
    state         TEXT NOT NULL,
    worker_id     TEXT NOT NULL,
    lease_token   TEXT NOT NULL,
    started_at    INTEGER NOT NULL,
    ended_at      INTEGER,
    heartbeat_at  INTEGER NOT NULL,
    exit_code     INTEGER,
    error         TEXT,
    UNIQUE (ti_id, try_number)
);
CREATE INDEX task_attempts_by_run ON task_attempts (run_pk);
CREATE INDEX task_attempts_running ON task_attempts (state, heartbeat_at);

CREATE TABLE task_logs (
    attempt_id  INTEGER NOT NULL REFERENCES task_attempts (id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    content     TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (attempt_id, seq)
);

CREATE TABLE task_outputs (
    attempt_id  INTEGER NOT NULL REFERENCES task_attempts (id) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    PRIMARY KEY (attempt_id, key)
);

CREATE TABLE workers (
    worker_id     TEXT PRIMARY KEY,
    host          TEXT NOT NULL,
    queues        TEXT NOT NULL,
    slots         INTEGER NOT NULL,
    slots_in_use  INTEGER NOT NULL,
    started_at    INTEGER NOT NULL,
    heartbeat_at  INTEGER NOT NULL
);
