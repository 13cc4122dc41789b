//! End-to-end tests: the real `sluice` binary, started as users start it.

mod backfill;
mod browser;
mod cli;
mod cluster;
mod commands;
mod outage;
mod own_postgres;
mod pipeline;
mod routing;
mod scale_out;
mod standalone;
mod support;
