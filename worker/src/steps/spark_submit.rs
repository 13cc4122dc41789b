//! `type: spark_submit`: a Spark application run by `spark-submit` in its own process group
//! (the JVM and the Python driver included), the driver's output streamed into the attempt
//! log, its exit code deciding the attempt; a line `::output key=value` on the driver's
//! stdout becomes an output of the step.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sluice_core::spec::SparkSubmitStep;
use tokio::process::Command;

use super::{StepContext, StepError, StepOutput, process};
use crate::rendered::secret_field;

pub async fn run(step: &SparkSubmitStep, ctx: &StepContext) -> Result<StepOutput, StepError> {
    let application = ctx.render("application", &step.application)?;
    let name = match &step.name {
        Some(name) => Some(ctx.render("name", name)?),
        None => None,
    };
    let mut conf = BTreeMap::new();
    for (key, value) in &step.conf {
        conf.insert(key.clone(), ctx.render(&format!("conf.{key}"), value)?);
    }
    let py_files = render_list(ctx, "py_files", &step.py_files)?;
    let args = render_list(ctx, "args", &step.args)?;
    let mut env = BTreeMap::new();
    for (key, value) in &step.env {
        env.insert(key.clone(), ctx.render(&format!("env.{key}"), value)?);
    }
    ctx.record_rendered().await;

    // the step's `env` first, then the worker's: what spark-submit itself will see
    let lookup = |name: &str| {
        env.get(name)
            .cloned()
            .or_else(|| std::env::var(name).ok())
            .filter(|value| !value.is_empty())
    };
    let folders = Folders {
        base_dir: &ctx.base_dir,
        dag_folder: &ctx.dag_folder,
    };
    let application = folders.resolve("application", &application)?;
    let py_files = py_files
        .iter()
        .map(|file| folders.resolve("py_files", file))
        .collect::<Result<Vec<_>, _>>()?;
    let spark_submit = locate(&Installations {
        spark_home: step
            .spark_home
            .as_deref()
            .map(|home| ctx.base_dir.join(home)),
        spark_home_variable: lookup("SPARK_HOME"),
        path: lookup("PATH"),
    })?;
    let arguments = arguments(&Submission {
        master: &step.master,
        deploy_mode: step.deploy_mode.as_deref(),
        name: name.as_deref(),
        conf: &conf,
        packages: &step.packages,
        py_files: &py_files,
        application: &application,
        args: &args,
    });

    let mut command = Command::new(&spark_submit);
    command
        .args(&arguments)
        .envs(&ctx.env)
        .envs(&env)
        .current_dir(&ctx.base_dir);
    if step.spark_home.is_some() && !env.contains_key("SPARK_HOME") {
        // a SPARK_HOME inherited from the worker would make `spark_home`'s spark-submit run
        // another installation's classes; without it, the script finds its own home
        command.env_remove("SPARK_HOME");
    }
    if step.master.starts_with("local") && lookup("SPARK_LOCAL_IP").is_none() {
        // a local master needs no network, and on a machine whose hostname resolves to an
        // address that is not up (closed networks, containers) Spark's driver fails to bind
        ctx.log
            .line("[sluice] SPARK_LOCAL_IP=127.0.0.1 (a local master; set it in `env` to change)");
        command.env("SPARK_LOCAL_IP", "127.0.0.1");
    }
    if lookup("PYTHONUNBUFFERED").is_none() {
        // a PySpark driver's stdout is a pipe, which Python buffers until exit: unbuffered,
        // its prints (and `::output` lines) reach the log as they happen
        command.env("PYTHONUNBUFFERED", "1");
    }
    if let Some(python) = venv_python(&spark_submit)
        && lookup("PYSPARK_PYTHON").is_none()
        && lookup("PYSPARK_DRIVER_PYTHON").is_none()
    {
        // PySpark's pip-installed spark-submit runs `python3` from PATH to find its home and
        // to run the driver: the environment it was installed in is the one that has PySpark
        ctx.log.line(format!(
            "[sluice] PYSPARK_PYTHON={} (the environment spark-submit comes from)",
            python.display()
        ));
        command.env("PYSPARK_PYTHON", &python);
    }
    let program = spark_submit.display().to_string();
    ctx.log.line(
        ctx.rendered
            .mask(&format!("$ {}", command_line(&program, &arguments, &conf))),
    );
    process::run(command, &program, ctx)
        .await?
        .into_result("spark-submit")
        .map_err(|mut error| {
            error
                .message
                .push_str(" (the driver's output is in the log)");
            error
        })
}

