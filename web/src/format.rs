//! How times, durations and missing values read on the pages: in the viewer's timezone
//! (UTC unless they chose another), compact, never ambiguous.

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;

tokio::task_local! {
    /// The timezone of the request being answered; set by `crate::settings::with_timezone`.
    pub(crate) static TIMEZONE: Tz;
}

/// The timezone times are shown in while answering this request.
pub(crate) fn timezone() -> Tz {
    TIMEZONE.try_with(|tz| *tz).unwrap_or(Tz::UTC)
}

/// Shown where a value does not exist (yet).
pub(crate) const NONE: &str = "—";

/// `2026-11-25 07:52:10Z` in UTC, `2026-11-25 16:52:10 KST` in another timezone.
pub(crate) fn time(at: DateTime<Utc>) -> String {
    let tz = timezone();
    if tz == Tz::UTC {
        return at.format("%Y-%m-%d %H:%M:%SZ").to_string();
    }
    at.with_timezone(&tz)
        .format("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

pub(crate) fn optional_time(at: Option<DateTime<Utc>>) -> String {
    at.map_or_else(|| NONE.to_owned(), time)
}

/// How long something took, or has taken so far when it has not ended: `now` stands in for
/// the end, and the text ends with `…` to say it is still growing.
pub(crate) fn elapsed(
    started: Option<DateTime<Utc>>,
    ended: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> String {
    match (started, ended) {
        (Some(start), Some(end)) => duration(end - start),
        (Some(start), None) => format!("{}…", duration(now - start)),
        (None, _) => NONE.to_owned(),
    }
}

/// `0.4s`, `12.3s`, `3m 04s`, `2h 05m`, `3d 04h`; a negative span (clock skew) reads `0.0s`.
pub(crate) fn duration(delta: TimeDelta) -> String {
    let millis = delta.num_milliseconds().max(0);
    let seconds = millis / 1000;
    if seconds < 60 {
        let tenths = millis / 100;
        return format!("{}.{}s", tenths / 10, tenths % 10);
    }
    if seconds < 3600 {
        return format!("{}m {:02}s", seconds / 60, seconds % 60);
    }
    if seconds < 86_400 {
        return format!("{}h {:02}m", seconds / 3600, seconds % 3600 / 60);
    }
    format!("{}d {:02}h", seconds / 86_400, seconds % 86_400 / 3600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_person_would_say_them() {
        let cases = [
            (TimeDelta::milliseconds(0), "0.0s"),
            (TimeDelta::milliseconds(1_249), "1.2s"),
            (TimeDelta::milliseconds(59_999), "59.9s"),
            (TimeDelta::seconds(184), "3m 04s"),
            (TimeDelta::seconds(7_500), "2h 05m"),
            (TimeDelta::seconds(3 * 86_400 + 4 * 3600 + 59), "3d 04h"),
            (TimeDelta::seconds(-5), "0.0s"),
        ];
        for (delta, expected) in cases {
            assert_eq!(duration(delta), expected, "{delta:?}");
        }
    }

    #[test]
    fn times_are_utc_with_a_z() {
        let at = DateTime::parse_from_rfc3339("2026-11-25T16:52:10.9+09:00")
            .expect("valid literal")
            .with_timezone(&Utc);
        assert_eq!(time(at), "2026-11-25 07:52:10Z");
        assert_eq!(optional_time(None), NONE);
    }

    #[tokio::test]
    async fn times_follow_the_chosen_timezone() {
        let at = DateTime::parse_from_rfc3339("2026-11-25T07:52:10Z")
            .expect("valid literal")
            .with_timezone(&Utc);
        let seoul = TIMEZONE
            .scope(chrono_tz::Asia::Seoul, async move { time(at) })
            .await;
        assert_eq!(seoul, "2026-11-25 16:52:10 KST");
        assert_eq!(time(at), "2026-11-25 07:52:10Z");
    }

    #[test]
    fn unfinished_spans_say_so() {
        let start = DateTime::from_timestamp(1_000, 0).expect("valid timestamp");
        let now = DateTime::from_timestamp(1_065, 0).expect("valid timestamp");
        assert_eq!(elapsed(Some(start), None, now), "1m 05s…");
        assert_eq!(elapsed(Some(start), Some(now), now), "1m 05s");
        assert_eq!(elapsed(None, None, now), NONE);
    }
}
