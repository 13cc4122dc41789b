//! The `batch` benchmark (BENCHMARKS.md): a GROUP BY over generated CSV rows written to
//! Parquet, by sluice's batch code path (`sluice_data::batch::run_batch`, all cores) and by
//! PySpark in `local[2]` mode running the same SQL on the same file.
//!
//! ```text
//! cargo bench -p sluice-data --bench batch
//! SLUICE_BENCH_ROWS=1000000 SLUICE_BENCH_RUNS=1 cargo bench -p sluice-data --bench batch
//! ```
//!
//! Each run is its own process (this binary re-run with `--sluice-once`, or `spark-submit`),
//! timed from start to exit, with its peak memory: the summed RSS of the process and all its
//! children, sampled every 20 ms (for sluice also the kernel's high-water mark, VmHWM).
//! Spark is found at `$SLUICE_BENCH_SPARK_SUBMIT` or /root/.cache/sluice-pyspark/bin/spark-submit
//! and skipped (said so) when absent.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_data::batch::{BatchJob, LogFn, run_batch};
use tokio_util::sync::CancellationToken;

const SQL: &str = "SELECT region, day, COUNT(*) AS orders, SUM(amount) AS revenue, \
                   AVG(amount) AS avg_amount, MAX(amount) AS max_amount \
                   FROM sales GROUP BY region, day";
const SPARK_SCHEMA: &str = "id BIGINT, customer BIGINT, region STRING, day DATE, amount DOUBLE";
const REGIONS: [&str; 8] = [
    "north",
    "south",
    "east",
    "west",
    "centre",
    "islands",
    "coast",
    "mountains",
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--sluice-once") {
        let csv = PathBuf::from(&args[at + 1]);
        let output = PathBuf::from(&args[at + 2]);
        sluice_once(&csv, &output);
        return;
    }
    let rows: u64 = env_number("SLUICE_BENCH_ROWS", 10_000_000);
    let runs: usize = env_number("SLUICE_BENCH_RUNS", 3);
    let dir = tempfile::tempdir().expect("a temp dir");
    let csv = dir.path().join("sales.csv");
    let started = Instant::now();
    generate(&csv, rows);
    let size = std::fs::metadata(&csv).expect("the csv").len();
    println!(
        "generated {rows} rows ({:.0} MB) in {:.1?}; {} cores; SQL: {SQL}",
        size as f64 / 1e6,
        started.elapsed(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average before: {}", load.trim());

    let me = std::env::current_exe().expect("this binary");
    let mut sluice = Vec::new();
    for run in 0..runs {
        let output = dir.path().join(format!("sluice-{run}.parquet"));
        let mut command = Command::new(&me);
        command.arg("--sluice-once").arg(&csv).arg(&output);
        let measured = measure(command);
        println!("sluice  run {}: {measured}", run + 1);
        sluice.push(measured);
    }

    let spark_submit = std::env::var("SLUICE_BENCH_SPARK_SUBMIT")
        .unwrap_or_else(|_| "/root/.cache/sluice-pyspark/bin/spark-submit".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/batch_spark.py");
    let mut spark = Vec::new();
    if Path::new(&spark_submit).exists() {
        for run in 0..runs {
            let output = dir.path().join(format!("spark-{run}"));
            let mut command = Command::new(&spark_submit);
            command
                .env("SPARK_LOCAL_IP", "127.0.0.1")
                .env("PYSPARK_PYTHON", python_beside(&spark_submit))
                .arg("--master")
                .arg("local[2]")
                .arg(&script)
                .arg(&csv)
                .arg(&output)
                .arg(SQL)
                .arg(SPARK_SCHEMA);
            let measured = measure(command);
            println!("pyspark run {}: {measured}", run + 1);
            spark.push(measured);
        }
    } else {
        println!("skipped: PySpark ({spark_submit} not found)");
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average after: {}", load.trim());

    let s = Summary::of(&sluice);
    println!(
        "sluice  median: wall {:.2} s, query {:.2} s, peak RSS {} MB",
        s.wall, s.query, s.peak_mb
    );
    if !spark.is_empty() {
        let p = Summary::of(&spark);
        println!(
            "pyspark median: wall {:.2} s, query {:.2} s, peak RSS {} MB",
            p.wall, p.query, p.peak_mb
        );
        println!(
            "sluice is {:.1}x faster end to end, {:.1}x on the query alone (target 5x)",
            p.wall / s.wall,
            p.query / s.query
        );
    }
}

/// One batch run in this process, as the worker's step runs it.
fn sluice_once(csv: &Path, output: &Path) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let job = BatchJob {
        inputs: BTreeMap::from([("sales".to_string(), csv.to_path_buf())]),
        sql: vec![SQL.to_string()],
        output: output.to_path_buf(),
        format: None,
        partition_by: Vec::new(),
        threads: None,
    };
    let log: LogFn = Arc::new(|_| {});
    let started = Instant::now();
    let summary = runtime
        .block_on(run_batch(job, log, CancellationToken::new()))
        .expect("the batch runs");
    let elapsed = started.elapsed().as_secs_f64();
    let hwm = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:").map(|v| v.trim().to_string()))
        .unwrap_or_default();
    println!("query_seconds={elapsed:.3} rows={} hwm={hwm}", summary.rows);
}

/// Writes `rows` rows of fake sales: id, customer, region, day (a 2026 date), amount.
fn generate(path: &Path, rows: u64) {
    let file = std::fs::File::create(path).expect("create the csv");
    let mut out = BufWriter::with_capacity(1 << 20, file);
    writeln!(out, "id,customer,region,day,amount").expect("write");
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        // xorshift64*: fast, deterministic
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    for id in 0..rows {
        let r = next();
        let customer = r % 100_000;
        let region = REGIONS[((r >> 20) % 8) as usize];
        let day_of_year = (r >> 24) % 365;
        let (month, day) = month_day(day_of_year as u32);
        let cents = (next() % 100_000) as f64 / 100.0;
        writeln!(
            out,
            "{id},{customer},{region},2026-{month:02}-{day:02},{cents:.2}"
        )
        .expect("write");
    }
    out.flush().expect("flush");
}

fn month_day(mut day_of_year: u32) -> (u32, u32) {
    const DAYS: [u32; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    for (month, days) in DAYS.iter().enumerate() {
        if day_of_year < *days {
            return (month as u32 + 1, day_of_year + 1);
        }
        day_of_year -= days;
    }
    (12, 31)
}

struct Measured {
    wall: f64,
    query: f64,
    peak_kib: u64,
    line: String,
}

impl std::fmt::Display for Measured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "wall {:.2} s, peak RSS {} MB ({})",
            self.wall,
            self.peak_kib / 1024,
            self.line
        )
    }
}

