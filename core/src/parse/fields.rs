//! Typed values read out of the YAML tree, every mistake collected with its position.
//!
//! A getter returns `None` (or an empty collection) both when the value is absent (`null`)
//! and when it is wrong; in the second case it has already recorded why, so callers only
//! decide what "absent" means for their field.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::yaml::{Entry, Kind, Node, Pos, Resolved};
use crate::error::DagError;
use crate::schedule::parse_duration;
use crate::spec::Template;
use crate::template;

/// The problems found so far in one file.
pub(crate) struct Report<'f> {
    file: &'f str,
    errors: Vec<DagError>,
}

impl<'f> Report<'f> {
    pub fn new(file: &'f str) -> Self {
        Report {
            file,
            errors: Vec::new(),
        }
    }

    pub fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.errors.push(DagError {
            file: self.file.to_owned(),
            line: pos.line,
            col: pos.col,
            message: message.into(),
        });
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    pub fn error_count(&self) -> usize {
        self.errors.len()
    }

    /// Sorted by position; a node copied by an alias may report the same problem twice.
    pub fn into_errors(mut self) -> Vec<DagError> {
        self.errors.sort_by_key(|error| (error.line, error.col));
        self.errors.dedup();
        self.errors
    }

    /// A map key's text; keys that are lists or maps are reported.
    pub fn key<'n>(&mut self, entry: &'n Entry) -> Option<&'n str> {
        let text = entry.key.key_text();
        if text.is_none() {
            self.error(
                entry.key.pos,
                "keys must be plain text, not lists or mappings",
            );
        }
        text
    }

    /// `unknown key `comand` in task `a` (did you mean `command`?)`; `place` is "" at the top.
    pub fn unknown_key(&mut self, pos: Pos, key: &str, known: &[&str], place: &str) {
        let message = match did_you_mean(key, known.iter().copied()) {
            Some(hint) => format!("unknown key `{key}`{place} (did you mean `{hint}`?)"),
            None => format!(
                "unknown key `{key}`{place} (known keys: {})",
                known.join(", ")
            ),
        };
        self.error(pos, message);
    }

    /// Scalar text without copying; `None` for null. Lists and maps are reported.
    pub fn text<'n>(&mut self, name: &str, node: &'n Node) -> Option<&'n str> {
        match &node.kind {
            Kind::Scalar(scalar) if scalar.resolve() == Resolved::Null => None,
            Kind::Scalar(scalar) => Some(&scalar.text),
            _ => {
                self.expected(name, "a string", node);
                None
            }
        }
    }

    pub fn string(&mut self, name: &str, node: &Node) -> Option<String> {
        self.text(name, node).map(str::to_owned)
    }

    /// A string that must compile as a template.
    pub fn template(&mut self, name: &str, node: &Node) -> Option<Template> {
        let text = self.text(name, node)?;
        self.check_template(name, node.pos, text);
        Some(text.to_owned())
    }

    /// Reports a template that does not compile at the line inside the value it is on.
    pub fn check_template(&mut self, name: &str, pos: Pos, text: &str) {
        if let Err(error) = template::check(text) {
            let at = Pos {
                line: pos.line + error.line.saturating_sub(1),
                col: pos.col,
            };
            self.error(
                at,
                format!(
                    "the template in `{name}` does not compile: {}",
                    error.message
                ),
            );
        }
    }

    pub fn duration(&mut self, name: &str, node: &Node) -> Option<Duration> {
        let text = self.text(name, node)?;
        match parse_duration(text) {
            Ok(duration) => Some(duration),
            Err(error) => {
                self.error(node.pos, format!("`{name}`: {error}"));
                None
            }
        }
    }

    pub fn uint(&mut self, name: &str, node: &Node) -> Option<u32> {
        let value = self.integer(name, "a non-negative integer", node)?;
        let fitted = u32::try_from(value).ok();
        if fitted.is_none() {
            self.expected(name, "a non-negative integer", node);
        }
        fitted
    }

    pub fn int(&mut self, name: &str, node: &Node) -> Option<i32> {
        let value = self.integer(name, "an integer", node)?;
        let fitted = i32::try_from(value).ok();
        if fitted.is_none() {
            self.error(
                node.pos,
                format!(
                    "`{name}` must be between {} and {}, got `{value}`",
                    i32::MIN,
                    i32::MAX
                ),
            );
        }
        fitted
    }

    /// Quoted numbers are accepted too: `"3"` means 3 to anyone reading the file.
    fn integer(&mut self, name: &str, what: &str, node: &Node) -> Option<i64> {
        let scalar = node.as_scalar();
        let value = match scalar.map(|scalar| scalar.resolve()) {
            Some(Resolved::Null) => return None,
            Some(Resolved::Int(value)) => Some(value),
            Some(Resolved::Str(text)) => text.trim().parse().ok(),
            _ => None,
        };
        if value.is_none() {
            self.expected(name, what, node);
        }
        value
    }

    pub fn boolean(&mut self, name: &str, node: &Node) -> Option<bool> {
        let value = match node.as_scalar().map(|scalar| scalar.resolve()) {
            Some(Resolved::Null) => return None,
            Some(Resolved::Bool(value)) => Some(value),
            Some(Resolved::Str("true")) => Some(true),
            Some(Resolved::Str("false")) => Some(false),
            _ => None,
        };
        if value.is_none() {
            self.expected(name, "true or false", node);
            if let Some(word) = node.key_text().filter(|text| is_yaml_11_boolean(text)) {
                let last = self.errors.last_mut().expect("just reported");
                last.message.push_str(&format!(
                    " (YAML 1.2 reads `{word}` as text: write `true` or `false`)"
                ));
            }
        }
        value
    }

    /// One of a fixed set of words, with a "did you mean" for a near miss.
    pub fn choice<T: Copy>(&mut self, name: &str, node: &Node, options: &[(&str, T)]) -> Option<T> {
        let text = self.text(name, node)?;
        if let Some((_, value)) = options.iter().find(|(word, _)| *word == text) {
            return Some(*value);
        }
        let words: Vec<&str> = options.iter().map(|(word, _)| *word).collect();
        let hint = did_you_mean(text, words.iter().copied())
            .map(|hint| format!(" (did you mean `{hint}`?)"))
            .unwrap_or_default();
        self.error(
            node.pos,
            format!(
                "`{name}` must be one of {}, got `{text}`{hint}",
                words.join(", ")
            ),
        );
        None
    }

    /// A list's items; a single scalar stands for a list of one, null for an empty list.
    pub fn items<'n>(&mut self, name: &str, node: &'n Node) -> &'n [Node] {
        match &node.kind {
            Kind::List(items) => items,
            Kind::Scalar(_) if node.is_null() => &[],
            Kind::Scalar(_) => std::slice::from_ref(node),
            Kind::Map(_) => {
                self.expected(name, "a list", node);
                &[]
            }
        }
    }

    pub fn strings(&mut self, name: &str, node: &Node) -> Vec<String> {
        let items = self.items(name, node);
        items
            .iter()
            .filter_map(|item| self.string(name, item))
            .collect()
    }

    pub fn templates(&mut self, name: &str, node: &Node) -> Vec<Template> {
        let items = self.items(name, node);
        items
            .iter()
            .filter_map(|item| self.template(name, item))
            .collect()
    }

    /// A mapping's entries; `None` for null (absent) and for a value that is not a mapping.
    pub fn map<'n>(&mut self, name: &str, node: &'n Node) -> Option<&'n [Entry]> {
        match &node.kind {
            Kind::Map(entries) => Some(entries),
            _ if node.is_null() => None,
            _ => {
                self.expected(name, "a mapping (key: value)", node);
                None
            }
        }
    }

    /// `name: value` pairs whose values are templates (`env`, `headers`, `conf`, …).
    pub fn template_map(&mut self, name: &str, node: &Node) -> BTreeMap<String, Template> {
        self.string_map(name, node, Check::Template)
    }

    pub fn string_map(
        &mut self,
        name: &str,
        node: &Node,
        check: Check,
    ) -> BTreeMap<String, String> {
        let mut map = BTreeMap::new();
        for entry in self.map(name, node).unwrap_or_default() {
            let Some(key) = self.key(entry) else { continue };
            let field = format!("{name}.{key}");
            if entry.value.is_null() {
                self.error(entry.value.pos, format!("`{field}` has no value"));
                continue;
            }
            let value = match check {
                Check::Template => self.template(&field, &entry.value),
                Check::Text => self.string(&field, &entry.value),
            };
            if let Some(value) = value {
                map.insert(key.to_owned(), value);
            }
        }
        map
    }

    /// Any YAML value as JSON (for `params`, `foreach` lists and JSON bodies).
    pub fn json(&mut self, name: &str, node: &Node) -> Option<Value> {
        match &node.kind {
            Kind::Scalar(scalar) => match scalar.resolve() {
                Resolved::Null => Some(Value::Null),
                Resolved::Bool(value) => Some(Value::Bool(value)),
                Resolved::Int(value) => Some(Value::from(value)),
                Resolved::Str(text) => Some(Value::String(text.to_owned())),
                Resolved::Float(value) => {
                    let number = serde_json::Number::from_f64(value);
                    if number.is_none() {
                        self.error(node.pos, format!("`{name}`: JSON has no `{}`", scalar.text));
                    }
                    number.map(Value::Number)
                }
            },
            Kind::List(items) => items
                .iter()
                .map(|item| self.json(name, item))
                .collect::<Option<Vec<_>>>()
                .map(Value::Array),
            Kind::Map(entries) => {
                let mut object = serde_json::Map::with_capacity(entries.len());
                for entry in entries {
                    let key = self.key(entry)?;
                    object.insert(key.to_owned(), self.json(name, &entry.value)?);
                }
                Some(Value::Object(object))
            }
        }
    }

    /// "`retries` must be a non-negative integer, got `abc`".
    pub fn expected(&mut self, name: &str, what: &str, node: &Node) {
        self.error(
            node.pos,
            format!("`{name}` must be {what}, got {}", shown(node)),
        );
    }
}

