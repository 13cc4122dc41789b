//! Settings from flags, environment variables (`SLUICE_*`) and an optional `sluice.toml`, in
//! that order of precedence, and `sluice config show`.
//!
//! The file only supplies defaults: each of its values becomes the default of the clap
//! argument it names, so a flag or an environment variable still wins, and a setting a
//! command adds later (with `env = "SLUICE_…"`) can be set in the file without code here.
//! Top-level keys are the global flags (`database_url`, `dags_folder`); a table sets the flags
//! of the command it is named after (`[standalone] port = 8081`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{ArgMatches, Command};
use serde::Serialize;

use super::UsageError;
use super::output::{self, Output, Table};
use crate::Cli;

const DEFAULT_FILE: &str = "sluice.toml";

/// The settings file that was read, and what it set.
#[derive(Debug, Default)]
pub struct FileSettings {
    pub path: Option<PathBuf>,
    /// `(command or "", argument id) → value`.
    values: Vec<(String, String, String)>,
}

impl FileSettings {
    fn get(&self, command: &str, id: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(c, i, _)| c == command && i == id)
            .map(|(_, _, v)| v.as_str())
    }
}

/// The command with the settings file's values as defaults. The file is `--config PATH`
/// (or `SLUICE_CONFIG`), else `./sluice.toml` when it exists.
pub fn command_with_file(
    mut command: Command,
    args: &[OsString],
) -> Result<(Command, FileSettings), String> {
    let Some(path) = config_path(args) else {
        return Ok((command, FileSettings::default()));
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("reading the settings file {}: {e}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut settings = FileSettings {
        path: Some(path.clone()),
        values: Vec::new(),
    };
    for (key, value) in &table {
        match value {
            toml::Value::Table(section) => {
                let Some(sub) = command.find_subcommand(key) else {
                    return Err(format!("{}: unknown section [{key}]", path.display()));
                };
                let ids: Vec<String> = sub
                    .get_arguments()
                    .map(|a| a.get_id().to_string())
                    .collect();
                for (id, value) in section {
                    if !ids.contains(id) {
                        return Err(format!(
                            "{}: unknown setting `{id}` in [{key}] (known: {})",
                            path.display(),
                            ids.join(", ")
                        ));
                    }
                    let text = scalar(value).ok_or_else(|| {
                        format!("{}: [{key}] {id}: expected a value", path.display())
                    })?;
                    settings
                        .values
                        .push((key.clone(), id.clone(), text.clone()));
                    command =
                        command.mut_subcommand(key, |s| s.mut_arg(id, |a| a.default_value(text)));
                }
            }
            value => {
                let known = command
                    .get_arguments()
                    .any(|a| a.get_id() == key && a.is_global_set());
                if !known || key == "config" {
                    return Err(format!(
                        "{}: unknown setting `{key}` (top-level keys: database_url, dags_folder, output, secrets_file; commands take a [section])",
                        path.display()
                    ));
                }
                let text = scalar(value)
                    .ok_or_else(|| format!("{}: {key}: expected a value", path.display()))?;
                settings
                    .values
                    .push((String::new(), key.clone(), text.clone()));
                command = command.mut_arg(key, |a| a.default_value(text));
            }
        }
    }
    Ok((command, settings))
}

fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let mut args = args.iter().skip(1);
    while let Some(arg) = args.next() {
        let arg = arg.to_string_lossy();
        if arg == "--config" {
            return args.next().map(PathBuf::from);
        }
        if let Some(path) = arg.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    if let Some(path) = std::env::var_os("SLUICE_CONFIG") {
        return Some(PathBuf::from(path));
    }
    Path::new(DEFAULT_FILE)
        .is_file()
        .then(|| PathBuf::from(DEFAULT_FILE))
}

/// A TOML value as the text a flag would take; lists join with commas.
fn scalar(value: &toml::Value) -> Option<String> {
    Some(match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Array(items) => items
            .iter()
            .map(scalar)
            .collect::<Option<Vec<_>>>()?
            .join(","),
        _ => return None,
    })
}

#[derive(Debug, Serialize)]
struct Setting {
    name: String,
    value: String,
    source: String,
}

/// `sluice config show`: every setting with its value (secrets masked) and where it came from.
pub fn show(
    cli: &Cli,
    command: &Command,
    matches: &ArgMatches,
    file: &FileSettings,
) -> anyhow::Result<ExitCode> {
    let from_file = |section: &str, id: &str| {
        file.get(section, id).map(|_| {
            format!(
                "file {}",
                file.path
                    .as_deref()
                    .unwrap_or(Path::new(DEFAULT_FILE))
                    .display()
            )
        })
    };
    let mut settings = Vec::new();
    for arg in command.get_arguments().filter(|a| a.is_global_set()) {
        let id = arg.get_id().as_str();
        if id == "config" {
            continue;
        }
        let value = matches
            .get_raw(id)
            .and_then(|mut v| v.next())
            .map(|v| v.to_string_lossy().into_owned())
            .unwrap_or_default();
        let source = match matches.value_source(id) {
            Some(ValueSource::CommandLine) => "flag".to_owned(),
            Some(ValueSource::EnvVariable) => env_name(arg),
            _ => from_file("", id).unwrap_or_else(|| "default".to_owned()),
        };
        settings.push(Setting {
            name: id.to_owned(),
            value: mask(id, &value),
            source,
        });
    }
    for sub in command.get_subcommands() {
        // a command's settings: its flags with an environment variable, and any the file sets
        let settable = |a: &&clap::Arg| {
            a.get_env().is_some() || file.get(sub.get_name(), a.get_id().as_str()).is_some()
        };
        for arg in sub.get_arguments().filter(settable) {
            let id = arg.get_id().as_str();
            let env = arg.get_env().and_then(|e| std::env::var(e).ok());
            let default = arg
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(",");
            let (value, source) = match (env, from_file(sub.get_name(), id)) {
                (Some(value), _) => (value, env_name(arg)),
                (None, Some(source)) => (default, source),
                (None, None) => (default, "default".to_owned()),
            };
            settings.push(Setting {
                name: format!("{}.{id}", sub.get_name()),
                value: mask(id, &value),
                source,
            });
        }
    }
    if cli.output == Output::Json {
        output::print_json(&settings)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new(&["SETTING", "VALUE", "SOURCE"]);
    for setting in settings {
        table.row(vec![setting.name, setting.value, setting.source]);
    }
    table.print();
    Ok(ExitCode::SUCCESS)
}

fn env_name(arg: &clap::Arg) -> String {
    match arg.get_env() {
        Some(name) => format!("env {}", name.to_string_lossy()),
        None => "env".to_owned(),
    }
}

/// Passwords in URLs become `***`; settings named like secrets are hidden whole.
fn mask(id: &str, value: &str) -> String {
    let lower = id.to_ascii_lowercase();
    if ["password", "secret", "token"]
        .iter()
        .any(|w| lower.contains(w))
        && !value.is_empty()
    {
        return "***".to_owned();
    }
    sluice_store::redact_url(value)
}

/// A settings file error is bad input: one line, exit code 2.
pub fn report(message: String) -> ExitCode {
    super::report(UsageError(message).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_password_is_masked_and_secret_settings_hidden() {
        assert_eq!(
            mask("database_url", "postgres://sluice:hunter2@db/sluice"),
            "postgres://sluice:***@db/sluice"
        );
        assert_eq!(mask("api_token", "abc"), "***");
        assert_eq!(mask("port", "8080"), "8080");
    }
}
