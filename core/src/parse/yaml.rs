//! One YAML document as a tree whose every node remembers its line and column.
//!
//! Built from saphyr-parser's events. Maps keep their keys in file order; scalars keep their
//! text and whether they were plain, so `"0 2 * * *"`, `"null"` and `yes` mean what they say
//! under YAML 1.2's core schema. Aliases are expanded by cloning the anchored node (within a
//! budget, so a "billion laughs" file is an error and not an out-of-memory), and merge keys
//! (`<<: *base`) copy the keys a map does not set itself.

use std::collections::HashMap;

use saphyr_parser::{Event, Marker, Parser, ScalarStyle, Span, Tag};

/// A 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Pos {
    pub line: usize,
    pub col: usize,
}

impl Pos {
    pub const START: Pos = Pos { line: 1, col: 1 };

    fn from_marker(marker: &Marker) -> Pos {
        Pos {
            line: marker.line().max(1),
            col: marker.col() + 1,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub pos: Pos,
    pub kind: Kind,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Scalar(Scalar),
    List(Vec<Node>),
    Map(Vec<Entry>),
}

#[derive(Debug, Clone)]
pub(crate) struct Scalar {
    pub text: String,
    /// Quoted, block (`|`, `>`) or tagged `!!str`: always a string, never resolved.
    pub literal: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub key: Node,
    pub value: Node,
}

/// What a scalar means under the YAML 1.2 core schema.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Resolved<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
}

impl Node {
    pub fn as_scalar(&self) -> Option<&Scalar> {
        match &self.kind {
            Kind::Scalar(scalar) => Some(scalar),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar(scalar) if scalar.resolve() == Resolved::Null)
    }

    /// The text of a map key written as a scalar.
    pub fn key_text(&self) -> Option<&str> {
        self.as_scalar().map(|scalar| scalar.text.as_str())
    }

    fn is_merge_key(&self) -> bool {
        matches!(&self.kind, Kind::Scalar(scalar) if !scalar.literal && scalar.text == "<<")
    }
}

impl Scalar {
    pub fn resolve(&self) -> Resolved<'_> {
        if self.literal {
            return Resolved::Str(&self.text);
        }
        resolve_plain(&self.text)
    }
}

/// The document's root (if the file holds one) and every problem found while reading it.
/// A syntax error leaves no root: a half-read tree would only produce misleading errors.
pub(crate) fn load(source: &str) -> (Option<Node>, Vec<(Pos, String)>) {
    let mut builder = Builder::default();
    for event in Parser::new_from_str(source) {
        let (event, span) = match event {
            Ok(event) => event,
            Err(error) => {
                let message = format!("YAML syntax error: {}", error.info());
                builder
                    .errors
                    .push((Pos::from_marker(error.marker()), message));
                return (None, builder.errors);
            }
        };
        if let Err(stop) = builder.on_event(event, span) {
            builder.errors.push(stop);
            return (None, builder.errors);
        }
        if builder.finished {
            break;
        }
    }
    (builder.root, builder.errors)
}

/// How deep collections may nest; DAG files need a handful of levels, and the tree is walked
/// recursively afterwards.
const MAX_DEPTH: usize = 64;
/// How many nodes aliases may add by cloning anchored nodes.
const ALIAS_BUDGET: usize = 100_000;

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    /// Completed anchored nodes by anchor id, with their node counts.
    anchors: HashMap<usize, (Node, usize)>,
    alias_nodes: usize,
    documents: usize,
    root: Option<Node>,
    finished: bool,
    errors: Vec<(Pos, String)>,
}

struct Frame {
    pos: Pos,
    anchor: usize,
    collection: Collection,
}

enum Collection {
    List(Vec<Node>),
    Map {
        entries: Vec<Entry>,
        key: Option<Node>,
    },
}

