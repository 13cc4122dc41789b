-- Pools cap how many task instances of a pool run at once across the cluster; a pool
-- without a row here has no cap.
CREATE TABLE pools (
    name        TEXT PRIMARY KEY,
    slots       INTEGER NOT NULL CHECK (slots >= 0),
    updated_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX task_instances_running_by_pool ON task_instances (pool) WHERE state = 'running';

-- Each attempt's log is capped: the bytes kept, and the bytes of the oldest chunks dropped.
ALTER TABLE task_attempts
    ADD COLUMN log_bytes BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN log_dropped_bytes BIGINT NOT NULL DEFAULT 0;

CREATE INDEX task_attempts_by_worker ON task_attempts (worker_id) WHERE state = 'running';

-- A finished attempt asks whether anything else in its run is unsettled or waits on it.
CREATE INDEX task_instances_by_run_state ON task_instances (run_pk, state);
