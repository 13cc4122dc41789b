//! The steps whose config nests: an ingest's `source` and a sensor's condition, each exactly
//! one of several kinds.

use std::time::Duration;

use super::fields::Report;
use super::steps::{StepFields, status_codes};
use super::yaml::{Entry, Kind, Node, Pos};
use crate::ids::{DagId, TaskId};
use crate::schedule::parse_duration;
use crate::spec::{
    IngestSource, IngestStep, Pagination, SensorCondition, SensorMode, SensorStep, SignedDuration,
};

pub(crate) fn ingest(report: &mut Report, fields: &StepFields) -> Option<IngestStep> {
    let source = fields
        .required(report, "source")
        .and_then(|node| ingest_source(report, node));
    let destination = fields
        .required(report, "destination")
        .and_then(|node| report.template("destination", node));
    let format = fields.format(report);
    Some(IngestStep {
        source: source?,
        destination: destination?,
        format,
    })
}

const SOURCE_KINDS: &[&str] = &["http", "files", "sql"];

fn ingest_source(report: &mut Report, node: &Node) -> Option<IngestSource> {
    let entries = report.map("source", node)?;
    let mut written = Vec::with_capacity(entries.len());
    for entry in entries {
        let Some(key) = report.key(entry) else {
            continue;
        };
        if !SOURCE_KINDS.contains(&key) {
            report.unknown_key(entry.key.pos, key, SOURCE_KINDS, " in `source`");
        } else if !entry.value.is_null() {
            written.push((key, entry));
        }
    }
    let Some((kind, entry)) = exactly_one(report, &written) else {
        report.error(node.pos, "`source` needs one of `http`, `files` or `sql`");
        return None;
    };
    match kind {
        "http" => http_source(report, entry),
        "files" => files_source(report, entry),
        _ => {
            let section = Section::open(report, "source.sql", entry, &["connection", "query"])?;
            let connection = section.string(report, "connection");
            let query = section.template(report, "query");
            Some(IngestSource::Sql {
                connection: connection?,
                query: query?,
            })
        }
    }
}

/// The first of the written kinds; a second one is reported at its key.
fn exactly_one<'n>(
    report: &mut Report,
    written: &[(&'n str, &'n Entry)],
) -> Option<(&'n str, &'n Entry)> {
    let (first, _) = written.first()?;
    for (second, entry) in written.iter().skip(1) {
        report.error(
            entry.key.pos,
            format!("`{second}` and `{first}` are both given; write exactly one of them"),
        );
    }
    written.first().copied()
}

fn http_source(report: &mut Report, entry: &Entry) -> Option<IngestSource> {
    if entry.value.as_scalar().is_some() {
        return Some(IngestSource::Http {
            url: report.template("source.http", &entry.value)?,
            headers: Default::default(),
            records_path: None,
            pagination: None,
            max_pages: None,
            retries: None,
            retry_delay: None,
        });
    }
    let known = [
        "url",
        "headers",
        "records_path",
        "pagination",
        "max_pages",
        "retries",
        "retry_delay",
    ];
    let section = Section::open(report, "source.http", entry, &known)?;
    let url = section.template(report, "url");
    let headers = section
        .get("headers")
        .map(|node| report.template_map("headers", node))
        .unwrap_or_default();
    let records_path = section
        .get("records_path")
        .and_then(|node| report.string("records_path", node));
    let pagination = section
        .entry("pagination")
        .map(|entry| pagination(report, entry));
    let max_pages = section
        .get("max_pages")
        .and_then(|node| report.uint("max_pages", node));
    let retries = section
        .get("retries")
        .and_then(|node| report.uint("retries", node));
    let retry_delay = section
        .get("retry_delay")
        .and_then(|node| report.duration("retry_delay", node));
    Some(IngestSource::Http {
        url: url?,
        headers,
        records_path,
        pagination: pagination.flatten(),
        max_pages,
        retries,
        retry_delay,
    })
}

#[derive(Clone, Copy)]
enum PageKind {
    Cursor,
    Page,
    LinkHeader,
}

