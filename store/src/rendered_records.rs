//! What an attempt's templates rendered to, as the worker recorded it.

use std::collections::BTreeMap;

use crate::{StoreError, StoreResult};

/// One attempt's rendered fields: field name (`command`, `env.FOO`, `working_dir`, `sql`) →
/// the text it rendered to, secrets already masked by the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedRecord {
    pub attempt_id: i64,
    pub fields: BTreeMap<String, String>,
}

pub(crate) fn encode(fields: &BTreeMap<String, String>) -> StoreResult<String> {
    serde_json::to_string(fields).map_err(|e| StoreError::Corrupt {
        table: "attempt_rendered",
        message: format!("encoding fields: {e}"),
    })
}

pub(crate) fn decode(attempt_id: i64, text: &str) -> StoreResult<RenderedRecord> {
    let fields = serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        table: "attempt_rendered",
        message: format!("fields of attempt {attempt_id}: {e}"),
    })?;
    Ok(RenderedRecord { attempt_id, fields })
}
