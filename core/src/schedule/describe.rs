//! Schedules in short English: "every day at 02:00", "every 15 minutes".

use std::time::Duration;

pub(super) fn describe_every(step: Duration) -> String {
    let words = duration_words(step);
    match words.strip_prefix("1 ") {
        // "every hour", not "every 1 hour"; "every 1 hour 30 minutes" keeps its number.
        Some(unit) if !unit.contains(' ') => format!("every {unit}"),
        _ => format!("every {words}"),
    }
}

/// "1 hour 30 minutes".
fn duration_words(step: Duration) -> String {
    const UNITS: [(&str, u128); 6] = [
        ("week", 604_800_000),
        ("day", 86_400_000),
        ("hour", 3_600_000),
        ("minute", 60_000),
        ("second", 1_000),
        ("millisecond", 1),
    ];
    let mut rest = step.as_millis();
    let mut words = Vec::new();
    for (unit, size) in UNITS {
        let count = rest / size;
        rest %= size;
        match count {
            0 => {}
            1 => words.push(format!("1 {unit}")),
            _ => words.push(format!("{count} {unit}s")),
        }
    }
    words.join(" ")
}

pub(super) fn describe_cron(pattern: &str) -> Option<String> {
    let fields: Vec<&str> = pattern.split_whitespace().collect();
    let [minute, hour, day, month, weekday] = fields.as_slice() else {
        return None;
    };
    let minute_number = minute.parse::<u32>().ok();
    let hour_number = hour.parse::<u32>().ok();
    let any_day = *day == "*" && *month == "*" && *weekday == "*";
    if any_day {
        if let (Some(m), Some(h)) = (minute_number, hour_number) {
            return Some(format!("every day at {h:02}:{m:02}"));
        }
        if *hour == "*" {
            if *minute == "*" {
                return Some("every minute".to_owned());
            }
            if let Some(m) = minute_number {
                return Some(format!("at minute {m} past every hour"));
            }
            if let Some(step) = minute
                .strip_prefix("*/")
                .and_then(|s| s.parse::<u32>().ok())
            {
                return Some(format!("every {step} minutes"));
            }
        }
        if let (Some(m), Some(step)) = (
            minute_number,
            hour.strip_prefix("*/").and_then(|s| s.parse::<u32>().ok()),
        ) {
            return Some(format!("at minute {m} past every {} hour", ordinal(step)));
        }
        return None;
    }
    let (m, h) = (minute_number?, hour_number?);
    let at = format!("at {h:02}:{m:02}");
    match (*day, *month, *weekday) {
        ("*", "*", weekday) => Some(format!("every {} {at}", weekdays_words(weekday)?)),
        (day, "*", "*") => Some(format!(
            "on day {} of every month {at}",
            day.parse::<u32>().ok()?
        )),
        (day, month, "*") => Some(format!(
            "every year on {} {} {at}",
            day.parse::<u32>().ok()?,
            month_name(month)?
        )),
        _ => None,
    }
}

fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// "Monday", "Monday to Friday", "Monday, Wednesday and Friday".
fn weekdays_words(field: &str) -> Option<String> {
    if let Some((from, to)) = field.split_once('-') {
        return Some(format!("{} to {}", weekday_name(from)?, weekday_name(to)?));
    }
    let names = field
        .split(',')
        .map(weekday_name)
        .collect::<Option<Vec<_>>>()?;
    Some(match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => names.join(""),
    })
}

fn weekday_name(text: &str) -> Option<&'static str> {
    if let Ok(number) = text.parse::<usize>() {
        return WEEKDAYS.get(number % 7).copied();
    }
    let lowered = text.to_ascii_lowercase();
    WEEKDAYS
        .iter()
        .find(|name| name.to_ascii_lowercase().starts_with(&lowered) && lowered.len() == 3)
        .copied()
}

fn month_name(text: &str) -> Option<&'static str> {
    if let Ok(number) = text.parse::<usize>() {
        return MONTHS.get(number.checked_sub(1)?).copied();
    }
    let lowered = text.to_ascii_lowercase();
    MONTHS
        .iter()
        .find(|name| name.to_ascii_lowercase().starts_with(&lowered) && lowered.len() == 3)
        .copied()
}

#[cfg(test)]
mod tests {
    use crate::schedule::Schedule;

    #[test]
    fn describes_common_schedules_in_english() {
        let cases = [
            ("0 2 * * *", "every day at 02:00"),
            ("@daily", "every day at 00:00"),
            ("@hourly", "at minute 0 past every hour"),
            ("15 * * * *", "at minute 15 past every hour"),
            ("*/15 * * * *", "every 15 minutes"),
            ("* * * * *", "every minute"),
            ("0 */2 * * *", "at minute 0 past every 2nd hour"),
            ("@weekly", "every Sunday at 00:00"),
            ("30 9 * * 1-5", "every Monday to Friday at 09:30"),
            (
                "30 9 * * MON,WED,FRI",
                "every Monday, Wednesday and Friday at 09:30",
            ),
            ("@monthly", "on day 1 of every month at 00:00"),
            ("@yearly", "every year on 1 January at 00:00"),
            ("every 15m", "every 15 minutes"),
            ("every 1h", "every hour"),
            ("every 1h30m", "every 1 hour 30 minutes"),
            ("every 2d", "every 2 days"),
            ("0 9-17 * * 1-5", "0 9-17 * * 1-5"),
        ];
        for (text, expected) in cases {
            assert_eq!(
                Schedule::parse(text).unwrap().describe(),
                expected,
                "{text}"
            );
        }
    }
}
