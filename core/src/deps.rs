//! Trigger rules: which pending task instances of a run may be queued, skipped or failed, and
//! when a run is finished. Pure functions shared by every store implementation, so the same
//! decision is made whether a finishing attempt or a scheduler tick asks.

use crate::state::{RunState, TaskState, TriggerRule};
use std::collections::HashMap;

/// What the evaluator needs to know of one task instance.
#[derive(Debug, Clone)]
pub struct TaskView<'a> {
    pub task_id: &'a str,
    /// `-1` for an unmapped instance, or for the placeholder of a task mapped from a
    /// `foreach` template (its instances `0..n` are created when it expands).
    pub map_index: i32,
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
/// A mapped task counts through its mapped instances (`map_index >= 0`) once it has any;
/// before a `foreach` template expands, through its placeholder (`map_index -1`). A pending
/// mapped instance beside a placeholder that has not expanded (again, after a clear) waits
/// for it, and follows it when it ends without expanding.
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
    let mut instances: HashMap<&str, Vec<usize>> = HashMap::with_capacity(tasks.len());
    for (index, task) in tasks.iter().enumerate() {
        instances.entry(task.task_id).or_default().push(index);
    }
    loop {
        let mut changed = false;
        for (index, task) in tasks.iter().enumerate() {
            if states[index] != TaskState::Pending {
                continue;
            }
            let placeholder = (task.map_index >= 0)
                .then(|| {
                    instances
                        .get(task.task_id)
                        .and_then(|own| own.iter().copied().find(|&at| tasks[at].map_index < 0))
                })
                .flatten();
            let decision = match placeholder.map(|p| states[p]) {
                Some(TaskState::Success) | None => {
                    let upstream = upstream_states(tasks, &states, &instances, task.upstream);
                    decide(task.trigger_rule, upstream)
                }
                Some(state) if !state.is_terminal() => None,
                Some(TaskState::Skipped) => Some(Decision::Skip),
                Some(_) => Some(Decision::UpstreamFailed),
            };
            if let Some(decision) = decision {
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

/// The states trigger rules look at for the given upstream task ids: a mapped task's mapped
/// instances, or its one unmapped instance (or placeholder).
fn upstream_states(
    tasks: &[TaskView<'_>],
    states: &[TaskState],
    instances: &HashMap<&str, Vec<usize>>,
    upstream: &[String],
) -> Vec<TaskState> {
    let mut result = Vec::new();
    for up in upstream {
        let of_task = instances.get(up.as_str()).map(Vec::as_slice).unwrap_or(&[]);
        let mapped = of_task.iter().any(|&at| tasks[at].map_index >= 0);
        // beside an expanded placeholder, a skipped mapped instance is one a new expansion
        // (after a clear) no longer has: it is not part of the task any more
        let expanded = of_task
            .iter()
            .any(|&at| tasks[at].map_index < 0 && states[at] == TaskState::Success);
        result.extend(
            of_task
                .iter()
                .filter(|&&at| {
                    !mapped
                        || (tasks[at].map_index >= 0
                            && !(expanded && states[at] == TaskState::Skipped))
                })
                .map(|&at| states[at]),
        );
    }
    result
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
            TaskState::Pending
            | TaskState::Queued
            | TaskState::Running
            | TaskState::UpForRetry
            | TaskState::UpForReschedule => self.unfinished += 1,
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
                map_index: -1,
                state: Failed,
                upstream: &[],
                trigger_rule: AllSuccess,
            },
            TaskView {
                task_id: "b",
                map_index: -1,
                state: Pending,
                upstream: &a,
                trigger_rule: AllSuccess,
            },
            TaskView {
                task_id: "c",
                map_index: -1,
                state: Pending,
                upstream: &b,
                trigger_rule: AllSuccess,
            },
            TaskView {
                task_id: "cleanup",
                map_index: -1,
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

    fn view<'a>(
        task_id: &'a str,
        map_index: i32,
        state: TaskState,
        upstream: &'a [String],
    ) -> TaskView<'a> {
        TaskView {
            task_id,
            map_index,
            state,
            upstream,
            trigger_rule: AllSuccess,
        }
    }

    #[test]
    fn downstream_of_an_expanded_task_waits_for_its_mapped_instances_not_the_placeholder() {
        let up = ["fan".to_owned()];
        let running = [
            view("fan", -1, Success, &[]),
            view("fan", 0, Success, &[]),
            view("fan", 1, Running, &[]),
            view("after", -1, Pending, &up),
        ];
        assert_eq!(plan(&running), vec![]);
        let failed = [
            view("fan", -1, Success, &[]),
            view("fan", 0, Success, &[]),
            view("fan", 1, Failed, &[]),
            view("after", -1, Pending, &up),
        ];
        assert_eq!(plan(&failed), vec![(3, UpstreamFailed)]);
    }

    #[test]
    fn instances_a_new_expansion_no_longer_has_do_not_count_downstream() {
        let up = ["fan".to_owned()];
        let tasks = [
            view("fan", -1, Success, &[]),
            view("fan", 0, Success, &[]),
            view("fan", 1, Skipped, &[]),
            view("after", -1, Pending, &up),
        ];
        assert_eq!(plan(&tasks), vec![(3, Queued)]);
    }

    #[test]
    fn an_empty_expansion_skips_downstream_through_the_placeholder() {
        let up = ["fan".to_owned()];
        let tasks = [
            view("fan", -1, Skipped, &[]),
            view("after", -1, Pending, &up),
        ];
        assert_eq!(plan(&tasks), vec![(1, Skipped)]);
    }

    #[test]
    fn mapped_instances_of_a_cleared_task_wait_for_its_placeholder_to_expand_again() {
        let up = ["start".to_owned()];
        let waiting = [
            view("start", -1, Success, &[]),
            view("fan", -1, Queued, &up),
            view("fan", 0, Pending, &up),
        ];
        assert_eq!(plan(&waiting), vec![]);
        let failed = [
            view("start", -1, Success, &[]),
            view("fan", -1, Failed, &up),
            view("fan", 0, Pending, &up),
        ];
        assert_eq!(plan(&failed), vec![(2, UpstreamFailed)]);
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
