//! Running a step's program in its own process group: stdout and stderr pumped line by line
//! into the attempt log (`::output key=value` lines on stdout collected), the whole group
//! killed when the step ends early. Shared by `shell` and `spark_submit`.

use std::collections::BTreeMap;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;

use super::{StepContext, StepError, StepOutput};
use crate::logs::LogSink;

/// How long a stopped process group gets between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// A program that ran to its end.
pub(crate) struct Finished {
    pub status: ExitStatus,
    /// The `::output key=value` lines it printed on stdout.
    pub outputs: BTreeMap<String, Value>,
}

impl Finished {
    /// Exit code 0 is the step's success; anything else fails it, `what` naming the program
    /// in the message (`command exited with code 4`).
    pub fn into_result(self, what: &str) -> Result<StepOutput, StepError> {
        let exit_code = self.status.code();
        if self.status.success() {
            return Ok(StepOutput {
                outputs: self.outputs,
                exit_code,
            });
        }
        let message = match exit_code {
            Some(code) => format!("{what} exited with code {code}"),
            None => format!("{what} was killed by {}", signal_name(&self.status)),
        };
        Err(StepError { message, exit_code })
    }
}

/// Starts `command` (its program, arguments, environment and folder already set) in a
/// process group of its own and waits for it, streaming its output into the attempt log.
/// When the attempt is cancelled, or the returned future is dropped (timeout, worker
/// shutdown), the whole group gets SIGTERM, then SIGKILL after a grace period. `program`
/// names it in the error when it cannot start.
pub(crate) async fn run(
    mut command: Command,
    program: &str,
    ctx: &StepContext,
) -> Result<Finished, StepError> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // its own group, so a timeout or cancel reaches every process the program started
        .process_group(0)
        .spawn()
        .map_err(|e| StepError::new(format!("starting `{program}`: {e}")))?;
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
        status = child.wait() => status.map_err(|e| StepError::new(format!("waiting for `{program}`: {e}")))?,
        _ = ctx.cancel.cancelled() => return Err(StepError::new("stopped: the attempt was cancelled")),
    };
    let outputs = out_task.await.unwrap_or_default();
    let _ = err_task.await;
    Ok(Finished { status, outputs })
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
) -> BTreeMap<String, Value> {
    let mut found = BTreeMap::new();
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

/// Kills the program's whole process group when the step ends early (timeout, cancel):
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

fn signal_name(status: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status.signal().and_then(|s| Signal::try_from(s).ok()) {
        Some(signal) => signal.as_str().to_owned(),
        None => "a signal".to_owned(),
    }
}