/// Renders a list field, each item named `field.i` (as `sluice tasks render` names it) for
/// the UI and in errors.
fn render_list(
    ctx: &StepContext,
    field: &str,
    templates: &[String],
) -> Result<Vec<String>, StepError> {
    templates
        .iter()
        .enumerate()
        .map(|(index, template)| ctx.render(&format!("{field}.{index}"), template))
        .collect()
}

/// Where a relative `application` or `py_files` path may be.
struct Folders<'a> {
    base_dir: &'a Path,
    dag_folder: &'a Path,
}

impl Folders<'_> {
    /// A local file as an absolute path, looked for in the base folder, then beside the DAG
    /// file; a URL (`hdfs://…`, `s3a://…`, `local:…`) is the cluster's to read and passes as is.
    fn resolve(&self, field: &str, file: &str) -> Result<String, StepError> {
        if file.contains("://") || file.starts_with("local:") {
            return Ok(file.to_owned());
        }
        if Path::new(file).is_absolute() {
            if Path::new(file).is_file() {
                return Ok(file.to_owned());
            }
            return Err(StepError::new(format!(
                "`{field}` file `{file}` does not exist"
            )));
        }
        let mut folders = vec![self.base_dir];
        if self.dag_folder != self.base_dir {
            folders.push(self.dag_folder);
        }
        if let Some(found) = folders
            .iter()
            .map(|folder| folder.join(file))
            .find(|candidate| candidate.is_file())
        {
            return Ok(found.display().to_string());
        }
        let searched = folders
            .iter()
            .map(|folder| format!("`{}`", folder.display()))
            .collect::<Vec<_>>()
            .join(" nor in the DAG's folder ");
        Err(StepError::new(format!(
            "`{field}` file `{file}` was not found in the base folder {searched}"
        )))
    }
}

/// Where a spark-submit may be, in the order they are tried.
struct Installations {
    /// The task's `spark_home`, resolved against the base folder.
    spark_home: Option<PathBuf>,
    /// `SPARK_HOME` from the step's `env` or the worker's environment.
    spark_home_variable: Option<String>,
    path: Option<String>,
}

/// `spark_home`'s `bin/spark-submit`, else `$SPARK_HOME/bin/spark-submit`, else the first
/// `spark-submit` on PATH. A `spark_home` or SPARK_HOME without one is an error, not a
/// reason to run another installation.
fn locate(places: &Installations) -> Result<PathBuf, StepError> {
    if let Some(home) = &places.spark_home {
        let program = home.join("bin").join("spark-submit");
        if is_executable(&program) {
            return Ok(program);
        }
        return Err(StepError::new(format!(
            "`spark_home` `{}` has no executable bin/spark-submit: point it at a Spark installation or at a Python environment with PySpark installed",
            home.display()
        )));
    }
    if let Some(home) = &places.spark_home_variable {
        let program = Path::new(home).join("bin").join("spark-submit");
        if is_executable(&program) {
            return Ok(program);
        }
        return Err(StepError::new(format!(
            "SPARK_HOME is `{home}` but `{}` is not an executable file: fix SPARK_HOME or set `spark_home` on the task",
            program.display()
        )));
    }
    if let Some(found) = places.path.as_deref().and_then(|path| {
        std::env::split_paths(path)
            .map(|folder| folder.join("spark-submit"))
            .find(|candidate| is_executable(candidate))
    }) {
        return Ok(found);
    }
    Err(StepError::new(
        "spark-submit was not found: set `spark_home` on the task, or SPARK_HOME in the worker's environment, or put spark-submit on its PATH (`pip install pyspark` provides one; it needs Java 17)",
    ))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// The Python beside a pip-installed spark-submit (a virtualenv's `bin/`), if there is one.
fn venv_python(spark_submit: &Path) -> Option<PathBuf> {
    let bin = spark_submit.parent()?;
    let python = bin.join("python3");
    (bin.join("find_spark_home.py").is_file() && is_executable(&python)).then_some(python)
}

/// What one spark-submit is asked to do, every field rendered and every path resolved.
struct Submission<'a> {
    master: &'a str,
    deploy_mode: Option<&'a str>,
    name: Option<&'a str>,
    conf: &'a BTreeMap<String, String>,
    packages: &'a [String],
    py_files: &'a [String],
    application: &'a str,
    args: &'a [String],
}

