//! The `http` and `ingest` steps against a local test server, tempdirs and real databases.

mod formats;
mod http_step;
mod ingest_files;
mod ingest_http;
mod ingest_sql;
mod support;
