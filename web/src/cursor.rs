//! Cursors for paginated lists, as opaque text in URLs: where the previous page ended.

use chrono::DateTime;
use sluice_store::RunCursor;

use crate::error::AppError;

/// `MICROS_PK`: the last run's logical date (microseconds) and primary key.
pub(crate) fn encode_run(cursor: RunCursor) -> String {
    format!("{}_{}", cursor.logical_date.timestamp_micros(), cursor.pk)
}

pub(crate) fn decode_run(text: &str) -> Result<RunCursor, AppError> {
    let bad = || AppError::BadRequest(format!("`{text}` is not a cursor this server made"));
    let (micros, pk) = text.split_once('_').ok_or_else(bad)?;
    let micros: i64 = micros.parse().map_err(|_| bad())?;
    Ok(RunCursor {
        logical_date: DateTime::from_timestamp_micros(micros).ok_or_else(bad)?,
        pk: pk.parse().map_err(|_| bad())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_cursors_round_trip_and_junk_is_refused() {
        let cursor = RunCursor {
            logical_date: DateTime::from_timestamp_micros(1_764_057_130_123_456).expect("valid"),
            pk: 42,
        };
        let text = encode_run(cursor);
        assert_eq!(decode_run(&text).expect("decodes"), cursor);
        for junk in ["", "12", "a_b", "1_x", "99999999999999999999_1"] {
            assert!(decode_run(junk).is_err(), "{junk}");
        }
    }
}
