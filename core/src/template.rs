//! Jinja templates (minijinja, strict undefined) and the context a task's templates see.
//!
//! One shared environment: undefined values are errors (a typo never renders as ""), the
//! trailing newline is kept, nothing is auto-escaped (templates make shell commands, SQL and
//! URLs, not HTML). Extra filters: `ds_add(days)`, `ds_format(format)`, `tojson`/`json`
//! (compact, not HTML-escaped), `shell_quote`.

mod connection;
mod context;

use std::sync::LazyLock;

use chrono::{NaiveDate, TimeDelta};
use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};
use serde_json::Value;

pub use connection::Connection;
pub use context::{ContextInput, context};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct TemplateError {
    /// 1-based line inside the template text.
    pub line: usize,
    pub message: String,
}

/// Whether `text` has any template syntax; text without it renders as itself.
pub fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%") || text.contains("{#")
}

/// Compiles without rendering: reports syntax errors (unknown variables and filters only
/// show at render time).
pub fn check(source: &str) -> Result<(), TemplateError> {
    if !is_template(source) {
        return Ok(());
    }
    environment()
        .template_from_str(source)
        .map(drop)
        .map_err(|error| template_error(&error, source, None))
}

/// Renders `source` with `context` (usually the object built by [`context`]).
pub fn render(source: &str, context: &Value) -> Result<String, TemplateError> {
    if !is_template(source) {
        return Ok(source.to_owned());
    }
    let template = environment()
        .template_from_str(source)
        .map_err(|error| template_error(&error, source, None))?;
    template
        .render(minijinja::Value::from(Serde(context)))
        .map_err(|error| template_error(&error, source, Some(context)))
}

static ENVIRONMENT: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut environment = Environment::new();
    environment.set_undefined_behavior(UndefinedBehavior::Strict);
    environment.set_auto_escape_callback(|_| AutoEscape::None);
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .build()
        .expect("the default delimiters are valid");
    environment.set_syntax(syntax);
    environment.add_filter("ds_add", ds_add);
    environment.add_filter("ds_format", ds_format);
    environment.add_filter("tojson", to_json);
    environment.add_filter("json", to_json);
    environment.add_filter("shell_quote", shell_quote);
    environment
});

/// The shared environment, for a template whose text lives shorter than the environment.
fn environment<'source>() -> &'static Environment<'source> {
    &ENVIRONMENT
}

fn template_error(
    error: &minijinja::Error,
    source: &str,
    context: Option<&Value>,
) -> TemplateError {
    let line = error.line().unwrap_or(1);
    let message = match (error.kind(), error.detail()) {
        (ErrorKind::UndefinedError, Some(detail)) => undefined_message(detail, context),
        // A filter given an undefined value says so without a name: show the expression.
        (ErrorKind::UndefinedError, None) => {
            match error.range().and_then(|range| enclosing_tag(source, range)) {
                Some(tag) => format!("undefined value in `{tag}`"),
                None => "undefined value".to_owned(),
            }
        }
        (ErrorKind::UnknownFilter, Some(detail)) => match detail.strip_prefix("filter ") {
            Some(rest) => format!("unknown filter `{}`", rest.trim_end_matches(" is unknown")),
            None => format!("unknown filter: {detail}"),
        },
        (kind, Some(detail)) => format!("{kind}: {detail}"),
        (kind, None) => kind.to_string(),
    };
    TemplateError { line, message }
}

/// The `{{ … }}` or `{% … %}` around a byte range of the source.
fn enclosing_tag(source: &str, range: std::ops::Range<usize>) -> Option<&str> {
    let before = source.get(..range.start)?;
    let open = before
        .rfind("{{")
        .into_iter()
        .chain(before.rfind("{%"))
        .max()?;
    let after = source.get(range.end..)?;
    let close = after.find("}}").into_iter().chain(after.find("%}")).min()?;
    source.get(open..range.end + close + 2)
}

