//! Wake-ups across processes: `LISTEN sluice_work` and `LISTEN sluice_cancel` on a connection
//! of its own, each notification a `Wakeups::wake()` (or `cancelled()`) in this process.
//!
//! A notification sent while the connection was down is lost, so every reconnection wakes the
//! workers once: they claim, find what was missed, and go back to waiting.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};

use super::ACQUIRE_TIMEOUT;
use crate::*;

/// The channel every transaction that queued work notifies.
pub(super) const CHANNEL: &str = "sluice_work";
/// The channel every transaction that cancelled running attempts notifies.
pub(super) const CANCEL_CHANNEL: &str = "sluice_cancel";

/// The longest pause between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Listens once before returning, so a store that connected is already listening, then keeps
/// listening in the background until the returned handle is aborted.
pub(super) async fn start(
    options: PgConnectOptions,
    wakeups: Wakeups,
) -> StoreResult<tokio::task::AbortHandle> {
    // a pool of one, so the listener's connection never competes with queries
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_lazy_with(options);
    let listener = open(&pool).await?;
    let task = tokio::spawn(listen(pool, listener, wakeups));
    Ok(task.abort_handle())
}

async fn open(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen_all([CHANNEL, CANCEL_CHANNEL]).await?;
    Ok(listener)
}

async fn listen(pool: PgPool, mut listener: PgListener, wakeups: Wakeups) {
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) if notification.channel() == CANCEL_CHANNEL => {
                wakeups.cancelled()
            }
            Ok(Some(_)) => wakeups.wake(),
            Ok(None) => {
                // sqlx noticed the connection drop and has already listened again
                tracing::warn!(
                    "the LISTEN connection to PostgreSQL dropped and was re-established"
                );
                wakeups.wake();
                wakeups.cancelled();
            }
            Err(error) => {
                tracing::warn!(%error, "the LISTEN connection to PostgreSQL failed; reconnecting");
                drop(listener);
                listener = reconnect(&pool).await;
                tracing::info!("listening for work notifications again");
                wakeups.wake();
                wakeups.cancelled();
            }
        }
    }
}

/// Retries with exponential back-off (100 ms doubling, at most `MAX_BACKOFF`) until it listens.
async fn reconnect(pool: &PgPool) -> PgListener {
    let mut failures = 0u32;
    loop {
        tokio::time::sleep(backoff(failures)).await;
        match open(pool).await {
            Ok(listener) => return listener,
            Err(error) => {
                failures = failures.saturating_add(1);
                tracing::warn!(
                    %error,
                    failures,
                    retry_in_ms = u64::try_from(backoff(failures).as_millis()).unwrap_or(u64::MAX),
                    "reconnecting the LISTEN connection to PostgreSQL failed"
                );
            }
        }
    }
}

fn backoff(failures: u32) -> Duration {
    Duration::from_millis(100)
        .saturating_mul(1 << failures.min(10))
        .min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        assert_eq!(backoff(0), Duration::from_millis(100));
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(5), Duration::from_millis(3200));
        assert_eq!(backoff(9), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }
}
