//! Starting the real binary on a temp dir and talking to it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_sluice");

/// A `sluice standalone` process on a free port with its own DAG folder.
pub struct TestApp {
    pub dir: tempfile::TempDir,
    pub database_url: String,
    pub base_url: String,
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl TestApp {
    /// Writes `dags` (file name, YAML) into a fresh folder and starts standalone on it.
    pub fn spawn(dags: &[(&str, &str)], database_url: Option<String>) -> TestApp {
        TestApp::spawn_with(|_| {}, dags, database_url)
    }

    /// Like `spawn`, with `prepare` run on the app's folder (its working directory, which
    /// holds `dags/`) before standalone starts.
    pub fn spawn_with(
        prepare: impl FnOnce(&Path),
        dags: &[(&str, &str)],
        database_url: Option<String>,
    ) -> TestApp {
        let dir = tempfile::tempdir().expect("creating a temp dir");
        prepare(dir.path());
        let dags_folder = dir.path().join("dags");
        std::fs::create_dir_all(&dags_folder).expect("creating the DAG folder");
        for (name, yaml) in dags {
            std::fs::write(dags_folder.join(name), yaml).expect("writing a DAG file");
        }
        let database_url = database_url
            .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("sluice.db").display()));
        let mut child = Command::new(BIN)
            .args(["standalone", "--port", "0", "--slots", "4"])
            .env("SLUICE_DATABASE_URL", &database_url)
            .env("SLUICE_DAGS_FOLDER", &dags_folder)
            .env("SLUICE_LOG", "info,sqlx=warn")
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting sluice standalone");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (address_tx, address_rx) = std::sync::mpsc::channel();
        let reader = BufReader::new(child.stderr.take().expect("stderr is piped"));
        let lines = stderr.clone();
        std::thread::spawn(move || {
            for line in reader.lines().map_while(Result::ok) {
                if let Some(rest) = line.split("web UI on ").nth(1) {
                    let url = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .trim_end_matches('/')
                        .to_owned();
                    let _ = address_tx.send(url);
                }
                lines
                    .lock()
                    .expect("no panics while holding the lock")
                    .push(line);
            }
        });
        let base_url = match address_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "standalone did not start; stderr:\n{}",
                    stderr.lock().unwrap().join("\n")
                );
            }
        };
        TestApp {
            dir,
            database_url,
            base_url,
            child,
            stderr,
        }
    }

    pub fn dags_folder(&self) -> PathBuf {
        self.dir.path().join("dags")
    }

    /// Runs a CLI command against this app's database and DAG folder.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("SLUICE_DATABASE_URL", &self.database_url)
            .env("SLUICE_DAGS_FOLDER", self.dags_folder())
            .env("SLUICE_LOG", "warn")
            .current_dir(self.dir.path())
            .output()
            .expect("running the sluice CLI")
    }

    /// Runs a CLI command with `stdin` as its standard input.
    pub fn cli_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write as _;
        let mut child = Command::new(BIN)
            .args(args)
            .env("SLUICE_DATABASE_URL", &self.database_url)
            .env("SLUICE_DAGS_FOLDER", self.dags_folder())
            .env("SLUICE_LOG", "warn")
            .current_dir(self.dir.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("running the sluice CLI");
        child
            .stdin
            .take()
            .expect("a piped stdin")
            .write_all(stdin.as_bytes())
            .expect("writing stdin");
        child
            .wait_with_output()
            .expect("waiting for the sluice CLI")
    }

    /// Runs `dags trigger` once the scheduler has loaded the DAG (it answers 2 before that).
    pub fn trigger_when_loaded(&self, args: &[&str]) -> Output {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let output = self.cli(args);
            if output.status.code() != Some(2) || Instant::now() > deadline {
                return output;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A CLI command against this app, started and left running (to kill it mid-way).
    pub fn spawn_cli(&self, args: &[&str]) -> Child {
        Command::new(BIN)
            .args(args)
            .env("SLUICE_DATABASE_URL", &self.database_url)
            .env("SLUICE_DAGS_FOLDER", self.dags_folder())
            .env("SLUICE_LOG", "warn")
            .current_dir(self.dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting the sluice CLI")
    }

    /// Runs a CLI command again and again until `done` accepts its output (or 30 s pass).
    pub fn cli_until(&self, args: &[&str], done: impl Fn(&Output) -> bool) -> Output {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let output = self.cli(args);
            if done(&output) || Instant::now() > deadline {
                return output;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops standalone (as `kill -9` would) and keeps its folder and database.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .expect("no panics while holding the lock")
            .join("\n")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP client builder for talking to the web UI. The worker's reqwest enables rustls
/// without a crypto provider (it passes its own, on ring), and cargo unifies that feature into
/// this test's reqwest: install ring as the process default first, or building panics.
pub fn http_client() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs the binary with arguments in a folder, without an app.
pub fn sluice(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("SLUICE_LOG", "warn")
        .env_remove("SLUICE_DATABASE_URL")
        .env_remove("SLUICE_DAGS_FOLDER")
        .current_dir(dir)
        .output()
        .expect("running the sluice CLI")
}

/// `sluice` in a folder, without an app, with `stdin` as its standard input.
pub fn sluice_with_stdin(dir: &Path, args: &[&str], stdin: &str) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(BIN)
        .args(args)
        .env("SLUICE_LOG", "warn")
        .env_remove("SLUICE_DATABASE_URL")
        .env_remove("SLUICE_DAGS_FOLDER")
        .current_dir(dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running the sluice CLI");
    child
        .stdin
        .take()
        .expect("a piped stdin")
        .write_all(stdin.as_bytes())
        .expect("writing stdin");
    child
        .wait_with_output()
        .expect("waiting for the sluice CLI")
}
