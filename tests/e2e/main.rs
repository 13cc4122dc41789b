//! End-to-end tests: the real `sluice` binary, started as users start it.

mod cli;
mod cluster;
mod outage;
mod own_postgres;
mod routing;
mod scale_out;
mod standalone;
mod support;