impl Builder {
    /// `Err` stops the build with that error.
    fn on_event(&mut self, event: Event<'_>, span: Span) -> Result<(), (Pos, String)> {
        let pos = Pos::from_marker(&span.start);
        match event {
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err((
                        pos,
                        "a second YAML document starts here; a DAG file holds exactly one"
                            .to_owned(),
                    ));
                }
            }
            Event::StreamEnd => self.finished = true,
            Event::Scalar(text, style, anchor, tag) => {
                let literal = style != ScalarStyle::Plain || is_str_tag(tag.as_deref());
                self.check_tag(pos, tag.as_deref());
                let scalar = Scalar {
                    text: text.into_owned(),
                    literal,
                };
                let node = Node {
                    pos,
                    kind: Kind::Scalar(scalar),
                };
                self.complete(node, anchor);
            }
            Event::SequenceStart(anchor, tag) => {
                self.open(pos, anchor, tag.as_deref(), Collection::List(Vec::new()))?;
            }
            Event::MappingStart(anchor, tag) => {
                let map = Collection::Map {
                    entries: Vec::new(),
                    key: None,
                };
                self.open(pos, anchor, tag.as_deref(), map)?;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                // saphyr balances these events; an unbalanced end is reported, not trusted
                let Some(frame) = self.stack.pop() else {
                    return Err((
                        pos,
                        "YAML syntax error: a collection ends that never began".to_owned(),
                    ));
                };
                let node = match frame.collection {
                    Collection::List(items) => Node {
                        pos: frame.pos,
                        kind: Kind::List(items),
                    },
                    Collection::Map { entries, .. } => Node {
                        pos: frame.pos,
                        kind: Kind::Map(self.finish_map(entries)),
                    },
                };
                self.complete(node, frame.anchor);
            }
            Event::Alias(id) => {
                let Some((node, size)) = self.anchors.get(&id) else {
                    return Err((
                        pos,
                        "an alias refers to the node that contains it".to_owned(),
                    ));
                };
                self.alias_nodes += size;
                if self.alias_nodes > ALIAS_BUDGET {
                    return Err((
                        pos,
                        format!("aliases expand to more than {ALIAS_BUDGET} nodes"),
                    ));
                }
                let mut node = node.clone();
                // The copy is reported where the alias is written, its insides where defined.
                node.pos = pos;
                self.complete(node, 0);
            }
            Event::Nothing | Event::StreamStart | Event::DocumentEnd => {}
        }
        Ok(())
    }

    fn open(
        &mut self,
        pos: Pos,
        anchor: usize,
        tag: Option<&Tag>,
        collection: Collection,
    ) -> Result<(), (Pos, String)> {
        self.check_tag(pos, tag);
        if self.stack.len() >= MAX_DEPTH {
            return Err((
                pos,
                format!("collections nest deeper than {MAX_DEPTH} levels"),
            ));
        }
        self.stack.push(Frame {
            pos,
            anchor,
            collection,
        });
        Ok(())
    }

    /// Hands a finished node to its parent (or makes it the root) and remembers its anchor.
    fn complete(&mut self, node: Node, anchor: usize) {
        if anchor != 0 {
            self.anchors
                .insert(anchor, (node.clone(), count_nodes(&node)));
        }
        let Some(frame) = self.stack.last_mut() else {
            self.root = Some(node);
            return;
        };
        match &mut frame.collection {
            Collection::List(items) => items.push(node),
            Collection::Map { entries, key } => match key.take() {
                None => *key = Some(node),
                Some(key) => entries.push(Entry { key, value: node }),
            },
        }
    }

    /// Drops (and reports) repeated keys and expands merge keys: a key the map sets itself
    /// wins over a merged one, and an earlier merge source over a later one.
    fn finish_map(&mut self, written: Vec<Entry>) -> Vec<Entry> {
        let mut entries: Vec<Entry> = Vec::with_capacity(written.len());
        let mut merged: Vec<Entry> = Vec::new();
        for entry in written {
            if entry.key.is_merge_key() {
                self.collect_merge(entry.value, &mut merged);
            } else {
                entries.push(entry);
            }
        }
        self.drop_duplicates(&mut entries);
        for entry in merged {
            let taken = entry.key.key_text().is_some_and(|text| {
                entries
                    .iter()
                    .any(|existing| existing.key.key_text() == Some(text))
            });
            if !taken {
                entries.push(entry);
            }
        }
        entries
    }

    fn collect_merge(&mut self, value: Node, merged: &mut Vec<Entry>) {
        match value.kind {
            Kind::Map(entries) => merged.extend(entries),
            Kind::List(sources) => {
                for source in sources {
                    match source.kind {
                        Kind::Map(entries) => merged.extend(entries),
                        _ => self.errors.push((source.pos, MERGE_NEEDS_MAPS.to_owned())),
                    }
                }
            }
            Kind::Scalar(_) => self.errors.push((value.pos, MERGE_NEEDS_MAPS.to_owned())),
        }
    }

    /// Keeps the first of each repeated key. Sorting indices by key finds repeats without
    /// hashing or allocating a string per key.
    fn drop_duplicates(&mut self, entries: &mut Vec<Entry>) {
        if entries.len() < 2 {
            return;
        }
        let mut order: Vec<usize> = (0..entries.len()).collect();
        order.sort_by(|a, b| {
            let key = |index: usize| entries[index].key.key_text();
            key(*a).cmp(&key(*b)).then(a.cmp(b))
        });
        let mut repeated = vec![false; entries.len()];
        let mut first = order[0];
        for &index in &order[1..] {
            let text = entries[index].key.key_text();
            if text.is_some() && text == entries[first].key.key_text() {
                repeated[index] = true;
                let key = &entries[index].key;
                let message = format!(
                    "duplicate key `{}` (first defined at line {})",
                    text.unwrap_or_default(),
                    entries[first].key.pos.line
                );
                self.errors.push((key.pos, message));
            } else {
                first = index;
            }
        }
        let mut index = 0;
        entries.retain(|_| {
            index += 1;
            !repeated[index - 1]
        });
    }

    /// Core-schema tags (`!!str`, `!!int`, …) are accepted; application tags mean nothing to
    /// sluice, and silently ignoring one would hide what the author intended.
    fn check_tag(&mut self, pos: Pos, tag: Option<&Tag>) {
        if let Some(tag) = tag
            && !tag.is_yaml_core_schema()
        {
            self.errors
                .push((pos, format!("unsupported YAML tag `{tag}`")));
        }
    }
}

