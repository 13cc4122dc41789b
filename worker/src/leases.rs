//! The leases a worker holds, and the watch that stops an attempt within moments of its lease
//! being taken away (run cancelled, attempt failed as a zombie) instead of at its next
//! heartbeat.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_store::{Lease, Store};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The running attempts of one worker, each with the token that stops it.
#[derive(Default)]
pub(crate) struct HeldLeases {
    held: Mutex<HashMap<i64, (Lease, CancellationToken)>>,
}

impl HeldLeases {
    pub(crate) fn hold(&self, lease: &Lease, cancel: CancellationToken) {
        self.lock()
            .insert(lease.attempt_id, (lease.clone(), cancel));
    }

    pub(crate) fn release(&self, lease: &Lease) {
        self.lock().remove(&lease.attempt_id);
    }

    pub(crate) fn count(&self) -> u32 {
        u32::try_from(self.lock().len()).unwrap_or(u32::MAX)
    }

    fn leases(&self) -> Vec<Lease> {
        self.lock()
            .values()
            .map(|(lease, _)| lease.clone())
            .collect()
    }

    fn cancel(&self, attempt_id: i64) {
        if let Some((_, cancel)) = self.lock().get(&attempt_id) {
            cancel.cancel();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, (Lease, CancellationToken)>> {
        // a panic while holding this lock leaves a plain map behind: still usable
        self.held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Checks the held leases whenever the store says attempts were cancelled, and every `every`
/// as a fallback (a notification can be lost while the database is away); cancels the
/// attempts whose lease is gone. Ends when `stop` is cancelled.
pub(crate) async fn watch_leases(
    store: Arc<dyn Store>,
    held: Arc<HeldLeases>,
    every: Duration,
    stop: CancellationToken,
) {
    let mut cancels: watch::Receiver<u64> = store.wakeups().subscribe_cancels();
    loop {
        tokio::select! {
            _ = cancels.changed() => {}
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => return,
        }
        cancels.borrow_and_update();
        let leases = held.leases();
        if leases.is_empty() {
            continue;
        }
        match store.lost_leases(&leases).await {
            Ok(lost) => {
                for attempt_id in lost {
                    tracing::info!(attempt_id, "lease taken away: stopping the attempt");
                    held.cancel(attempt_id);
                }
            }
            Err(error) => tracing::warn!(%error, "checking leases failed"),
        }
    }
}
