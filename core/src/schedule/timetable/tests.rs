//! Timetable behaviour: Airflow's interval meaning, catchup, dates, `every`, and DST.

use chrono::{DateTime, NaiveDate, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

use super::{DataInterval, Timetable};
use crate::schedule::Schedule;

const SEOUL: Tz = chrono_tz::Asia::Seoul;
const BERLIN: Tz = chrono_tz::Europe::Berlin;
const NEW_YORK: Tz = chrono_tz::America::New_York;

fn schedule(text: &str) -> Schedule {
    Schedule::parse(text).expect("test schedule is valid")
}

/// A wall-clock time in `tz`; the first of two when the hour repeats.
fn local(tz: Tz, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    tz.with_ymd_and_hms(y, mo, d, h, mi, 0)
        .earliest()
        .expect("test time exists")
        .with_timezone(&Utc)
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
        .single()
        .expect("valid UTC time")
}

fn timetable(
    schedule: &Schedule,
    timezone: Tz,
    start_date: Option<DateTime<Utc>>,
) -> Timetable<'_> {
    Timetable {
        schedule,
        timezone,
        start_date,
        end_date: None,
    }
}

/// `start → end` in the timezone, e.g. "2026-03-29 03:00 CEST → 2026-03-30 02:30 CEST".
fn show(tz: Tz, intervals: &[DataInterval]) -> Vec<String> {
    let format = |time: DateTime<Utc>| {
        time.with_timezone(&tz)
            .format("%Y-%m-%d %H:%M %Z")
            .to_string()
    };
    intervals
        .iter()
        .map(|interval| format!("{} → {}", format(interval.start), format(interval.end)))
        .collect()
}

/// Every interval whose start falls on the local `day`.
fn intervals_starting_on(schedule: &Schedule, tz: Tz, day: NaiveDate) -> Vec<DataInterval> {
    let midnight = |date: NaiveDate| {
        tz.from_local_datetime(&date.and_hms_opt(0, 0, 0).expect("midnight"))
            .earliest()
            .expect("midnight exists")
            .with_timezone(&Utc)
    };
    let next_day = day.succ_opt().expect("a next day");
    let table = timetable(schedule, tz, Some(midnight(day)));
    let far_future = midnight(next_day) + TimeDelta::days(3);
    let mut intervals = table.due(None, far_future, true, 1000);
    intervals.retain(|interval| interval.start < midnight(next_day));
    intervals
}

#[test]
fn daily_intervals_are_due_once_they_end() {
    let daily = schedule("0 2 * * *");
    let table = timetable(&daily, SEOUL, Some(local(SEOUL, 2026, 1, 1, 0, 0)));
    let now = local(SEOUL, 2026, 1, 4, 2, 0);
    assert_eq!(
        show(SEOUL, &table.due(None, now, true, 10)),
        [
            "2026-01-01 02:00 KST → 2026-01-02 02:00 KST",
            "2026-01-02 02:00 KST → 2026-01-03 02:00 KST",
            "2026-01-03 02:00 KST → 2026-01-04 02:00 KST",
        ]
    );
    let just_before = now - TimeDelta::nanoseconds(1);
    assert_eq!(table.due(None, just_before, true, 10).len(), 2);
}

#[test]
fn catchup_off_yields_only_the_latest_interval_once() {
    let daily = schedule("0 2 * * *");
    let table = timetable(&daily, SEOUL, Some(local(SEOUL, 2026, 1, 1, 0, 0)));
    let now = local(SEOUL, 2026, 1, 10, 12, 0);
    let latest = ["2026-01-09 02:00 KST → 2026-01-10 02:00 KST"];
    assert_eq!(show(SEOUL, &table.due(None, now, false, 10)), latest);
    let older_end = Some(local(SEOUL, 2026, 1, 3, 2, 0));
    assert_eq!(show(SEOUL, &table.due(older_end, now, false, 10)), latest);
    let already_done = Some(local(SEOUL, 2026, 1, 10, 2, 0));
    assert_eq!(table.due(already_done, now, false, 10), []);
}

