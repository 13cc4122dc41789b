//! Wake-ups for idle workers: a counter that moves whenever work may have become claimable,
//! and another that moves whenever a run was cancelled (workers then re-check their leases).
//!
//! A `watch` channel rather than `Notify`: a worker reads the counter before it claims and
//! waits for it to move after an empty claim, so a wake-up sent in between is never lost.

use std::sync::Arc;

use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct Wakeups {
    sender: Arc<watch::Sender<u64>>,
    cancels: Arc<watch::Sender<u64>>,
}

impl Default for Wakeups {
    fn default() -> Self {
        Wakeups {
            sender: Arc::new(watch::channel(0).0),
            cancels: Arc::new(watch::channel(0).0),
        }
    }
}

impl Wakeups {
    /// Tells every waiting worker that work may be claimable.
    pub fn wake(&self) {
        self.sender.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.sender.subscribe()
    }

    /// Tells every worker that some attempt was cancelled: whichever holds it must stop it.
    pub fn cancelled(&self) {
        self.cancels.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn subscribe_cancels(&self) -> watch::Receiver<u64> {
        self.cancels.subscribe()
    }
}
