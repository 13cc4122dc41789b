//! The decisions taken inside the stores' transactions, as plain functions of what was read.
//!
//! Each backend reads the rows, asks here what to change, and writes the answer with its own
//! SQL: the trigger rules (`sluice_core::deps`), the retry policy and the run's outcome are
//! decided by the same code on SQLite and PostgreSQL.

use chrono::{DateTime, Utc};
use sluice_core::deps::{self, TaskView};
use sluice_core::spec::{Backoff, RetryPolicy};
use sluice_core::{RunState, TaskState, TriggerRule};

use crate::read::{Columns, millis, saturating_i32};
use crate::*;

/// A task instance of a run as the trigger rules see it
/// (`id, task_id, map_index, state, upstream, trigger_rule`).
pub(crate) struct TaskRow {
    id: i64,
    task_id: String,
    map_index: i32,
    state: TaskState,
    upstream: Vec<String>,
    trigger_rule: TriggerRule,
}

impl TaskRow {
    pub(crate) fn read(row: &impl Columns) -> StoreResult<Self> {
        const T: &str = "task_instances";
        Ok(TaskRow {
            id: row.int("id")?,
            task_id: row.text("task_id")?,
            map_index: row.int32("map_index")?,
            state: row.parse(T, "state")?,
            upstream: row.json(T, "upstream")?,
            trigger_rule: row.parse(T, "trigger_rule")?,
        })
    }
}

/// What one evaluation of a running run changes.
pub(crate) struct RunPlan {
    /// Pending task instances and their new state.
    pub changes: Vec<TaskChange>,
    /// The run's final state, when every task is settled once `changes` are applied.
    pub outcome: Option<RunState>,
    pub progress: RunProgress,
}

/// A pending task instance that becomes queued (`queued_at` set) or settled (`ended_at` set).
pub(crate) struct TaskChange {
    pub id: i64,
    pub state: TaskState,
    pub queued_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
}

/// Decides the pending task instances of a running run by trigger rule (cascading skips and
/// upstream failures) and whether the run is then finished.
pub(crate) fn plan_run(tasks: &[TaskRow], now: DateTime<Utc>) -> RunPlan {
    let views: Vec<TaskView<'_>> = tasks
        .iter()
        .map(|task| TaskView {
            task_id: &task.task_id,
            map_index: task.map_index,
            state: task.state,
            upstream: &task.upstream,
            trigger_rule: task.trigger_rule,
        })
        .collect();
    let mut states: Vec<TaskState> = tasks.iter().map(|task| task.state).collect();
    let mut changes = Vec::new();
    let mut progress = RunProgress::default();
    for (index, new_state) in deps::plan(&views) {
        states[index] = new_state;
        let queued = new_state == TaskState::Queued;
        changes.push(TaskChange {
            id: tasks[index].id,
            state: new_state,
            queued_at: queued.then_some(now),
            ended_at: (!queued).then_some(now),
        });
        progress.changed += 1;
        if new_state == TaskState::Queued {
            progress.queued += 1;
        }
    }
    let outcome = deps::run_outcome(states);
    progress.finished = outcome;
    RunPlan {
        changes,
        outcome,
        progress,
    }
}

/// The task instance's state after one of its attempts ended.
pub(crate) struct AfterAttempt {
    pub task_state: TaskState,
    /// Set for `up_for_retry`: when the next try may be claimed.
    pub next_try_at: Option<DateTime<Utc>>,
    /// Set when the task instance is settled.
    pub ended_at: Option<DateTime<Utc>>,
}

/// Success ends the task; a failure is retried while tries remain, after the policy's delay
/// (fixed or exponential, capped), and fails the task otherwise.
pub(crate) fn after_attempt(
    outcome: AttemptOutcome,
    try_number: u32,
    max_tries: u32,
    policy: &RetryPolicy,
    now: DateTime<Utc>,
) -> AfterAttempt {
    let settled = |task_state| AfterAttempt {
        task_state,
        next_try_at: None,
        ended_at: Some(now),
    };
    match outcome {
        AttemptOutcome::Success => after_success(now),
        AttemptOutcome::Failed if try_number < max_tries => {
            let wait =
                chrono::Duration::from_std(policy.delay_before(try_number.saturating_add(1)))
                    .unwrap_or(chrono::Duration::MAX);
            AfterAttempt {
                task_state: TaskState::UpForRetry,
                next_try_at: Some(now.checked_add_signed(wait).unwrap_or(now)),
                ended_at: None,
            }
        }
        AttemptOutcome::Failed => settled(TaskState::Failed),
    }
}

