//! The record of a `mode: reschedule` sensor's poke that found its condition still false.

use chrono::{DateTime, Utc};

use crate::Lease;

/// Ends a poke without ending the try: the attempt and its task instance become
/// `up_for_reschedule`, the worker's slot (and the pool's) is free, and the task instance is
/// claimed again, in the same try and attempt, once `next_poke_at` has passed.
#[derive(Debug, Clone)]
pub struct RescheduleAttempt {
    pub lease: Lease,
    pub next_poke_at: DateTime<Utc>,
    pub now: DateTime<Utc>,
}
