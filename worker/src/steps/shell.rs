//! `type: shell`: a templated command run by bash (or sh) in its own process group, its stdout
//! and stderr captured line by line, its exit code deciding the attempt. A line
//! `::output key=value` on stdout becomes an output of the step.

use std::path::Path;

use sluice_core::spec::ShellStep;
use tokio::process::Command;

use super::{StepContext, StepError, StepOutput, process};

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

    let mut bash = Command::new(shell());
    bash.arg("-c")
        .arg(&command)
        .envs(&env)
        .current_dir(&working_dir);
    process::run(bash, shell(), ctx)
        .await?
        .into_result("command")
}

fn shell() -> &'static str {
    if Path::new("/bin/bash").exists() {
        "/bin/bash"
    } else {
        "/bin/sh"
    }
}
