-- Each scheduler process's loop time, recorded after every tick, so `/metrics` in the web
-- process (which cannot see the scheduler's memory) shows how long the loop takes.
CREATE TABLE schedulers (
    scheduler_id        TEXT PRIMARY KEY,
    host                TEXT NOT NULL,
    started_at          INTEGER NOT NULL,
    last_tick_at        INTEGER NOT NULL,
    last_tick_seconds   REAL NOT NULL,
    ticks               INTEGER NOT NULL,
    tick_seconds_total  REAL NOT NULL,
    failed_ticks        INTEGER NOT NULL
);
