//! The `http` and `ingest` steps against a local test server, tempdirs and real databases.

#[path = "../common/fake_s3.rs"]
mod fake_s3;
mod formats;
mod http_step;
mod ingest_files;
mod ingest_http;
mod ingest_sql;
mod support;
