//! `sluice dags …`: validate, list, next-runs, trigger.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use clap::{Subcommand, ValueEnum};
use sluice_core::{Dag, RunState, Timetable, parse_dag};
use sluice_scheduler::{load_paths, parse_param_overrides, trigger};
use sluice_store::{Paused, Store, StoreError};

use super::{UsageError, open_store};
use crate::Cli;

#[derive(Debug, Subcommand)]
pub enum DagsCommand {
    /// Check DAG files as CI would: exit 0 when all are valid, 1 otherwise.
    ///
    /// Every problem is printed as `file:line:col: message`.
    /// Example: sluice dags validate dags/ --format json
    Validate {
        /// Files or folders to check; the DAG folder when none are given.
        paths: Vec<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// List the DAGs in the DAG folder with their schedule and state.
    ///
    /// Example: sluice dags list
    List,
    /// Print a DAG's next scheduled runs in its timezone.
    ///
    /// Example: sluice dags next-runs daily_sales -n 5
    NextRuns {
        dag_id: String,
        #[arg(short = 'n', long, default_value_t = 5)]
        count: usize,
    },
    /// Start a manual run of a DAG now.
    ///
    /// Example: sluice dags trigger daily_sales --param region=eu --wait
    Trigger {
        dag_id: String,
        /// Override a param declared by the DAG: key=value (repeatable).
        #[arg(long = "param", value_name = "KEY=VALUE")]
        params: Vec<String>,
        /// Wait for the run to end; the exit code is then 0 for success, 1 for failed, 3 for cancelled.
        #[arg(long)]
        wait: bool,
    },
    /// Stop scheduling new runs of a DAG (running runs go on; triggered runs wait, queued).
    ///
    /// Example: sluice dags pause daily_sales
    Pause { dag_id: String },
    /// Resume scheduling a paused DAG (catch-up, if enabled, fills the gap).
    ///
    /// Example: sluice dags unpause daily_sales
    Unpause { dag_id: String },
    /// Print a DAG's graph as text: tasks in topological layers with their upstream tasks,
    /// trigger rules and types.
    ///
    /// Example: sluice dags show daily_sales
    Show { dag_id: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

pub async fn run(cli: &Cli, command: &DagsCommand) -> anyhow::Result<ExitCode> {
    match command {
        DagsCommand::Validate { paths, format } => validate(cli, paths, *format),
        DagsCommand::List => list(cli).await,
        DagsCommand::NextRuns { dag_id, count } => next_runs(cli, dag_id, *count),
        DagsCommand::Trigger {
            dag_id,
            params,
            wait,
        } => trigger_dag(cli, dag_id, params, *wait).await,
        DagsCommand::Pause { dag_id } => set_paused(cli, dag_id, Paused::Paused).await,
        DagsCommand::Unpause { dag_id } => set_paused(cli, dag_id, Paused::Active).await,
        DagsCommand::Show { dag_id } => super::graph::show(cli, dag_id),
    }
}

fn validate(cli: &Cli, paths: &[PathBuf], format: Format) -> anyhow::Result<ExitCode> {
    let paths = if paths.is_empty() {
        vec![cli.dags_folder.clone()]
    } else {
        paths.to_vec()
    };
    let loaded = load_paths(&paths);
    let problems: Vec<&String> = loaded.errors.iter().flat_map(|e| &e.errors).collect();
    match format {
        Format::Text => {
            for problem in &problems {
                out!("{problem}");
            }
            for warning in callback_warnings(&loaded) {
                eprintln!("warning: {warning}");
            }
            let files = loaded.dags.len() + loaded.errors.len();
            if problems.is_empty() {
                eprintln!("{} DAG file(s) valid", loaded.dags.len());
            } else {
                eprintln!(
                    "{} problem(s) in {} of {files} file(s)",
                    problems.len(),
                    loaded.errors.len()
                );
            }
        }
        Format::Json => {
            let errors: Vec<serde_json::Value> = loaded
                .errors
                .iter()
                .flat_map(|e| e.errors.iter().map(|p| problem_json(&e.fileloc, p)))
                .collect();
            let report = serde_json::json!({
                "valid": problems.is_empty(),
                "dags": loaded.dags.keys().collect::<Vec<_>>(),
                "errors": errors,
                "warnings": callback_warnings(&loaded),
            });
            out!("{}", serde_json::to_string_pretty(&report)?);
        }
    }
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `on_failure` / `on_success` webhooks are part of the file format and checked, but no process
/// calls them yet: say so rather than let a user believe alerts are wired.
fn callback_warnings(loaded: &sluice_scheduler::Loaded) -> Vec<String> {
    loaded
        .dags
        .values()
        .filter(|l| !l.dag.on_failure.is_empty() || !l.dag.on_success.is_empty())
        .map(|l| {
            format!(
                "{}: `on_failure`/`on_success` webhooks are valid but not called by this version of sluice",
                l.dag.fileloc
            )
        })
        .collect()
}

/// `file:line:col: message` as a JSON object, for CI annotations. The file is known (the
/// import error's own), so a message or a file name holding colons cannot confuse the split.
fn problem_json(fileloc: &str, problem: &str) -> serde_json::Value {
    let located = problem
        .strip_prefix(fileloc)
        .and_then(|rest| rest.strip_prefix(':'))
        .and_then(|rest| {
            let mut parts = rest.splitn(3, ':');
            let line = parts.next()?.parse::<usize>().ok()?;
            let col = parts.next()?.parse::<usize>().ok()?;
            let message = parts.next()?;
            let message = message.strip_prefix(' ').unwrap_or(message);
            Some((line, col, message))
        });
    match located {
        Some((line, col, message)) => {
            serde_json::json!({ "file": fileloc, "line": line, "col": col, "message": message })
        }
        None => {
            serde_json::json!({ "file": fileloc, "line": null, "col": null, "message": problem })
        }
    }
}

async fn list(cli: &Cli) -> anyhow::Result<ExitCode> {
    let loaded = load_paths(std::slice::from_ref(&cli.dags_folder));
    let store = open_store(&cli.database_url).await?;
    let records = store.list_dags().await?;
    out!(
        "{:<28} {:<16} {:<18} {:<7} {:>5}  FILE",
        "DAG",
        "SCHEDULE",
        "TIMEZONE",
        "PAUSED",
        "TASKS"
    );
    for (id, loaded_dag) in &loaded.dags {
        let dag = &loaded_dag.dag;
        let paused = records
            .iter()
            .find(|r| &r.dag_id == id)
            .is_some_and(|r| r.is_paused);
        out!(
            "{:<28} {:<16} {:<18} {:<7} {:>5}  {}",
            id,
            dag.schedule.as_ref().map_or("manual", |s| s.expression()),
            dag.timezone.name(),
            if paused { "yes" } else { "no" },
            dag.tasks.len(),
            dag.fileloc
        );
    }
    for error in &loaded.errors {
        for line in &error.errors {
            eprintln!("not loaded: {line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn next_runs(cli: &Cli, dag_id: &str, count: usize) -> anyhow::Result<ExitCode> {
    let dag = dag_from_folder(cli, dag_id)?;
    let Some(schedule) = &dag.schedule else {
        out!("DAG `{dag_id}` has no schedule: it runs only when triggered");
        return Ok(ExitCode::SUCCESS);
    };
    let timetable = Timetable {
        schedule,
        timezone: dag.timezone,
        start_date: dag.start_date,
        end_date: dag.end_date,
    };
    let tz = dag.timezone;
    out!("{} ({}, {})", dag.id, schedule.expression(), tz.name());
    out!("{:<27} {:<27}", "RUNS AT", "LOGICAL DATE (ds)");
    for interval in timetable.upcoming(Utc::now(), count) {
        out!(
            "{:<27} {:<27}",
            interval
                .end
                .with_timezone(&tz)
                .format("%Y-%m-%d %H:%M:%S %Z"),
            interval
                .start
                .with_timezone(&tz)
                .format("%Y-%m-%d %H:%M:%S %Z"),
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn dag_from_folder(cli: &Cli, dag_id: &str) -> anyhow::Result<Dag> {
    let loaded = load_paths(std::slice::from_ref(&cli.dags_folder));
    if let Some(found) = loaded.dags.get(dag_id) {
        return Ok((*found.dag).clone());
    }
    // a broken file is matched by its name: its `dag:` line may be what is broken
    let broken = loaded.errors.iter().find(|e| {
        std::path::Path::new(&e.fileloc)
            .file_stem()
            .is_some_and(|stem| stem == dag_id)
    });
    Err(UsageError(match broken {
        Some(error) => format!(
            "DAG `{dag_id}` did not load ({} problem(s); `sluice dags validate` lists them all): {}",
            error.errors.len(),
            error.errors.first().map_or("", String::as_str)
        ),
        None => format!("no DAG `{dag_id}` in {}", cli.dags_folder.display()),
    })
    .into())
}

/// The DAG as the database knows it: the version the scheduler loaded.
pub(crate) async fn dag_from_store(
    store: &dyn Store,
    cli: &Cli,
    dag_id: &str,
) -> anyhow::Result<Dag> {
    let Some(record) = store.get_dag(dag_id).await? else {
        // a file that does not load is the likelier story: say what is wrong with it
        return Err(dag_from_folder(cli, dag_id)
            .err()
            .filter(|e| e.to_string().contains("did not load"))
            .unwrap_or_else(|| not_in_database(cli, dag_id)));
    };
    if !record.is_active {
        return Err(UsageError(format!(
            "DAG `{dag_id}` is no longer in the DAG folder (its file {} is gone)",
            record.fileloc
        ))
        .into());
    }
    let version = store.dag_version(&record.hash).await?.with_context(|| {
        format!(
            "version {} of DAG `{dag_id}` is missing from the database",
            record.hash
        )
    })?;
    parse_dag(&version.fileloc, &version.source).map_err(|errors| {
        anyhow::anyhow!(
            "the stored DAG `{dag_id}` does not parse: {}",
            errors.first().map(ToString::to_string).unwrap_or_default()
        )
    })
}

async fn trigger_dag(
    cli: &Cli,
    dag_id: &str,
    params: &[String],
    wait: bool,
) -> anyhow::Result<ExitCode> {
    let store = open_store(&cli.database_url).await?;
    let dag = dag_from_store(store.as_ref(), cli, dag_id).await?;
    let overrides = parse_param_overrides(&dag, params).map_err(|e| UsageError(e.to_string()))?;
    let who = std::env::var("USER")
        .map(|u| format!("cli:{u}"))
        .unwrap_or_else(|_| "cli".to_owned());
    let run = trigger(store.as_ref(), &dag, overrides, &who, Utc::now()).await?;
    out!(
        "triggered {} run {} ({})",
        run.dag_id,
        run.run_id,
        run.state
    );
    if !wait {
        return Ok(ExitCode::SUCCESS);
    }
    let run = loop {
        let current = store
            .get_run_by_pk(run.pk)
            .await?
            .context("the run disappeared while waiting")?;
        if current.state.is_terminal() {
            break current;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for ti in store.task_instances(run.pk).await? {
        let task = if ti.map_index >= 0 {
            format!("{}[{}]", ti.task_id, ti.map_index)
        } else {
            ti.task_id.clone()
        };
        out!(
            "  {task:<32} {:<16} tries {}",
            ti.state.as_str(),
            ti.try_number
        );
    }
    out!("run {} {}", run.run_id, run.state);
    Ok(match run.state {
        RunState::Success => ExitCode::SUCCESS,
        RunState::Cancelled => ExitCode::from(3),
        _ => ExitCode::FAILURE,
    })
}

async fn set_paused(cli: &Cli, dag_id: &str, paused: Paused) -> anyhow::Result<ExitCode> {
    let store = open_store(&cli.database_url).await?;
    match store.set_paused(dag_id, paused).await {
        Ok(()) => {}
        Err(StoreError::NotFound { .. }) => {
            return Err(not_in_database(cli, dag_id));
        }
        Err(error) => return Err(error.into()),
    }
    let word = match paused {
        Paused::Paused => "paused",
        Paused::Active => "unpaused",
    };
    out!("DAG {dag_id} {word}");
    Ok(ExitCode::SUCCESS)
}

fn not_in_database(cli: &Cli, dag_id: &str) -> anyhow::Error {
    UsageError(format!(
        "DAG `{dag_id}` is not in the database {}: is a scheduler (`sluice standalone`) running on DAG folder {}?",
        sluice_store::redact_url(&cli.database_url),
        cli.dags_folder.display()
    ))
    .into()
}
