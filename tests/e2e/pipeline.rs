//! The example data pipeline the repository ships (`dags/sales_pipeline.yaml` with the order
//! files in `dags/data/orders/`) runs on `standalone` as the quick start runs it: ingest →
//! batch → load into the built-in `local` connection → sensor → report.

use std::path::Path;

use crate::support::{TestApp, text};

/// Copies a folder tree (the repository's `dags/`) into `to`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("creating a folder");
    for entry in std::fs::read_dir(from).expect("reading the repository's dags/") {
        let entry = entry.expect("a folder entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("a file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copying a file");
        }
    }
}

#[test]
fn the_shipped_sales_pipeline_runs_end_to_end_on_standalone() {
    let repository_dags = Path::new(env!("CARGO_MANIFEST_DIR")).join("dags");
    let app = TestApp::spawn_with(
        |dir| copy_tree(&repository_dags, &dir.join("dags")),
        &[],
        None,
    );
    let output = app.trigger_when_loaded(&["dags", "trigger", "sales_pipeline", "--wait"]);
    let printed = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert_eq!(
        output.status.code(),
        Some(0),
        "the pipeline did not succeed:\n{printed}\nstandalone said:\n{}",
        app.stderr()
    );
    for task in [
        "ingest_orders",
        "aggregate",
        "load_sales",
        "wait_for_sales",
        "report",
        "announce",
    ] {
        assert!(
            printed
                .lines()
                .any(|line| line.contains(task) && line.contains("success")),
            "{task} did not succeed:\n{printed}"
        );
    }
    let run_id = printed
        .split_whitespace()
        .find(|word| word.starts_with("manual__"))
        .expect("the run id in the trigger's output")
        .to_owned();
    let announce = app.cli(&["logs", &run_id, "announce"]);
    let log = text(&announce.stdout);
    // the shipped files hold 50 orders from 4 regions; the figure went through every step
    assert!(
        log.contains(": 50 orders in 4 regions, revenue "),
        "announce log:\n{log}"
    );
    assert!(
        app.dir.path().join(".sluice/local.db").is_file(),
        "the built-in `local` connection's SQLite file was not created"
    );
    let load = text(&app.cli(&["logs", &run_id, "load_sales"]).stdout);
    assert!(
        load.contains("loaded 4 rows into table daily_sales"),
        "load log:\n{load}"
    );
}
