//! Files written whole or not at all: a hidden temp file in the destination's folder, renamed
//! over the destination at the end; dropped before that, the temp file is removed.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A destination being written. `commit` renames it into place; dropping it removes it.
pub struct AtomicFile {
    temp: tempfile::NamedTempFile,
    destination: PathBuf,
}

impl AtomicFile {
    /// Creates the destination's missing parent folders and a temp file beside it.
    pub fn create(destination: &Path) -> Result<AtomicFile, String> {
        let parent = match destination.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent)
            .map_err(|e| format!("creating folder `{}`: {e}", parent.display()))?;
        let name = destination
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .ok_or_else(|| format!("`{}` is not a file path", destination.display()))?;
        // an ordinary file's mode (0644 less the umask), not the temp file's private 0600
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .permissions(std::fs::Permissions::from_mode(0o644))
            .tempfile_in(&parent)
            .map_err(|e| format!("creating a temp file in `{}`: {e}", parent.display()))?;
        Ok(AtomicFile {
            temp,
            destination: destination.to_path_buf(),
        })
    }

    pub fn write_all(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.temp
            .write_all(bytes)
            .map_err(|e| format!("writing `{}`: {e}", self.destination.display()))
    }

    /// Flushes to disk and renames over the destination.
    pub fn commit(self) -> Result<(), String> {
        let destination = self.destination;
        self.temp
            .as_file()
            .sync_all()
            .map_err(|e| format!("writing `{}`: {e}", destination.display()))?;
        self.temp
            .persist(&destination)
            .map_err(|e| format!("renaming into `{}`: {}", destination.display(), e.error))?;
        Ok(())
    }
}

/// Writes `bytes` to `destination` atomically, off the async threads.
pub async fn write_bytes(destination: &Path, bytes: bytes::Bytes) -> Result<(), String> {
    let destination = destination.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut file = AtomicFile::create(&destination)?;
        file.write_all(&bytes)?;
        file.commit()
    })
    .await
    .map_err(|e| format!("writing a file: {e}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The process's umask, read from /proc (setting it would need unsafe).
    fn umask() -> u32 {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find_map(|line| line.strip_prefix("Umask:"))
                    .and_then(|value| u32::from_str_radix(value.trim(), 8).ok())
            })
            .unwrap_or(0o022)
    }

    #[test]
    fn a_dropped_file_leaves_nothing_and_a_committed_one_replaces_the_destination() {
        let dir = tempfile::tempdir().unwrap();
        let destination = dir.path().join("a/b/out.txt");
        let mut file = AtomicFile::create(&destination).unwrap();
        file.write_all(b"half").unwrap();
        drop(file);
        assert!(!destination.exists());
        assert_eq!(
            std::fs::read_dir(dir.path().join("a/b")).unwrap().count(),
            0
        );

        std::fs::write(&destination, "old").unwrap();
        let mut file = AtomicFile::create(&destination).unwrap();
        file.write_all(b"new").unwrap();
        file.commit().unwrap();
        assert_eq!(std::fs::read_to_string(&destination).unwrap(), "new");
        let mode = std::fs::metadata(&destination)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o044,
            0o044 & !umask(),
            "readable by others as any new file"
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("a/b")).unwrap().count(),
            1
        );
    }
}
