//! `sluice tasks clear|render|test`.

use std::io::IsTerminal;
use std::process::ExitCode;

use chrono::Utc;
use chrono_tz::Tz;
use clap::Subcommand;
use serde_json::Value;
use sluice_core::{Dag, DataInterval, Task, Timetable};
use sluice_scheduler::backfill::{self, Bound, TaskSelection};
use sluice_scheduler::parse_param_overrides;
use sluice_store::{ClearTasks, RunRange};
use sluice_worker::local::LocalRun;
use sluice_worker::logs::LogSink;
use tokio_util::sync::CancellationToken;

use super::output::{self, Output, Table};
use super::{UsageError, open_store};
use crate::Cli;

#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// Clear task instances of the runs in a date range so they run again.
    ///
    /// Cleared instances go back to pending with a new set of tries; every earlier attempt
    /// and its log is kept; finished runs go back to queued.
    /// Example: sluice tasks clear daily_sales --start 2026-01-01 --end 2026-01-31 --tasks '^load' --downstream --yes
    Clear {
        dag_id: String,
        /// First logical date (YYYY-MM-DD in the DAG's timezone, or a time).
        #[arg(long, value_name = "DATE")]
        start: String,
        /// Last logical date, included.
        #[arg(long, value_name = "DATE")]
        end: String,
        /// Only tasks whose id matches this regex (default: every task).
        #[arg(long, value_name = "REGEX")]
        tasks: Option<String>,
        /// With --tasks: the tasks downstream of the matching ones too.
        #[arg(long, requires = "tasks")]
        downstream: bool,
        /// Clear without asking.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Print a task's templated fields rendered for a logical date.
    ///
    /// Example: sluice tasks render daily_sales extract --date 2026-01-01
    Render {
        dag_id: String,
        task_id: String,
        /// The logical date: the first schedule point on or after this day (YYYY-MM-DD) or time.
        #[arg(long, value_name = "DATE")]
        date: String,
        /// Override a param: key=value (repeatable).
        #[arg(long = "param", value_name = "KEY=VALUE")]
        params: Vec<String>,
        /// Which item of a `foreach` task.
        #[arg(long, default_value_t = 0)]
        map_index: i32,
    },
    /// Run one task locally, without the database, printing its log; the exit code is its outcome.
    ///
    /// Example: sluice tasks test daily_sales extract --date 2026-01-01 --param region=eu
    Test {
        dag_id: String,
        task_id: String,
        /// The logical date: the first schedule point on or after this day or time (default: today).
        #[arg(long, value_name = "DATE")]
        date: Option<String>,
        /// Override a param: key=value (repeatable).
        #[arg(long = "param", value_name = "KEY=VALUE")]
        params: Vec<String>,
        /// Which item of a `foreach` task.
        #[arg(long, default_value_t = 0)]
        map_index: i32,
    },
}

pub async fn run(cli: &Cli, command: &TasksCommand) -> anyhow::Result<ExitCode> {
    match command {
        TasksCommand::Clear {
            dag_id,
            start,
            end,
            tasks,
            downstream,
            yes,
        } => {
            let selection = Selection {
                tasks: tasks.as_deref(),
                downstream: *downstream,
            };
            clear(cli, dag_id, (start, end), selection, *yes).await
        }
        TasksCommand::Render {
            dag_id,
            task_id,
            date,
            params,
            map_index,
        } => render(cli, dag_id, task_id, Some(date), params, *map_index),
        TasksCommand::Test {
            dag_id,
            task_id,
            date,
            params,
            map_index,
        } => test(cli, dag_id, task_id, date.as_deref(), params, *map_index).await,
    }
}

struct Selection<'a> {
    tasks: Option<&'a str>,
    downstream: bool,
}

/// The tasks whose id matches `pattern`, with their downstream tasks when asked.
pub fn select(dag: &Dag, pattern: &str, downstream: bool) -> anyhow::Result<TaskSelection> {
    backfill::select_tasks(dag, pattern, downstream)
        .map_err(|e| UsageError(format!("--tasks: {e}")).into())
}

