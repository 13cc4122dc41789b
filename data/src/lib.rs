//! sluice's data plane: reading and writing data files (CSV, JSON lines, Parquet) and running
//! batch SQL in-process with Apache DataFusion.
//!
//! This is the only crate of the workspace that links DataFusion; everything Arrow-shaped is
//! reached through [`arrow`] and [`parquet`] (DataFusion's own copies), never a second Arrow.
//!
//! - [`files`]: [`format_for`] (which format a path holds), [`write_json_records`] (records
//!   to a file, atomically) and [`read_batches`] (a file as Arrow record batches).
//! - [`batch`]: [`batch::run_batch`], the engine behind the worker's `batch` step.
#![forbid(unsafe_code)]

pub mod batch;
mod error;
pub mod files;
pub mod load;

pub use datafusion::arrow;
pub use datafusion::parquet;
pub use error::DataError;
pub use files::{
    BatchIter, WriteSummary, format_for, read_batches, write_batches, write_json_records,
};
pub use sluice_core::spec::FileFormat;
