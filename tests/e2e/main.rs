//! End-to-end tests: the real `sluice` binary, started as users start it.

mod backfill;
mod browser;
mod cli;
mod commands;
mod standalone;
mod support;
