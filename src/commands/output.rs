//! How list and show commands print: aligned tables for people, JSON (`--output json`) for
//! scripts, times in a DAG's timezone.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

/// The global `--output` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// Rows printed with every column as wide as its widest cell.
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Self {
        Table {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn print(&self) {
        out!("{}", self.render().trim_end_matches('\n'));
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(width) = widths.get_mut(i) {
                    *width = (*width).max(cell.chars().count());
                }
            }
        }
        let mut out = String::new();
        let headers: Vec<String> = self.headers.iter().map(|h| (*h).to_owned()).collect();
        for row in std::iter::once(&headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                if i + 1 < row.len() {
                    let width = widths.get(i).copied().unwrap_or(0);
                    line.extend(std::iter::repeat_n(
                        ' ',
                        width.saturating_sub(cell.chars().count()),
                    ));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

pub fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    out!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// `2026-03-29 03:00 CEST`, or `-`.
pub fn time(at: Option<DateTime<Utc>>, tz: Tz) -> String {
    match at {
        Some(at) => at
            .with_timezone(&tz)
            .format("%Y-%m-%d %H:%M %Z")
            .to_string(),
        None => "-".to_owned(),
    }
}

/// `1m 05s` between two times, `-` when either is missing.
pub fn duration(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> String {
    match (start, end) {
        (Some(start), Some(end)) => {
            sluice_worker::human((end - start).to_std().unwrap_or_default())
        }
        _ => "-".to_owned(),
    }
}

/// A DAG's timezone by name, UTC when unknown.
pub fn timezone(name: &str) -> Tz {
    name.parse().unwrap_or(Tz::UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        let mut table = Table::new(&["A", "LONG HEADER", "C"]);
        table.row(vec!["wide cell".into(), "x".into(), "last".into()]);
        assert_eq!(
            table.render(),
            "A          LONG HEADER  C\nwide cell  x            last\n"
        );
    }
}