fn pagination(report: &mut Report, entry: &Entry) -> Option<Pagination> {
    let all = ["kind", "param", "cursor_path", "size_param", "size"];
    let section = Section::open(report, "source.http.pagination", entry, &all)?;
    let kinds = [
        ("cursor", PageKind::Cursor),
        ("page", PageKind::Page),
        ("link_header", PageKind::LinkHeader),
    ];
    let kind = section
        .required(report, "kind")
        .and_then(|node| report.choice("kind", node, &kinds))?;
    let allowed: &[&str] = match kind {
        PageKind::Cursor => &["kind", "param", "cursor_path"],
        PageKind::Page => &["kind", "param", "size_param", "size"],
        PageKind::LinkHeader => &["kind"],
    };
    for entry in section.entries {
        if let Some(key) = entry.key.key_text()
            && all.contains(&key)
            && !allowed.contains(&key)
        {
            report.error(
                entry.key.pos,
                format!(
                    "`{key}` does not apply to `kind` {}",
                    section_kind_name(kind)
                ),
            );
        }
    }
    match kind {
        PageKind::Cursor => {
            let param = section.string(report, "param");
            let cursor_path = section.string(report, "cursor_path");
            Some(Pagination::Cursor {
                param: param?,
                cursor_path: cursor_path?,
            })
        }
        PageKind::Page => Some(Pagination::Page {
            param: section
                .get("param")
                .and_then(|node| report.string("param", node))
                .unwrap_or_else(|| "page".to_owned()),
            size_param: section
                .get("size_param")
                .and_then(|node| report.string("size_param", node)),
            size: section
                .get("size")
                .and_then(|node| report.uint("size", node)),
        }),
        PageKind::LinkHeader => Some(Pagination::LinkHeader),
    }
}

fn section_kind_name(kind: PageKind) -> &'static str {
    match kind {
        PageKind::Cursor => "cursor",
        PageKind::Page => "page",
        PageKind::LinkHeader => "link_header",
    }
}

fn files_source(report: &mut Report, entry: &Entry) -> Option<IngestSource> {
    if entry.value.as_scalar().is_some() {
        let glob = report.template("source.files", &entry.value)?;
        return Some(IngestSource::Files { glob });
    }
    let section = Section::open(report, "source.files", entry, &["glob"])?;
    let glob = section.template(report, "glob")?;
    Some(IngestSource::Files { glob })
}

const CONDITIONS: &[&str] = &["file", "http", "sql", "task"];

/// A sensor: its one condition, `poke_interval`, `timeout` and `mode`.
///
/// The task's `timeout` key is the sensor's own limit (default 24 h): how long it keeps
/// poking before it fails. `defaults.timeout` does not apply to sensors, since a limit meant
/// for ordinary tasks (minutes) would cut every wait short.
pub(crate) fn sensor(report: &mut Report, fields: &StepFields) -> Option<SensorStep> {
    let written: Vec<(&str, &Entry)> = fields
        .entries
        .iter()
        .filter(|(key, entry)| CONDITIONS.contains(key) && !entry.value.is_null())
        .copied()
        .collect();
    let condition = match exactly_one(report, &written) {
        Some((kind, entry)) => condition(report, kind, entry),
        None => {
            fields.missing(
                report,
                "a condition: one of `file`, `http`, `sql` or `task`",
            );
            None
        }
    };
    let poke_interval = fields
        .get("poke_interval")
        .and_then(|node| positive_duration(report, "poke_interval", node))
        .unwrap_or(Duration::from_secs(60));
    let timeout = fields
        .get("timeout")
        .and_then(|node| positive_duration(report, "timeout", node))
        .unwrap_or(Duration::from_secs(24 * 3600));
    let modes = [
        ("poke", SensorMode::Poke),
        ("reschedule", SensorMode::Reschedule),
    ];
    let mode = match fields.get("mode") {
        Some(node) => report.choice("mode", node, &modes)?,
        None => SensorMode::Poke,
    };
    Some(SensorStep {
        condition: condition?,
        poke_interval,
        timeout,
        mode,
    })
}

fn positive_duration(report: &mut Report, name: &str, node: &Node) -> Option<Duration> {
    let duration = report.duration(name, node)?;
    if duration.is_zero() {
        report.error(node.pos, format!("`{name}` must be longer than 0s"));
        return None;
    }
    Some(duration)
}

