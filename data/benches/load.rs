//! `load` throughput: 1,000,000 generated CSV rows (id, region, amount, ordered_at, note)
//! into a fresh PostgreSQL database (`SLUICE_TEST_DATABASE_URL`), three times, each into a new
//! table created from the file's schema; prints each run's rows/s and the median.
//!
//! `SLUICE_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench -p sluice-data --bench load`

use std::io::Write as _;
use std::time::Instant;

use sluice_data::FileFormat;
use sluice_data::load::{Destination, LoadJob, Mode, TableName, load_file};
use tokio_util::sync::CancellationToken;

const ROWS: u64 = 1_000_000;

#[tokio::main]
async fn main() {
    let Some(database) = sluice_store::testing::fresh_postgres_url().await else {
        eprintln!("SLUICE_TEST_DATABASE_URL is not set or PostgreSQL is unreachable");
        std::process::exit(2);
    };
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("orders.csv");
    let generated = Instant::now();
    write_csv(&path);
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "generated {ROWS} rows ({:.1} MB of CSV) in {:.2} s",
        bytes as f64 / 1e6,
        generated.elapsed().as_secs_f64()
    );
    let destination = Destination::parse("bench", database.url(), dir.path())
        .expect("the test database URL is a PostgreSQL URL");
    let mut rates = Vec::new();
    for run in 1..=3 {
        let table = TableName::parse(&format!("orders_{run}")).expect("a valid name");
        let cancel = CancellationToken::new();
        let job = LoadJob {
            destination: &destination,
            table: &table,
            mode: &Mode::Append,
            file: "orders.csv",
            cancel: &cancel,
        };
        let report = load_file(&job, &path, Some(FileFormat::Csv))
            .await
            .unwrap_or_else(|error| panic!("load failed: {error}"));
        assert_eq!(report.rows, ROWS);
        let seconds = report.elapsed.as_secs_f64();
        let rate = report.rows as f64 / seconds;
        println!(
            "run {run}: {} rows in {seconds:.2} s = {rate:.0} rows/s",
            report.rows
        );
        rates.push(rate);
    }
    rates.sort_by(f64::total_cmp);
    println!("median: {:.0} rows/s (target > 300000)", rates[1]);
}

fn write_csv(path: &std::path::Path) {
    const REGIONS: [&str; 5] = ["kr", "jp", "us", "de", "fr"];
    let file = std::fs::File::create(path).expect("creating the CSV file");
    let mut out = std::io::BufWriter::new(file);
    writeln!(out, "id,region,amount,ordered_at,note").expect("writing the CSV file");
    for id in 0..ROWS {
        let seconds = id % 86_400;
        writeln!(
            out,
            "{id},{},{}.{:02},2026-11-{:02}T{:02}:{:02}:{:02},order number {id}",
            REGIONS[(id % 5) as usize],
            id % 1000,
            id % 100,
            1 + id % 28,
            seconds / 3600,
            seconds / 60 % 60,
            seconds % 60,
        )
        .expect("writing the CSV file");
    }
    out.flush().expect("writing the CSV file");
}
