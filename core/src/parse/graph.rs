//! The dependency graph: every `depends_on` names a task of the DAG, and there are no cycles.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};

use super::fields::{Report, did_you_mean};
use super::task::TaskDraft;

/// Reports self-dependencies and missing targets at the `depends_on` item, and each cycle
/// once, named in order from its earliest task in the file and reported at that task's key.
pub(crate) fn check(report: &mut Report, tasks: &[TaskDraft]) {
    let index: HashMap<&str, usize> = tasks
        .iter()
        .enumerate()
        .map(|(position, task)| (task.id, position))
        .collect();
    // Edges run from upstream to downstream: the direction work flows.
    let mut graph: DiGraph<(), ()> = DiGraph::with_capacity(tasks.len(), tasks.len() * 2);
    for _ in tasks {
        graph.add_node(());
    }
    for (downstream, task) in tasks.iter().enumerate() {
        for &(upstream, pos) in &task.depends_on {
            if upstream == task.id {
                report.error(pos, format!("task `{upstream}` depends on itself"));
                continue;
            }
            let Some(&upstream_index) = index.get(upstream) else {
                let others = tasks
                    .iter()
                    .map(|other| other.id)
                    .filter(|id| *id != task.id);
                let hint = did_you_mean(upstream, others)
                    .map(|hint| format!(" (did you mean `{hint}`?)"))
                    .unwrap_or_default();
                report.error(
                    pos,
                    format!(
                        "task `{}` depends on `{upstream}`, which is not a task in this DAG{hint}",
                        task.id
                    ),
                );
                continue;
            };
            graph.add_edge(
                NodeIndex::new(upstream_index),
                NodeIndex::new(downstream),
                (),
            );
        }
    }
    for component in tarjan_scc(&graph) {
        if component.len() < 2 {
            continue;
        }
        let start = component
            .iter()
            .copied()
            .min()
            .expect("a component has members");
        let cycle = shortest_cycle(&graph, start, &component);
        let names: Vec<&str> = cycle.iter().map(|node| tasks[node.index()].id).collect();
        report.error(
            tasks[start.index()].pos,
            format!(
                "tasks depend on each other in a cycle: {} (each one waits for the one before it)",
                names.join(" -> ")
            ),
        );
    }
}

/// `start -> … -> start` through the members of its strongly connected component.
fn shortest_cycle(
    graph: &DiGraph<(), ()>,
    start: NodeIndex,
    members: &[NodeIndex],
) -> Vec<NodeIndex> {
    let mut came_from: HashMap<NodeIndex, NodeIndex> = HashMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        // Neighbours in insertion order would be reversed by petgraph; sort for stable output.
        let mut next: Vec<NodeIndex> = graph
            .neighbors(node)
            .filter(|next| members.contains(next))
            .collect();
        next.sort();
        for next in next {
            if next == start {
                let mut path = vec![start, node];
                let mut at = node;
                while let Some(&previous) = came_from.get(&at) {
                    path.push(previous);
                    at = previous;
                }
                // `path` is start, node, …, start walked backwards: turn it around.
                path.reverse();
                return path;
            }
            if let Entry::Vacant(slot) = came_from.entry(next) {
                slot.insert(node);
                queue.push_back(next);
            }
        }
    }
    // Unreachable for a strongly connected component; name the members rather than panic.
    members.iter().copied().chain([members[0]]).collect()
}
