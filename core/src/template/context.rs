//! The variables a task's templates see: dates in the DAG's timezone, ids, params, outputs…

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::{Value, json};

use super::Connection;
use crate::schedule::DataInterval;

pub struct ContextInput<'a> {
    pub dag_id: &'a str,
    pub task_id: &'a str,
    pub run_id: &'a str,
    pub timezone: Tz,
    pub logical_date: DateTime<Utc>,
    pub data_interval: DataInterval,
    pub try_number: u32,
    pub params: &'a BTreeMap<String, Value>,
    pub outputs: &'a BTreeMap<String, BTreeMap<String, Value>>,
    pub connections: &'a BTreeMap<String, Connection>,
    pub env: &'a BTreeMap<String, String>,
    pub item: Option<&'a Value>,
}

/// The template context. Dates are in the DAG's timezone: for the Seoul interval
/// [02:00 day D, 02:00 day D+1), `ds` is D and `ts` is `D T02:00:00+09:00`.
///
/// `ds`, `ds_nodash`, `ts`, `ts_nodash` (`20260101T020000`), `logical_date`,
/// `data_interval_start`, `data_interval_end` (RFC 3339), `prev_ds` and `next_ds` (the
/// logical dates one interval before and after, assuming equal intervals), `timezone`,
/// `run_id`, `dag_id`, `task_id`, `try_number`, `params`, `outputs.<task>.<key>`,
/// `conn.<name>.*`, `env.<NAME>`, and `item` in a mapped task.
pub fn context(input: &ContextInput<'_>) -> Value {
    let tz = input.timezone;
    let logical = input.logical_date.with_timezone(&tz);
    let interval = input.data_interval;
    let day = |time: DateTime<Utc>| time.with_timezone(&tz).format("%Y-%m-%d").to_string();
    let previous_start = interval
        .start
        .checked_sub_signed(interval.length())
        .unwrap_or(interval.start);
    let mut context = json!({
        "ds": logical.format("%Y-%m-%d").to_string(),
        "ds_nodash": logical.format("%Y%m%d").to_string(),
        "ts": rfc3339(tz, input.logical_date),
        "ts_nodash": logical.format("%Y%m%dT%H%M%S").to_string(),
        "logical_date": rfc3339(tz, input.logical_date),
        "data_interval_start": rfc3339(tz, interval.start),
        "data_interval_end": rfc3339(tz, interval.end),
        "prev_ds": day(previous_start),
        "next_ds": day(interval.end),
        "timezone": tz.name(),
        "run_id": input.run_id,
        "dag_id": input.dag_id,
        "task_id": input.task_id,
        "try_number": input.try_number,
        "params": input.params,
        "outputs": input.outputs,
        "conn": input.connections,
        "env": input.env,
    });
    if let (Some(item), Value::Object(map)) = (input.item, &mut context) {
        map.insert("item".to_owned(), item.clone());
    }
    context
}

fn rfc3339(tz: Tz, time: DateTime<Utc>) -> String {
    tz.from_utc_datetime(&time.naive_utc())
        .to_rfc3339_opts(SecondsFormat::AutoSi, false)
}
