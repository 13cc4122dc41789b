//! `type: http`: one request (any method, headers, body, timeout), its status checked against
//! `expect_status` (any 2xx by default), its body optionally saved to a file (atomically) and
//! JSON fields of it captured as outputs.

use std::collections::BTreeMap;
use std::time::Instant;

use reqwest::Method;
use serde_json::Value;
use sluice_core::spec::HttpStep;

use super::{StepContext, StepError, StepOutput};
use crate::atomic;
use crate::http::{self, display_url, excerpt};

/// How much of an unexpected response's body an error shows.
const BODY_EXCERPT: usize = 500;

pub async fn run(step: &HttpStep, ctx: &StepContext) -> Result<StepOutput, StepError> {
    let url = ctx.render("url", &step.url)?;
    let mut headers = BTreeMap::new();
    for (name, value) in &step.headers {
        headers.insert(name.clone(), ctx.render(&format!("headers.{name}"), value)?);
    }
    let body = match &step.body {
        Some(body) => Some(ctx.render("body", body)?),
        None => None,
    };
    let save_to = match &step.save_to {
        Some(path) => Some(ctx.base_dir.join(ctx.render("save_to", path)?)),
        None => None,
    };
    ctx.record_rendered().await;

    let shown = display_url(&url);
    let method = Method::from_bytes(step.method.as_bytes())
        .map_err(|_| StepError::new(format!("`method` `{}` is not an HTTP method", step.method)))?;
    let client = http::client().map_err(StepError::new)?;
    let mut request = client.request(method.clone(), &url);
    for (name, value) in &headers {
        request = request.header(name, value);
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    if let Some(timeout) = step.timeout {
        request = request.timeout(timeout);
    }

    let started = Instant::now();
    let exchange = async {
        let response = request.send().await?;
        let status = response.status();
        let body = response.bytes().await?;
        Ok::<_, reqwest::Error>((status, body))
    };
    let (status, body) = tokio::select! {
        result = exchange => result.map_err(|e| {
            let what = match (e.is_timeout(), step.timeout) {
                (true, Some(timeout)) => format!("timed out after {}", http::elapsed(timeout)),
                _ => http::describe(&e),
            };
            StepError::new(format!("{method} {shown}: {what}"))
        })?,
        _ = ctx.cancel.cancelled() => return Err(StepError::new("stopped: the attempt was cancelled")),
    };
    ctx.log.line(format!(
        "{method} {shown} → {status}, {} bytes in {}",
        body.len(),
        http::elapsed(started.elapsed())
    ));

    let expected = if step.expect_status.is_empty() {
        status.is_success()
    } else {
        step.expect_status.contains(&status.as_u16())
    };
    if !expected {
        let wanted = if step.expect_status.is_empty() {
            "2xx".to_owned()
        } else {
            step.expect_status
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(StepError::new(format!(
            "{method} {shown} answered {status} (expected {wanted}): {}",
            excerpt(&body, BODY_EXCERPT)
        )));
    }

    let mut outputs = BTreeMap::new();
    outputs.insert("status".to_owned(), Value::from(status.as_u16()));
    if !step.outputs.is_empty() {
        let document: Value = serde_json::from_slice(&body).map_err(|e| {
            StepError::new(format!(
                "the response of {method} {shown} is not JSON ({e}), so `outputs` cannot be read from it: {}",
                excerpt(&body, BODY_EXCERPT)
            ))
        })?;
        for (name, path) in &step.outputs {
            let value = http::json_path(&document, path).map_err(|why| {
                StepError::new(format!(
                    "output `{name}`: path `{path}` is not in the response of {shown}: {why}"
                ))
            })?;
            outputs.insert(name.clone(), value.clone());
        }
    }
    if let Some(path) = save_to {
        tokio::select! {
            result = atomic::write_bytes(&path, body.clone()) => result.map_err(|e| StepError::new(format!("`save_to`: {e}")))?,
            _ = ctx.cancel.cancelled() => return Err(StepError::new("stopped: the attempt was cancelled")),
        }
        ctx.log
            .line(format!("saved {} bytes to {}", body.len(), path.display()));
        outputs
            .entry("path".to_owned())
            .or_insert_with(|| Value::from(path.display().to_string()));
    }
    Ok(StepOutput {
        outputs,
        exit_code: None,
    })
}
