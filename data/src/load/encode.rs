//! Arrow values as PostgreSQL `COPY` text rows and as SQLite values.

use std::io::Write as _;

use chrono::{DateTime, Datelike as _, NaiveDate, NaiveDateTime, NaiveTime, Timelike as _};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray as _, BinaryArray, BinaryViewArray, BooleanArray, Decimal128Array,
    Decimal256Array, FixedSizeBinaryArray, LargeBinaryArray, LargeStringArray, StringArray,
    StringViewArray,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Date64Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type,
    Int64Type, Time32MillisecondType, Time32SecondType, Time64MicrosecondType,
    Time64NanosecondType, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use datafusion::arrow::record_batch::RecordBatch;

use super::schema::FileColumn;

/// Days from 0001-01-01 (chrono's day 1) to 1970-01-01.
const UNIX_EPOCH_DAYS_FROM_CE: i64 = 719_163;

/// A value that has no place in SQL (a date beyond chrono's range), named by column and row.
#[derive(Debug)]
pub(crate) struct EncodeError {
    pub column: String,
    /// 0-based row in the batch.
    pub row: usize,
    pub message: &'static str,
}

/// A batch's columns, cast to the types the file's schema settled on, ready to encode.
pub(crate) struct Rows<'a> {
    names: &'a [FileColumn],
    columns: Vec<Column<'a>>,
    len: usize,
}

/// Casts the batch's columns to their encodable types (dictionaries to values and so on);
/// the result is what [`Rows::new`] borrows.
pub(crate) fn prepare(
    batch: &RecordBatch,
    columns: &[FileColumn],
) -> Result<Vec<ArrayRef>, datafusion::arrow::error::ArrowError> {
    batch
        .columns()
        .iter()
        .zip(columns)
        .map(|(array, column)| {
            if array.data_type() == &column.data_type {
                Ok(array.clone())
            } else {
                cast(array, &column.data_type)
            }
        })
        .collect()
}

impl<'a> Rows<'a> {
    pub(crate) fn new(names: &'a [FileColumn], arrays: &'a [ArrayRef]) -> Rows<'a> {
        Rows {
            names,
            columns: arrays
                .iter()
                .map(|array| Column::new(array.as_ref()))
                .collect(),
            len: arrays.first().map_or(0, |array| array.len()),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Appends every row as `COPY … FROM STDIN` text: tab-separated, `\N` for null,
    /// backslash escapes in strings, one line per row.
    pub(crate) fn write_copy_text(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        for row in 0..self.len {
            for (index, column) in self.columns.iter().enumerate() {
                if index > 0 {
                    out.push(b'\t');
                }
                column
                    .write_copy(row, out)
                    .map_err(|message| self.error(index, row, message))?;
            }
            out.push(b'\n');
        }
        Ok(())
    }

    /// Row `row`'s values for SQLite, appended to `out`.
    pub(crate) fn sqlite_values(
        &self,
        row: usize,
        out: &mut Vec<SqliteValue>,
    ) -> Result<(), EncodeError> {
        for (index, column) in self.columns.iter().enumerate() {
            let value = column
                .sqlite_value(row)
                .map_err(|message| self.error(index, row, message))?;
            out.push(value);
        }
        Ok(())
    }

    fn error(&self, column: usize, row: usize, message: &'static str) -> EncodeError {
        EncodeError {
            column: self
                .names
                .get(column)
                .map_or_else(String::new, |column| column.name.clone()),
            row,
            message,
        }
    }
}

/// A value as SQLite stores it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SqliteValue {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

struct Column<'a> {
    nulls: Option<NullBuffer>,
    values: Values<'a>,
}

