//! Validated identifiers: once a `DagId` or `TaskId` exists it is well-formed.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest id accepted, so ids fit in index keys and URLs comfortably.
pub const MAX_ID_LEN: usize = 200;

/// A DAG id: `[a-z0-9_.-]`, 1 to 200 characters, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DagId(String);

impl DagId {
    pub fn parse(s: &str) -> Result<Self, String> {
        check_id(s, "dag id", |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-')
        })
        .map(|()| Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A task id: `[A-Za-z0-9_.-]`, 1 to 200 characters, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(String);

impl TaskId {
    pub fn parse(s: &str) -> Result<Self, String> {
        check_id(s, "task id", |c| {
            c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
        })
        .map(|()| Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn check_id(s: &str, what: &str, allowed: impl Fn(char) -> bool) -> Result<(), String> {
    if s.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if s.len() > MAX_ID_LEN {
        return Err(format!(
            "{what} `{s}` is longer than {MAX_ID_LEN} characters"
        ));
    }
    if let Some(bad) = s.chars().find(|c| !allowed(*c)) {
        return Err(format!(
            "{what} `{s}` contains `{bad}`; allowed are letters, digits, `_`, `.` and `-`{}",
            if what == "dag id" {
                " (lowercase letters only)"
            } else {
                ""
            }
        ));
    }
    if !s.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!("{what} `{s}` must start with a letter or a digit"));
    }
    Ok(())
}

impl fmt::Display for DagId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dag_ids_follow_the_documented_charset() {
        assert!(DagId::parse("daily_sales.v2-eu").is_ok());
        assert!(DagId::parse("Daily").unwrap_err().contains("lowercase"));
        assert!(DagId::parse("").is_err());
        assert!(DagId::parse("_x").unwrap_err().contains("must start"));
        assert!(DagId::parse(&"a".repeat(201)).is_err());
    }

    #[test]
    fn task_ids_allow_uppercase() {
        assert!(TaskId::parse("Extract_Orders").is_ok());
        assert!(TaskId::parse("a b").unwrap_err().contains("` `"));
    }
}