/// spark-submit's arguments: the options, then the application and its own arguments.
fn arguments(submission: &Submission) -> Vec<String> {
    let mut arguments = vec!["--master".to_owned(), submission.master.to_owned()];
    if let Some(mode) = submission.deploy_mode {
        arguments.extend(["--deploy-mode".to_owned(), mode.to_owned()]);
    }
    if let Some(name) = submission.name {
        arguments.extend(["--name".to_owned(), name.to_owned()]);
    }
    for (key, value) in submission.conf {
        arguments.extend(["--conf".to_owned(), format!("{key}={value}")]);
    }
    if !submission.packages.is_empty() {
        arguments.extend(["--packages".to_owned(), submission.packages.join(",")]);
    }
    if !submission.py_files.is_empty() {
        arguments.extend(["--py-files".to_owned(), submission.py_files.join(",")]);
    }
    arguments.push(submission.application.to_owned());
    arguments.extend(submission.args.iter().cloned());
    arguments
}

/// The command line as the log shows it: shell-quoted where needed, the values of `conf`
/// keys that name a secret replaced by `***`.
fn command_line(program: &str, arguments: &[String], conf: &BTreeMap<String, String>) -> String {
    let mut words = vec![quote(program)];
    let mut after_conf = false;
    for argument in arguments {
        let shown = match argument.split_once('=') {
            Some((key, _))
                if after_conf && conf.contains_key(key) && secret_field(&format!("conf.{key}")) =>
            {
                format!("{key}=***")
            }
            _ => argument.clone(),
        };
        words.push(quote(&shown));
        after_conf = argument == "--conf";
    }
    words.join(" ")
}