enum Values<'a> {
    Null,
    Boolean(&'a BooleanArray),
    Int8(&'a [i8]),
    Int16(&'a [i16]),
    Int32(&'a [i32]),
    Int64(&'a [i64]),
    UInt8(&'a [u8]),
    UInt16(&'a [u16]),
    UInt32(&'a [u32]),
    UInt64(&'a [u64]),
    Float32(&'a [f32]),
    Float64(&'a [f64]),
    Decimal128(&'a Decimal128Array),
    Decimal256(&'a Decimal256Array),
    Utf8(&'a StringArray),
    LargeUtf8(&'a LargeStringArray),
    Utf8View(&'a StringViewArray),
    Binary(&'a BinaryArray),
    LargeBinary(&'a LargeBinaryArray),
    BinaryView(&'a BinaryViewArray),
    FixedSizeBinary(&'a FixedSizeBinaryArray),
    /// Days since 1970-01-01.
    Date32(&'a [i32]),
    /// Milliseconds since 1970-01-01.
    Date64(&'a [i64]),
    /// Since 1970-01-01 00:00 in `unit`; `utc` when the column has a time zone (the values
    /// are then UTC instants).
    Timestamp {
        values: &'a [i64],
        unit: TimeUnit,
        utc: bool,
    },
    Time32(&'a [i32], TimeUnit),
    Time64(&'a [i64], TimeUnit),
}

impl<'a> Column<'a> {
    fn new(array: &'a dyn Array) -> Column<'a> {
        let values = match array.data_type() {
            DataType::Boolean => Values::Boolean(array.as_boolean()),
            DataType::Int8 => Values::Int8(array.as_primitive::<Int8Type>().values()),
            DataType::Int16 => Values::Int16(array.as_primitive::<Int16Type>().values()),
            DataType::Int32 => Values::Int32(array.as_primitive::<Int32Type>().values()),
            DataType::Int64 => Values::Int64(array.as_primitive::<Int64Type>().values()),
            DataType::UInt8 => Values::UInt8(array.as_primitive::<UInt8Type>().values()),
            DataType::UInt16 => Values::UInt16(array.as_primitive::<UInt16Type>().values()),
            DataType::UInt32 => Values::UInt32(array.as_primitive::<UInt32Type>().values()),
            DataType::UInt64 => Values::UInt64(array.as_primitive::<UInt64Type>().values()),
            DataType::Float32 => Values::Float32(array.as_primitive::<Float32Type>().values()),
            DataType::Float64 => Values::Float64(array.as_primitive::<Float64Type>().values()),
            DataType::Decimal128(..) => Values::Decimal128(array.as_primitive()),
            DataType::Decimal256(..) => Values::Decimal256(array.as_primitive()),
            DataType::Utf8 => Values::Utf8(array.as_string()),
            DataType::LargeUtf8 => Values::LargeUtf8(array.as_string()),
            DataType::Utf8View => Values::Utf8View(array.as_string_view()),
            DataType::Binary => Values::Binary(array.as_binary()),
            DataType::LargeBinary => Values::LargeBinary(array.as_binary()),
            DataType::BinaryView => Values::BinaryView(array.as_binary_view()),
            DataType::FixedSizeBinary(_) => Values::FixedSizeBinary(array.as_fixed_size_binary()),
            DataType::Date32 => Values::Date32(array.as_primitive::<Date32Type>().values()),
            DataType::Date64 => Values::Date64(array.as_primitive::<Date64Type>().values()),
            DataType::Timestamp(unit, zone) => Values::Timestamp {
                values: match unit {
                    TimeUnit::Second => array.as_primitive::<TimestampSecondType>().values(),
                    TimeUnit::Millisecond => {
                        array.as_primitive::<TimestampMillisecondType>().values()
                    }
                    TimeUnit::Microsecond => {
                        array.as_primitive::<TimestampMicrosecondType>().values()
                    }
                    TimeUnit::Nanosecond => {
                        array.as_primitive::<TimestampNanosecondType>().values()
                    }
                },
                unit: *unit,
                utc: zone.is_some(),
            },
            DataType::Time32(TimeUnit::Second) => Values::Time32(
                array.as_primitive::<Time32SecondType>().values(),
                TimeUnit::Second,
            ),
            DataType::Time32(_) => Values::Time32(
                array.as_primitive::<Time32MillisecondType>().values(),
                TimeUnit::Millisecond,
            ),
            DataType::Time64(TimeUnit::Microsecond) => Values::Time64(
                array.as_primitive::<Time64MicrosecondType>().values(),
                TimeUnit::Microsecond,
            ),
            DataType::Time64(_) => Values::Time64(
                array.as_primitive::<Time64NanosecondType>().values(),
                TimeUnit::Nanosecond,
            ),
            // `schema::file_columns` admits no other type; a null column is all nulls
            _ => Values::Null,
        };
        Column {
            nulls: array.logical_nulls(),
            values,
        }
    }

    fn is_null(&self, row: usize) -> bool {
        matches!(self.values, Values::Null) || self.nulls.as_ref().is_some_and(|n| n.is_null(row))
    }

    fn write_copy(&self, row: usize, out: &mut Vec<u8>) -> Result<(), &'static str> {
        if self.is_null(row) {
            out.extend_from_slice(b"\\N");
            return Ok(());
        }
        match &self.values {
            Values::Null => out.extend_from_slice(b"\\N"),
            Values::Boolean(array) => out.push(if array.value(row) { b't' } else { b'f' }),
            Values::Int8(values) => write_display(out, values[row]),
            Values::Int16(values) => write_display(out, values[row]),
            Values::Int32(values) => write_display(out, values[row]),
            Values::Int64(values) => write_display(out, values[row]),
            Values::UInt8(values) => write_display(out, values[row]),
            Values::UInt16(values) => write_display(out, values[row]),
            Values::UInt32(values) => write_display(out, values[row]),
            Values::UInt64(values) => write_display(out, values[row]),
            Values::Float32(values) => write_float(out, f64::from(values[row])),
            Values::Float64(values) => write_float(out, values[row]),
            Values::Decimal128(array) => {
                out.extend_from_slice(array.value_as_string(row).as_bytes())
            }
            Values::Decimal256(array) => {
                out.extend_from_slice(array.value_as_string(row).as_bytes())
            }
            Values::Utf8(array) => write_copy_escaped(out, array.value(row).as_bytes()),
            Values::LargeUtf8(array) => write_copy_escaped(out, array.value(row).as_bytes()),
            Values::Utf8View(array) => write_copy_escaped(out, array.value(row).as_bytes()),
            Values::Binary(array) => write_bytea(out, array.value(row)),
            Values::LargeBinary(array) => write_bytea(out, array.value(row)),
            Values::BinaryView(array) => write_bytea(out, array.value(row)),
            Values::FixedSizeBinary(array) => write_bytea(out, array.value(row)),
            Values::Date32(_) | Values::Date64(_) | Values::Timestamp { .. } => {
                self.write_temporal(row, out, Flavor::Postgres)?
            }
            Values::Time32(..) | Values::Time64(..) => {
                self.write_temporal(row, out, Flavor::Postgres)?
            }
        }
        Ok(())
    }

    fn sqlite_value(&self, row: usize) -> Result<SqliteValue, &'static str> {
        if self.is_null(row) {
            return Ok(SqliteValue::Null);
        }
        Ok(match &self.values {
            Values::Null => SqliteValue::Null,
            Values::Boolean(array) => SqliteValue::Integer(i64::from(array.value(row))),
            Values::Int8(values) => SqliteValue::Integer(i64::from(values[row])),
            Values::Int16(values) => SqliteValue::Integer(i64::from(values[row])),
            Values::Int32(values) => SqliteValue::Integer(i64::from(values[row])),
            Values::Int64(values) => SqliteValue::Integer(values[row]),
            Values::UInt8(values) => SqliteValue::Integer(i64::from(values[row])),
            Values::UInt16(values) => SqliteValue::Integer(i64::from(values[row])),
            Values::UInt32(values) => SqliteValue::Integer(i64::from(values[row])),
            // beyond i64 the text keeps every digit; the column's affinity decides
            Values::UInt64(values) => match i64::try_from(values[row]) {
                Ok(value) => SqliteValue::Integer(value),
                Err(_) => SqliteValue::Text(values[row].to_string()),
            },
            Values::Float32(values) => SqliteValue::Real(f64::from(values[row])),
            Values::Float64(values) => SqliteValue::Real(values[row]),
            Values::Decimal128(array) => SqliteValue::Text(array.value_as_string(row)),
            Values::Decimal256(array) => SqliteValue::Text(array.value_as_string(row)),
            Values::Utf8(array) => SqliteValue::Text(array.value(row).to_owned()),
            Values::LargeUtf8(array) => SqliteValue::Text(array.value(row).to_owned()),
            Values::Utf8View(array) => SqliteValue::Text(array.value(row).to_owned()),
            Values::Binary(array) => SqliteValue::Blob(array.value(row).to_vec()),
            Values::LargeBinary(array) => SqliteValue::Blob(array.value(row).to_vec()),
            Values::BinaryView(array) => SqliteValue::Blob(array.value(row).to_vec()),
            Values::FixedSizeBinary(array) => SqliteValue::Blob(array.value(row).to_vec()),
            Values::Date32(_)
            | Values::Date64(_)
            | Values::Timestamp { .. }
            | Values::Time32(..)
            | Values::Time64(..) => {
                let mut text = Vec::with_capacity(32);
                self.write_temporal(row, &mut text, Flavor::Sqlite)?;
                SqliteValue::Text(String::from_utf8_lossy(&text).into_owned())
            }
        })
    }

    /// Dates, timestamps and times as ISO-8601 text: `2026-11-25`, `2026-11-25 10:40:00.5`,
    /// with `+00` (PostgreSQL) or `+00:00` (SQLite) for instants, `10:40:00`.
    fn write_temporal(
        &self,
        row: usize,
        out: &mut Vec<u8>,
        flavor: Flavor,
    ) -> Result<(), &'static str> {
        const OUT_OF_RANGE: &str = "a date beyond year 262143";
        match &self.values {
            Values::Date32(values) => {
                let date = date_from_days(i64::from(values[row])).ok_or(OUT_OF_RANGE)?;
                write_date(out, date);
                write_era(out, date);
            }
            Values::Date64(values) => {
                let date =
                    date_from_days(values[row].div_euclid(86_400_000)).ok_or(OUT_OF_RANGE)?;
                write_date(out, date);
                write_era(out, date);
            }
            Values::Timestamp { values, unit, utc } => {
                let datetime = datetime_from(values[row], *unit).ok_or(OUT_OF_RANGE)?;
                write_date(out, datetime.date());
                out.push(b' ');
                write_time(out, datetime.time());
                if *utc {
                    out.extend_from_slice(match flavor {
                        Flavor::Postgres => b"+00",
                        Flavor::Sqlite => b"+00:00",
                    });
                }
                write_era(out, datetime.date());
            }
            Values::Time32(values, unit) => {
                let time =
                    time_from(i64::from(values[row]), *unit).ok_or("a time of day beyond 24:00")?;
                write_time(out, time);
            }
            Values::Time64(values, unit) => {
                let time = time_from(values[row], *unit).ok_or("a time of day beyond 24:00")?;
                write_time(out, time);
            }
            _ => {}
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum Flavor {
    Postgres,
    Sqlite,
}

fn write_display(out: &mut Vec<u8>, value: impl std::fmt::Display) {
    // writing to a Vec cannot fail
    let _ = write!(out, "{value}");
}

/// Shortest text that reads back as the same number; PostgreSQL's spellings of the specials.
fn write_float(out: &mut Vec<u8>, value: f64) {
    if value.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if value.is_infinite() {
        out.extend_from_slice(if value > 0.0 {
            b"Infinity"
        } else {
            b"-Infinity"
        });
    } else {
        write_display(out, value);
    }
}

/// COPY text escapes: backslash, tab, newline and carriage return.
fn write_copy_escaped(out: &mut Vec<u8>, text: &[u8]) {
    let mut start = 0;
    for (index, byte) in text.iter().enumerate() {
        let escaped: &[u8] = match byte {
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            _ => continue,
        };
        out.extend_from_slice(&text[start..index]);
        out.extend_from_slice(escaped);
        start = index + 1;
    }
    out.extend_from_slice(&text[start..]);
}

/// `bytea` in hex, its backslash escaped for COPY text: `\\x0aff`.
fn write_bytea(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(b"\\\\x");
    for byte in bytes {
        out.push(HEX[usize::from(byte >> 4)]);
        out.push(HEX[usize::from(byte & 0x0f)]);
    }
}

fn date_from_days(days: i64) -> Option<NaiveDate> {
    let from_ce = i32::try_from(days.checked_add(UNIX_EPOCH_DAYS_FROM_CE)?).ok()?;
    NaiveDate::from_num_days_from_ce_opt(from_ce)
}

fn datetime_from(value: i64, unit: TimeUnit) -> Option<NaiveDateTime> {
    let per_second: i64 = match unit {
        TimeUnit::Second => 1,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1_000_000,
        TimeUnit::Nanosecond => 1_000_000_000,
    };
    let seconds = value.div_euclid(per_second);
    let nanos = u32::try_from(value.rem_euclid(per_second) * (1_000_000_000 / per_second)).ok()?;
    DateTime::from_timestamp(seconds, nanos).map(|datetime| datetime.naive_utc())
}

fn time_from(value: i64, unit: TimeUnit) -> Option<NaiveTime> {
    let per_second: i64 = match unit {
        TimeUnit::Second => 1,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1_000_000,
        TimeUnit::Nanosecond => 1_000_000_000,
    };
    let seconds = u32::try_from(value.div_euclid(per_second)).ok()?;
    let nanos = u32::try_from(value.rem_euclid(per_second) * (1_000_000_000 / per_second)).ok()?;
    (value >= 0)
        .then(|| NaiveTime::from_num_seconds_from_midnight_opt(seconds, nanos))
        .flatten()
}

/// `YYYY-MM-DD`; years before 1 are written as PostgreSQL's `BC` years (see `write_era`).
fn write_date(out: &mut Vec<u8>, date: NaiveDate) {
    let year = date.year();
    let year = if year <= 0 { 1 - year } else { year };
    let _ = write!(out, "{year:04}-{:02}-{:02}", date.month(), date.day());
}

fn write_era(out: &mut Vec<u8>, date: NaiveDate) {
    if date.year() <= 0 {
        out.extend_from_slice(b" BC");
    }
}

/// `HH:MM:SS` and the fraction of a second without trailing zeros.
fn write_time(out: &mut Vec<u8>, time: NaiveTime) {
    let _ = write!(
        out,
        "{:02}:{:02}:{:02}",
        time.hour(),
        time.minute(),
        time.second()
    );
    let nanos = time.nanosecond();
    if nanos > 0 {
        let mut fraction = format!("{nanos:09}");
        while fraction.ends_with('0') {
            fraction.pop();
        }
        out.push(b'.');
        out.extend_from_slice(fraction.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{
        Date32Array, Float64Array, Int64Array, NullArray, Time64MicrosecondArray,
        TimestampMicrosecondArray,
    };
    use datafusion::arrow::datatypes::{Field, Schema};

    use super::super::schema::file_columns;
    use super::*;

    fn copy_text(batch: &RecordBatch) -> String {
        let columns = file_columns(&batch.schema(), "in.csv").unwrap();
        let arrays = prepare(batch, &columns).unwrap();
        let rows = Rows::new(&columns, &arrays);
        let mut out = Vec::new();
        rows.write_copy_text(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        RecordBatch::try_from_iter(columns).unwrap()
    }

    #[test]
    fn copy_text_escapes_strings_and_marks_nulls() {
        let text = copy_text(&batch(vec![
            (
                "id",
                Arc::new(Int64Array::from(vec![Some(1), None, Some(-3)])) as ArrayRef,
            ),
            (
                "note",
                Arc::new(StringArray::from(vec![
                    Some("plain"),
                    Some("tab\there\nnew\\line\r"),
                    None,
                ])),
            ),
            (
                "ok",
                Arc::new(BooleanArray::from(vec![Some(true), Some(false), None])),
            ),
        ]));
        assert_eq!(
            text,
            "1\tplain\tt\n\\N\ttab\\there\\nnew\\\\line\\r\tf\n-3\t\\N\t\\N\n"
        );
    }

    #[test]
    fn copy_text_writes_numbers_dates_times_and_bytes() {
        let text = copy_text(&batch(vec![
            (
                "x",
                Arc::new(Float64Array::from(vec![0.1, f64::NAN, f64::NEG_INFINITY])) as ArrayRef,
            ),
            ("d", Arc::new(Date32Array::from(vec![0, 20_417, -719_528]))),
            (
                "ts",
                Arc::new(
                    TimestampMicrosecondArray::from(vec![0, 1_764_067_200_500_000, -1])
                        .with_timezone("+00:00"),
                ),
            ),
            (
                "t",
                Arc::new(Time64MicrosecondArray::from(vec![
                    0,
                    45_296_000_001,
                    86_399_999_999,
                ])),
            ),
            (
                "b",
                Arc::new(BinaryArray::from(vec![&b"\x00\xff"[..], b"", b"A"])),
            ),
        ]));
        assert_eq!(
            text,
            "0.1\t1970-01-01\t1970-01-01 00:00:00+00\t00:00:00\t\\\\x00ff\n\
             NaN\t2025-11-25\t2025-11-25 10:40:00.5+00\t12:34:56.000001\t\\\\x\n\
             -Infinity\t0001-01-01 BC\t1969-12-31 23:59:59.999999+00\t23:59:59.999999\t\\\\x41\n"
        );
    }

    #[test]
    fn dictionaries_are_cast_and_null_columns_are_all_null() {
        use datafusion::arrow::array::DictionaryArray;
        let dictionary: DictionaryArray<Int32Type> = vec!["a", "b", "a"].into_iter().collect();
        let text = copy_text(&batch(vec![
            ("k", Arc::new(dictionary) as ArrayRef),
            ("n", Arc::new(NullArray::new(3))),
        ]));
        assert_eq!(text, "a\t\\N\nb\t\\N\na\t\\N\n");
    }

    #[test]
    fn sqlite_values_keep_types() {
        let batch = batch(vec![
            (
                "id",
                Arc::new(Int64Array::from(vec![Some(7), None])) as ArrayRef,
            ),
            ("ok", Arc::new(BooleanArray::from(vec![true, false]))),
            (
                "ts",
                Arc::new(TimestampMicrosecondArray::from(vec![1_500_000, 0])),
            ),
        ]);
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("ok", DataType::Boolean, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        ]);
        let columns = file_columns(&schema, "in.csv").unwrap();
        let arrays = prepare(&batch, &columns).unwrap();
        let rows = Rows::new(&columns, &arrays);
        let mut values = Vec::new();
        rows.sqlite_values(0, &mut values).unwrap();
        rows.sqlite_values(1, &mut values).unwrap();
        assert_eq!(
            values,
            [
                SqliteValue::Integer(7),
                SqliteValue::Integer(1),
                SqliteValue::Text("1970-01-01 00:00:01.5".to_owned()),
                SqliteValue::Null,
                SqliteValue::Integer(0),
                SqliteValue::Text("1970-01-01 00:00:00".to_owned()),
            ]
        );
    }
}
