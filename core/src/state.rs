//! Run and task-instance states, trigger rules, and the transitions allowed between states.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(
                        "unknown {} `{other}` (expected one of: {})",
                        stringify!($name),
                        [$($text),+].join(", ")
                    )),
                }
            }
        }
    };
}

string_enum!(
    /// The state of a DAG run.
    RunState {
        Queued => "queued",
        Running => "running",
        Success => "success",
        Failed => "failed",
        Cancelled => "cancelled",
    }
);

string_enum!(
    /// The state of one task instance (a task in a run, one per map index).
    TaskState {
        Pending => "pending",
        Queued => "queued",
        Running => "running",
        Success => "success",
        Failed => "failed",
        UpForRetry => "up_for_retry",
        // a `mode: reschedule` sensor between pokes: its slot is free, and it is claimed
        // again (same try, same attempt) once `next_try_at` passes
        UpForReschedule => "up_for_reschedule",
        Skipped => "skipped",
        UpstreamFailed => "upstream_failed",
        Cancelled => "cancelled",
    }
);

string_enum!(
    /// The state of one try of a task instance.
    AttemptState {
        Running => "running",
        // a `mode: reschedule` sensor's try between pokes: it runs again, under a new
        // lease, when its task instance is claimed again
        UpForReschedule => "up_for_reschedule",
        Success => "success",
        Failed => "failed",
        Cancelled => "cancelled",
    }
);

string_enum!(
    /// When a task may run, given the states of its upstream tasks.
    TriggerRule {
        AllSuccess => "all_success",
        AllFailed => "all_failed",
        AllDone => "all_done",
        OneSuccess => "one_success",
        OneFailed => "one_failed",
        NoneFailed => "none_failed",
        NoneFailedMinOneSuccess => "none_failed_min_one_success",
        Always => "always",
    }
);

string_enum!(
    /// How a run came to exist.
    RunType {
        Scheduled => "scheduled",
        Manual => "manual",
        Backfill => "backfill",
    }
);

string_enum!(
    /// The state of a backfill: running until none of its runs is queued or running.
    BackfillState {
        Running => "running",
        Success => "success",
        Failed => "failed",
        Cancelled => "cancelled",
    }
);

// string_enum! has no way to mark a `#[default]` variant, so this cannot be derived
#[allow(clippy::derivable_impls)]
impl Default for TriggerRule {
    fn default() -> Self {
        TriggerRule::AllSuccess
    }
}

impl RunState {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunState::Success | RunState::Failed | RunState::Cancelled
        )
    }

    pub fn can_become(self, next: RunState) -> bool {
        use RunState::*;
        matches!(
            (self, next),
            (Queued, Running)
                | (Queued | Running, Success | Failed | Cancelled)
                // clearing a finished run starts it again
                | (Success | Failed | Cancelled, Queued)
        )
    }
}

impl TaskState {
    /// A task in a terminal state is settled for the run unless someone clears it.
    pub fn is_terminal(self) -> bool {
        use TaskState::*;
        matches!(
            self,
            Success | Failed | Skipped | UpstreamFailed | Cancelled
        )
    }

    pub fn can_become(self, next: TaskState) -> bool {
        use TaskState::*;
        match (self, next) {
            (Pending, Queued | Skipped | UpstreamFailed | Cancelled) => true,
            (Queued, Running | Cancelled) => true,
            // a claimed retry goes straight from up_for_retry to running
            (UpForRetry, Queued | Running | Cancelled) => true,
            // a sensor between pokes is claimed again, still in the same try
            (UpForReschedule, Running | Cancelled) => true,
            (Running, Success | Failed | UpForRetry | UpForReschedule | Cancelled) => true,
            // marking and clearing: an operator may settle or reset any state
            (_, Pending) => true,
            (from, Success | Failed) => from != Running || matches!(next, Success | Failed),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_round_trips_through_its_text() {
        for s in TaskState::ALL {
            assert_eq!(s.as_str().parse::<TaskState>().unwrap(), *s);
        }
        for s in TriggerRule::ALL {
            assert_eq!(s.as_str().parse::<TriggerRule>().unwrap(), *s);
        }
        assert!(
            "bogus"
                .parse::<RunState>()
                .unwrap_err()
                .contains("queued, running")
        );
    }

    #[test]
    fn finished_tasks_cannot_be_claimed_again() {
        assert!(!TaskState::Success.can_become(TaskState::Running));
        assert!(!TaskState::Failed.can_become(TaskState::Queued));
        assert!(TaskState::Failed.can_become(TaskState::Pending));
        assert!(TaskState::UpForRetry.can_become(TaskState::Running));
    }

    #[test]
    fn a_rescheduled_sensor_is_unsettled_and_claimable_again() {
        assert!(!TaskState::UpForReschedule.is_terminal());
        assert!(TaskState::Running.can_become(TaskState::UpForReschedule));
        assert!(TaskState::UpForReschedule.can_become(TaskState::Running));
        assert!(TaskState::UpForReschedule.can_become(TaskState::Cancelled));
        assert!(!TaskState::UpForReschedule.can_become(TaskState::Queued));
    }
}