fn condition(report: &mut Report, kind: &str, entry: &Entry) -> Option<SensorCondition> {
    match kind {
        "file" => Some(SensorCondition::File {
            path: report.template("file", &entry.value)?,
        }),
        "http" if entry.value.as_scalar().is_some() => Some(SensorCondition::Http {
            url: report.template("http", &entry.value)?,
            expect_status: Vec::new(),
        }),
        "http" => {
            let section = Section::open(report, "http", entry, &["url", "expect_status"])?;
            let url = section.template(report, "url");
            let expect_status = section
                .get("expect_status")
                .map(|node| status_codes(report, "expect_status", node))
                .unwrap_or_default();
            Some(SensorCondition::Http {
                url: url?,
                expect_status,
            })
        }
        "sql" => {
            let section = Section::open(report, "sql", entry, &["connection", "sql"])?;
            let connection = section.string(report, "connection");
            let sql = section.template(report, "sql");
            Some(SensorCondition::Sql {
                connection: connection?,
                sql: sql?,
            })
        }
        _ => task_condition(report, entry),
    }
}

fn task_condition(report: &mut Report, entry: &Entry) -> Option<SensorCondition> {
    let section = Section::open(report, "task", entry, &["dag", "task", "offset"])?;
    let dag = section.required(report, "dag").and_then(|node| {
        let text = report.text("dag", node)?;
        DagId::parse(text)
            .map_err(|error| report.error(node.pos, format!("`dag`: {error}")))
            .ok()
    });
    let task = section.required(report, "task").and_then(|node| {
        let text = report.text("task", node)?;
        TaskId::parse(text)
            .map_err(|error| report.error(node.pos, format!("`task`: {error}")))
            .ok()
    });
    let offset = match section.get("offset") {
        Some(node) => signed_duration(report, node)?,
        None => SignedDuration {
            negative: false,
            magnitude: Duration::ZERO,
        },
    };
    Some(SensorCondition::Task {
        dag: dag?,
        task: task?,
        offset,
    })
}

/// `-1d`, `+2h`, `30m`: a duration with an optional sign.
fn signed_duration(report: &mut Report, node: &Node) -> Option<SignedDuration> {
    let text = report.text("offset", node)?.trim();
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    match parse_duration(rest) {
        Ok(magnitude) => Some(SignedDuration {
            negative: negative && !magnitude.is_zero(),
            magnitude,
        }),
        Err(error) => {
            report.error(node.pos, format!("`offset`: {error}"));
            None
        }
    }
}

/// A nested mapping (`source.http`, a sensor's `sql`) whose keys were checked.
struct Section<'n> {
    path: &'static str,
    key_pos: Pos,
    entries: &'n [Entry],
}

impl<'n> Section<'n> {
    fn open(
        report: &mut Report,
        path: &'static str,
        entry: &'n Entry,
        known: &[&str],
    ) -> Option<Section<'n>> {
        let Kind::Map(entries) = &entry.value.kind else {
            report.expected(path, "a mapping (key: value)", &entry.value);
            return None;
        };
        let place = format!(" in `{path}`");
        for inner in entries {
            if let Some(key) = report.key(inner)
                && !known.contains(&key)
            {
                report.unknown_key(inner.key.pos, key, known, &place);
            }
        }
        Some(Section {
            path,
            key_pos: entry.key.pos,
            entries,
        })
    }

    fn entry(&self, key: &str) -> Option<&'n Entry> {
        self.entries
            .iter()
            .find(|entry| entry.key.key_text() == Some(key))
            .filter(|entry| !entry.value.is_null())
    }

    fn get(&self, key: &str) -> Option<&'n Node> {
        self.entry(key).map(|entry| &entry.value)
    }

    fn required(&self, report: &mut Report, key: &str) -> Option<&'n Node> {
        let node = self.get(key);
        if node.is_none() {
            report.error(self.key_pos, format!("`{}` is missing `{key}`", self.path));
        }
        node
    }

    fn string(&self, report: &mut Report, key: &str) -> Option<String> {
        self.required(report, key)
            .and_then(|node| report.string(key, node))
    }

    fn template(&self, report: &mut Report, key: &str) -> Option<String> {
        self.required(report, key)
            .and_then(|node| report.template(key, node))
    }
}
