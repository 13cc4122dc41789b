//! Wake-ups for idle workers: a counter that moves whenever work may have become claimable.
//!
//! A `watch` channel rather than `Notify`: a worker reads the counter before it claims and
//! waits for it to move after an empty claim, so a wake-up sent in between is never lost.

use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct Wakeups {
    sender: std::sync::Arc<watch::Sender<u64>>,
}

impl Default for Wakeups {
    fn default() -> Self {
        Wakeups {
            sender: std::sync::Arc::new(watch::channel(0).0),
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
}
