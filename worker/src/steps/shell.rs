//! `type: shell`: a templated command run by bash (or sh) in its own process group, its stdout
//! and stderr captured line by line, its exit code deciding the attempt. A line
//! `::output key=value` on stdout becomes an output of the step.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::Value;
use sluice_core::spec::ShellStep;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;

use super::{StepContext, StepError, StepOutput};
use crate::logs::LogSink;

/// How long a stopped command gets between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(5);

pub async fn run(step: &ShellStep, ctx: &StepContext) -> Result<StepOutput, StepError> {
    let command = ctx.render("command", &step.command)?;
    let mut env = ctx.env.clone();
    for (key, value) in &step.env {
        env.insert(key.clone(), ctx.render(&format!("env.{key}"), value)?);
    }
    let working_dir = match &step.working_dir {
        Some(dir) => ctx.base_dir.join(ctx.render("working_dir", dir)?),
        None => ctx.base_dir.clone(),
    };
    if !working_dir.is_dir() {
        return Err(StepError::new(format!(
            "working_dir `{}` is not a folder",
            working_dir.display()
        )));
    }
    ctx.record_rendered().await;
    ctx.log.line(format!("$ {command}"));

    let mut child = Command::new(shell())
        .arg("-c")
        .arg(&command)
        .envs(&env)
        .current_dir(&working_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // its own group, so a timeout or cancel reaches every process the command started
        .process_group(0)
        .spawn()
        .map_err(|e| StepError::new(format!("starting `{}`: {e}", shell())))?;
    let group = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw);
    let _guard = GroupGuard { group };

    let stdout = child.stdout.take().expect("stdout was configured as piped");
    let stderr = child.stderr.take().expect("stderr was configured as piped");
    let out_task = tokio::spawn(pump(stdout, ctx.log.clone(), OutputLines::Parse));
    let err_task = tokio::spawn(pump(stderr, ctx.log.clone(), OutputLines::Ignore));

    let status = tokio::select! {
        status = child.wait() => status.map_err(|e| StepError::new(format!("waiting for the command: {e}")))?,
        _ = ctx.cancel.cancelled() => return Err(StepError::new("stopped: the attempt was cancelled")),
    };
    let outputs = out_task.await.unwrap_or_default();
    let _ = err_task.await;

    let exit_code = status.code();
    if status.success() {
        return Ok(StepOutput { outputs, exit_code });
    }
    let message = match exit_code {
        Some(code) => format!("command exited with code {code}"),
        None => format!("command was killed by {}", signal_name(&status)),
    };
    Err(StepError { message, exit_code })
}

fn shell() -> &'static str {
    if Path::new("/bin/bash").exists() {
        "/bin/bash"
    } else {
        "/bin/sh"
    }
}

#[derive(Clone, Copy, PartialEq)]
enum OutputLines {
    Parse,
    Ignore,
}

/// Copies lines into the log; on stdout also collects `::output key=value` lines.
async fn pump(
    stream: impl AsyncRead + Unpin,
    log: LogSink,
    outputs: OutputLines,
) -> std::collections::BTreeMap<String, Value> {
    let mut found = std::collections::BTreeMap::new();
    let mut reader = BufReader::new(stream);
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        match reader.read_until(b'\n', &mut buffer).await {
            Ok(0) => break,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buffer);
                let line = line.trim_end_matches(['\n', '\r']);
                if outputs == OutputLines::Parse
                    && let Some((key, value)) = line
                        .strip_prefix("::output ")
                        .and_then(|rest| rest.split_once('='))
                {
                    found.insert(key.trim().to_owned(), Value::String(value.to_owned()));
                }
                log.line(line);
            }
            Err(e) => {
                log.line(format!("[sluice] reading the command's output failed: {e}"));
                break;
            }
        }
    }
    found
}

/// Kills the command's whole process group when the step ends early (timeout, cancel):
/// SIGTERM at once, SIGKILL after a grace period.
struct GroupGuard {
    group: Option<Pid>,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        let Some(group) = self.group else { return };
        // ESRCH means the group is already gone: the normal case after a clean exit
        if killpg(group, Signal::SIGTERM).is_err() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                tokio::time::sleep(KILL_GRACE).await;
                let _ = killpg(group, Signal::SIGKILL);
            });
        } else {
            let _ = killpg(group, Signal::SIGKILL);
        }
    }
}

fn signal_name(status: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status.signal().and_then(|s| Signal::try_from(s).ok()) {
        Some(signal) => signal.as_str().to_owned(),
        None => "a signal".to_owned(),
    }
}
