//! Parse and validate 1,000 DAG files of 20 tasks each (target: under 0.5 s).
//!
//! `cargo bench -p sluice-core --bench parse`; figures go to BENCHMARKS.md.

use std::time::{Duration, Instant};

fn dag_source(index: usize) -> String {
    let mut yaml = format!(
        "dag: bench_{index}\ndescription: generated DAG {index}\nschedule: \"{} 2 * * *\"\ntimezone: Europe/Berlin\n\
         start_date: 2026-01-01\ncatchup: false\nmax_active_runs: 2\ntags: [bench, generated]\n\
         params:\n  region: eu\n  limit: 100\ndefaults:\n  retries: 2\n  retry_delay: 30s\n  retry_backoff: exponential\n  timeout: 10m\ntasks:\n",
        index % 60
    );
    for task in 0..20 {
        yaml.push_str(&format!("  task_{task}:\n    type: shell\n"));
        if task > 0 {
            let upstream = if task > 3 {
                format!("[task_{}, task_{}]", task - 1, task - 3)
            } else {
                format!("[task_{}]", task - 1)
            };
            yaml.push_str(&format!("    depends_on: {upstream}\n"));
        }
        yaml.push_str(&format!(
            "    command: echo \"{{{{ ds }}}} {{{{ params.region }}}} step {task} of {{{{ dag_id }}}}\"\n    env:\n      LIMIT: \"{{{{ params.limit }}}}\"\n"
        ));
    }
    yaml
}

fn main() {
    let sources: Vec<(String, String)> = (0..1000)
        .map(|i| (format!("dags/bench_{i}.yaml"), dag_source(i)))
        .collect();
    let bytes: usize = sources.iter().map(|(_, s)| s.len()).sum();
    for (file, source) in sources.iter().take(1) {
        if let Err(errors) = sluice_core::parse_dag(file, source) {
            panic!("the generated DAG does not parse: {errors:?}");
        }
    }
    let mut times = Vec::new();
    for _ in 0..7 {
        let started = Instant::now();
        let mut tasks = 0;
        for (file, source) in &sources {
            let dag = sluice_core::parse_dag(file, source).expect("generated DAGs are valid");
            tasks += dag.tasks.len();
        }
        assert_eq!(tasks, 20_000);
        times.push(started.elapsed());
    }
    times.sort();
    let median: Duration = times[times.len() / 2];
    println!(
        "parse+validate 1000 DAG files x 20 tasks ({} KiB): min {:.3} s, median {:.3} s, max {:.3} s (target < 0.5 s)",
        bytes / 1024,
        times[0].as_secs_f64(),
        median.as_secs_f64(),
        times[times.len() - 1].as_secs_f64()
    );
}