/// YAML 1.1's other booleans, which YAML 1.2 (and sluice) read as plain text.
fn is_yaml_11_boolean(text: &str) -> bool {
    ["yes", "no", "on", "off", "y", "n"]
        .iter()
        .any(|word| text.eq_ignore_ascii_case(word))
}

/// What a map's values must be.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Check {
    Template,
    Text,
}

/// A value as a message shows it: scalars quoted (and shortened), collections by kind.
pub(crate) fn shown(node: &Node) -> String {
    match &node.kind {
        Kind::Scalar(scalar) if scalar.text.is_empty() => "nothing".to_owned(),
        Kind::Scalar(scalar) => {
            let mut text: String = scalar.text.chars().take(40).collect();
            if text.len() < scalar.text.len() {
                text.push('…');
            }
            format!("`{}`", text.replace('\n', "⏎"))
        }
        Kind::List(_) => "a list".to_owned(),
        Kind::Map(_) => "a mapping".to_owned(),
    }
}

/// The candidate a small typo away from `word`, if any.
pub(crate) fn did_you_mean<'a>(
    word: &str,
    candidates: impl Iterator<Item = &'a str>,
) -> Option<&'a str> {
    // one edit per three characters: `b` is not a typo of `a`, `sheduel` is one of `schedule`
    let limit = word.chars().count() / 3;
    candidates
        .map(|candidate| (edit_distance(word, candidate), candidate))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance where swapping two neighbours counts as one edit (`sheduel`).
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().flat_map(char::to_lowercase).collect();
    let b: Vec<char> = b.chars().flat_map(char::to_lowercase).collect();
    // rows i-2, i-1 and i of the dynamic-programming table
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        current[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (previous[j] + 1)
                .min(current[j - 1] + 1)
                .min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(before[j - 2] + 1);
            }
            current[j] = best;
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_a_swap_as_one_edit() {
        assert_eq!(edit_distance("sheduel", "schedule"), 2);
        assert_eq!(edit_distance("tpye", "type"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("Command", "command"), 0);
        assert_eq!(
            did_you_mean("comand", ["command", "env"].into_iter()),
            Some("command")
        );
        assert_eq!(did_you_mean("zzz", ["command", "env"].into_iter()), None);
    }
}
