//! Globs over local paths and object stores (`file://`, `s3://`, `gs://`) through
//! `object_store`: listed and read by `ingest`'s `files` source, checked by the file sensor.

use std::path::{Component, Path};
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::steps::StepError;

/// Characters that make a path segment a pattern.
pub(crate) const GLOB_CHARS: &[char] = &['*', '?', '['];

/// Where a glob looks: a store, the part of the path before the first pattern segment, and
/// the pattern matched against whole object paths.
pub(crate) struct Place {
    store: Arc<dyn ObjectStore>,
    /// `s3://bucket/` or `file:///` — put before an object path to show it.
    root: String,
    prefix: ObjectPath,
    pattern: glob::Pattern,
}

impl Place {
    /// `field` names the DAG field the glob came from, in errors (`source.files`, `file`).
    pub(crate) fn parse(glob: &str, base_dir: &Path, field: &str) -> Result<Place, StepError> {
        if glob.contains('{') {
            return Err(StepError::new(format!(
                "`{field}` `{glob}`: braces (`{{a,b}}`) are not supported; match several names with `*`, `?` or `[ab]`"
            )));
        }
        let bad_pattern = |e: glob::PatternError| {
            StepError::new(format!("`{field}` `{glob}` is not a valid glob: {e}"))
        };
        if let Some((scheme, rest)) = glob.split_once("://")
            && scheme != "file"
        {
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            let root = format!("{scheme}://{bucket}");
            let store: Arc<dyn ObjectStore> = match scheme {
                "s3" => Arc::new(
                    AmazonS3Builder::from_env()
                        .with_url(&root)
                        .build()
                        .map_err(|e| StepError::new(format!("opening `{root}`: {e}")))?,
                ),
                "gs" => Arc::new(
                    GoogleCloudStorageBuilder::from_env()
                        .with_url(&root)
                        .build()
                        .map_err(|e| StepError::new(format!("opening `{root}`: {e}")))?,
                ),
                other => {
                    return Err(StepError::new(format!(
                        "`{field}` `{glob}`: `{other}://` is not supported; use a local path or a file://, s3:// or gs:// URL"
                    )));
                }
            };
            return Ok(Place {
                store,
                root: format!("{root}/"),
                prefix: ObjectPath::from(literal_prefix(key)),
                pattern: glob::Pattern::new(key).map_err(bad_pattern)?,
            });
        }
        let local = match glob.strip_prefix("file://") {
            Some(path) => path.to_owned(),
            None => base_dir.join(glob).display().to_string(),
        };
        if !local.starts_with('/') {
            return Err(StepError::new(format!(
                "`{field}` `{glob}`: a file:// URL needs an absolute path (file:///data/…)"
            )));
        }
        let relative = normalize(&local);
        Ok(Place {
            store: Arc::new(LocalFileSystem::new()),
            root: "/".to_owned(),
            prefix: ObjectPath::from(literal_prefix(&relative)),
            pattern: glob::Pattern::new(&relative).map_err(bad_pattern)?,
        })
    }

    /// The matching object paths, sorted.
    pub(crate) async fn matches(&self) -> Result<Vec<ObjectPath>, StepError> {
        let options = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: true,
        };
        let listed: Vec<_> = match self.store.list(Some(&self.prefix)).try_collect().await {
            Ok(listed) => listed,
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(e) => {
                return Err(StepError::new(format!(
                    "listing {}: {e}",
                    self.show(&self.prefix)
                )));
            }
        };
        let mut paths: Vec<ObjectPath> = listed
            .into_iter()
            .map(|meta| meta.location)
            .filter(|location| self.pattern.matches_with(location.as_ref(), options))
            .collect();
        paths.sort();
        Ok(paths)
    }

    pub(crate) async fn read(&self, location: &ObjectPath) -> Result<Bytes, StepError> {
        let shown = self.show(location);
        let result = self
            .store
            .get(location)
            .await
            .map_err(|e| StepError::new(format!("reading `{shown}`: {e}")))?;
        result
            .bytes()
            .await
            .map_err(|e| StepError::new(format!("reading `{shown}`: {e}")))
    }

    pub(crate) fn show(&self, location: &ObjectPath) -> String {
        format!("{}{location}", self.root)
    }
}

/// The path without its leading `/`, `.` and `..` folded (object paths have neither).
fn normalize(path: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    parts.join("/")
}

/// The leading segments without pattern characters: where listing starts.
fn literal_prefix(pattern: &str) -> String {
    let segments: Vec<&str> = pattern.split('/').collect();
    let literal: Vec<&str> = segments
        .iter()
        .take(segments.len().saturating_sub(1))
        .take_while(|segment| !segment.contains(GLOB_CHARS))
        .copied()
        .collect();
    literal.join("/")
}
