//! The sluice domain: DAG files and what they mean, schedules, templates and states. No IO.
#![forbid(unsafe_code)]

pub mod clock;
pub mod deps;
pub mod error;
pub mod ids;
pub mod parse;
pub mod schedule;
pub mod spec;
pub mod state;
pub mod template;

pub use error::DagError;
pub use ids::{DagId, TaskId};
pub use parse::parse_dag;
pub use schedule::{DataInterval, Schedule, Timetable};
pub use spec::{Dag, Step, Task};
pub use state::{AttemptState, BackfillState, RunState, RunType, TaskState, TriggerRule};
