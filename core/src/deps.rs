//! Trigger rules: which pending task instances of a run may be queued, skipped or failed, and
//! when a run is finished. Pure functions shared by every store implementation, so the same
//! decision is made whether a finishing attempt or a scheduler tick asks.

use crate::state::{RunState, TaskState, TriggerRule};

/// What the evaluator needs to know of one task instance.
#[derive(Debug, Clone)]
pub struct TaskView<'a> {
    pub task_id: &'a str,
    pub state: TaskState,
    pub upstream: &'a [String],
    pub trigger_rule: TriggerRule,
}

/// The verdict for a pending task instance whose upstream allows a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Queue,
    Skip,
    UpstreamFailed,
}

impl Decision {
    pub fn state(self) -> TaskState {
        match self {
            Decision::Queue => TaskState::Queued,
            Decision::Skip => TaskState::Skipped,
            Decision::UpstreamFailed => TaskState::UpstreamFailed,
        }
    }
}

/// Decides the pending instances of one run. Skips and upstream failures cascade, so the
/// result is computed to a fixed point: the returned list holds `(index, new state)` pairs
/// into `tasks`, each index at most once.
///
/// The instances of each task id are looked up in a map, so a pass costs the number of
/// upstream edges, not that times the number of instances (a join after a fan-out of 2,000
/// compared 4 million ids per evaluation).
pub fn plan(tasks: &[TaskView<'_>]) -> Vec<(usize, TaskState)> {
    let mut states: Vec<TaskState> = tasks.iter().map(|t| t.state).collect();
    let mut changes = Vec::new();
    if !states.contains(&TaskState::Pending) {
        return changes;
    }
    let mut instances: std::collections::HashMap<&str, Vec<usize>> =
        std::collections::HashMap::with_capacity(tasks.len());
    for (index, task) in tasks.iter().enumerate() {
        instances.entry(task.task_id).or_default().push(index);
    }
    loop {
        let mut changed = false;
        for (index, task) in tasks.iter().enumerate() {
            if states[index] != TaskState::Pending {
                continue;
            }
            let upstream_states = task
                .upstream
                .iter()
                .flat_map(|up| instances.get(up.as_str()).into_iter().flatten())
                .map(|&at| states[at]);
            if let Some(decision) = decide(task.trigger_rule, upstream_states) {
                states[index] = decision.state();
                changes.push((index, decision.state()));
                changed = true;
            }
        }
        if !changed {
            return changes;
        }
    }
}

/// The verdict for one task given its upstream states, or `None` to keep waiting.
pub fn decide(
    rule: TriggerRule,
    upstream: impl IntoIterator<Item = TaskState>,
) -> Option<Decision> {
    let mut counts = Counts::default();
    for state in upstream {
        counts.add(state);
    }
    let all_done = counts.unfinished == 0;
    let failed = counts.failed + counts.upstream_failed;
    use Decision::*;
    match rule {
        _ if counts.total == 0 => Some(Queue),
        TriggerRule::Always => Some(Queue),
        TriggerRule::AllSuccess => {
            if failed > 0 {
                Some(UpstreamFailed)
            } else if !all_done {
                None
            } else if counts.skipped > 0 {
                Some(Skip)
            } else {
                Some(Queue)
            }
        }
        TriggerRule::AllFailed => {
            if counts.success > 0 || counts.skipped > 0 {
                Some(Skip)
            } else if all_done {
                Some(Queue)
            } else {
                None
            }
        }
        TriggerRule::AllDone => all_done.then_some(Queue),
        TriggerRule::OneSuccess => {
            if counts.success > 0 {
                Some(Queue)
            } else if !all_done {
                None
            } else if failed == counts.total {
                Some(UpstreamFailed)
            } else {
                Some(Skip)
            }
        }
        TriggerRule::OneFailed => {
            if failed > 0 {
                Some(Queue)
            } else if all_done {
                Some(Skip)
            } else {
                None
            }
        }
        TriggerRule::NoneFailed => {
            if failed > 0 {
                Some(UpstreamFailed)
            } else {
                all_done.then_some(Queue)
            }
        }
        TriggerRule::NoneFailedMinOneSuccess => {
            if failed > 0 {
                Some(UpstreamFailed)
            } else if !all_done {
                None
            } else if counts.success > 0 {
                Some(Queue)
            } else {
                Some(Skip)
            }
        }
    }
}

#[derive(Default)]
struct Counts {
    total: usize,
    success: usize,
    failed: usize,
    upstream_failed: usize,
    skipped: usize,
    unfinished: usize,
}

impl Counts {
    fn add(&mut self, state: TaskState) {
        self.total += 1;
        match state {
            TaskState::Success => self.success += 1,
            // a cancelled upstream never produced what downstream needs
            TaskState::Failed | TaskState::Cancelled => self.failed += 1,
            TaskState::UpstreamFailed => self.upstream_failed += 1,
            TaskState::Skipped => self.skipped += 1,
            TaskState::Pending | TaskState::Queued | TaskState::Running | TaskState::UpForRetry => {
                self.unfinished += 1
            }
        }
    }
}

/// The run's final state once every task instance is settled, else `None`.
///
/// A run fails when any task failed or could not run because of a failure, even if a
/// clean-up task with `all_done` succeeded afterwards: the history says what happened.
pub fn run_outcome(states: impl IntoIterator<Item = TaskState>) -> Option<RunState> {
    let mut failed = false;
    for state in states {
        if !state.is_terminal() {
            return None;
        }
        if matches!(
            state,
            TaskState::Failed | TaskState::UpstreamFailed | TaskState::Cancelled
        ) {
            failed = true;
        }
    }
    Some(if failed {
        RunState::Failed
    } else {
        RunState::Success
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use TaskState::*;
    use TriggerRule::*;

    #[test]
    fn each_rule_decides_as_documented() {
        let cases: &[(TriggerRule, &[TaskState], Option<Decision>)] = &[
            (AllSuccess, &[Success, Success], Some(Decision::Queue)),
            (AllSuccess, &[Success, Running], None),
            (
                AllSuccess,
                &[Failed, Running],
                Some(Decision::UpstreamFailed),
            ),
            (AllSuccess, &[Success, Skipped], Some(Decision::Skip)),
            (AllFailed, &[Failed, UpstreamFailed], Some(Decision::Queue)),
            (AllFailed, &[Failed, Success], Some(Decision::Skip)),
            (AllFailed, &[Failed, Running], None),
            (AllDone, &[Failed, Success, Skipped], Some(Decision::Queue)),
            (AllDone, &[Failed, UpForRetry], None),
            (OneSuccess, &[Success, Running], Some(Decision::Queue)),
            (
                OneSuccess,
                &[Failed, Failed],
                Some(Decision::UpstreamFailed),
            ),
            (OneSuccess, &[Failed, Skipped], Some(Decision::Skip)),
            (OneFailed, &[Failed, Running], Some(Decision::Queue)),
            (OneFailed, &[Success, Success], Some(Decision::Skip)),
            (OneFailed, &[Success, Queued], None),
            (NoneFailed, &[Success, Skipped], Some(Decision::Queue)),
            (
                NoneFailed,
                &[Success, Failed],
                Some(Decision::UpstreamFailed),
            ),
            (
                NoneFailedMinOneSuccess,
                &[Skipped, Skipped],
                Some(Decision::Skip),
            ),
            (
                NoneFailedMinOneSuccess,
                &[Skipped, Success],
                Some(Decision::Queue),
            ),
            (Always, &[Running, Pending], Some(Decision::Queue)),
            (AllSuccess, &[], Some(Decision::Queue)),
        ];
        for (rule, upstream, expected) in cases {
            assert_eq!(
                decide(*rule, upstream.iter().copied()),
                *expected,
                "{rule} over {upstream:?}"
            );
        }
    }

    #[test]
    fn failure_cascades_through_a_chain_but_all_done_still_runs() {
        let a = ["a".to_owned()];
        let b = ["b".to_owned()];
        let tasks = [
            TaskView {
                task_id: "a",
                state: Failed,
                upstream: &[],
                trigger_rule: AllSuccess,
            },
            TaskView {
                task_id: "b",
                state: Pending,
                upstream: &a,
                trigger_rule: AllSuccess,
            },
            TaskView {
                task_id: "c",
                state: Pending,
                upstream: &b,
                trigger_rule: AllSuccess,
            },
            TaskView {
                task_id: "cleanup",
                state: Pending,
                upstream: &b,
                trigger_rule: AllDone,
            },
        ];
        let plan = plan(&tasks);
        assert_eq!(
            plan,
            vec![(1, UpstreamFailed), (2, UpstreamFailed), (3, Queued)]
        );
    }

    #[test]
    fn a_run_fails_when_any_task_failed() {
        assert_eq!(run_outcome([Success, Skipped]), Some(RunState::Success));
        assert_eq!(
            run_outcome([Success, Failed, Success]),
            Some(RunState::Failed)
        );
        assert_eq!(run_outcome([Success, Running]), None);
        assert_eq!(run_outcome([Success, UpForRetry]), None);
    }
}
