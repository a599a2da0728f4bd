use std::io::Write;
use std::path::{Path, PathBuf};

/// An I/O failure, always with the path it happened on.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// Reading, writing or renaming `path` failed.
    #[error("{path}: {error}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// What the operating system said.
        error: std::io::Error,
    },
    /// The destination exists and the caller did not ask to replace it.
    #[error("{0} already exists (pass --force to replace it)")]
    Exists(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> IoError + '_ {
    move |error| IoError::Io {
        path: path.to_path_buf(),
        error,
    }
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Reads a whole file; the error names the path.
pub fn read(path: &Path) -> Result<Vec<u8>, IoError> {
    std::fs::read(path).map_err(io_err(path))
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so
/// that readers see either the old file or the complete new one, never a partial write.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), IoError> {
    let dir = parent_of(path);
    let mut tmp = tempfile::Builder::new()
        .prefix(".autocaption-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(io_err(dir))?;
    tmp.write_all(bytes).map_err(io_err(tmp.path()))?;
    tmp.as_file().sync_all().map_err(io_err(path))?;
    tmp.persist(path).map_err(|e| IoError::Io {
        path: path.to_path_buf(),
        error: e.error,
    })?;
    Ok(())
}

/// A directory built under a temporary name beside its destination and renamed into place by
/// [`AtomicDir::commit`]. Dropped without a commit, it is removed, so an interrupted run
/// leaves nothing that looks finished.
#[derive(Debug)]
pub struct AtomicDir {
    tmp: Option<tempfile::TempDir>,
    dest: PathBuf,
    replace: bool,
}

impl AtomicDir {
    /// Starts building `dest`. Fails if `dest` exists and `replace` is false.
    pub fn new(dest: &Path, replace: bool) -> Result<Self, IoError> {
        if dest.exists() && !replace {
            return Err(IoError::Exists(dest.to_path_buf()));
        }
        let parent = parent_of(dest);
        fs_err::create_dir_all(parent).map_err(io_err(parent))?;
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "out".to_string());
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}.partial-"))
            .tempdir_in(parent)
            .map_err(io_err(parent))?;
        Ok(Self {
            tmp: Some(tmp),
            dest: dest.to_path_buf(),
            replace,
        })
    }

    /// The directory to write into while building.
    pub fn path(&self) -> &Path {
        self.tmp.as_ref().map(|t| t.path()).unwrap_or(&self.dest)
    }

    /// The final destination.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Moves the finished directory into place, replacing an old one if allowed.
    pub fn commit(mut self) -> Result<PathBuf, IoError> {
        let tmp = self.tmp.take().expect("commit is called once");
        let built = tmp.keep();
        if self.dest.exists() {
            if !self.replace {
                let _ = fs_err::remove_dir_all(&built);
                return Err(IoError::Exists(self.dest.clone()));
            }
            // Move the old one aside first so that a failure in between loses nothing.
            let old = built.with_extension("old");
            fs_err::rename(&self.dest, &old).map_err(io_err(&self.dest))?;
            fs_err::rename(&built, &self.dest).map_err(io_err(&self.dest))?;
            let _ = if old.is_dir() {
                fs_err::remove_dir_all(&old)
            } else {
                fs_err::remove_file(&old)
            };
        } else {
            fs_err::rename(&built, &self.dest).map_err(io_err(&self.dest))?;
        }
        Ok(self.dest.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        write_atomic(&p, b"first").unwrap();
        write_atomic(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
    }

    #[test]
    fn atomic_dir_dropped_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        {
            let d = AtomicDir::new(&dest, false).unwrap();
            std::fs::write(d.path().join("x"), b"1").unwrap();
        }
        assert!(!dest.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn atomic_dir_commit_and_replace() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        let d = AtomicDir::new(&dest, false).unwrap();
        std::fs::write(d.path().join("x"), b"1").unwrap();
        d.commit().unwrap();
        assert!(matches!(
            AtomicDir::new(&dest, false),
            Err(IoError::Exists(_))
        ));
        let d = AtomicDir::new(&dest, true).unwrap();
        std::fs::write(d.path().join("y"), b"2").unwrap();
        d.commit().unwrap();
        assert!(!dest.join("x").exists());
        assert_eq!(std::fs::read(dest.join("y")).unwrap(), b"2");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
