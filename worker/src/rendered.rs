//! What an attempt's templates rendered to, secrets masked, recorded before its step runs, so
//! the web can show it without rendering anything itself (it has neither the worker's
//! environment nor its secrets).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use sluice_store::{Lease, Store, StoreError};

/// Shown instead of a secret.
const MASK: &str = "***";
/// Secrets shorter than this are masked only as whole `env` values: replacing every `ab` in
/// a command would hide more than it protects (Airflow draws the same line).
const MIN_MASKED_LENGTH: usize = 5;
/// An environment variable whose name contains one of these holds a secret.
const SECRET_NAME_PARTS: &[&str] = &["PASSWORD", "PASSWD", "SECRET", "TOKEN", "KEY", "CREDENTIAL"];

/// The fields one attempt rendered, collected by `StepContext::render`.
#[derive(Default)]
pub struct RenderedFields {
    fields: Mutex<BTreeMap<String, String>>,
    /// Values known to be secret before rendering: connection passwords and the worker's
    /// environment variables with secret names.
    secrets: Vec<String>,
    recorder: Option<Recorder>,
}

struct Recorder {
    store: Arc<dyn Store>,
    lease: Lease,
}

impl RenderedFields {
    pub(crate) fn new(secrets: Vec<String>) -> Self {
        RenderedFields {
            secrets,
            ..Default::default()
        }
    }

    /// The same, recorded in the store under the attempt's lease by `record`.
    pub(crate) fn recording_to(self, store: Arc<dyn Store>, lease: Lease) -> Self {
        RenderedFields {
            recorder: Some(Recorder { store, lease }),
            ..self
        }
    }

    pub(crate) fn insert(&self, field: &str, text: &str) {
        self.fields
            .lock()
            .expect("no holder of this lock panics")
            .insert(field.to_owned(), text.to_owned());
    }

    /// Every field rendered so far, secrets replaced by `***`: a secret-named `env.` or
    /// `conf.` field entirely, and every known secret (including those fields' values)
    /// wherever it appears.
    pub fn masked(&self) -> BTreeMap<String, String> {
        let fields = self.fields();
        let secrets = self.secrets_in(&fields);
        fields
            .into_iter()
            .map(|(field, value)| {
                let value = if secret_field(&field) {
                    MASK.to_owned()
                } else {
                    mask(&value, &secrets)
                };
                (field, value)
            })
            .collect()
    }

    /// `text` (a command line for the log) with every secret `masked` knows of replaced by
    /// `***`.
    pub fn mask(&self, text: &str) -> String {
        let secrets = self.secrets_in(&self.fields());
        mask(text, &secrets)
    }

    fn fields(&self) -> BTreeMap<String, String> {
        self.fields
            .lock()
            .expect("no holder of this lock panics")
            .clone()
    }

    /// The known secrets and the values of secret-named fields, longest first (so a secret
    /// containing another is masked whole).
    fn secrets_in(&self, fields: &BTreeMap<String, String>) -> Vec<String> {
        let mut secrets: Vec<String> = self.secrets.clone();
        secrets.extend(
            fields
                .iter()
                .filter(|(field, _)| secret_field(field))
                .map(|(_, value)| value.clone()),
        );
        maskable(secrets)
    }

    /// Stores the masked fields under the lease. A failure is logged, never the attempt's end:
    /// a lost lease is noticed (and the attempt stopped) by the heartbeat.
    pub(crate) async fn record(&self) {
        let Some(recorder) = &self.recorder else {
            return;
        };
        match recorder
            .store
            .record_rendered(&recorder.lease, &self.masked())
            .await
        {
            Ok(()) | Err(StoreError::LeaseLost { .. }) => {}
            Err(error) => tracing::warn!(%error, "recording the rendered fields failed"),
        }
    }
}

/// The secrets worth masking (long enough), longest first, so a secret containing another is
/// masked whole.
pub(crate) fn maskable(mut secrets: Vec<String>) -> Vec<String> {
    secrets.retain(|secret| secret.len() >= MIN_MASKED_LENGTH);
    secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
    secrets.dedup();
    secrets
}

/// `text` with each of `secrets` (as `maskable` returns them) replaced by `***`.
pub(crate) fn mask(text: &str, secrets: &[String]) -> String {
    secrets.iter().fold(text.to_owned(), |text, secret| {
        text.replace(secret.as_str(), MASK)
    })
}

/// Whether an environment variable's name says it holds a secret (`API_TOKEN`, `db_password`).
pub(crate) fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_uppercase();
    SECRET_NAME_PARTS.iter().any(|part| name.contains(part))
}

/// An `env.` field (environment variable) or `conf.` field (`spark_submit`'s Spark
/// properties, e.g. `spark.hadoop.fs.s3a.secret.key`) whose name says it holds a secret.
pub(crate) fn secret_field(field: &str) -> bool {
    field
        .strip_prefix("env.")
        .or_else(|| field.strip_prefix("conf."))
        .is_some_and(is_secret_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_env_values_and_known_secrets_are_masked_everywhere() {
        let rendered = RenderedFields::new(vec!["hunter22".to_owned(), "ab".to_owned()]);
        rendered.insert(
            "command",
            "psql postgres://u:hunter22@db -c 'select ab' --key s3cr3t-value",
        );
        rendered.insert("env.API_TOKEN", "s3cr3t-value");
        rendered.insert("env.REGION", "eu");
        let masked = rendered.masked();
        assert_eq!(
            masked["command"],
            "psql postgres://u:***@db -c 'select ab' --key ***"
        );
        assert_eq!(masked["env.API_TOKEN"], "***");
        assert_eq!(masked["env.REGION"], "eu");
    }

    #[test]
    fn secret_named_spark_conf_values_are_masked_in_fields_and_command_lines() {
        let rendered = RenderedFields::new(vec!["hunter22".to_owned()]);
        rendered.insert("conf.spark.hadoop.fs.s3a.secret.key", "s3a-secret-value");
        rendered.insert("conf.spark.executor.memory", "4g");
        rendered.insert("args", "--password hunter22");
        let masked = rendered.masked();
        assert_eq!(masked["conf.spark.hadoop.fs.s3a.secret.key"], "***");
        assert_eq!(masked["conf.spark.executor.memory"], "4g");
        assert_eq!(masked["args"], "--password ***");
        assert_eq!(
            rendered.mask("--conf k=s3a-secret-value --password hunter22 --conf m=4g"),
            "--conf k=*** --password *** --conf m=4g"
        );
    }

    #[test]
    fn secret_names_are_recognised_in_any_case() {
        for name in [
            "API_TOKEN",
            "db_password",
            "AWS_SECRET_ACCESS_KEY",
            "ssh_key",
        ] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in ["REGION", "PATH", "HOME"] {
            assert!(!is_secret_name(name), "{name}");
        }
    }
}
