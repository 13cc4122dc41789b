//! Schedules (cron, presets, `every <duration>`), durations, and the data intervals they yield.
//!
//! A [`Schedule`] is a parsed, valid schedule expression; a [`Timetable`] puts it in a DAG's
//! timezone between its start and end dates and answers "which intervals are due now?"
//! with Airflow's meaning: the run for `[tick_i, tick_i+1)` fires at `tick_i+1`.

mod describe;
mod duration;
mod timetable;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use croner::Cron;
use croner::errors::CronError;
use croner::parser::{CronParser, Seconds, Year};
use serde::Serialize;

pub use duration::{format_duration, parse_duration};
pub use timetable::{DataInterval, Timetable};

/// A valid schedule expression. `expression()` is the text as written (trimmed).
#[derive(Debug, Clone, Serialize)]
pub struct Schedule {
    expression: String,
    #[serde(skip)]
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    /// A 5-field cron pattern (presets are stored as the pattern they stand for).
    Cron { pattern: String, cron: Box<Cron> },
    /// `every <duration>`: ticks `step` apart, aligned to the start date (or the Unix epoch).
    Every(Duration),
}

const PRESETS: [(&str, &str); 7] = [
    ("@hourly", "0 * * * *"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@weekly", "0 0 * * 0"),
    ("@monthly", "0 0 1 * *"),
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
];

impl Schedule {
    /// Parses a 5-field cron pattern, a preset (`@hourly`, `@daily`, `@midnight`, `@weekly`,
    /// `@monthly`, `@yearly`, `@annually`) or `every <duration>` (`every 15m`, `every 1h30m`).
    /// The error is one line that names the bad part.
    pub fn parse(expression: &str) -> Result<Schedule, String> {
        let text = expression.trim();
        if text.is_empty() {
            return Err("empty schedule: expected a cron pattern like `0 2 * * *`, a preset like `@daily`, or `every 15m`".to_owned());
        }
        let kind = if let Some(rest) = strip_every(text) {
            Kind::Every(parse_every(text, rest)?)
        } else if text.starts_with('@') {
            let lowered = text.to_ascii_lowercase();
            let Some((_, pattern)) = PRESETS.iter().find(|(name, _)| *name == lowered) else {
                return Err(format!(
                    "unknown schedule preset `{text}`: use one of @hourly, @daily, @midnight, @weekly, @monthly, @yearly, @annually"
                ));
            };
            Kind::Cron {
                pattern: (*pattern).to_owned(),
                cron: Box::new(parse_cron(pattern)?),
            }
        } else {
            Kind::Cron {
                pattern: text.to_owned(),
                cron: Box::new(parse_cron(text)?),
            }
        };
        Ok(Schedule {
            expression: text.to_owned(),
            kind,
        })
    }

    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// Short English: "every day at 02:00", "every 15 minutes", "at minute 0 past every hour".
    /// Patterns too unusual to put in words are described by their own text.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Every(step) => describe::describe_every(*step),
            Kind::Cron { pattern, .. } => {
                describe::describe_cron(pattern).unwrap_or_else(|| self.expression.clone())
            }
        }
    }

    /// The step of an `every <duration>` schedule; `None` for cron schedules and presets.
    pub fn every(&self) -> Option<Duration> {
        match self.kind {
            Kind::Every(step) => Some(step),
            Kind::Cron { .. } => None,
        }
    }

    /// The 5-field cron pattern a cron schedule or preset stands for (`@daily` → `0 0 * * *`).
    pub fn cron_pattern(&self) -> Option<&str> {
        match &self.kind {
            Kind::Cron { pattern, .. } => Some(pattern),
            Kind::Every(_) => None,
        }
    }

    pub(crate) fn cron(&self) -> Option<&Cron> {
        match &self.kind {
            Kind::Cron { cron, .. } => Some(cron),
            Kind::Every(_) => None,
        }
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.expression == other.expression
    }
}

impl Eq for Schedule {}

impl FromStr for Schedule {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Schedule::parse(text)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expression)
    }
}

/// `every 15m` and Go-cron's `@every 15m`; the rest after the keyword.
fn strip_every(text: &str) -> Option<&str> {
    for keyword in ["@every", "every"] {
        let Some(head) = text.get(..keyword.len()) else {
            continue;
        };
        let rest = &text[keyword.len()..];
        // `everyday` is not `every day`: the keyword must stand alone.
        if head.eq_ignore_ascii_case(keyword)
            && (rest.is_empty() || rest.starts_with(char::is_whitespace))
        {
            return Some(rest.trim());
        }
    }
    None
}

fn parse_every(text: &str, rest: &str) -> Result<Duration, String> {
    if rest.is_empty() {
        return Err(format!(
            "bad schedule `{text}`: `every` needs a duration, like `every 15m` or `every 1h30m`"
        ));
    }
    let step = parse_duration(rest).map_err(|error| format!("bad schedule `{text}`: {error}"))?;
    if step < Duration::from_secs(1) {
        return Err(format!(
            "bad schedule `{text}`: the step must be at least 1s"
        ));
    }
    Ok(step)
}

const FIELDS: [(&str, u32, u32); 5] = [
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 7),
];

fn cron_parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
}

fn parse_cron(text: &str) -> Result<Cron, String> {
    let fields: Vec<&str> = text.split_whitespace().collect();
    if fields.len() != 5 {
        let hint = match fields.len() {
            6 | 7 => "; sluice cron has no seconds or year field",
            _ => "",
        };
        return Err(format!(
            "bad cron `{text}`: expected 5 fields (minute hour day-of-month month day-of-week), found {}{hint}",
            fields.len()
        ));
    }
    let cron = cron_parser()
        .parse(text)
        .map_err(|error| format!("bad cron `{text}`: {}", explain(&fields, &error)))?;
    // A pattern such as `0 0 30 2 *` parses but never fires; say so now rather than never run.
    let probe = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
    if cron.find_next_occurrence(&probe, true).is_err() {
        return Err(format!(
            "bad cron `{text}`: it never fires (no date matches its day and month fields)"
        ));
    }
    Ok(cron)
}