#[test]
fn catchup_continues_from_the_last_run() {
    let daily = schedule("0 2 * * *");
    let table = timetable(&daily, SEOUL, Some(local(SEOUL, 2026, 1, 1, 0, 0)));
    let now = local(SEOUL, 2026, 1, 4, 3, 0);
    let last_end = Some(local(SEOUL, 2026, 1, 2, 2, 0));
    assert_eq!(
        show(SEOUL, &table.due(last_end, now, true, 10)),
        [
            "2026-01-02 02:00 KST → 2026-01-03 02:00 KST",
            "2026-01-03 02:00 KST → 2026-01-04 02:00 KST"
        ]
    );
    // After a schedule change `last_end` may fall between ticks: continue at the next tick.
    let between_ticks = Some(local(SEOUL, 2026, 1, 2, 5, 0));
    assert_eq!(
        show(SEOUL, &table.due(between_ticks, now, true, 10)),
        ["2026-01-03 02:00 KST → 2026-01-04 02:00 KST"]
    );
    // A start date moved past the last run wins.
    let moved = timetable(&daily, SEOUL, Some(local(SEOUL, 2026, 1, 3, 0, 0)));
    let long_ago = Some(local(SEOUL, 2025, 6, 1, 2, 0));
    assert_eq!(
        show(SEOUL, &moved.due(long_ago, now, true, 10)),
        ["2026-01-03 02:00 KST → 2026-01-04 02:00 KST"]
    );
}

#[test]
fn limit_keeps_the_oldest_intervals() {
    let daily = schedule("0 2 * * *");
    let table = timetable(&daily, SEOUL, Some(local(SEOUL, 2026, 1, 1, 0, 0)));
    let now = local(SEOUL, 2026, 2, 1, 0, 0);
    let due = table.due(None, now, true, 2);
    assert_eq!(
        show(SEOUL, &due),
        [
            "2026-01-01 02:00 KST → 2026-01-02 02:00 KST",
            "2026-01-02 02:00 KST → 2026-01-03 02:00 KST"
        ]
    );
    assert_eq!(table.due(None, now, true, 0), []);
    assert_eq!(table.due(None, now, false, 0), []);
    assert_eq!(table.due(None, now, true, usize::MAX).len(), 30);
}

#[test]
fn catchup_without_start_date_or_last_run_takes_only_the_latest() {
    let hourly = schedule("@hourly");
    let table = timetable(&hourly, chrono_tz::UTC, None);
    let now = utc(2026, 5, 5, 10, 30);
    assert_eq!(
        table.due(None, now, true, 10),
        [DataInterval {
            start: utc(2026, 5, 5, 9, 0),
            end: utc(2026, 5, 5, 10, 0)
        }]
    );
}

#[test]
fn start_date_is_aligned_to_the_next_tick_and_future_start_waits() {
    let daily = schedule("0 2 * * *");
    let table = timetable(&daily, SEOUL, Some(local(SEOUL, 2026, 1, 1, 10, 0)));
    let now = local(SEOUL, 2026, 1, 3, 2, 0);
    assert_eq!(
        show(SEOUL, &table.due(None, now, true, 10)),
        ["2026-01-02 02:00 KST → 2026-01-03 02:00 KST"]
    );
    let future = timetable(&daily, SEOUL, Some(local(SEOUL, 2026, 2, 1, 0, 0)));
    assert_eq!(future.due(None, now, true, 10), []);
    assert_eq!(future.due(None, now, false, 10), []);
}

#[test]
fn end_date_stops_intervals_that_start_after_it() {
    let daily = schedule("0 2 * * *");
    let table = Timetable {
        schedule: &daily,
        timezone: SEOUL,
        start_date: Some(local(SEOUL, 2026, 1, 1, 0, 0)),
        end_date: Some(local(SEOUL, 2026, 1, 2, 2, 0)),
    };
    let now = local(SEOUL, 2026, 3, 1, 0, 0);
    // The interval that starts exactly at the end date is the last one.
    assert_eq!(
        show(SEOUL, &table.due(None, now, true, 10)),
        [
            "2026-01-01 02:00 KST → 2026-01-02 02:00 KST",
            "2026-01-02 02:00 KST → 2026-01-03 02:00 KST"
        ]
    );
    assert_eq!(table.due(None, now, false, 10), []);
    assert_eq!(table.upcoming(local(SEOUL, 2026, 1, 1, 12, 0), 5).len(), 2);
    assert_eq!(table.upcoming(now, 5), []);
}

