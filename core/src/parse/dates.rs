//! `start_date` and `end_date`: a day or a time, in the DAG's timezone unless an offset is given.

use chrono::{DateTime, LocalResult, NaiveDate, NaiveDateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

/// `2026-01-01` (midnight in `timezone`), `2026-01-01T06:00:00` (local time in `timezone`,
/// seconds and fractions optional, a space may stand for the `T`) or RFC 3339 with an offset
/// (`2026-01-01T06:00:00+09:00`, `…Z`). A local time that DST skips becomes the first valid
/// time after it; one that DST repeats becomes the earlier of the two.
pub(crate) fn parse_date(text: &str, timezone: Tz) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return local(
            day.and_hms_opt(0, 0, 0).expect("midnight exists"),
            timezone,
            text,
        );
    }
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(time) = NaiveDateTime::parse_from_str(text, format) {
            return local(time, timezone, text);
        }
    }
    if looks_like_a_day(text) {
        return Err(format!("bad date `{text}`: there is no such day"));
    }
    Err(format!(
        "bad date `{text}`: write a day (`2026-01-01`, midnight in the DAG's timezone), a local \
         time (`2026-01-01T06:00:00`) or a time with its offset (`2026-01-01T06:00:00+09:00`)"
    ))
}

fn local(time: NaiveDateTime, timezone: Tz, text: &str) -> Result<DateTime<Utc>, String> {
    // DST gaps are at most a few hours; walking minute by minute finds the gap's end.
    for minutes in 0..=24 * 60 {
        let Some(candidate) = time.checked_add_signed(TimeDelta::minutes(minutes)) else {
            break;
        };
        match timezone.from_local_datetime(&candidate) {
            LocalResult::Single(found) | LocalResult::Ambiguous(found, _) => {
                return Ok(found.with_timezone(&Utc));
            }
            LocalResult::None => {}
        }
    }
    Err(format!(
        "bad date `{text}`: it does not exist in {}",
        timezone.name()
    ))
}

/// `dddd-dd-dd`: the shape of a day, whatever the numbers.
fn looks_like_a_day(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 10
        && bytes.iter().enumerate().all(|(index, byte)| match index {
            4 | 7 => *byte == b'-',
            _ => byte.is_ascii_digit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn a_day_is_midnight_in_the_dag_timezone() {
        let seoul: Tz = "Asia/Seoul".parse().unwrap();
        assert_eq!(
            parse_date("2026-01-01", seoul),
            Ok(utc("2025-12-31T15:00:00Z"))
        );
        assert_eq!(
            parse_date("2026-01-01", Tz::UTC),
            Ok(utc("2026-01-01T00:00:00Z"))
        );
    }

    #[test]
    fn times_are_local_unless_they_carry_an_offset() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        assert_eq!(
            parse_date("2026-07-01T06:00:00", berlin),
            Ok(utc("2026-07-01T04:00:00Z"))
        );
        assert_eq!(
            parse_date("2026-07-01 06:00", berlin),
            Ok(utc("2026-07-01T04:00:00Z"))
        );
        assert_eq!(
            parse_date("2026-07-01T06:00:00+09:00", berlin),
            Ok(utc("2026-06-30T21:00:00Z"))
        );
        assert_eq!(
            parse_date("2026-07-01T06:00:00Z", berlin),
            Ok(utc("2026-07-01T06:00:00Z"))
        );
    }

    #[test]
    fn dst_gaps_move_forward_and_repeated_hours_take_the_first() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        // 2026-03-29 02:30 does not exist in Berlin: clocks jump from 02:00 to 03:00 (01:00 UTC)
        assert_eq!(
            parse_date("2026-03-29T02:30:00", berlin),
            Ok(utc("2026-03-29T01:00:00Z"))
        );
        // 2026-10-25 02:30 happens twice; the first is still summer time (+02:00)
        assert_eq!(
            parse_date("2026-10-25T02:30:00", berlin),
            Ok(utc("2026-10-25T00:30:00Z"))
        );
        // Santiago skipped midnight on 2022-09-11: the day starts at 01:00 (-03:00)
        let santiago: Tz = "America/Santiago".parse().unwrap();
        assert_eq!(
            parse_date("2022-09-11", santiago),
            Ok(utc("2022-09-11T04:00:00Z"))
        );
    }

    #[test]
    fn bad_dates_say_what_is_wrong() {
        assert!(
            parse_date("2026-02-30", Tz::UTC)
                .unwrap_err()
                .contains("no such day")
        );
        assert!(
            parse_date("tomorrow", Tz::UTC)
                .unwrap_err()
                .contains("write a day")
        );
    }
}
