use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

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
    /// A file to read is a directory, a FIFO, a device or a socket.
    #[error("{path}: is {kind}, not a regular file")]
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What it is instead ("a directory", "a FIFO", …).
        kind: &'static str,
    },
    /// A file to read is larger than the read limit.
    #[error("{path}: {size} bytes is more than the limit of {limit} bytes on one file (raise it with --max-file-bytes)")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size (or how much was read before giving up).
        size: u64,
        /// The limit in force.
        limit: u64,
    },
    /// An output path is an input, or holds one: replacing it would destroy the input.
    #[error("{out} is or contains the input {input}; write the output somewhere else")]
    OutputIsInput {
        /// The output.
        out: PathBuf,
        /// The input it would destroy.
        input: PathBuf,
    },
    /// The destination exists but is not something this command wrote.
    #[error("{path} exists and {why}; refusing to replace it, even with --force")]
    Foreign {
        /// The destination.
        path: PathBuf,
        /// Why it is not taken for an earlier output.
        why: String,
    },
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

/// Default of [`read_limit`]: 16 GiB.
pub const DEFAULT_READ_LIMIT: u64 = 16 << 30;

static READ_LIMIT: AtomicU64 = AtomicU64::new(DEFAULT_READ_LIMIT);

/// The largest file [`read`] accepts, in bytes.
pub fn read_limit() -> u64 {
    READ_LIMIT.load(Ordering::Relaxed)
}

/// Sets the largest file [`read`] accepts (the CLI's `--max-file-bytes`).
pub fn set_read_limit(bytes: u64) {
    READ_LIMIT.store(bytes, Ordering::Relaxed);
}

/// What a path that is not a regular file is, in words.
fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    "not a regular file"
}

/// Checks that `path` is a regular file (following symbolic links) before it is opened: a
/// FIFO would block the open forever and a device never ends.
pub fn check_regular_file(path: &Path) -> Result<std::fs::Metadata, IoError> {
    let meta = std::fs::metadata(path).map_err(io_err(path))?;
    if !meta.is_file() {
        return Err(IoError::NotAFile {
            path: path.to_path_buf(),
            kind: kind_of(&meta),
        });
    }
    Ok(meta)
}

/// Reads a whole regular file, at most [`read_limit`] bytes; the error names the path (and
/// the limit).
pub fn read(path: &Path) -> Result<Vec<u8>, IoError> {
    let meta = check_regular_file(path)?;
    let limit = read_limit();
    if meta.len() > limit {
        return Err(IoError::TooLarge {
            path: path.to_path_buf(),
            size: meta.len(),
            limit,
        });
    }
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // The file may grow while it is read: never past the limit.
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err(path))?;
    if bytes.len() as u64 > limit {
        return Err(IoError::TooLarge {
            path: path.to_path_buf(),
            size: bytes.len() as u64,
            limit,
        });
    }
    Ok(bytes)
}

/// [`read`] as UTF-8 text; invalid UTF-8 is an error naming the path and the byte.
pub fn read_to_string(path: &Path) -> Result<String, IoError> {
    String::from_utf8(read(path)?).map_err(|e| IoError::Io {
        path: path.to_path_buf(),
        error: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("invalid UTF-8 at byte {}", e.utf8_error().valid_up_to()),
        ),
    })
}

/// Paths of this process's unfinished outputs (staging directories and temporary files),
/// removed by [`remove_staging`] when the process is interrupted.
static STAGING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Directories already searched for stale staging left by killed runs.
static SWEPT: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn staging() -> MutexGuard<'static, Vec<PathBuf>> {
    STAGING.lock().unwrap_or_else(|e| e.into_inner())
}

fn unregister(list: &mut Vec<PathBuf>, p: &Path) {
    list.retain(|q| q != p);
}