/// `word` as a shell would need it: as is when it holds only safe characters, else in single
/// quotes.
fn quote(word: &str) -> String {
    let safe = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:=,@%+*".contains(c));
    if safe {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn arguments_put_options_first_then_the_application_and_its_args() {
        let conf = conf(&[
            ("spark.executor.memory", "4g"),
            ("spark.sql.shuffle.partitions", "8"),
        ]);
        let submission = Submission {
            master: "yarn",
            deploy_mode: Some("cluster"),
            name: Some("train-2026-01-01"),
            conf: &conf,
            packages: &["a:b:1".to_owned(), "c:d:2".to_owned()],
            py_files: &["/x/lib.zip".to_owned(), "/x/util.py".to_owned()],
            application: "/x/train.py",
            args: &["--date".to_owned(), "2026-01-01".to_owned()],
        };
        assert_eq!(
            arguments(&submission),
            [
                "--master",
                "yarn",
                "--deploy-mode",
                "cluster",
                "--name",
                "train-2026-01-01",
                "--conf",
                "spark.executor.memory=4g",
                "--conf",
                "spark.sql.shuffle.partitions=8",
                "--packages",
                "a:b:1,c:d:2",
                "--py-files",
                "/x/lib.zip,/x/util.py",
                "/x/train.py",
                "--date",
                "2026-01-01",
            ]
        );
    }

    #[test]
    fn unset_options_are_left_out() {
        let conf = BTreeMap::new();
        let submission = Submission {
            master: "local[*]",
            deploy_mode: None,
            name: None,
            conf: &conf,
            packages: &[],
            py_files: &[],
            application: "/x/job.py",
            args: &[],
        };
        assert_eq!(
            arguments(&submission),
            ["--master", "local[*]", "/x/job.py"]
        );
    }

    #[test]
    fn the_logged_command_line_is_quoted_and_hides_secret_conf_values() {
        let conf = conf(&[
            ("spark.hadoop.fs.s3a.secret.key", "abc"),
            ("spark.executor.memory", "4g"),
        ]);
        let arguments: Vec<String> = [
            "--master",
            "local[2]",
            "--conf",
            "spark.executor.memory=4g",
            "--conf",
            "spark.hadoop.fs.s3a.secret.key=abc",
            "/x/job.py",
            "it's",
            "spark.hadoop.fs.s3a.secret.key=not-a-conf",
        ]
        .map(str::to_owned)
        .to_vec();
        assert_eq!(
            command_line("/opt/spark/bin/spark-submit", &arguments, &conf),
            "/opt/spark/bin/spark-submit --master 'local[2]' --conf spark.executor.memory=4g \
             --conf spark.hadoop.fs.s3a.secret.key=*** /x/job.py 'it'\\''s' \
             spark.hadoop.fs.s3a.secret.key=not-a-conf"
        );
    }

    fn executable(path: &Path) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn spark_submit_is_found_in_spark_home_then_spark_home_variable_then_path() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let variable = dir.path().join("variable");
        let on_path = dir.path().join("path");
        for folder in [home.join("bin"), variable.join("bin"), on_path.clone()] {
            executable(&folder.join("spark-submit"));
        }
        let path = std::env::join_paths([dir.path().join("empty"), on_path.clone()])
            .unwrap()
            .into_string()
            .unwrap();
        let all = Installations {
            spark_home: Some(home.clone()),
            spark_home_variable: Some(variable.display().to_string()),
            path: Some(path.clone()),
        };
        assert_eq!(locate(&all).unwrap(), home.join("bin/spark-submit"));
        let no_home = Installations {
            spark_home: None,
            ..all
        };
        assert_eq!(locate(&no_home).unwrap(), variable.join("bin/spark-submit"));
        let path_only = Installations {
            spark_home_variable: None,
            ..no_home
        };
        assert_eq!(locate(&path_only).unwrap(), on_path.join("spark-submit"));
    }

    #[test]
    fn a_missing_spark_submit_names_where_it_was_looked_for() {
        let dir = tempfile::tempdir().unwrap();
        let not_executable = dir.path().join("plain/bin/spark-submit");
        std::fs::create_dir_all(not_executable.parent().unwrap()).unwrap();
        std::fs::write(&not_executable, "").unwrap();
        let home = dir.path().join("plain");
        let error = locate(&Installations {
            spark_home: Some(home.clone()),
            spark_home_variable: None,
            path: None,
        })
        .unwrap_err();
        assert_eq!(
            error.message,
            format!(
                "`spark_home` `{}` has no executable bin/spark-submit: point it at a Spark installation or at a Python environment with PySpark installed",
                home.display()
            )
        );
        let error = locate(&Installations {
            spark_home: None,
            spark_home_variable: Some("/nowhere/spark".to_owned()),
            path: None,
        })
        .unwrap_err();
        assert_eq!(
            error.message,
            "SPARK_HOME is `/nowhere/spark` but `/nowhere/spark/bin/spark-submit` is not an executable file: fix SPARK_HOME or set `spark_home` on the task"
        );
        let error = locate(&Installations {
            spark_home: None,
            spark_home_variable: None,
            path: Some(dir.path().display().to_string()),
        })
        .unwrap_err();
        assert_eq!(
            error.message,
            "spark-submit was not found: set `spark_home` on the task, or SPARK_HOME in the worker's environment, or put spark-submit on its PATH (`pip install pyspark` provides one; it needs Java 17)"
        );
    }

    #[test]
    fn relative_files_resolve_in_the_base_folder_then_beside_the_dag() {
        let dir = tempfile::tempdir().unwrap();
        let dags = dir.path().join("dags");
        std::fs::create_dir_all(dags.join("jobs")).unwrap();
        std::fs::write(dags.join("jobs/beside.py"), "").unwrap();
        std::fs::write(dir.path().join("base.py"), "").unwrap();
        let folders = Folders {
            base_dir: dir.path(),
            dag_folder: &dags,
        };
        assert_eq!(
            folders.resolve("application", "base.py").unwrap(),
            dir.path().join("base.py").display().to_string()
        );
        assert_eq!(
            folders.resolve("application", "jobs/beside.py").unwrap(),
            dags.join("jobs/beside.py").display().to_string()
        );
        assert_eq!(
            folders.resolve("py_files", "hdfs://nn/lib.zip").unwrap(),
            "hdfs://nn/lib.zip"
        );
        assert_eq!(
            folders
                .resolve("application", "jobs/gone.py")
                .unwrap_err()
                .message,
            format!(
                "`application` file `jobs/gone.py` was not found in the base folder `{}` nor in the DAG's folder `{}`",
                dir.path().display(),
                dags.display()
            )
        );
        assert_eq!(
            folders
                .resolve("py_files", "/nowhere/lib.zip")
                .unwrap_err()
                .message,
            "`py_files` file `/nowhere/lib.zip` does not exist"
        );
    }
}