struct Summary {
    wall: f64,
    query: f64,
    peak_mb: u64,
}

impl Summary {
    fn of(runs: &[Measured]) -> Summary {
        let median = |mut values: Vec<f64>| {
            values.sort_by(|a, b| a.total_cmp(b));
            values[values.len() / 2]
        };
        let mut peaks: Vec<u64> = runs.iter().map(|r| r.peak_kib).collect();
        peaks.sort();
        Summary {
            wall: median(runs.iter().map(|r| r.wall).collect()),
            query: median(runs.iter().map(|r| r.query).collect()),
            peak_mb: peaks[peaks.len() / 2] / 1024,
        }
    }
}

/// Runs `command` to its end: wall time, the `query_seconds=` line it prints, and the peak
/// of the summed RSS of it and its descendants.
fn measure(mut command: Command) -> Measured {
    command.stdout(Stdio::piped()).stderr(Stdio::null());
    let started = Instant::now();
    let mut child = command.spawn().expect("start the run");
    let stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.starts_with("query_seconds="))
            .unwrap_or_default()
    });
    let root = child.id();
    let mut peak = 0;
    loop {
        peak = peak.max(tree_rss_kib(root));
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "the run failed: {status}");
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let wall = started.elapsed().as_secs_f64();
    let line = reader.join().expect("the reader");
    let query = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("query_seconds="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    if let Some(hwm) = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("hwm="))
        .and_then(|v| v.parse::<u64>().ok())
    {
        peak = peak.max(hwm);
    }
    Measured {
        wall,
        query,
        peak_kib: peak,
        line,
    }
}

/// The summed VmRSS (KiB) of `root` and all its descendants.
fn tree_rss_kib(root: u32) -> u64 {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // the fields after the command's closing parenthesis: state, ppid, …
            let Some(after) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
                continue;
            };
            if let Some(ppid) = after.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
                parents.push((pid, ppid));
            }
        }
    }
    let mut tree = vec![root];
    let mut index = 0;
    while index < tree.len() {
        let parent = tree[index];
        tree.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(c, _)| *c),
        );
        index += 1;
    }
    tree.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|status| {
            status.lines().find_map(|l| {
                l.strip_prefix("VmRSS:")
                    .and_then(|v| v.split_whitespace().next())
                    .and_then(|v| v.parse::<u64>().ok())
            })
        })
        .sum()
}

fn python_beside(spark_submit: &str) -> String {
    let python = Path::new(spark_submit).with_file_name("python3");
    if python.exists() {
        python.display().to_string()
    } else {
        "python3".into()
    }
}

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