/// Held by an interrupted process between [`remove_staging`] and its exit, so that no output
/// is renamed into place in between.
pub struct StagingLock(#[allow(dead_code)] MutexGuard<'static, Vec<PathBuf>>);

/// Removes every unfinished output of this process (for a SIGINT/SIGTERM handler, which then
/// exits while holding the returned lock). Returns the lock and how many paths were removed.
pub fn remove_staging() -> (StagingLock, usize) {
    let mut list = staging();
    let mut removed = 0;
    for p in list.drain(..) {
        if !p.is_dir() {
            removed += usize::from(std::fs::remove_file(&p).is_ok());
            continue;
        }
        // Other threads may still be writing into it: moved aside first (their next file
        // fails to open), then removed, again if a file landed in between. The new name
        // keeps the staging prefix, so a later run sweeps whatever still fails.
        let mut aside = p.clone().into_os_string();
        aside.push("-interrupted");
        let aside = PathBuf::from(aside);
        let target = if std::fs::rename(&p, &aside).is_ok() {
            aside
        } else {
            p
        };
        for _ in 0..50 {
            match std::fs::remove_dir_all(&target) {
                Ok(()) => {
                    removed += 1;
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        }
    }
    (StagingLock(list), removed)
}

/// Who owns a staging name: `PID@HOST`, HOST a hash of the host name, so that processes
/// of another machine or container (another PID namespace) sharing the folder are never
/// taken for dead ones. `None` where the host name is unknown (nothing is then swept).
fn owner() -> String {
    format!("{}@{}", std::process::id(), host_tag())
}

/// This host's tag in staging names: 8 hex digits of a hash (FNV-1a) of the host name.
pub fn host_tag() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let mut h: u32 = 0x811c_9dc5;
    for b in host.trim().bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

/// True when the staging entry `name` (after `prefix`) belongs to a process of this host
/// that is certainly gone (only known on systems with /proc).
fn is_stale(name: &str, prefix: &str) -> bool {
    let Some(tag) = name.strip_prefix(prefix).and_then(|r| r.split('-').next()) else {
        return false;
    };
    let Some((pid, host)) = tag.split_once('@') else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    host == host_tag()
        && pid != std::process::id()
        && Path::new("/proc/self").exists()
        && !Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes staging entries in `dir` whose names start with `prefix` and whose process is
/// gone: what a run killed by SIGKILL, an abort or a power cut left behind. Each directory
/// is searched once per process. Returns what was removed.
pub fn remove_stale(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    {
        let mut swept = SWEPT.lock().unwrap_or_else(|e| e.into_inner());
        let key = dir.join(prefix);
        if swept.contains(&key) {
            return Vec::new();
        }
        swept.push(key);
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if is_stale(&name, prefix) {
            let p = e.path();
            let gone = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
            if gone.is_ok() {
                removed.push(p);
            }
        }
    }
    removed
}

fn tmp_prefix() -> String {
    format!(".autocaption-{}-", owner())
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so
/// that readers see either the old file or the complete new one, never a partial write.
/// The temporary file is removed on error and on SIGINT/SIGTERM (see [`remove_staging`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), IoError> {
    write_atomic_with(path, &mut |w| w.write_all(bytes))
}

/// [`write_atomic`] for a file written piece by piece: `fill` writes the whole content to
/// the temporary file (buffered), which is then synced and renamed into place; on an error
/// from `fill` nothing replaces `path`.
pub fn write_atomic_with(
    path: &Path,
    fill: &mut dyn FnMut(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), IoError> {
    let dir = parent_of(path);
    remove_stale(dir, ".autocaption-");
    let mut tmp = tempfile::Builder::new()
        .prefix(&tmp_prefix())
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(io_err(dir))?;
    let tmp_path = tmp.path().to_path_buf();
    staging().push(tmp_path.clone());
    let result = (|| {
        {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
            fill(&mut w).map_err(io_err(path))?;
            w.flush().map_err(io_err(path))?;
        }
        tmp.as_file().sync_all().map_err(io_err(path))?;
        let mut list = staging();
        unregister(&mut list, &tmp_path);
        tmp.persist(path).map_err(|e| IoError::Io {
            path: path.to_path_buf(),
            error: e.error,
        })?;
        Ok(())
    })();
    unregister(&mut staging(), &tmp_path);
    result
}

/// Writes several files that belong together (generated code and its weights, a model and
/// its external data): every file is written and synced under a temporary name first, then
/// all are renamed into place one after the other, with interrupts held off. A failure or a
/// kill before the renames leaves every old file as it was.
pub fn write_files_atomic(files: &[(PathBuf, Vec<u8>)]) -> Result<(), IoError> {
    let mut staged = Vec::new();
    let cleanup = |staged: &mut Vec<(tempfile::NamedTempFile, &PathBuf)>| {
        let mut list = staging();
        for (t, _) in staged.drain(..) {
            unregister(&mut list, t.path());
        }
    };
    for (path, bytes) in files {
        let dir = parent_of(path);
        remove_stale(dir, ".autocaption-");
        let made = tempfile::Builder::new()
            .prefix(&tmp_prefix())
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(io_err(dir));
        let mut tmp = match made {
            Ok(t) => t,
            Err(e) => {
                cleanup(&mut staged);
                return Err(e);
            }
        };
        staging().push(tmp.path().to_path_buf());
        let written = tmp
            .write_all(bytes)
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(io_err(path));
        staged.push((tmp, path));
        if let Err(e) = written {
            cleanup(&mut staged);
            return Err(e);
        }
    }
    let mut list = staging();
    for (tmp, path) in staged {
        unregister(&mut list, tmp.path());
        tmp.persist(path).map_err(|e| IoError::Io {
            path: path.to_path_buf(),
            error: e.error,
        })?;
    }
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
    /// Starts building `dest`, after [`check_output`](crate::check_output): `dest` is not one
    /// of `inputs` and holds none of them, and when it exists, `replace` is true and it is
    /// an earlier output (empty, or holding `marker`).
    pub fn new(
        dest: &Path,
        replace: bool,
        marker: &str,
        inputs: &[&Path],
    ) -> Result<Self, IoError> {
        crate::check_output(dest, replace, crate::Ours::DirWith(marker), inputs)?;
        let parent = parent_of(dest);
        fs_err::create_dir_all(parent).map_err(io_err(parent))?;
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "out".to_string());
        remove_stale(parent, &format!(".{name}.partial-"));
        remove_stale(parent, ".autocaption-");
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}.partial-{}-", owner()))
            .tempdir_in(parent)
            .map_err(io_err(parent))?;
        staging().push(tmp.path().to_path_buf());
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
        // Held until the directory is in place: an interrupt waits for the renames.
        let mut list = staging();
        let built = tmp.keep();
        unregister(&mut list, &built);
        let placed = self.place(&built);
        if placed.is_err() {
            let _ = fs_err::remove_dir_all(&built);
        }
        placed.map(|()| self.dest.clone())
    }

    fn place(&self, built: &Path) -> Result<(), IoError> {
        if !self.dest.exists() {
            return fs_err::rename(built, &self.dest).map_err(io_err(&self.dest));
        }
        if !self.replace {
            return Err(IoError::Exists(self.dest.clone()));
        }
        // Move the old one aside first so that a failure in between loses nothing.
        let old = built.with_extension("old");
        fs_err::rename(&self.dest, &old).map_err(io_err(&self.dest))?;
        if let Err(e) = fs_err::rename(built, &self.dest) {
            let _ = fs_err::rename(&old, &self.dest);
            return Err(io_err(&self.dest)(e));
        }
        let _ = if old.is_dir() {
            fs_err::remove_dir_all(&old)
        } else {
            fs_err::remove_file(&old)
        };
        Ok(())
    }
}

impl Drop for AtomicDir {
    fn drop(&mut self) {
        if let Some(t) = &self.tmp {
            unregister(&mut staging(), t.path());
        }
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
            let d = AtomicDir::new(&dest, false, "x", &[]).unwrap();
            std::fs::write(d.path().join("x"), b"1").unwrap();
        }
        assert!(!dest.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn atomic_dir_commit_and_replace() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        let d = AtomicDir::new(&dest, false, "x", &[]).unwrap();
        std::fs::write(d.path().join("x"), b"1").unwrap();
        d.commit().unwrap();
        assert!(matches!(
            AtomicDir::new(&dest, false, "x", &[]),
            Err(IoError::Exists(_))
        ));
        let d = AtomicDir::new(&dest, true, "x", &[]).unwrap();
        std::fs::write(d.path().join("y"), b"2").unwrap();
        d.commit().unwrap();
        assert!(!dest.join("x").exists());
        assert_eq!(std::fs::read(dest.join("y")).unwrap(), b"2");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