/// The task instance's state after a successful attempt: settled, whatever its retry policy
/// (`after_attempt` for a success, for callers that have not read the policy).
pub(crate) fn after_success(now: DateTime<Utc>) -> AfterAttempt {
    AfterAttempt {
        task_state: TaskState::Success,
        next_try_at: None,
        ended_at: Some(now),
    }
}

/// Whether a pending task instance may be decided now, given how many of its upstream
/// instances are in each state: the trigger rule asked over those states (`deps::decide`).
/// When it says no, evaluating the run would change nothing for this task.
pub(crate) fn may_decide(rule: TriggerRule, upstream: &[(TaskState, u32)]) -> bool {
    let states = upstream
        .iter()
        .flat_map(|&(state, count)| std::iter::repeat_n(state, count as usize));
    deps::decide(rule, states).is_some()
}

/// Idle workers are woken when a change made work claimable now or later (a retry).
pub(crate) fn wakes_workers(task_state: TaskState, progress: &RunProgress) -> bool {
    progress.queued > 0 || task_state == TaskState::UpForRetry
}

/// The columns of a new task instance that are not plain copies of `NewTaskInstance`.
pub(crate) struct TaskSettings {
    pub max_tries: i32,
    pub retry_delay_ms: i64,
    pub retry_exponential: bool,
    pub max_retry_delay_ms: Option<i64>,
    pub timeout_ms: Option<i64>,
}

impl TaskSettings {
    pub(crate) fn of(task: &NewTaskInstance) -> Self {
        TaskSettings {
            max_tries: saturating_i32(task.retry.retries.saturating_add(1)),
            retry_delay_ms: millis(task.retry.delay),
            retry_exponential: task.retry.backoff == Backoff::Exponential,
            max_retry_delay_ms: task.retry.max_delay.map(millis),
            timeout_ms: task.timeout.map(millis),
        }
    }
}

/// Keeps the picked task instances, in order, that fit in their pools: a pool with `slots`
/// and `running` instances takes at most `slots - running` more; an instance without a pool,
/// or whose pool has no row, always fits.
pub(crate) fn fit_pools(
    picked: Vec<i64>,
    pools: &[Option<String>],
    slots: &[(String, i32)],
    running: &[(String, i64)],
) -> Vec<i64> {
    let mut free: std::collections::HashMap<&str, i64> = slots
        .iter()
        .map(|(name, slots)| (name.as_str(), i64::from(*slots)))
        .collect();
    for (name, count) in running {
        if let Some(room) = free.get_mut(name.as_str()) {
            *room -= count;
        }
    }
    picked
        .into_iter()
        .zip(pools)
        .filter(|(_, pool)| {
            let Some(room) = pool.as_deref().and_then(|name| free.get_mut(name)) else {
                return true;
            };
            if *room <= 0 {
                return false;
            }
            *room -= 1;
            true
        })
        .map(|(id, _)| id)
        .collect()
}

#[cfg(test)]
mod pool_tests {
    use super::fit_pools;

    #[test]
    fn picked_instances_fill_only_the_free_slots_of_their_pool() {
        let pools = [
            Some("db".to_owned()),
            None,
            Some("db".to_owned()),
            Some("db".to_owned()),
            Some("unknown".to_owned()),
        ];
        let slots = [("db".to_owned(), 3)];
        let running = [("db".to_owned(), 1)];
        assert_eq!(
            fit_pools(vec![1, 2, 3, 4, 5], &pools, &slots, &running),
            [1, 2, 3, 5]
        );
        let full = [("db".to_owned(), 5)];
        assert_eq!(
            fit_pools(vec![1, 2, 3, 4, 5], &pools, &slots, &full),
            [2, 5]
        );
    }
}
