//! A PostgreSQL server of the test's own (initdb + pg_ctl on a temp data dir and a free port),
//! so a test can stop and restart it under running processes.
//!
//! PostgreSQL refuses to run as root: as root the server runs as the `postgres` user through
//! `runuser`. When no server binaries are found, or neither way works, `start` prints a skip
//! line and returns `None`; under `CI=true` it panics instead.

use std::path::PathBuf;
use std::process::Command;

pub struct OwnPostgres {
    bin: PathBuf,
    // the data dir lives inside; dropped after the server is stopped
    dir: tempfile::TempDir,
    port: u16,
    as_postgres: bool,
}

impl OwnPostgres {
    pub fn start() -> Option<OwnPostgres> {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        match Self::try_start() {
            Ok(server) => Some(server),
            Err(why) if ci => {
                panic!("cannot start a PostgreSQL server of the test's own, and CI=true: {why}")
            }
            Err(why) => {
                println!("skipped: cannot start a PostgreSQL server of the test's own: {why}");
                None
            }
        }
    }

    fn try_start() -> Result<OwnPostgres, String> {
        let bin = server_bin().ok_or("no /usr/lib/postgresql/*/bin/initdb")?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let as_postgres = is_root();
        if as_postgres {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path()))?;
        }
        let port = free_port()?;
        let server = OwnPostgres {
            bin,
            dir,
            port,
            as_postgres,
        };
        let data = server.data_dir();
        server.run_as_owner(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        server.start_server()?;
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server at once (`-m immediate`: as a crash or a failover would).
    pub fn stop(&self) {
        let data = self.data_dir();
        if let Err(why) =
            self.run_as_owner("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"])
        {
            panic!("stopping the test's PostgreSQL: {why}");
        }
    }

    pub fn restart(&self) {
        if let Err(why) = self.start_server() {
            panic!("starting the test's PostgreSQL again: {why}");
        }
    }

    fn start_server(&self) -> Result<(), String> {
        let data = self.data_dir();
        let log = self.dir.path().join("server.log").display().to_string();
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        self.run_as_owner(
            "pg_ctl",
            &["-D", &data, "-l", &log, "-o", &options, "-w", "start"],
        )
    }

    fn data_dir(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run_as_owner(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let program = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&program);
            command
        } else {
            Command::new(&program)
        };
        command.args(args).current_dir(self.dir.path());
        run(&mut command)
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let data = self.data_dir();
        let _ = self.run_as_owner("pg_ctl", &["-D", &data, "-m", "immediate", "stop"]);
    }
}

fn server_bin() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists() && bin.join("pg_ctl").exists())
        .collect();
    versions.sort();
    versions.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

fn run(command: &mut Command) -> Result<(), String> {
    let output = command.output().map_err(|e| format!("{command:?}: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{command:?} exited with {}: {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}