/// "undefined value `params.regio` (did you mean `params.region`?)".
fn undefined_message(detail: &str, context: Option<&Value>) -> String {
    let Some(path) = detail.split('`').nth(1) else {
        return format!("undefined value: {detail}");
    };
    match context.and_then(|context| hint(path, context)) {
        Some(hint) => format!("undefined value `{path}` ({hint})"),
        None => format!("undefined value `{path}`"),
    }
}

/// Walks a dotted path through the context to the first missing key and suggests a near one.
fn hint(path: &str, context: &Value) -> Option<String> {
    if path.contains(['[', '(', ' ', '|']) {
        return None;
    }
    let mut current = context;
    let mut walked: Vec<&str> = Vec::new();
    for segment in path.split('.') {
        let Value::Object(map) = current else {
            let kind = match current {
                Value::String(_) => "a string",
                Value::Number(_) => "a number",
                Value::Bool(_) => "a boolean",
                Value::Array(_) => "a list",
                _ => "null",
            };
            return Some(format!(
                "`{}` is {kind} and has no `{segment}`",
                walked.join(".")
            ));
        };
        let Some(next) = map.get(segment) else {
            let prefix: String = walked.iter().map(|part| format!("{part}.")).collect();
            if let Some(best) = closest(segment, map.keys().map(String::as_str)) {
                return Some(format!("did you mean `{prefix}{best}`?"));
            }
            if walked.is_empty() {
                return None;
            }
            let parent = walked.join(".");
            return Some(match map.len() {
                0 => format!("`{parent}` is empty"),
                1..=12 => format!(
                    "`{parent}` has {}",
                    map.keys()
                        .map(|key| format!("`{key}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                _ => return None,
            });
        };
        walked.push(segment);
        current = next;
    }
    None
}

/// The candidate within a small edit distance of `word`, if any.
fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .map(|candidate| (edit_distance(word, candidate), candidate))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

fn parse_ds(filter: &str, ds: &str) -> Result<NaiveDate, minijinja::Error> {
    NaiveDate::parse_from_str(ds, "%Y-%m-%d").map_err(|_| {
        minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("{filter} expects a YYYY-MM-DD date, got `{ds}`"),
        )
    })
}

/// `{{ ds | ds_add(-1) }}` → the day before `ds`.
fn ds_add(ds: &str, days: i64) -> Result<String, minijinja::Error> {
    let date = parse_ds("ds_add", ds)?;
    TimeDelta::try_days(days)
        .and_then(|delta| date.checked_add_signed(delta))
        .map(|date| date.format("%Y-%m-%d").to_string())
        .ok_or_else(|| {
            minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!("ds_add({days}) leaves the calendar"),
            )
        })
}

/// `{{ ds | ds_format('%Y/%m/%d') }}` (chrono's strftime).
fn ds_format(ds: &str, format: &str) -> Result<String, minijinja::Error> {
    use std::fmt::Write as _;
    let date = parse_ds("ds_format", ds)?;
    let mut text = String::new();
    // Writing (unlike `to_string`) reports a bad format instead of panicking.
    write!(text, "{}", date.format(format)).map_err(|_| {
        minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("ds_format: bad format `{format}`"),
        )
    })?;
    Ok(text)
}

/// Compact JSON; unlike minijinja's own `tojson` it does not escape `<`, `>`, `&` or `'`.
fn to_json(value: minijinja::Value) -> Result<String, minijinja::Error> {
    if value.is_undefined() {
        return Err(ErrorKind::UndefinedError.into());
    }
    serde_json::to_string(&value).map_err(|error| {
        minijinja::Error::new(
            ErrorKind::BadSerialization,
            format!("cannot write JSON: {error}"),
        )
    })
}

/// One word for `sh`: `it's` → `'it'\''s'`.
fn shell_quote(value: minijinja::Value) -> Result<String, minijinja::Error> {
    if value.is_undefined() {
        return Err(ErrorKind::UndefinedError.into());
    }
    let text = value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned);
    Ok(format!("'{}'", text.replace('\'', r"'\''")))
}

#[cfg(test)]
mod tests;
