//! The DAG folder: every `*.yaml`/`*.yml` below it parsed, cached by file size and mtime so an
//! unchanged file is not parsed again, with duplicate DAG ids reported as import errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use sluice_core::{Dag, DagError, parse_dag};
use sluice_store::{DagSnapshot, ImportErrorRecord};

/// What the folder holds right now.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// By DAG id.
    pub dags: BTreeMap<String, LoadedDag>,
    /// Files that failed to load, each with every problem found.
    pub errors: Vec<ImportErrorRecord>,
}

#[derive(Debug, Clone)]
pub struct LoadedDag {
    pub dag: Arc<Dag>,
    pub source: Arc<str>,
}

impl Loaded {
    pub fn snapshots(&self) -> Vec<DagSnapshot> {
        self.dags
            .values()
            .map(|loaded| {
                let dag = &loaded.dag;
                DagSnapshot {
                    dag_id: dag.id.to_string(),
                    fileloc: dag.fileloc.clone(),
                    hash: dag.hash.clone(),
                    source: loaded.source.to_string(),
                    schedule: dag.schedule.as_ref().map(|s| s.expression().to_owned()),
                    timezone: dag.timezone.name().to_owned(),
                    description: dag.description.clone(),
                    tags: dag.tags.clone(),
                }
            })
            .collect()
    }
}

/// Loads a folder again and again, re-parsing only the files that changed.
#[derive(Debug, Default)]
pub struct FolderLoader {
    folder: PathBuf,
    cache: BTreeMap<PathBuf, CachedFile>,
}

#[derive(Debug, Clone)]
struct CachedFile {
    stamp: (u64, Option<SystemTime>),
    result: Result<LoadedDag, Vec<DagError>>,
}

impl FolderLoader {
    pub fn new(folder: impl Into<PathBuf>) -> Self {
        FolderLoader {
            folder: folder.into(),
            cache: BTreeMap::new(),
        }
    }

    pub fn folder(&self) -> &Path {
        &self.folder
    }

    /// Scans the folder. `changed` tells whether anything differs from the previous scan.
    pub fn scan(&mut self) -> (Loaded, bool) {
        let mut files = Vec::new();
        let mut errors = Vec::new();
        match std::fs::metadata(&self.folder) {
            Ok(meta) if meta.is_dir() => collect_yaml_files(&self.folder, &mut files, &mut errors),
            Ok(_) => errors.push(folder_error(&self.folder, "is not a folder")),
            Err(e) => errors.push(folder_error(&self.folder, &format!("cannot be read: {e}"))),
        }
        files.sort();
        let mut changed =
            files.len() != self.cache.len() || files.iter().any(|f| !self.cache.contains_key(f));
        let mut cache = BTreeMap::new();
        for path in files {
            let stamp = std::fs::metadata(&path)
                .map(|m| (m.len(), m.modified().ok()))
                .unwrap_or((0, None));
            let cached = match self.cache.remove(&path) {
                Some(cached) if cached.stamp == stamp => cached,
                _ => {
                    changed = true;
                    CachedFile {
                        stamp,
                        result: load_file(&path),
                    }
                }
            };
            cache.insert(path, cached);
        }
        self.cache = cache;
        let mut loaded = assemble(self.cache.iter().map(|(p, c)| (p.as_path(), &c.result)));
        loaded.errors.extend(errors);
        (loaded, changed)
    }
}

/// Parses the given files (or every DAG file below the given folders) once: what
/// `sluice dags validate` checks.
pub fn load_paths(paths: &[PathBuf]) -> Loaded {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => collect_yaml_files(path, &mut files, &mut errors),
            Ok(_) => files.push(path.clone()),
            Err(e) => errors.push(folder_error(path, &format!("cannot be read: {e}"))),
        }
    }
    files.sort();
    files.dedup();
    let results: Vec<(PathBuf, Result<LoadedDag, Vec<DagError>>)> = files
        .into_iter()
        .map(|p| {
            let r = load_file(&p);
            (p, r)
        })
        .collect();
    let mut loaded = assemble(results.iter().map(|(p, r)| (p.as_path(), r)));
    loaded.errors.extend(errors);
    loaded.errors.sort_by(|a, b| a.fileloc.cmp(&b.fileloc));
    loaded
}

fn load_file(path: &Path) -> Result<LoadedDag, Vec<DagError>> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| {
        vec![DagError {
            file: file.clone(),
            line: 1,
            col: 1,
            message: format!("cannot read the file: {e}"),
        }]
    })?;
    let source = String::from_utf8(bytes).map_err(|e| {
        vec![DagError {
            file: file.clone(),
            line: 1,
            col: 1,
            message: format!("the file is not UTF-8: {e}"),
        }]
    })?;
    let dag = parse_dag(&file, &source)?;
    Ok(LoadedDag {
        dag: Arc::new(dag),
        source: source.into(),
    })
}

/// Files in path order; a DAG id already taken by an earlier file is an error in the later one.
fn assemble<'a>(
    results: impl Iterator<Item = (&'a Path, &'a Result<LoadedDag, Vec<DagError>>)>,
) -> Loaded {
    let mut loaded = Loaded::default();
    for (path, result) in results {
        match result {
            Ok(dag) => {
                let id = dag.dag.id.to_string();
                if let Some(first) = loaded.dags.get(&id) {
                    loaded.errors.push(ImportErrorRecord {
                        fileloc: path.display().to_string(),
                        errors: vec![format!(
                            "{}:1:1: DAG id `{id}` is already defined in {}",
                            path.display(),
                            first.dag.fileloc
                        )],
                    });
                } else {
                    loaded.dags.insert(id, dag.clone());
                }
            }
            Err(errors) => loaded.errors.push(ImportErrorRecord {
                fileloc: path.display().to_string(),
                errors: errors.iter().map(ToString::to_string).collect(),
            }),
        }
    }
    loaded
}

fn collect_yaml_files(
    folder: &Path,
    files: &mut Vec<PathBuf>,
    errors: &mut Vec<ImportErrorRecord>,
) {
    let entries = match std::fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(e) => {
            errors.push(folder_error(folder, &format!("cannot be read: {e}")));
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        // hidden files and folders (editors' swap files, .git) are not DAGs
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        match entry.file_type() {
            Ok(kind) if kind.is_dir() => collect_yaml_files(&path, files, errors),
            Ok(_)
                if matches!(
                    path.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml")
                ) =>
            {
                files.push(path)
            }
            _ => {}
        }
    }
}

fn folder_error(path: &Path, what: &str) -> ImportErrorRecord {
    ImportErrorRecord {
        fileloc: path.display().to_string(),
        errors: vec![format!("{}:1:1: {what}", path.display())],
    }
}
