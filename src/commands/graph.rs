//! `sluice dags show DAG`: the graph as text, tasks in topological layers.

use std::collections::BTreeMap;
use std::process::ExitCode;

use serde::Serialize;
use sluice_core::{Dag, TriggerRule};

use super::output::{self, Output, Table};
use crate::Cli;

#[derive(Debug, Serialize)]
struct Node<'a> {
    task_id: &'a str,
    layer: usize,
    #[serde(rename = "type")]
    step_type: &'static str,
    upstream: Vec<&'a str>,
    trigger_rule: TriggerRule,
    retries: u32,
    queue: &'a str,
}

pub fn show(cli: &Cli, dag_id: &str) -> anyhow::Result<ExitCode> {
    let dag = super::dags::dag_from_folder(cli, dag_id)?;
    let nodes = layers(&dag);
    if cli.output == Output::Json {
        output::print_json(&serde_json::json!({
            "dag_id": dag.id,
            "schedule": dag.schedule.as_ref().map(|s| s.expression()),
            "timezone": dag.timezone.name(),
            "tasks": nodes,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    out!(
        "{} · {} · {} · {} tasks · max_active_runs {}",
        dag.id,
        dag.schedule.as_ref().map_or("manual", |s| s.expression()),
        dag.timezone.name(),
        dag.tasks.len(),
        dag.max_active_runs
    );
    let mut table = Table::new(&["LAYER", "TASK", "TYPE", "TRIGGER RULE", "UPSTREAM"]);
    for node in &nodes {
        table.row(vec![
            node.layer.to_string(),
            node.task_id.to_owned(),
            node.step_type.to_owned(),
            node.trigger_rule.to_string(),
            if node.upstream.is_empty() {
                "-".to_owned()
            } else {
                format!("← {}", node.upstream.join(", "))
            },
        ]);
    }
    table.print();
    Ok(ExitCode::SUCCESS)
}

/// Each task's layer: 0 for tasks without upstream, else one more than its deepest upstream.
/// Sorted by layer, then file order. The parser has rejected cycles, so this terminates.
fn layers(dag: &Dag) -> Vec<Node<'_>> {
    let mut layer: BTreeMap<&str, usize> = BTreeMap::new();
    while layer.len() < dag.tasks.len() {
        let before = layer.len();
        for task in &dag.tasks {
            if layer.contains_key(task.id.as_str()) {
                continue;
            }
            let upstream: Option<Vec<usize>> = task
                .depends_on
                .iter()
                .map(|u| layer.get(u.as_str()).copied())
                .collect();
            if let Some(upstream) = upstream {
                let depth = upstream.iter().max().map_or(0, |d| d + 1);
                layer.insert(task.id.as_str(), depth);
            }
        }
        if layer.len() == before {
            break;
        }
    }
    let mut nodes: Vec<Node<'_>> = dag
        .tasks
        .iter()
        .map(|task| Node {
            task_id: task.id.as_str(),
            layer: layer.get(task.id.as_str()).copied().unwrap_or(0),
            step_type: task.step.type_name(),
            upstream: task.depends_on.iter().map(|u| u.as_str()).collect(),
            trigger_rule: task.trigger_rule,
            retries: task.retry.retries,
            queue: &task.queue,
        })
        .collect();
    nodes.sort_by_key(|n| n.layer);
    nodes
}
