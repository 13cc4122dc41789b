//! The web crate's tests as a user sees the app: a real SQLite store behind the router, seeded
//! through the `Store` trait. One test binary, so the app is linked once.

mod actions;
mod api;
mod auth;
mod backfills;
mod dag_pages;
mod live;
mod pages;
mod support;
mod task_instance;
