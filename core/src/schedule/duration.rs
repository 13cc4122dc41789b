//! Durations as DAG files write them: `500ms`, `30s`, `10m`, `1h30m`, `2d`, `1w`, or seconds.

use std::time::Duration;

const UNITS: [(&str, u64); 6] = [
    ("w", 604_800_000),
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Parses `500ms`, `30s`, `10m`, `1h30m`, `2d`, `1w` (parts may be separated by spaces);
/// a plain integer is a number of seconds. The error names the text.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let bad = |why: &str| format!("bad duration `{trimmed}`: {why}");
    if trimmed.is_empty() {
        return Err("bad duration ``: it is empty (write e.g. `30s`, `10m` or `1h30m`)".to_owned());
    }
    if let Ok(seconds) = trimmed.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    let mut millis: u64 = 0;
    let mut rest = trimmed;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad(
                "expected a number and a unit (ms, s, m, h, d, w), like `30s` or `1h30m`",
            ));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| bad("the number is too large"))?;
        rest = &rest[digits..];
        let letters = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = &rest[..letters];
        if unit.is_empty() {
            return Err(bad(&format!("`{number}` needs a unit (ms, s, m, h, d, w)")));
        }
        let Some((_, size)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(bad(&format!(
                "unknown unit `{unit}` (use ms, s, m, h, d or w)"
            )));
        };
        millis = number
            .checked_mul(*size)
            .and_then(|part| millis.checked_add(part))
            .ok_or_else(|| bad("it is too large"))?;
        rest = rest[letters..].trim_start();
    }
    Ok(Duration::from_millis(millis))
}

/// The compact form `parse_duration` reads back: `1h30m`, `500ms`, `0s`. Below a millisecond
/// is dropped.
pub fn format_duration(duration: Duration) -> String {
    let mut rest = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    if rest == 0 {
        return "0s".to_owned();
    }
    let mut text = String::new();
    for (unit, size) in UNITS {
        let count = rest / size;
        rest %= size;
        if count > 0 {
            text.push_str(&format!("{count}{unit}"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit_and_combinations() {
        let cases = [
            ("500ms", Duration::from_millis(500)),
            ("30s", Duration::from_secs(30)),
            ("10m", Duration::from_secs(600)),
            ("1h30m", Duration::from_secs(5400)),
            ("1h 30m", Duration::from_secs(5400)),
            ("2d", Duration::from_secs(172_800)),
            ("1w", Duration::from_secs(604_800)),
            ("1m30s250ms", Duration::from_millis(90_250)),
            ("45", Duration::from_secs(45)),
            ("0", Duration::ZERO),
            (" 5m ", Duration::from_secs(300)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn bad_durations_name_the_text() {
        let cases = [
            (
                "10x",
                "bad duration `10x`: unknown unit `x` (use ms, s, m, h, d or w)",
            ),
            (
                "h",
                "bad duration `h`: expected a number and a unit (ms, s, m, h, d, w), like `30s` or `1h30m`",
            ),
            (
                "-5s",
                "bad duration `-5s`: expected a number and a unit (ms, s, m, h, d, w), like `30s` or `1h30m`",
            ),
            (
                "1.5h",
                "bad duration `1.5h`: `1` needs a unit (ms, s, m, h, d, w)",
            ),
            (
                "1h30",
                "bad duration `1h30`: `30` needs a unit (ms, s, m, h, d, w)",
            ),
            (
                "99999999999999999999w",
                "bad duration `99999999999999999999w`: the number is too large",
            ),
            (
                "9999999999999w",
                "bad duration `9999999999999w`: it is too large",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text).unwrap_err(), expected, "{text}");
        }
        assert!(parse_duration("").unwrap_err().contains("empty"));
    }

    #[test]
    fn formatted_durations_parse_back() {
        for text in ["1h30m", "500ms", "2d3h", "1w", "45s", "0s"] {
            let duration = parse_duration(text).unwrap();
            assert_eq!(format_duration(duration), text);
        }
    }
}
