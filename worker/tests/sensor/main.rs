//! The `sensor` step: each condition through the step itself, and both modes run by a real
//! worker on SQLite and PostgreSQL (the `task` condition, freeing the slot, timeouts, cancel).

mod conditions;
#[path = "../common/fake_s3.rs"]
mod fake_s3;
mod support;
mod worker;