/// Names the field that croner rejected, with the range when a number is out of it.
fn explain(fields: &[&str], error: &CronError) -> String {
    let parser = cron_parser();
    for (index, field) in fields.iter().enumerate() {
        let (name, min, max) = FIELDS[index];
        if let Some(problem) = number_problem(field, name, min, max) {
            return problem;
        }
        let mut probe = ["*"; 5];
        probe[index] = field;
        if let Err(field_error) = parser.parse(&probe.join(" ")) {
            return format!(
                "{name} field `{field}` is not valid: {}",
                croner_message(&field_error)
            );
        }
    }
    croner_message(error)
}

/// The first number of a field outside its range, or a zero step.
fn number_problem(field: &str, name: &str, min: u32, max: u32) -> Option<String> {
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => (range, Some(step)),
            None => (part, None),
        };
        if let Some(step) = step.and_then(|step| step.parse::<u32>().ok())
            && step == 0
        {
            return Some(format!("{name} field `{field}` has a step of 0"));
        }
        let range = range.split('#').next().unwrap_or(range);
        for end in range.split('-') {
            if let Ok(value) = end.parse::<u32>()
                && !(min..=max).contains(&value)
            {
                return Some(format!("{name} {value} is out of range {min}-{max}"));
            }
        }
    }
    None
}

fn croner_message(error: &CronError) -> String {
    let text = match error {
        CronError::IllegalCharacters(_) => {
            return "it contains a character cron does not allow".to_owned();
        }
        CronError::ComponentError(message) | CronError::InvalidPattern(message) => message.clone(),
        other => other.to_string(),
    };
    let text = text.trim_end_matches('.');
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cron_presets_and_every() {
        assert_eq!(
            Schedule::parse(" 0 2 * * * ").unwrap().expression(),
            "0 2 * * *"
        );
        assert_eq!(
            Schedule::parse("@daily").unwrap().cron_pattern(),
            Some("0 0 * * *")
        );
        assert_eq!(
            Schedule::parse("@ANNUALLY").unwrap().cron_pattern(),
            Some("0 0 1 1 *")
        );
        assert_eq!(
            Schedule::parse("every 15m").unwrap().every(),
            Some(Duration::from_secs(900))
        );
        assert_eq!(
            Schedule::parse("@every 1h30m").unwrap().every(),
            Some(Duration::from_secs(5400))
        );
        assert_eq!(
            Schedule::parse("0 9 * * MON-FRI").unwrap().cron_pattern(),
            Some("0 9 * * MON-FRI")
        );
        for preset in [
            "@hourly",
            "@daily",
            "@midnight",
            "@weekly",
            "@monthly",
            "@yearly",
            "@annually",
        ] {
            assert!(Schedule::parse(preset).is_ok(), "{preset}");
        }
    }

    #[test]
    fn bad_schedules_name_the_bad_part() {
        let cases = [
            (
                "0 25 * * *",
                "bad cron `0 25 * * *`: hour 25 is out of range 0-23",
            ),
            (
                "61 * * * *",
                "bad cron `61 * * * *`: minute 61 is out of range 0-59",
            ),
            (
                "0 0 0 * *",
                "bad cron `0 0 0 * *`: day-of-month 0 is out of range 1-31",
            ),
            (
                "0 0 * 1-13 *",
                "bad cron `0 0 * 1-13 *`: month 13 is out of range 1-12",
            ),
            (
                "0 0 * * 8",
                "bad cron `0 0 * * 8`: day-of-week 8 is out of range 0-7",
            ),
            (
                "*/0 * * * *",
                "bad cron `*/0 * * * *`: minute field `*/0` has a step of 0",
            ),
            (
                "0 0 * * * *",
                "bad cron `0 0 * * * *`: expected 5 fields (minute hour day-of-month month day-of-week), found 6; sluice cron has no seconds or year field",
            ),
            (
                "0 0 30 2 *",
                "bad cron `0 0 30 2 *`: it never fires (no date matches its day and month fields)",
            ),
            (
                "every 0s",
                "bad schedule `every 0s`: the step must be at least 1s",
            ),
            (
                "every",
                "bad schedule `every`: `every` needs a duration, like `every 15m` or `every 1h30m`",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(Schedule::parse(text).unwrap_err(), expected, "{text}");
        }
        let error = Schedule::parse("0 x * * *").unwrap_err();
        assert!(
            error.starts_with("bad cron `0 x * * *`: hour field `x` is not valid: "),
            "{error}"
        );
        let error = Schedule::parse("@often").unwrap_err();
        assert!(
            error.starts_with("unknown schedule preset `@often`"),
            "{error}"
        );
        let error = Schedule::parse("every 10x").unwrap_err();
        assert!(
            error.starts_with("bad schedule `every 10x`: bad duration `10x`"),
            "{error}"
        );
        assert!(Schedule::parse("").is_err());
        assert!(Schedule::parse("0 2 * *").unwrap_err().contains("found 4"));
    }

    #[test]
    fn schedules_compare_by_their_text() {
        assert_eq!(
            Schedule::parse("@daily").unwrap(),
            "@daily".parse::<Schedule>().unwrap()
        );
        assert_ne!(
            Schedule::parse("@daily").unwrap(),
            Schedule::parse("0 0 * * *").unwrap()
        );
        assert_eq!(Schedule::parse("every 5m").unwrap().to_string(), "every 5m");
    }
}
