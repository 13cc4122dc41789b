//! `type: load`: a CSV, JSONL or Parquet file into a table on a named connection (PostgreSQL
//! through `COPY`, SQLite through batched INSERTs), in one transaction. The work is
//! `sluice_data::load`; this module resolves the connection, logs, and names the outputs.

use serde_json::Value;
use sluice_core::spec::{LoadMode, LoadStep};
use sluice_data::load::{self, Destination, LoadJob, Mode, TableName};

use super::{StepContext, StepError, StepOutput};

pub async fn run(step: &LoadStep, ctx: &StepContext) -> Result<StepOutput, StepError> {
    let from = ctx.render("from", &step.from)?;
    ctx.record_rendered().await;
    let path = ctx.base_dir.join(&from);
    let table = TableName::parse(&step.table).map_err(error)?;
    let destination = destination(ctx, &step.connection)?;
    let mode = match step.mode {
        LoadMode::Append => Mode::Append,
        LoadMode::Replace => Mode::Replace,
        LoadMode::Upsert => Mode::Upsert {
            key: step.key.clone(),
        },
    };
    ctx.log.line(format!(
        "loading {from} into table {table} on connection {} ({}), mode {mode}",
        step.connection,
        destination.describe()
    ));
    let job = LoadJob {
        destination: &destination,
        table: &table,
        mode: &mode,
        file: &from,
        cancel: &ctx.cancel,
    };
    let report = load::load_file(&job, &path, step.format)
        .await
        .map_err(error)?;
    let seconds = report.elapsed.as_secs_f64();
    ctx.log.line(format!(
        "{}loaded {} rows into table {table} (mode {mode}) in {seconds:.2} s ({:.0} rows/s)",
        if report.created {
            format!("created table {table} from the file's schema; ")
        } else {
            String::new()
        },
        report.rows,
        report.rows as f64 / seconds.max(1e-9),
    ));
    let mut output = StepOutput::default();
    output
        .outputs
        .insert("rows".to_owned(), Value::from(report.rows));
    output
        .outputs
        .insert("table".to_owned(), Value::from(table.to_string()));
    Ok(output)
}

/// The connection named `name` (`SLUICE_CONN_<NAME>`, the secrets file, or a built-in one).
fn destination(ctx: &StepContext, name: &str) -> Result<Destination, StepError> {
    let url = ctx
        .connections
        .url(name)
        .map_err(|e| StepError::new(e.to_string()))?;
    Destination::parse(name, url, &ctx.base_dir).map_err(error)
}

