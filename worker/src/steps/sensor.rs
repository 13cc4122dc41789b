//! `type: sensor`: waits until a condition holds (a file, an HTTP answer, a SQL value,
//! another DAG's task), checking every `poke_interval` and failing after `timeout`.
//!
//! `mode: poke` keeps the worker slot and sleeps between checks. `mode: reschedule` checks
//! once per claim: when the condition is still false the worker hands the task instance back
//! to the store (`up_for_reschedule` until the next poke time) and frees its slot; the next
//! claim continues the same try and attempt, so its `timeout` counts from the first poke.

mod conditions;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sluice_core::spec::{SensorMode, SensorStep};
use sluice_store::Store;

use super::{StepContext, StepError, StepOutput};
use conditions::{Check, Condition};

/// What a sensor needs beyond its step context, from the attempt the worker claimed.
pub struct Sensing {
    /// For the `task` condition; `None` outside a worker (`sluice tasks test`).
    pub store: Option<Arc<dyn Store>>,
    /// The run's logical date, which the `task` condition's `offset` shifts.
    pub logical_date: DateTime<Utc>,
    /// The first poke of this try: the `timeout` counts from here.
    pub first_poke_at: DateTime<Utc>,
}

/// How one poke of a `mode: reschedule` sensor ended.
pub enum Poke {
    Met(StepOutput),
    /// Still false: check again at this time, the slot freed meanwhile.
    NotYet {
        next_poke_at: DateTime<Utc>,
    },
}

/// The step registry's entry: pokes in a loop until the condition holds or `timeout` passes
/// (in either mode: outside a worker there is no slot to free). The `task` condition needs
/// the database, so it fails here; the worker calls `wait` or `poke` instead.
pub async fn run(config: &SensorStep, ctx: &StepContext) -> Result<StepOutput, StepError> {
    let logical_date = ctx
        .template_context
        .get("logical_date")
        .and_then(Value::as_str)
        .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
        .map(|date| date.with_timezone(&Utc))
        .unwrap_or_else(Utc::now);
    let sensing = Sensing {
        store: None,
        logical_date,
        first_poke_at: Utc::now(),
    };
    wait(config, ctx, &sensing).await
}

/// `mode: poke`: checks, sleeps `poke_interval`, checks again, holding the slot throughout.
pub async fn wait(
    config: &SensorStep,
    ctx: &StepContext,
    sensing: &Sensing,
) -> Result<StepOutput, StepError> {
    let condition = prepare(config, ctx, sensing).await?;
    let deadline = deadline(config, sensing)?;
    announce(ctx, &condition, sensing, deadline);
    let mut pokes = 0u64;
    loop {
        pokes += 1;
        let reason = match condition.check(sensing).await? {
            Check::Met(output) => {
                ctx.log.line(format!(
                    "[sensor] poke {pokes}: {} holds",
                    condition.describe()
                ));
                return Ok(output);
            }
            Check::NotYet(reason) => reason,
        };
        let now = Utc::now();
        if now >= deadline {
            return Err(timed_out(config, &condition, &reason));
        }
        let next = (now + chrono_duration(config.poke_interval)).min(deadline);
        ctx.log.line(format!(
            "[sensor] poke {pokes}: not yet ({reason}); next poke in {}",
            compact(config.poke_interval)
        ));
        let pause = (next - now).to_std().unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = ctx.cancel.cancelled() => {
                return Err(StepError::new("stopped: the attempt was cancelled"));
            }
        }
    }
}

/// `mode: reschedule`: one check. Still false before the deadline: the time of the next poke,
/// for the worker to hand the task instance back until then.
pub async fn poke(
    config: &SensorStep,
    ctx: &StepContext,
    sensing: &Sensing,
) -> Result<Poke, StepError> {
    let condition = prepare(config, ctx, sensing).await?;
    let deadline = deadline(config, sensing)?;
    announce(ctx, &condition, sensing, deadline);
    let reason = match condition.check(sensing).await? {
        Check::Met(output) => {
            ctx.log
                .line(format!("[sensor] poke: {} holds", condition.describe()));
            return Ok(Poke::Met(output));
        }
        Check::NotYet(reason) => reason,
    };
    let now = Utc::now();
    if now >= deadline {
        return Err(timed_out(config, &condition, &reason));
    }
    let next_poke_at = (now + chrono_duration(config.poke_interval)).min(deadline);
    ctx.log.line(format!(
        "[sensor] poke: not yet ({reason}); condition not met, next poke at {} (the worker slot is freed until then)",
        next_poke_at.format("%Y-%m-%d %H:%M:%S%.3fZ")
    ));
    Ok(Poke::NotYet { next_poke_at })
}

/// Whether the worker should run this sensor one poke per claim.
pub fn reschedules(config: &SensorStep) -> bool {
    config.mode == SensorMode::Reschedule
}

/// Renders the condition's fields and records them (before the first check).
async fn prepare(
    config: &SensorStep,
    ctx: &StepContext,
    sensing: &Sensing,
) -> Result<Condition, StepError> {
    let condition = Condition::render(&config.condition, config.poke_interval, ctx, sensing)?;
    ctx.record_rendered().await;
    Ok(condition)
}

/// What the sensor waits for and until when: each poke of a rescheduled try says it again.
fn announce(ctx: &StepContext, condition: &Condition, sensing: &Sensing, deadline: DateTime<Utc>) {
    const AT: &str = "%Y-%m-%d %H:%M:%S%.3fZ";
    ctx.log.line(format!(
        "[sensor] waiting for {} (this try's first poke {}, it times out at {})",
        condition.describe(),
        sensing.first_poke_at.format(AT),
        deadline.format(AT)
    ));
}

fn deadline(config: &SensorStep, sensing: &Sensing) -> Result<DateTime<Utc>, StepError> {
    chrono::Duration::from_std(config.timeout)
        .ok()
        .and_then(|timeout| sensing.first_poke_at.checked_add_signed(timeout))
        .ok_or_else(|| {
            StepError::new(format!(
                "`timeout`: {} is too long",
                compact(config.timeout)
            ))
        })
}

fn timed_out(config: &SensorStep, condition: &Condition, reason: &str) -> StepError {
    StepError::new(format!(
        "condition {} still false after {}; last check: {reason}",
        condition.describe(),
        compact(config.timeout)
    ))
}

fn chrono_duration(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}

/// A duration as written in a DAG file: `2h`, `1h 30m`, `45s`, `100ms`.
pub(crate) fn compact(duration: Duration) -> String {
    let total_ms = duration.as_millis();
    if total_ms == 0 {
        return "0s".to_owned();
    }
    let parts = [
        (total_ms / 86_400_000, "d"),
        (total_ms / 3_600_000 % 24, "h"),
        (total_ms / 60_000 % 60, "m"),
        (total_ms / 1000 % 60, "s"),
        (total_ms % 1000, "ms"),
    ];
    parts
        .iter()
        .filter(|(value, _)| *value > 0)
        .map(|(value, unit)| format!("{value}{unit}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_written() {
        assert_eq!(compact(Duration::from_secs(7200)), "2h");
        assert_eq!(compact(Duration::from_secs(5400)), "1h 30m");
        assert_eq!(compact(Duration::from_millis(100)), "100ms");
        assert_eq!(compact(Duration::from_millis(1500)), "1s 500ms");
        assert_eq!(compact(Duration::from_secs(86_400)), "1d");
    }
}
