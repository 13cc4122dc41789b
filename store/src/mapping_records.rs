//! Records of `foreach` expansion: a template-mapped task's placeholder turned into its
//! mapped instances.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::{Lease, StoreError, StoreResult};

/// The expansion of a task mapped from a `foreach` template, done by the worker holding the
/// lease on its placeholder (`map_index -1`) once the template rendered to a list.
#[derive(Debug, Clone)]
pub struct ExpandTask {
    pub lease: Lease,
    /// One mapped instance per item, `map_index` 0, 1, … in this order; none skips the task.
    pub items: Vec<Value>,
    /// Appended to the placeholder attempt's log in the same transaction.
    pub log: String,
    pub now: DateTime<Utc>,
}

/// An `item` column (JSON text) read back.
pub(crate) fn parse_item(item: Option<String>) -> StoreResult<Option<Value>> {
    item.map(|text| {
        serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
            table: "task_instances",
            message: format!("`item`: {e}"),
        })
    })
    .transpose()
}
