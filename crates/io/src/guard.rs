//! Checks made before an output is written, so that nothing a user has is lost: an output
//! never replaces an input (or a folder holding one), never replaces what the command did
//! not write itself, and replaces an earlier output only when asked (`--force`).

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::IoError;

/// How an earlier output of the same command is recognised.
#[derive(Debug, Clone, Copy)]
pub enum Ours<'a> {
    /// A directory holding this file (or an empty directory).
    DirWith(&'a str),
    /// A file whose first bytes are these.
    FileStarting(&'a [u8]),
    /// A file with this text in its first 4 KiB (a generator's comment or a format's
    /// producer field).
    FileMentioning(&'a str),
}

/// `path` made absolute with symbolic links resolved, also when it does not exist yet
/// (its nearest existing ancestor is resolved and the rest appended).
pub fn resolved(path: &Path) -> PathBuf {
    if let Ok(p) = path.canonicalize() {
        return p;
    }
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    let mut rest = Vec::new();
    let mut base = abs.as_path();
    while let Some(parent) = base.parent() {
        if let Some(name) = base.file_name() {
            rest.push(name.to_os_string());
        }
        if let Ok(p) = parent.canonicalize() {
            let mut out = p;
            for n in rest.iter().rev() {
                out.push(n);
            }
            return out;
        }
        base = parent;
    }
    abs
}

/// Refuses when `out` is one of `inputs` or a directory holding one.
pub fn refuse_input(out: &Path, inputs: &[&Path]) -> Result<(), IoError> {
    let out_r = resolved(out);
    for input in inputs {
        if input.as_os_str().is_empty() {
            continue;
        }
        if resolved(input).starts_with(&out_r) {
            return Err(IoError::OutputIsInput {
                out: out.to_path_buf(),
                input: input.to_path_buf(),
            });
        }
    }
    Ok(())
}

fn foreign(path: &Path, why: impl Into<String>) -> IoError {
    IoError::Foreign {
        path: path.to_path_buf(),
        why: why.into(),
    }
}

fn head(path: &Path, n: u64) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.take(n).read_to_end(&mut buf);
    }
    buf
}

/// Checks that writing `out` is allowed, before anything is written: `out` is not one of
/// `inputs` and holds none of them; when it exists, `force` is given and it is an earlier
/// output of the command (recognised by `ours`).
pub fn check_output(
    out: &Path,
    force: bool,
    ours: Ours<'_>,
    inputs: &[&Path],
) -> Result<(), IoError> {
    refuse_input(out, inputs)?;
    let Ok(meta) = std::fs::symlink_metadata(out) else {
        return Ok(());
    };
    if !force {
        return Err(IoError::Exists(out.to_path_buf()));
    }
    let meta = std::fs::metadata(out).unwrap_or(meta);
    match ours {
        Ours::DirWith(marker) => {
            if !meta.is_dir() {
                return Err(foreign(out, "is not a directory"));
            }
            let empty = std::fs::read_dir(out)
                .map_err(|error| IoError::Io {
                    path: out.to_path_buf(),
                    error,
                })?
                .next()
                .is_none();
            if !empty && !out.join(marker).is_file() {
                return Err(foreign(
                    out,
                    format!("is not an earlier output of this command (no {marker} in it)"),
                ));
            }
        }
        Ours::FileStarting(magic) => {
            if !meta.is_file() || !head(out, magic.len() as u64).starts_with(magic) {
                return Err(foreign(out, "is not an earlier output of this command"));
            }
        }
        Ours::FileMentioning(text) => {
            let h = head(out, 4096);
            let found = h.windows(text.len()).any(|w| w == text.as_bytes());
            if !meta.is_file() || !found {
                return Err(foreign(
                    out,
                    format!(
                        "is not an earlier output of this command (it does not mention {text:?})"
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_never_replace_inputs_or_strangers() {
        let d = tempfile::tempdir().unwrap();
        let data = d.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("captions.txt"), "x").unwrap();
        let input = data.join("captions.txt");
        // The output is the input's folder, or the input itself.
        for out in [&data, &input, &d.path().to_path_buf()] {
            let e = check_output(out, true, Ours::DirWith("m"), &[&input]).unwrap_err();
            assert!(matches!(e, IoError::OutputIsInput { .. }), "{e}");
        }
        // Through a relative path with `..`.
        let twisted = data.join("..").join("data");
        assert!(check_output(&twisted, true, Ours::DirWith("m"), &[&input]).is_err());
        // A new path is fine; an existing one needs --force and our marker.
        let out = d.path().join("out");
        check_output(&out, false, Ours::DirWith("m"), &[&input]).unwrap();
        std::fs::create_dir(&out).unwrap();
        check_output(&out, true, Ours::DirWith("m"), &[&input]).unwrap(); // empty
        std::fs::write(out.join("photo.jpg"), "x").unwrap();
        let e = check_output(&out, false, Ours::DirWith("m"), &[]).unwrap_err();
        assert!(matches!(e, IoError::Exists(_)));
        let e = check_output(&out, true, Ours::DirWith("m"), &[]).unwrap_err();
        assert!(e.to_string().contains("no m in it"), "{e}");
        std::fs::write(out.join("m"), "x").unwrap();
        check_output(&out, true, Ours::DirWith("m"), &[]).unwrap();
        // Files.
        let f = d.path().join("sheet.png");
        std::fs::write(&f, b"hello").unwrap();
        assert!(check_output(&f, true, Ours::FileStarting(b"\x89PNG"), &[]).is_err());
        assert!(check_output(&f, true, Ours::FileMentioning("ell"), &[]).is_ok());
        assert!(check_output(&f, false, Ours::FileMentioning("ell"), &[]).is_err());
    }
}
