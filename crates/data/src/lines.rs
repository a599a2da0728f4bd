//! Reading text files with line numbers, so every error can say where it happened.

use std::path::{Path, PathBuf};

use crate::DataError;

/// A text file checked for emptiness and UTF-8, kept whole.
pub(crate) struct TextFile {
    pub path: PathBuf,
    pub text: String,
}

impl TextFile {
    /// Reads `path`, refusing directories, empty files and invalid UTF-8 (naming the line).
    pub fn read(path: &Path, expected: &'static str) -> Result<Self, DataError> {
        if path.is_dir() {
            return Err(DataError::IsDirectory {
                path: path.to_path_buf(),
                expected,
            });
        }
        let bytes = autocaption_io::read(path)?;
        Self::from_bytes(path, bytes)
    }

    pub fn from_bytes(path: &Path, mut bytes: Vec<u8>) -> Result<Self, DataError> {
        if bytes.starts_with(b"\xEF\xBB\xBF") {
            bytes.drain(..3);
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(DataError::Empty {
                path: path.to_path_buf(),
            });
        }
        // Classic Mac line endings (a lone CR) end lines too; otherwise a whole file would be
        // one record.
        if bytes.contains(&b'\r') {
            let mut out = Vec::with_capacity(bytes.len());
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'\r' {
                    out.push(b'\n');
                    if bytes.get(i + 1) == Some(&b'\n') {
                        i += 1;
                    }
                } else {
                    out.push(bytes[i]);
                }
                i += 1;
            }
            bytes = out;
        }
        let text = String::from_utf8(bytes).map_err(|e| {
            let bad = e.utf8_error().valid_up_to();
            let before = &e.as_bytes()[..bad];
            let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
            let line_start = before
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |p| p + 1);
            DataError::Utf8 {
                path: path.to_path_buf(),
                line,
                column: bad - line_start + 1,
            }
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            text,
        })
    }

    /// Lines with their 1-based numbers, line endings (`\n` or `\r\n`) removed.
    pub fn lines(&self) -> impl Iterator<Item = (usize, &str)> {
        // A final newline ends the last line; it does not start an empty one.
        let text = self.text.strip_suffix('\n').unwrap_or(&self.text);
        text.split('\n')
            .enumerate()
            .map(|(i, l)| (i + 1, l.strip_suffix('\r').unwrap_or(l)))
    }

    /// The first line that is not blank.
    pub fn first_line(&self) -> &str {
        self.lines()
            .map(|(_, l)| l)
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
    }

    pub fn malformed(&self, line: usize, message: impl Into<String>) -> DataError {
        DataError::Malformed {
            path: self.path.clone(),
            line,
            message: message.into(),
        }
    }
}

/// Shortens `s` for an error message.
pub(crate) fn excerpt(s: &str) -> String {
    const MAX: usize = 60;
    if s.chars().count() <= MAX {
        format!("{s:?}")
    } else {
        let cut: String = s.chars().take(MAX).collect();
        format!("{cut:?}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_utf8_names_line_and_byte() {
        let err = TextFile::from_bytes(Path::new("f.txt"), b"ok\nab\xffc\n".to_vec())
            .err()
            .unwrap();
        assert_eq!(err.to_string(), "f.txt line 2: invalid UTF-8 at byte 3");
    }

    #[test]
    fn empty_and_bom() {
        assert!(matches!(
            TextFile::from_bytes(Path::new("e"), b" \n\n".to_vec()),
            Err(DataError::Empty { .. })
        ));
        let t = TextFile::from_bytes(Path::new("b"), b"\xEF\xBB\xBFx\r\ny".to_vec()).unwrap();
        assert_eq!(t.lines().collect::<Vec<_>>(), vec![(1, "x"), (2, "y")]);
        // CR-only (classic Mac) and mixed endings.
        let t = TextFile::from_bytes(Path::new("c"), b"a\rb\r\nc\rd\n".to_vec()).unwrap();
        assert_eq!(
            t.lines().collect::<Vec<_>>(),
            vec![(1, "a"), (2, "b"), (3, "c"), (4, "d")]
        );
    }
}
