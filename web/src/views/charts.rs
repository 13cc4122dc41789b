//! Geometry for the server-rendered SVG charts: a DAG's graph, layered left to right, and a
//! run's Gantt chart of attempts. Pure functions; the templates only draw what they return.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sluice_core::Dag;

use crate::format::{duration, time};

const NODE_WIDTH: u32 = 150;
const NODE_HEIGHT: u32 = 30;
const LAYER_GAP: u32 = 60;
const ROW_GAP: u32 = 14;
const MARGIN: u32 = 10;

/// A DAG's tasks placed in layers: a task sits one layer right of its furthest upstream.
pub(crate) struct Graph {
    pub width: u32,
    pub height: u32,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

pub(crate) struct Node {
    pub task_id: String,
    pub x: u32,
    pub y: u32,
    /// The label's baseline.
    pub text_x: u32,
    pub text_y: u32,
    /// The selected run's state of this task, or `none`; the CSS class suffix.
    pub state: &'static str,
    pub href: Option<String>,
}

pub(crate) struct Edge {
    /// An SVG path (`M … C …`) from the upstream's right side to the downstream's left side.
    pub path: String,
}

/// `states` gives each task's state in the selected run and where clicking it goes.
pub(crate) fn graph(dag: &Dag, states: &HashMap<String, (&'static str, String)>) -> Graph {
    let index: HashMap<&str, usize> = dag
        .tasks
        .iter()
        .enumerate()
        .map(|(i, task)| (task.id.as_str(), i))
        .collect();
    // tasks come in a valid order only after a topological pass: iterate to a fixed point
    // (the parser rejects cycles, so at most `tasks` rounds)
    let mut layer = vec![0u32; dag.tasks.len()];
    for _ in 0..dag.tasks.len() {
        let mut changed = false;
        for (i, task) in dag.tasks.iter().enumerate() {
            for upstream in &task.depends_on {
                if let Some(&u) = index.get(upstream.as_str())
                    && layer[i] < layer[u] + 1
                {
                    layer[i] = layer[u] + 1;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    let mut rows_in_layer: HashMap<u32, u32> = HashMap::new();
    let mut position = Vec::with_capacity(dag.tasks.len());
    for &l in &layer {
        let row = rows_in_layer.entry(l).or_insert(0);
        position.push((l, *row));
        *row += 1;
    }
    let place = |(l, row): (u32, u32)| {
        (
            MARGIN + l * (NODE_WIDTH + LAYER_GAP),
            MARGIN + row * (NODE_HEIGHT + ROW_GAP),
        )
    };
    let nodes: Vec<Node> = dag
        .tasks
        .iter()
        .zip(&position)
        .map(|(task, &at)| {
            let (x, y) = place(at);
            let (state, href) = states
                .get(task.id.as_str())
                .map_or(("none", None), |(state, href)| (*state, Some(href.clone())));
            Node {
                task_id: task.id.to_string(),
                x,
                y,
                text_x: x + 8,
                text_y: y + NODE_HEIGHT / 2 + 4,
                state,
                href,
            }
        })
        .collect();
    let mut edges = Vec::new();
    for (i, task) in dag.tasks.iter().enumerate() {
        for upstream in &task.depends_on {
            let Some(&u) = index.get(upstream.as_str()) else {
                continue;
            };
            let (x1, y1) = place(position[u]);
            let (x2, y2) = place(position[i]);
            let (x1, y1) = (x1 + NODE_WIDTH, y1 + NODE_HEIGHT / 2);
            let y2 = y2 + NODE_HEIGHT / 2;
            let middle = (x1 + x2) / 2;
            edges.push(Edge {
                path: format!("M{x1},{y1} C{middle},{y1} {middle},{y2} {x2},{y2}"),
            });
        }
    }
    let layers = layer.iter().max().map_or(0, |l| l + 1);
    let rows = rows_in_layer.values().max().copied().unwrap_or(0);
    Graph {
        width: 2 * MARGIN + layers * NODE_WIDTH + layers.saturating_sub(1) * LAYER_GAP,
        height: 2 * MARGIN + rows * NODE_HEIGHT + rows.saturating_sub(1) * ROW_GAP,
        nodes,
        edges,
    }
}

const GANTT_LABELS: u32 = 170;
const GANTT_BARS: u32 = 720;
const GANTT_ROW: u32 = 22;

/// One attempt to draw.
pub(crate) struct Span {
    pub label: String,
    pub state: &'static str,
    pub start: DateTime<Utc>,
    /// `None` while it runs: drawn up to `now`.
    pub end: Option<DateTime<Utc>>,
}

pub(crate) struct Gantt {
    pub width: u32,
    pub height: u32,
    pub bars: Vec<Bar>,
    /// The time at the left and right edges.
    pub from: String,
    pub to: String,
}

pub(crate) struct Bar {
    pub label: String,
    pub label_y: u32,
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub state: &'static str,
    pub title: String,
}

/// One row per attempt, in the order given, on a shared time axis.
pub(crate) fn gantt(spans: &[Span], now: DateTime<Utc>) -> Option<Gantt> {
    let from = spans.iter().map(|span| span.start).min()?;
    let to = spans
        .iter()
        .map(|span| span.end.unwrap_or(now))
        .max()?
        .max(from);
    let total = (to - from).num_milliseconds().max(1) as f64;
    let scale = |at: DateTime<Utc>| {
        let offset = (at - from).num_milliseconds().max(0) as f64;
        (offset / total * f64::from(GANTT_BARS)).round() as u32
    };
    let bars = spans
        .iter()
        .zip(0u32..)
        .map(|(span, row)| {
            let end = span.end.unwrap_or(now);
            let x = scale(span.start);
            let y = row * GANTT_ROW;
            Bar {
                label: span.label.clone(),
                label_y: y + GANTT_ROW / 2 + 4,
                x: GANTT_LABELS + x,
                y: y + 3,
                // at least 2 px, so an instant attempt is still seen
                width: scale(end).saturating_sub(x).max(2),
                state: span.state,
                title: format!(
                    "{} · {} · {} → {} ({})",
                    span.label,
                    span.state,
                    time(span.start),
                    span.end.map_or_else(|| "running".to_owned(), time),
                    duration(end - span.start)
                ),
            }
        })
        .collect::<Vec<_>>();
    Some(Gantt {
        width: GANTT_LABELS + GANTT_BARS + MARGIN,
        height: u32::try_from(bars.len())
            .unwrap_or(u32::MAX)
            .saturating_mul(GANTT_ROW),
        bars,
        from: time(from),
        to: time(to),
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    const DIAMOND: &str = "\
tasks:
  a: { type: noop }
  b: { type: noop, depends_on: [a] }
  c: { type: noop, depends_on: [a] }
  d: { type: noop, depends_on: [b, c] }
";

    #[test]
    fn graph_layers_tasks_left_to_right_after_their_upstreams() {
        let dag = sluice_core::parse_dag("diamond.yaml", DIAMOND).expect("a valid DAG");
        let mut states = HashMap::new();
        states.insert("a".to_owned(), ("success", "/r#task-a".to_owned()));
        let graph = graph(&dag, &states);
        let x = |id: &str| {
            graph
                .nodes
                .iter()
                .find(|n| n.task_id == id)
                .expect("node")
                .x
        };
        assert!(x("a") < x("b"));
        assert_eq!(x("b"), x("c"));
        assert!(x("c") < x("d"));
        assert_eq!(graph.edges.len(), 4);
        assert_eq!(graph.nodes[0].state, "success");
        assert_eq!(graph.nodes[3].state, "none");
        assert!(graph.width >= x("d") + NODE_WIDTH);
    }

    #[test]
    fn gantt_scales_attempts_on_one_axis_and_running_ones_reach_now() {
        let start = DateTime::from_timestamp(1_000, 0).expect("valid");
        let spans = [
            Span {
                label: "extract try 1".to_owned(),
                state: "failed",
                start,
                end: Some(start + TimeDelta::seconds(10)),
            },
            Span {
                label: "extract try 2".to_owned(),
                state: "running",
                start: start + TimeDelta::seconds(10),
                end: None,
            },
        ];
        let chart = gantt(&spans, start + TimeDelta::seconds(20)).expect("a chart");
        assert_eq!(chart.bars[0].x, GANTT_LABELS);
        assert_eq!(chart.bars[0].width, GANTT_BARS / 2);
        assert_eq!(chart.bars[1].x, GANTT_LABELS + GANTT_BARS / 2);
        assert_eq!(chart.bars[1].width, GANTT_BARS / 2);
        assert!(chart.bars[1].title.contains("running"));
        assert!(gantt(&[], start).is_none());
    }
}