const MERGE_NEEDS_MAPS: &str = "a merge key `<<` takes a mapping or a list of mappings";

fn is_str_tag(tag: Option<&Tag>) -> bool {
    tag.is_some_and(|tag| tag.is_yaml_core_schema() && tag.suffix == "str")
}

fn count_nodes(node: &Node) -> usize {
    1 + match &node.kind {
        Kind::Scalar(_) => 0,
        Kind::List(items) => items.iter().map(count_nodes).sum(),
        Kind::Map(entries) => entries
            .iter()
            .map(|entry| count_nodes(&entry.key) + count_nodes(&entry.value))
            .sum(),
    }
}

/// YAML 1.2 core schema: null, booleans, integers (decimal, `0o`, `0x`), floats, else text.
fn resolve_plain(text: &str) -> Resolved<'_> {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Resolved::Null,
        "true" | "True" | "TRUE" => return Resolved::Bool(true),
        "false" | "False" | "FALSE" => return Resolved::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Resolved::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Resolved::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Resolved::Float(f64::NAN),
        _ => {}
    }
    let first = text.as_bytes()[0];
    if !(first.is_ascii_digit() || matches!(first, b'-' | b'+' | b'.')) {
        return Resolved::Str(text);
    }
    if let Some(hex) = text.strip_prefix("0x") {
        return radix_int(text, hex, 16);
    }
    if let Some(octal) = text.strip_prefix("0o") {
        return radix_int(text, octal, 8);
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return match text.parse::<i64>() {
            Ok(value) => Resolved::Int(value),
            // Too large for i64: still a number, kept as a float like most YAML loaders do.
            Err(_) => text.parse().map_or(Resolved::Str(text), Resolved::Float),
        };
    }
    if is_core_float(digits) {
        return text.parse().map_or(Resolved::Str(text), Resolved::Float);
    }
    Resolved::Str(text)
}