#[test]
fn hourly_and_minute_schedules() {
    let hourly = schedule("@hourly");
    let table = timetable(&hourly, chrono_tz::UTC, Some(utc(2026, 5, 5, 0, 0)));
    let due = table.due(None, utc(2026, 5, 5, 3, 0), true, 10);
    assert_eq!(due.len(), 3);
    assert!(
        due.iter()
            .all(|interval| interval.length() == TimeDelta::hours(1))
    );
    let quarter = schedule("*/15 * * * *");
    let table = timetable(&quarter, chrono_tz::UTC, None);
    let next = table.upcoming(utc(2026, 5, 5, 0, 7), 2);
    assert_eq!(
        next,
        [
            DataInterval {
                start: utc(2026, 5, 5, 0, 0),
                end: utc(2026, 5, 5, 0, 15)
            },
            DataInterval {
                start: utc(2026, 5, 5, 0, 15),
                end: utc(2026, 5, 5, 0, 30)
            },
        ]
    );
}

#[test]
fn every_ticks_are_aligned_to_start_date_or_epoch() {
    let every = schedule("every 15m");
    let aligned = timetable(&every, SEOUL, Some(utc(2026, 1, 1, 0, 7)));
    assert_eq!(
        aligned.due(None, utc(2026, 1, 1, 0, 40), true, 10),
        [
            DataInterval {
                start: utc(2026, 1, 1, 0, 7),
                end: utc(2026, 1, 1, 0, 22)
            },
            DataInterval {
                start: utc(2026, 1, 1, 0, 22),
                end: utc(2026, 1, 1, 0, 37)
            },
        ]
    );
    let epoch = timetable(&every, SEOUL, None);
    assert_eq!(
        epoch.due(None, utc(2026, 1, 1, 0, 40), true, 10),
        [DataInterval {
            start: utc(2026, 1, 1, 0, 15),
            end: utc(2026, 1, 1, 0, 30)
        }]
    );
    let long = schedule("every 1h30m");
    let table = timetable(&long, BERLIN, Some(utc(2026, 3, 28, 23, 0)));
    let next = table.upcoming(utc(2026, 3, 29, 0, 0), 3);
    let starts: Vec<_> = next.iter().map(|interval| interval.start).collect();
    assert_eq!(
        starts,
        [
            utc(2026, 3, 28, 23, 0),
            utc(2026, 3, 29, 0, 30),
            utc(2026, 3, 29, 2, 0)
        ]
    );
    assert!(
        next.iter()
            .all(|interval| interval.length() == TimeDelta::minutes(90))
    );
    // Continuing after the last run, and before the start date nothing exists.
    assert_eq!(
        table
            .next_interval_after(utc(2026, 3, 29, 0, 30))
            .map(|i| i.start),
        Some(utc(2026, 3, 29, 0, 30))
    );
    assert_eq!(
        table.upcoming(utc(2026, 3, 1, 0, 0), 1)[0].start,
        utc(2026, 3, 28, 23, 0)
    );
}

#[test]
fn upcoming_lists_fire_times_after_now() {
    let daily = schedule("0 2 * * *");
    let table = timetable(&daily, SEOUL, Some(local(SEOUL, 2026, 1, 1, 0, 0)));
    let now = local(SEOUL, 2026, 1, 10, 12, 0);
    assert_eq!(
        show(SEOUL, &table.upcoming(now, 2)),
        [
            "2026-01-10 02:00 KST → 2026-01-11 02:00 KST",
            "2026-01-11 02:00 KST → 2026-01-12 02:00 KST"
        ]
    );
    // A run that fires exactly now has fired.
    let at_tick = local(SEOUL, 2026, 1, 11, 2, 0);
    assert_eq!(
        show(SEOUL, &table.upcoming(at_tick, 1)),
        ["2026-01-11 02:00 KST → 2026-01-12 02:00 KST"]
    );
    let later_start = timetable(&daily, SEOUL, Some(local(SEOUL, 2026, 6, 1, 0, 0)));
    assert_eq!(
        show(SEOUL, &later_start.upcoming(now, 1)),
        ["2026-06-01 02:00 KST → 2026-06-02 02:00 KST"]
    );
    assert_eq!(table.upcoming(now, 0), []);
}

