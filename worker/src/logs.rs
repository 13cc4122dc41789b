//! An attempt's log on its way to the store: lines are batched (every 200 ms or 256 lines) so
//! a chatty task costs a few writes a second, and a lost lease cancels the attempt. The lines
//! still unwritten when the attempt ends go with its result, in the same transaction.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::Utc;
use sluice_store::{Lease, Store, StoreError};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const FLUSH_EVERY: Duration = Duration::from_millis(200);
const MAX_BATCH_LINES: usize = 256;

/// Where a step writes its log lines. Cheap to clone; every clone masks the same secrets.
#[derive(Debug, Clone)]
pub struct LogSink {
    sender: mpsc::UnboundedSender<String>,
    /// Known secrets (connection passwords, secret-named environment values), longest
    /// first, replaced by `***` in every line: set once the attempt's context is built.
    secrets: Arc<RwLock<Vec<String>>>,
}

impl LogSink {
    fn new(sender: mpsc::UnboundedSender<String>) -> Self {
        LogSink {
            sender,
            secrets: Arc::default(),
        }
    }

    /// Writes a line, every known secret in it replaced by `***`.
    pub fn line(&self, line: impl Into<String>) {
        let line = self.mask(&line.into());
        // the writer outlives every sink clone; a send can only fail after it stopped
        let _ = self.sender.send(line);
    }

    /// The text with every known secret replaced by `***`: for error messages, which go
    /// into the attempt's record as well as its log.
    pub fn mask(&self, text: &str) -> String {
        let secrets = self.secrets.read().expect("no holder of this lock panics");
        crate::rendered::mask(text, &secrets)
    }

    /// The secrets to mask from now on, in every clone of this sink.
    pub(crate) fn set_secrets(&self, secrets: &[String]) {
        *self.secrets.write().expect("no holder of this lock panics") =
            crate::rendered::maskable(secrets.to_vec());
    }

    /// A sink that keeps lines in memory, for tests and `tasks test`.
    pub fn collecting() -> (LogSink, mpsc::UnboundedReceiver<String>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        (LogSink::new(sender), receiver)
    }
}

/// The task writing one attempt's log to the store.
pub struct LogWriter {
    handle: JoinHandle<String>,
}

impl LogWriter {
    /// Starts the writer. A `LeaseLost` answer cancels `cancel`: someone else owns the attempt now.
    pub fn start(
        store: Arc<dyn Store>,
        lease: Lease,
        cancel: CancellationToken,
    ) -> (LogSink, LogWriter) {
        let (sender, mut receiver) = mpsc::unbounded_channel::<String>();
        let handle = tokio::spawn(async move {
            let mut batch: Vec<String> = Vec::new();
            let mut open = true;
            while open {
                // wait for a first line, then gather more for a short while
                match receiver.recv().await {
                    Some(line) => batch.push(line),
                    None => open = false,
                }
                if open {
                    let deadline = tokio::time::sleep(FLUSH_EVERY);
                    tokio::pin!(deadline);
                    while batch.len() < MAX_BATCH_LINES {
                        tokio::select! {
                            line = receiver.recv() => match line {
                                Some(line) => batch.push(line),
                                None => { open = false; break; }
                            },
                            _ = &mut deadline => break,
                        }
                    }
                }
                if batch.is_empty() {
                    continue;
                }
                let mut chunk = batch.join("\n");
                chunk.push('\n');
                batch.clear();
                if !open {
                    // the attempt ended: these lines go with its result
                    return chunk;
                }
                if let Err(error) = write_with_retry(store.as_ref(), &lease, &chunk).await {
                    if matches!(error, StoreError::LeaseLost { .. }) {
                        cancel.cancel();
                        return String::new();
                    }
                    tracing::error!(attempt_id = lease.attempt_id, %error, "log lines lost: the store refused them");
                }
            }
            String::new()
        });
        (LogSink::new(sender), LogWriter { handle })
    }

    /// Once every sink is dropped: waits for the writes under way and returns the last lines,
    /// not yet written, for the attempt's result to carry (`finish_attempt_with_log`).
    pub async fn finish(self) -> String {
        self.handle.await.unwrap_or_default()
    }
}

async fn write_with_retry(store: &dyn Store, lease: &Lease, chunk: &str) -> Result<(), StoreError> {
    let mut tries = 0;
    loop {
        match store.append_log(lease, chunk, Utc::now()).await {
            Ok(()) => return Ok(()),
            Err(error @ StoreError::LeaseLost { .. }) => return Err(error),
            Err(error) if tries < 5 => {
                tries += 1;
                tracing::warn!(attempt_id = lease.attempt_id, %error, "writing log lines failed; retrying");
                tokio::time::sleep(Duration::from_millis(200 * tries)).await;
            }
            Err(error) => return Err(error),
        }
    }
}