fn radix_int<'a>(text: &'a str, digits: &str, radix: u32) -> Resolved<'a> {
    i64::from_str_radix(digits, radix).map_or(Resolved::Str(text), Resolved::Int)
}

/// `(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?` without the sign.
fn is_core_float(text: &str) -> bool {
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(at) => (&text[..at], Some(&text[at + 1..])),
        None => (text, None),
    };
    let (whole, fraction) = match mantissa.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (mantissa, None),
    };
    let all_digits = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
    let mantissa_ok = match fraction {
        Some(fraction) => {
            all_digits(whole) && all_digits(fraction) && !(whole.is_empty() && fraction.is_empty())
        }
        None => !whole.is_empty() && all_digits(whole),
    };
    let exponent_ok = exponent.is_none_or(|exponent| {
        let digits = exponent.strip_prefix(['-', '+']).unwrap_or(exponent);
        !digits.is_empty() && all_digits(digits)
    });
    mantissa_ok && exponent_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(source: &str) -> Node {
        let (root, errors) = load(source);
        assert!(errors.is_empty(), "{errors:?}");
        root.expect("a document")
    }

    #[test]
    fn plain_scalars_resolve_with_the_core_schema() {
        let cases = [
            ("~", Resolved::Null),
            ("", Resolved::Null),
            ("True", Resolved::Bool(true)),
            ("yes", Resolved::Str("yes")),
            ("on", Resolved::Str("on")),
            ("42", Resolved::Int(42)),
            ("-7", Resolved::Int(-7)),
            ("0x1f", Resolved::Int(31)),
            ("0o17", Resolved::Int(15)),
            ("1.5", Resolved::Float(1.5)),
            ("1e3", Resolved::Float(1000.0)),
            (".5", Resolved::Float(0.5)),
            ("2026-01-01", Resolved::Str("2026-01-01")),
            ("1.2.3", Resolved::Str("1.2.3")),
            ("-", Resolved::Str("-")),
            (".", Resolved::Str(".")),
        ];
        for (text, expected) in cases {
            assert_eq!(resolve_plain(text), expected, "{text}");
        }
    }

    #[test]
    fn quoted_scalars_stay_strings_and_positions_are_one_based() {
        let node = root("a: \"true\"\nb: !!str 12\n");
        let Kind::Map(entries) = &node.kind else {
            panic!("a map")
        };
        assert_eq!(
            entries[0].value.as_scalar().unwrap().resolve(),
            Resolved::Str("true")
        );
        assert_eq!(
            entries[1].value.as_scalar().unwrap().resolve(),
            Resolved::Str("12")
        );
        assert_eq!(entries[1].key.pos, Pos { line: 2, col: 1 });
        assert_eq!(entries[1].value.pos, Pos { line: 2, col: 4 });
    }

    #[test]
    fn aliases_copy_and_merge_keys_fill_unset_keys() {
        let node = root("base: &b {x: 1, y: 2}\nuse:\n  <<: *b\n  y: 3\n");
        let Kind::Map(entries) = &node.kind else {
            panic!("a map")
        };
        let Kind::Map(merged) = &entries[1].value.kind else {
            panic!("a map")
        };
        let pairs: Vec<(&str, &str)> = merged
            .iter()
            .map(|e| (e.key.key_text().unwrap(), e.value.key_text().unwrap()))
            .collect();
        assert_eq!(pairs, [("y", "3"), ("x", "1")]);
    }

    #[test]
    fn repeated_keys_are_reported_at_the_second_one() {
        let (_, errors) = load("a: 1\nb: 2\na: 3\n");
        assert_eq!(
            errors,
            [(
                Pos { line: 3, col: 1 },
                "duplicate key `a` (first defined at line 1)".to_owned()
            )]
        );
    }

    #[test]
    fn exponential_aliases_are_refused() {
        let mut source = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..8 {
            let previous = level - 1;
            source.push_str(&format!(
                "a{level}: &a{level} [*a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}]\n"
            ));
        }
        let (root, errors) = load(&source);
        assert!(root.is_none());
        assert!(errors[0].1.contains("aliases expand"), "{errors:?}");
    }
}
