//! Parsed DAG versions, kept by hash: a stored version never changes, so each is parsed once
//! per process however often pages and actions ask for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sluice_core::{Dag, parse_dag};
use sluice_store::{DagRecord, Store};

use crate::error::AppError;

/// More versions than this and the cache starts over (old versions are rarely asked for).
const MAX_VERSIONS: usize = 4096;

/// A parsed version, or why it does not parse (kept too, so a broken version is not parsed
/// again on every page).
type Parsed = Result<Arc<Dag>, String>;

#[derive(Default)]
pub(crate) struct DagCache {
    by_hash: Mutex<HashMap<String, Parsed>>,
}

impl DagCache {
    /// The DAG as the scheduler last loaded it: the stored version of its file.
    pub(crate) async fn get(
        &self,
        store: &dyn Store,
        record: &DagRecord,
    ) -> Result<Arc<Dag>, AppError> {
        self.version(store, &record.dag_id, &record.hash).await
    }

    /// One stored version of a DAG (the one a run is pinned to, say).
    pub(crate) async fn version(
        &self,
        store: &dyn Store,
        dag_id: &str,
        hash: &str,
    ) -> Result<Arc<Dag>, AppError> {
        if let Some(parsed) = self.lock().get(hash) {
            return parsed.clone().map_err(AppError::Conflict);
        }
        let Some(version) = store.dag_version(hash).await? else {
            return Err(AppError::Conflict(format!(
                "version {hash} of DAG `{dag_id}` is missing from the database"
            )));
        };
        let parsed: Parsed = parse_dag(&version.fileloc, &version.source)
            .map(Arc::new)
            .map_err(|errors| {
                format!(
                    "the stored DAG `{dag_id}` does not parse: {}",
                    errors.first().map(ToString::to_string).unwrap_or_default()
                )
            });
        let mut cache = self.lock();
        if cache.len() >= MAX_VERSIONS {
            cache.clear();
        }
        cache.insert(hash.to_owned(), parsed.clone());
        parsed.map_err(AppError::Conflict)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Parsed>> {
        // a panic while holding the lock leaves a map that is still valid
        self.by_hash
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