fn error(error: load::LoadError) -> StepError {
    StepError::new(error.to_string())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use serde_json::json;
    use sluice_core::spec::FileFormat;
    use sluice_core::template::Connection;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::connections::Connections;
    use crate::logs::LogSink;
    use crate::rendered::RenderedFields;

    /// A context whose only connection is `warehouse` = `url`, as `SLUICE_CONN_WAREHOUSE`
    /// would give, and the log lines it collects.
    fn context(
        base_dir: &Path,
        url: &str,
    ) -> (StepContext, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let connection = Connection::parse_url(url).unwrap();
        let secrets = connection.password.clone().into_iter().collect();
        let (log, lines) = LogSink::collecting();
        let ctx = StepContext {
            template_context: json!({ "ds": "2026-11-25", "conn": { "warehouse": connection } }),
            log,
            cancel: CancellationToken::new(),
            env: BTreeMap::new(),
            base_dir: base_dir.to_path_buf(),
            dag_folder: base_dir.to_path_buf(),
            rendered: RenderedFields::new(secrets),
            connections: Connections::load(
                &BTreeMap::from([("SLUICE_CONN_WAREHOUSE".to_owned(), url.to_owned())]),
                None,
            )
            .expect("no secrets file to read"),
        };
        (ctx, lines)
    }

    fn step(from: &str, connection: &str, mode: LoadMode, key: &[&str]) -> LoadStep {
        LoadStep {
            from: from.to_owned(),
            connection: connection.to_owned(),
            table: "daily_sales".to_owned(),
            mode,
            key: key.iter().map(|k| (*k).to_owned()).collect(),
            format: None,
        }
    }

    fn drain(lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> Vec<String> {
        let mut collected = Vec::new();
        while let Ok(line) = lines.try_recv() {
            collected.push(line);
        }
        collected
    }

    #[tokio::test]
    async fn loads_a_csv_into_sqlite_and_outputs_rows_and_table() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        std::fs::write(
            dir.path().join("data/sales_2026-11-25.csv"),
            "region,orders,revenue\nkr,3,120.5\njp,5,310.0\n",
        )
        .unwrap();
        let (ctx, mut lines) = context(dir.path(), "sqlite:warehouse.db");
        let config = step(
            "data/sales_{{ ds }}.csv",
            "warehouse",
            LoadMode::Upsert,
            &["region"],
        );
        let output = run(&config, &ctx).await.unwrap();
        assert_eq!(output.outputs["rows"], json!(2));
        assert_eq!(output.outputs["table"], json!("daily_sales"));
        let log = drain(&mut lines);
        assert_eq!(
            log[0],
            format!(
                "loading data/sales_2026-11-25.csv into table daily_sales on connection warehouse (SQLite file {}), mode upsert on (region)",
                dir.path().join("warehouse.db").display()
            )
        );
        assert!(
            log[1].starts_with("created table daily_sales from the file's schema; loaded 2 rows into table daily_sales (mode upsert on (region)) in "),
            "{log:?}"
        );
        assert!(log[1].ends_with(" rows/s)"), "{log:?}");
        // again: the same rows, updated in place
        run(&config, &ctx).await.unwrap();
        assert!(drain(&mut lines)[1].starts_with("loaded 2 rows"));
    }

    #[tokio::test]
    async fn a_missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, _lines) = context(dir.path(), "sqlite:warehouse.db");
        let error = run(
            &step("data/none.csv", "warehouse", LoadMode::Append, &[]),
            &ctx,
        )
        .await
        .unwrap_err();
        assert_eq!(
            error.message,
            format!(
                "`from`: file `data/none.csv` not found (looked for {})",
                dir.path().join("data/none.csv").display()
            )
        );
        assert!(!dir.path().join("warehouse.db").exists());
    }

    #[tokio::test]
    async fn an_unknown_connection_says_which_variable_to_set() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("in.csv"), "a\n1\n").unwrap();
        let (ctx, _lines) = context(dir.path(), "sqlite:warehouse.db");
        let error = run(&step("in.csv", "crm", LoadMode::Append, &[]), &ctx)
            .await
            .unwrap_err();
        assert_eq!(
            error.message,
            "unknown connection `crm` (in `connection:`): set SLUICE_CONN_CRM=URL in the worker's environment, or add `crm = \"URL\"` under [connections] in the secrets file"
        );
    }

    #[tokio::test]
    async fn a_refused_connection_never_shows_the_password_in_the_error_or_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = step("in.jsonl", "warehouse", LoadMode::Replace, &[]);
        config.format = Some(FileFormat::Jsonl);
        std::fs::write(dir.path().join("in.jsonl"), "{\"a\": 1}\n").unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let (ctx, mut lines) = context(
            dir.path(),
            &format!("postgres://loader:hunter2secret@127.0.0.1:{port}/dw"),
        );
        let error = run(&config, &ctx).await.unwrap_err();
        assert!(
            error.message.starts_with(&format!(
                "`connection: warehouse`: cannot connect to PostgreSQL at 127.0.0.1:{port}/dw: "
            )),
            "{}",
            error.message
        );
        let log = drain(&mut lines);
        assert_eq!(
            log,
            [format!(
                "loading in.jsonl into table daily_sales on connection warehouse (PostgreSQL at 127.0.0.1:{port}/dw), mode replace"
            )]
        );
        for text in log.iter().chain([&error.message]) {
            assert!(!text.contains("hunter2"), "{text}");
        }
        assert!(!format!("{:?}", ctx.rendered.masked()).contains("hunter2"));
    }
}
