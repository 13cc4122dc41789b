//! Schedules (cron, presets, `every <duration>`), durations, and the data intervals they yield.
// HELPER-OWNED: being written; the signatures below are the contract.

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Schedule {
    expression: String,
}

impl Schedule {
    pub fn parse(expression: &str) -> Result<Schedule, String> {
        Ok(Schedule {
            expression: expression.to_owned(),
        })
    }
    pub fn expression(&self) -> &str {
        &self.expression
    }
    pub fn describe(&self) -> String {
        self.expression.clone()
    }
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    Err(format!("not yet: {text}"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DataInterval {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

pub struct Timetable<'a> {
    pub schedule: &'a Schedule,
    pub timezone: Tz,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
}

impl Timetable<'_> {
    pub fn due(
        &self,
        _last_end: Option<DateTime<Utc>>,
        _now: DateTime<Utc>,
        _catchup: bool,
        _limit: usize,
    ) -> Vec<DataInterval> {
        Vec::new()
    }
    pub fn upcoming(&self, _now: DateTime<Utc>, _n: usize) -> Vec<DataInterval> {
        Vec::new()
    }
}
