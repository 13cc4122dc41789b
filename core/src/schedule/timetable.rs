//! A schedule placed in a DAG's timezone and dates: its ticks and the data intervals between them.
//!
//! Cron ticks are found by croner in the DAG's timezone. Across DST it does what a person
//! expects: a fixed-time job (`30 2 * * *`) whose wall-clock time falls in the spring gap
//! fires at the first valid time after it (03:00), and once — on the first pass — in the
//! autumn's repeated hour; interval jobs (`0 * * * *`, `*/15 * * * *`) keep firing on the
//! real clock, so hourly intervals are always one real hour long (23 or 25 on those days).
//! Forward search is the source of truth: a backward search only gives a starting point
//! that forward search then confirms, so both directions agree on the same ticks.
//! `every <d>` ticks are `start_date + k·d` (the Unix epoch without a start date), in UTC.

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use croner::Cron;
use serde::{Deserialize, Serialize};

use super::Schedule;

/// `[start, end)`: the data a run covers. The run fires at `end`; its logical date is `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DataInterval {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl DataInterval {
    pub fn length(&self) -> TimeDelta {
        self.end - self.start
    }
}

pub struct Timetable<'a> {
    pub schedule: &'a Schedule,
    pub timezone: Tz,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
}

impl Timetable<'_> {
    /// The intervals that should get a run at `now`, oldest first, at most `limit`.
    ///
    /// An interval is due once `now >= end`. With `last_end` (the end of the newest scheduled
    /// run) the next interval starts at the first tick `>= last_end`; without it, at the first
    /// tick `>= start_date`. `catchup = false` yields only the latest complete interval, and
    /// only if it starts at or after `last_end`; without a start date and without `last_end`
    /// there is nothing to catch up from, so catchup is off. No interval starts before
    /// `start_date` or after `end_date`.
    pub fn due(
        &self,
        last_end: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        catchup: bool,
        limit: usize,
    ) -> Vec<DataInterval> {
        if limit == 0 {
            return Vec::new();
        }
        let from = match (last_end, self.start_date) {
            (Some(last), Some(start)) => Some(last.max(start)),
            (last, start) => last.or(start),
        };
        let Some(from) = from.filter(|_| catchup) else {
            return self
                .latest_complete_interval(now)
                .filter(|interval| self.allows(interval))
                .filter(|interval| last_end.is_none_or(|last| interval.start >= last))
                .into_iter()
                .collect();
        };
        let mut due = Vec::new();
        let mut next = self.next_interval_after(from);
        while let Some(interval) = next {
            if due.len() == limit || interval.end > now || !self.allows(&interval) {
                break;
            }
            due.push(interval);
            next = self.next_interval_after(interval.end);
        }
        due
    }

    /// The next `n` intervals whose run has not fired yet (`end > now`), within the start and
    /// end dates. `end` is when the run fires; `start` is its logical date.
    pub fn upcoming(&self, now: DateTime<Utc>, n: usize) -> Vec<DataInterval> {
        let mut upcoming = Vec::new();
        if n == 0 {
            return upcoming;
        }
        let Some(first_end) = self.tick_after(now) else {
            return upcoming;
        };
        let mut next = match self.tick_before(first_end) {
            Some(start) => Some(DataInterval {
                start,
                end: first_end,
            }),
            None => self.next_interval_after(first_end),
        };
        if let (Some(interval), Some(start_date)) = (next, self.start_date)
            && interval.start < start_date
        {
            next = self.next_interval_after(start_date);
        }
        while let Some(interval) = next {
            if upcoming.len() == n || !self.allows(&interval) {
                break;
            }
            upcoming.push(interval);
            next = self.next_interval_after(interval.end);
        }
        upcoming
    }

    /// The interval that starts at the first tick at or after `start`.
    pub fn next_interval_after(&self, start: DateTime<Utc>) -> Option<DataInterval> {
        let start = self.tick_at_or_after(start)?;
        let end = self.tick_after(start)?;
        Some(DataInterval { start, end })
    }

    /// The newest interval whose end is at or before `now`, by the schedule alone (start and
    /// end dates are not applied; `every` ticks stay aligned to the start date). This is the
    /// natural data interval of a run triggered by hand at `now`.
    pub fn latest_complete_interval(&self, now: DateTime<Utc>) -> Option<DataInterval> {
        let end = match self.tick_at_or_after(now) {
            Some(tick) if tick == now => tick,
            _ => self.tick_before(now)?,
        };
        let start = self.tick_before(end)?;
        Some(DataInterval { start, end })
    }

    /// The first tick at or after `time`.
    pub fn tick_at_or_after(&self, time: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self.schedule.cron() {
            // Not croner's inclusive search: from exactly 03:00 on a spring-forward day it does not
            // see the 02:30 run that the gap moved to 03:00, though a search from before does.
            // Ticks are whole seconds, so "after one second earlier" is "at or after".
            Some(cron) => self.cron_search(
                cron,
                ceil_second(time) - TimeDelta::seconds(1),
                Search::ForwardExclusive,
            ),
            None => self.every_tick(time, ceil_div),
        }
    }

    /// The first tick strictly after `time`.
    pub fn tick_after(&self, time: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self.schedule.cron() {
            Some(cron) => self.cron_search(cron, floor_second(time), Search::ForwardExclusive),
            None => self.every_tick(time, |offset, step| offset.div_euclid(step) + 1),
        }
    }

    /// The last tick strictly before `time`.
    pub fn tick_before(&self, time: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let Some(cron) = self.schedule.cron() else {
            return self.every_tick(time, |offset, step| ceil_div(offset, step) - 1);
        };
        // croner's backward search can stop on a time its forward search skips (the second
        // pass of a repeated hour for a fixed-time job), so only use it to find a tick from
        // which to walk forward.
        let mut probe = ceil_second(time);
        for _ in 0..4 {
            let candidate = self.cron_search(cron, probe, Search::BackwardExclusive)?;
            let mut last = self.tick_at_or_after(candidate)?;
            if last < time {
                while let Some(next) = self.tick_after(last).filter(|next| *next < time) {
                    last = next;
                }
                return Some(last);
            }
            probe = candidate;
        }
        None
    }

    fn allows(&self, interval: &DataInterval) -> bool {
        self.start_date.is_none_or(|start| interval.start >= start)
            && self.end_date.is_none_or(|end| interval.start <= end)
    }

    fn cron_search(
        &self,
        cron: &Cron,
        from: DateTime<Utc>,
        search: Search,
    ) -> Option<DateTime<Utc>> {
        let local = from.with_timezone(&self.timezone);
        let found = match search {
            Search::ForwardExclusive => cron.find_next_occurrence(&local, false),
            Search::BackwardExclusive => cron.find_previous_occurrence(&local, false),
        };
        found.ok().map(|tick| tick.with_timezone(&Utc))
    }

    /// The `every` tick `anchor + k·step` with `k = pick(time - anchor, step)` (in nanoseconds).
    fn every_tick(
        &self,
        time: DateTime<Utc>,
        pick: impl Fn(i128, i128) -> i128,
    ) -> Option<DateTime<Utc>> {
        let step = i128::try_from(self.schedule.every()?.as_nanos()).ok()?;
        let anchor = nanos(self.start_date.unwrap_or(DateTime::UNIX_EPOCH));
        let index = pick(nanos(time) - anchor, step);
        from_nanos(anchor.checked_add(index.checked_mul(step)?)?)
    }
}

#[derive(Clone, Copy)]
enum Search {
    ForwardExclusive,
    BackwardExclusive,
}

fn ceil_div(numerator: i128, denominator: i128) -> i128 {
    -((-numerator).div_euclid(denominator))
}

fn nanos(time: DateTime<Utc>) -> i128 {
    i128::from(time.timestamp()) * 1_000_000_000 + i128::from(time.timestamp_subsec_nanos())
}

fn from_nanos(total: i128) -> Option<DateTime<Utc>> {
    let seconds = i64::try_from(total.div_euclid(1_000_000_000)).ok()?;
    let subsec = u32::try_from(total.rem_euclid(1_000_000_000)).ok()?;
    DateTime::from_timestamp(seconds, subsec)
}

/// croner works in whole seconds and ignores the fraction of its starting point.
fn floor_second(time: DateTime<Utc>) -> DateTime<Utc> {
    time - TimeDelta::nanoseconds(i64::from(time.timestamp_subsec_nanos()))
}

fn ceil_second(time: DateTime<Utc>) -> DateTime<Utc> {
    let floor = floor_second(time);
    if floor == time {
        time
    } else {
        floor + TimeDelta::seconds(1)
    }
}

#[cfg(test)]
mod tests;