#[test]
fn weekly_and_monthly_cross_month_ends() {
    let monthly = schedule("@monthly");
    let table = timetable(&monthly, chrono_tz::UTC, Some(utc(2026, 1, 15, 0, 0)));
    let due = table.due(None, utc(2026, 4, 1, 0, 0), true, 10);
    assert_eq!(
        show(chrono_tz::UTC, &due),
        [
            "2026-02-01 00:00 UTC → 2026-03-01 00:00 UTC",
            "2026-03-01 00:00 UTC → 2026-04-01 00:00 UTC"
        ]
    );
    assert_eq!(due[0].length(), TimeDelta::days(28));
    let on_31st = schedule("0 0 31 * *");
    let table = timetable(&on_31st, chrono_tz::UTC, Some(utc(2026, 1, 1, 0, 0)));
    let next = table.upcoming(utc(2026, 1, 5, 0, 0), 3);
    assert_eq!(
        show(chrono_tz::UTC, &next),
        [
            "2026-01-31 00:00 UTC → 2026-03-31 00:00 UTC",
            "2026-03-31 00:00 UTC → 2026-05-31 00:00 UTC",
            "2026-05-31 00:00 UTC → 2026-07-31 00:00 UTC",
        ]
    );
    let weekly = schedule("@weekly");
    let table = timetable(&weekly, BERLIN, Some(local(BERLIN, 2026, 2, 20, 0, 0)));
    let due = table.due(None, local(BERLIN, 2026, 4, 6, 0, 0), true, 10);
    assert_eq!(
        show(BERLIN, &due[..2]),
        [
            "2026-02-22 00:00 CET → 2026-03-01 00:00 CET",
            "2026-03-01 00:00 CET → 2026-03-08 00:00 CET"
        ]
    );
    // The week that contains the spring-forward night is an hour shorter.
    let across_dst = due
        .iter()
        .find(|interval| interval.start == local(BERLIN, 2026, 3, 29, 0, 0));
    assert_eq!(
        across_dst.map(DataInterval::length),
        Some(TimeDelta::hours(167))
    );
}

#[test]
fn berlin_daily_0230_fires_at_0300_on_spring_forward_and_once_on_fall_back() {
    let daily = schedule("30 2 * * *");
    let table = timetable(&daily, BERLIN, None);
    let spring = table.upcoming(local(BERLIN, 2026, 3, 27, 12, 0), 3);
    assert_eq!(
        show(BERLIN, &spring),
        [
            "2026-03-27 02:30 CET → 2026-03-28 02:30 CET",
            "2026-03-28 02:30 CET → 2026-03-29 03:00 CEST",
            "2026-03-29 03:00 CEST → 2026-03-30 02:30 CEST",
        ]
    );
    assert_eq!(spring[1].length(), TimeDelta::minutes(23 * 60 + 30));
    let fall = table.upcoming(local(BERLIN, 2026, 10, 24, 12, 0), 2);
    assert_eq!(
        show(BERLIN, &fall),
        [
            "2026-10-24 02:30 CEST → 2026-10-25 02:30 CEST",
            "2026-10-25 02:30 CEST → 2026-10-26 02:30 CET"
        ]
    );
    assert_eq!(fall[1].length(), TimeDelta::hours(25));
    // Due exactly at 03:00 CEST on the spring-forward day, not a minute earlier.
    let last_end = Some(local(BERLIN, 2026, 3, 28, 2, 30));
    let fire = local(BERLIN, 2026, 3, 29, 3, 0);
    assert_eq!(
        table.due(last_end, fire - TimeDelta::minutes(1), true, 10),
        []
    );
    assert_eq!(table.due(last_end, fire, true, 10), spring[1..2]);
    // In the repeated hour (02:45 CET, the second pass), the 02:30 CEST run has fired and no
    // second one is coming.
    let second_pass = utc(2026, 10, 25, 1, 45);
    assert_eq!(table.latest_complete_interval(second_pass), Some(fall[0]));
    assert_eq!(table.tick_before(second_pass), Some(fall[0].end));
    assert_eq!(table.upcoming(second_pass, 1), fall[1..]);
    // From before 02:30 on the second pass (02:20 CET) the next run is still the next day's.
    let early_second_pass = utc(2026, 10, 25, 1, 20);
    assert_eq!(table.tick_after(early_second_pass), Some(fall[1].end));
    assert_eq!(table.tick_at_or_after(early_second_pass), Some(fall[1].end));
    assert_eq!(table.upcoming(early_second_pass, 1), fall[1..]);
    assert_eq!(
        table.latest_complete_interval(early_second_pass),
        Some(fall[0])
    );
}

