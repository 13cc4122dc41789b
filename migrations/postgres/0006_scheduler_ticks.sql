-- Each scheduler process's loop time, recorded after every tick, so `/metrics` in the web
-- process (which cannot see the scheduler's memory) shows how long the loop takes.
CREATE TABLE schedulers (
    scheduler_id        TEXT PRIMARY KEY,
    host                TEXT NOT NULL,
    started_at          TIMESTAMPTZ NOT NULL,
    last_tick_at        TIMESTAMPTZ NOT NULL,
    last_tick_seconds   DOUBLE PRECISION NOT NULL,
    ticks               BIGINT NOT NULL,
    tick_seconds_total  DOUBLE PRECISION NOT NULL,
    failed_ticks        BIGINT NOT NULL
);