async fn clear(
    cli: &Cli,
    dag_id: &str,
    (start, end): (&str, &str),
    selection: Selection<'_>,
    yes: bool,
) -> anyhow::Result<ExitCode> {
    for (flag, text) in [("--start", start), ("--end", end)] {
        backfill::parse_date(text, Tz::UTC, Bound::Start)
            .map_err(|e| UsageError(format!("{flag}: {e}")))?;
    }
    let store = open_store(&cli.database_url).await?;
    let dag = super::dags::dag_from_store(store.as_ref(), cli, dag_id).await?;
    let range = RunRange {
        dag_id: dag_id.to_owned(),
        start: backfill::parse_date(start, dag.timezone, Bound::Start)
            .map_err(|e| UsageError(format!("--start: {e}")))?,
        end: backfill::parse_date(end, dag.timezone, Bound::End)
            .map_err(|e| UsageError(format!("--end: {e}")))?,
    };
    if range.start >= range.end {
        return Err(UsageError("--start must be on or before --end".to_owned()).into());
    }
    let task_ids = match selection.tasks {
        Some(pattern) => select(&dag, pattern, selection.downstream)?.task_ids,
        None => dag.tasks.iter().map(|t| t.id.to_string()).collect(),
    };
    let runs = store.runs_in_range(&range).await?;
    let mut table = Table::new(&["RUN ID", "STATE", "TASKS TO CLEAR"]);
    let mut plan = Vec::new();
    for run in &runs {
        let clearable: Vec<String> = store
            .task_instances(run.pk)
            .await?
            .into_iter()
            .filter(|ti| ti.state.is_terminal() && task_ids.contains(&ti.task_id))
            .map(|ti| super::runs::task_label(&ti.task_id, ti.map_index))
            .collect();
        if clearable.is_empty() {
            continue;
        }
        table.row(vec![
            run.run_id.clone(),
            run.state.to_string(),
            clearable.join(", "),
        ]);
        plan.push((run.pk, clearable.len()));
    }
    if plan.is_empty() {
        eprintln!("nothing to clear: no finished task instance of those tasks in that range");
        return Ok(ExitCode::SUCCESS);
    }
    table.print();
    let total: usize = plan.iter().map(|(_, n)| n).sum();
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(UsageError(format!(
                "{total} task instances in {} runs would be cleared: pass --yes to clear without a prompt",
                plan.len()
            ))
            .into());
        }
        eprint!(
            "clear {total} task instances in {} runs? [y/N] ",
            plan.len()
        );
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            eprintln!("nothing cleared");
            return Ok(ExitCode::from(3));
        }
    }
    let mut cleared = 0;
    for (run_pk, _) in &plan {
        cleared += store
            .clear_tasks(&ClearTasks {
                run_pk: *run_pk,
                task_ids: task_ids.clone(),
                now: Utc::now(),
            })
            .await?;
    }
    out!("cleared {cleared} task instances in {} runs", plan.len());
    Ok(ExitCode::SUCCESS)
}

/// The DAG and task from the DAG folder, and the run they would have at `date`.
fn local_run<'a>(
    cli: &Cli,
    dag: &'a Dag,
    task_id: &str,
    date: Option<&str>,
    params: &[String],
    map_index: i32,
) -> anyhow::Result<LocalRun<'a>> {
    let task: &Task = dag.task(task_id).ok_or_else(|| {
        let all: Vec<&str> = dag.tasks.iter().map(|t| t.id.as_str()).collect();
        UsageError(format!(
            "DAG `{}` has no task `{task_id}` (tasks: {})",
            dag.id,
            all.join(", ")
        ))
    })?;
    let at = match date {
        Some(text) => backfill::parse_date(text, dag.timezone, Bound::Start)
            .map_err(|e| UsageError(format!("--date: {e}")))?,
        None => {
            let today = Utc::now()
                .with_timezone(&dag.timezone)
                .date_naive()
                .to_string();
            backfill::parse_date(&today, dag.timezone, Bound::Start)
                .map_err(|e| UsageError(format!("--date: {e}")))?
        }
    };
    let interval = match &dag.schedule {
        Some(schedule) => Timetable {
            schedule,
            timezone: dag.timezone,
            start_date: dag.start_date,
            end_date: dag.end_date,
        }
        .next_interval_after(at)
        .unwrap_or(DataInterval { start: at, end: at }),
        None => DataInterval { start: at, end: at },
    };
    let mut merged = dag.params.clone();
    merged.extend(parse_param_overrides(dag, params).map_err(|e| UsageError(e.to_string()))?);
    let base_dir = std::env::current_dir().unwrap_or_else(|_| cli.dags_folder.clone());
    Ok(LocalRun {
        dag,
        task,
        logical_date: interval.start,
        data_interval: interval,
        params: merged,
        map_index,
        base_dir,
        secrets_file: super::secrets_file(cli)?,
        default_connections: super::default_connections(),
    })
}

