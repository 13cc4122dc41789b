//! Jinja templates (minijinja, strict undefined) and the context a task's templates see.
// HELPER-OWNED: being written; the signatures below are the contract.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::Value;

use crate::schedule::DataInterval;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct TemplateError {
    /// 1-based line inside the template text.
    pub line: usize,
    pub message: String,
}

pub fn check(_source: &str) -> Result<(), TemplateError> {
    Ok(())
}

pub fn render(source: &str, _context: &Value) -> Result<String, TemplateError> {
    Ok(source.to_owned())
}

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

pub fn context(_input: &ContextInput<'_>) -> Value {
    Value::Null
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Connection {
    pub url: String,
}
