//! Parsed DAG versions, kept by hash: a stored version never changes, so each is parsed once
//! per process however often pages and actions ask for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sluice_core::{Dag, parse_dag};
use sluice_store::{DagRecord, Store};

use crate::error::AppError;

/// More versions than this and the cache starts over (old versions are rarely asked for).
const MAX_VERSIONS: usize = 4096;

#[derive(Default)]
pub(crate) struct DagCache {
    by_hash: Mutex<HashMap<String, Arc<Dag>>>,
}

impl DagCache {
    /// The DAG as the scheduler last loaded it: the stored version of its file.
    pub(crate) async fn get(
        &self,
        store: &dyn Store,
        record: &DagRecord,
    ) -> Result<Arc<Dag>, AppError> {
        if let Some(dag) = self.lock().get(&record.hash) {
            return Ok(dag.clone());
        }
        let Some(version) = store.dag_version(&record.hash).await? else {
            return Err(AppError::Conflict(format!(
                "version {} of DAG `{}` is missing from the database",
                record.hash, record.dag_id
            )));
        };
        let dag = parse_dag(&version.fileloc, &version.source).map_err(|errors| {
            AppError::Conflict(format!(
                "the stored DAG `{}` does not parse: {}",
                record.dag_id,
                errors.first().map(ToString::to_string).unwrap_or_default()
            ))
        })?;
        let dag = Arc::new(dag);
        let mut cache = self.lock();
        if cache.len() >= MAX_VERSIONS {
            cache.clear();
        }
        cache.insert(record.hash.clone(), dag.clone());
        Ok(dag)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Dag>>> {
        // a panic while holding the lock leaves a map that is still valid
        self.by_hash
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
