-- What each attempt's templates rendered to (field -> text, secrets masked by the worker),
-- recorded before its step runs, so the task instance page shows it while the attempt runs.
CREATE TABLE attempt_rendered (
    attempt_id  INTEGER PRIMARY KEY REFERENCES task_attempts (id) ON DELETE CASCADE,
    run_pk      INTEGER NOT NULL REFERENCES dag_runs (pk) ON DELETE CASCADE,
    fields      TEXT NOT NULL
);
CREATE INDEX attempt_rendered_by_run ON attempt_rendered (run_pk);