#[test]
fn new_york_daily_0230_fires_at_0300_on_spring_forward_and_once_on_fall_back() {
    let daily = schedule("30 2 * * *");
    let table = timetable(&daily, NEW_YORK, None);
    let spring = table.upcoming(local(NEW_YORK, 2026, 3, 7, 12, 0), 2);
    assert_eq!(
        show(NEW_YORK, &spring),
        [
            "2026-03-07 02:30 EST → 2026-03-08 03:00 EDT",
            "2026-03-08 03:00 EDT → 2026-03-09 02:30 EDT"
        ]
    );
    let fall = table.upcoming(local(NEW_YORK, 2026, 10, 31, 12, 0), 2);
    assert_eq!(
        show(NEW_YORK, &fall),
        [
            "2026-10-31 02:30 EDT → 2026-11-01 02:30 EST",
            "2026-11-01 02:30 EST → 2026-11-02 02:30 EST"
        ]
    );
    assert_eq!(fall[0].length(), TimeDelta::hours(25));
    // 01:30 sits in New York's repeated hour: a fixed-time job runs on its first pass only.
    let early = schedule("30 1 * * *");
    let table = timetable(&early, NEW_YORK, None);
    let fall = table.upcoming(local(NEW_YORK, 2026, 10, 31, 12, 0), 2);
    assert_eq!(
        show(NEW_YORK, &fall),
        [
            "2026-10-31 01:30 EDT → 2026-11-01 01:30 EDT",
            "2026-11-01 01:30 EDT → 2026-11-02 01:30 EST"
        ]
    );
}

#[test]
fn hourly_intervals_stay_one_real_hour_through_dst_days() {
    let cases = [
        (BERLIN, (2026, 3, 29), 23),
        (BERLIN, (2026, 10, 25), 25),
        (NEW_YORK, (2026, 3, 8), 23),
        (NEW_YORK, (2026, 11, 1), 25),
        (BERLIN, (2026, 3, 30), 24),
    ];
    let hourly = schedule("0 * * * *");
    for (tz, (y, m, d), expected) in cases {
        let day = NaiveDate::from_ymd_opt(y, m, d).expect("valid date");
        let intervals = intervals_starting_on(&hourly, tz, day);
        assert_eq!(
            intervals.len(),
            expected,
            "{tz} {day}: {:#?}",
            show(tz, &intervals)
        );
        assert!(
            intervals
                .iter()
                .all(|interval| interval.length() == TimeDelta::hours(1)),
            "{tz} {day}"
        );
        assert!(
            intervals
                .windows(2)
                .all(|pair| pair[0].end == pair[1].start),
            "{tz} {day}"
        );
    }
    // Backward and forward agree through the repeated hour.
    let table = timetable(&hourly, BERLIN, None);
    let fall = intervals_starting_on(
        &hourly,
        BERLIN,
        NaiveDate::from_ymd_opt(2026, 10, 25).expect("date"),
    );
    for pair in fall.windows(2) {
        assert_eq!(table.tick_before(pair[1].start), Some(pair[0].start));
        assert_eq!(table.latest_complete_interval(pair[1].end), Some(pair[1]));
    }
}

#[test]
fn daily_intervals_through_dst_days_keep_one_run_per_day() {
    let daily = schedule("30 2 * * *");
    for (tz, (y, m, d)) in [
        (BERLIN, (2026, 3, 29)),
        (BERLIN, (2026, 10, 25)),
        (NEW_YORK, (2026, 3, 8)),
        (NEW_YORK, (2026, 11, 1)),
    ] {
        let day = NaiveDate::from_ymd_opt(y, m, d).expect("valid date");
        let intervals = intervals_starting_on(&daily, tz, day);
        assert_eq!(intervals.len(), 1, "{tz} {day}: {:?}", show(tz, &intervals));
    }
}

#[test]
fn fractional_seconds_do_not_shift_ticks() {
    let hourly = schedule("@hourly");
    let table = timetable(&hourly, chrono_tz::UTC, None);
    let tick = utc(2026, 1, 1, 2, 0);
    let just_after = tick + TimeDelta::milliseconds(500);
    assert_eq!(
        table.tick_at_or_after(just_after),
        Some(utc(2026, 1, 1, 3, 0))
    );
    assert_eq!(
        table.tick_after(tick - TimeDelta::milliseconds(500)),
        Some(tick)
    );
    assert_eq!(table.tick_before(just_after), Some(tick));
    assert_eq!(table.tick_before(tick), Some(utc(2026, 1, 1, 1, 0)));
    assert_eq!(
        table.latest_complete_interval(just_after).map(|i| i.end),
        Some(tick)
    );
}