fn render(
    cli: &Cli,
    dag_id: &str,
    task_id: &str,
    date: Option<&str>,
    params: &[String],
    map_index: i32,
) -> anyhow::Result<ExitCode> {
    let dag = super::dags::dag_from_folder(cli, dag_id)?;
    let run = local_run(cli, &dag, task_id, date, params, map_index)?;
    let (log, _lines) = LogSink::collecting();
    let ctx = run
        .context(log, CancellationToken::new())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let step = serde_json::to_value(&run.task.step)?;
    let mut fields = Vec::new();
    collect_fields("", &step, &mut fields);
    let mut rendered = serde_json::Map::new();
    let mut failed = false;
    for (field, source) in &fields {
        let value = match ctx.render(field, source) {
            // connection passwords and secret-named variables show as `***`, as on the web
            Ok(text) => ctx.log.mask(&text),
            Err(error) => {
                failed = true;
                format!("<error: {error}>")
            }
        };
        rendered.insert(field.clone(), Value::String(value));
    }
    if cli.output == Output::Json {
        output::print_json(&serde_json::json!({
            "dag_id": dag.id,
            "task_id": task_id,
            "type": run.task.step.type_name(),
            "logical_date": run.logical_date,
            "fields": rendered,
        }))?;
    } else {
        out!(
            "{}.{} ({}) for logical date {}",
            dag.id,
            task_id,
            run.task.step.type_name(),
            output::time(Some(run.logical_date), dag.timezone)
        );
        for (field, value) in &rendered {
            let text = value.as_str().unwrap_or_default();
            if text.contains('\n') {
                out!("--- {field}\n{}", text.trim_end());
            } else {
                out!("{field}: {text}");
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Every string in the step's fields, with its dotted path (`env.TOKEN`, `headers.Accept`).
fn collect_fields(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
    let path = |key: &str| {
        if prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{prefix}.{key}")
        }
    };
    match value {
        Value::String(text) if prefix != "type" => out.push((prefix.to_owned(), text.clone())),
        Value::Object(map) => {
            for (key, value) in map {
                collect_fields(&path(key), value, out);
            }
        }
        Value::Array(items) => {
            for (i, value) in items.iter().enumerate() {
                collect_fields(&path(&i.to_string()), value, out);
            }
        }
        _ => {}
    }
}

async fn test(
    cli: &Cli,
    dag_id: &str,
    task_id: &str,
    date: Option<&str>,
    params: &[String],
    map_index: i32,
) -> anyhow::Result<ExitCode> {
    let dag = super::dags::dag_from_folder(cli, dag_id)?;
    let run = local_run(cli, &dag, task_id, date, params, map_index)?;
    eprintln!(
        "testing {}.{} ({}) for logical date {} (no database; upstream outputs are empty)",
        dag.id,
        task_id,
        run.task.step.type_name(),
        output::time(Some(run.logical_date), dag.timezone)
    );
    let (log, mut lines) = LogSink::collecting();
    let printer = tokio::spawn(async move {
        while let Some(line) = lines.recv().await {
            out!("{line}");
        }
    });
    let cancel = CancellationToken::new();
    let result = tokio::select! {
        result = run.run(log, cancel.clone()) => Some(result),
        _ = tokio::signal::ctrl_c() => {
            cancel.cancel();
            None
        }
    };
    // every sink is dropped with the step: the printer ends after the last line
    drop(run);
    let _ = printer.await;
    match result {
        Some(Ok(output)) => {
            for (key, value) in &output.outputs {
                eprintln!("output {key} = {value}");
            }
            eprintln!("{task_id} succeeded");
            Ok(ExitCode::SUCCESS)
        }
        Some(Err(error)) => {
            eprintln!("{task_id} failed: {error}");
            Ok(ExitCode::FAILURE)
        }
        None => {
            eprintln!("{task_id} stopped (Ctrl-C)");
            Ok(ExitCode::from(3))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAG: &str = "tasks:\n  extract_a:\n    type: noop\n  extract_b:\n    type: noop\n  load:\n    type: noop\n    depends_on: [extract_a]\n  report:\n    type: noop\n    depends_on: [load]\n";

    #[test]
    fn tasks_regex_picks_matching_tasks_and_optionally_their_downstream() {
        let dag = sluice_core::parse_dag("pick.yaml", DAG).unwrap();
        assert_eq!(
            select(&dag, "^extract", false).unwrap().task_ids,
            ["extract_a", "extract_b"]
        );
        assert_eq!(
            select(&dag, "_a$", true).unwrap().task_ids,
            ["extract_a", "load", "report"]
        );
        let bad = select(&dag, "(", false).unwrap_err().to_string();
        assert_eq!(bad, "--tasks: `(` is not a valid regex: unclosed group");
        let none = select(&dag, "zzz", false).unwrap_err().to_string();
        assert!(none.contains("matches no task of DAG `pick`"), "{none}");
    }
}
