-- A backfill: a range of a DAG's schedule run on request, with its own max_active_runs. Its
-- runs point at it; the scheduler starts them within its limit, oldest (or newest) first.
CREATE TABLE backfills (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    dag_id           TEXT NOT NULL,
    -- logical dates in [range_start, range_end)
    range_start      INTEGER NOT NULL,
    range_end        INTEGER NOT NULL,
    max_active_runs  INTEGER NOT NULL,
    reverse          INTEGER NOT NULL DEFAULT 0,
    -- the options as given (rerun_failed, tasks, downstream), for `backfill status`
    options          TEXT NOT NULL DEFAULT '{}',
    state            TEXT NOT NULL,
    triggered_by     TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    ended_at         INTEGER
);
-- one open backfill per DAG: running the same command again resumes it, never doubles it
CREATE UNIQUE INDEX backfills_one_open_per_dag ON backfills (dag_id) WHERE state = 'running';

ALTER TABLE dag_runs ADD COLUMN backfill_id INTEGER REFERENCES backfills (id);
CREATE INDEX dag_runs_by_backfill ON dag_runs (backfill_id, state) WHERE backfill_id IS NOT NULL;

-- the try number when the task instance was last cleared: `max_tries - try_base` is the
-- number of tries each clearing allows (the task's retries + 1)
ALTER TABLE task_instances ADD COLUMN try_base INTEGER NOT NULL DEFAULT 0;
