//! `Flickr8k.token.txt` (and the lemmatised `Flickr8k.lemma.token.txt`):
//! `1000268201_693b08cb0e.jpg#0<TAB>A child in a pink dress …`.

use std::path::Path;

use crate::builder::DatasetBuilder;
use crate::lines::{excerpt, TextFile};
use crate::{DataError, Dataset, Format};

const LAYOUT: &str = r#"expected "<image>#<n><TAB><caption>""#;

/// Reads a Flickr8k token file. A malformed line is an error unless `lenient`.
pub fn read(path: &Path, lenient: bool) -> Result<Dataset, DataError> {
    let file = TextFile::read(path, "Flickr8k token")?;
    let mut b = DatasetBuilder::new(path, Format::Flickr8k);
    b.check_final_newline(&file.text);
    for (n, line) in file.lines() {
        if line.trim().is_empty() {
            b.blank_line(n);
            continue;
        }
        match parse_line(line) {
            Ok((name, number, caption)) => b.caption(name, Some(number), caption, n),
            Err(why) if lenient => b.skipped(n, &why),
            Err(why) => return Err(file.malformed(n, why)),
        }
    }
    Ok(b.finish())
}

fn parse_line(line: &str) -> Result<(&str, u32, &str), String> {
    let Some((id, caption)) = line.split_once('\t') else {
        return Err(format!("{LAYOUT}, found no tab in {}", excerpt(line)));
    };
    let Some((name, number)) = id.rsplit_once('#') else {
        return Err(format!("{LAYOUT}, found no '#<n>' in {}", excerpt(id)));
    };
    let number: u32 = number.trim().parse().map_err(|_| {
        format!(
            "{LAYOUT}, caption number {} is not a number",
            excerpt(number)
        )
    })?;
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("{LAYOUT}, image name is empty"));
    }
    Ok((name, number, caption))
}

/// True when `first_line` looks like a Flickr8k token line (tab or, mistakenly, spaces).
pub(crate) fn sniff(first_line: &str) -> bool {
    let id = first_line.split(['\t', ' ']).next().unwrap_or("");
    id.rsplit_once('#').is_some_and(|(name, n)| {
        !name.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NoteKind;

    fn write(text: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("Flickr8k.token.txt");
        std::fs::write(&p, text).unwrap();
        (d, p)
    }

    #[test]
    fn reads_and_reports_quirks() {
        let (_d, p) = write(
            b"a.jpg#0\tA dog .\na.jpg#1\tA cat .\n\nb.jpg.1#0\tghost\na.jpg#1\tA cat .\nb.jpg#0\tx\nb.jpg#1\tx\n",
        );
        let ds = read(&p, false).unwrap();
        assert_eq!(ds.records_read, 6);
        assert_eq!(ds.names_read, 3);
        assert_eq!(ds.images.len(), 2);
        assert_eq!(ds.images[0].captions, vec!["A dog .", "A cat ."]);
        assert_eq!(ds.images[1].captions, vec!["x", "x"]);
        assert_eq!(ds.report.count(NoteKind::NotAnImage), 1);
        assert_eq!(ds.report.count(NoteKind::DuplicateLine), 1);
        assert_eq!(ds.report.count(NoteKind::DuplicateCaption), 1);
        assert_eq!(ds.report.count(NoteKind::BlankLine), 1);
    }

    #[test]
    fn wrong_delimiter_names_line() {
        let (_d, p) = write(b"a.jpg#0\tok\na.jpg#1 A dog with spaces\n");
        let e = read(&p, false).unwrap_err().to_string();
        assert!(e.ends_with("Flickr8k.token.txt line 2: expected \"<image>#<n><TAB><caption>\", found no tab in \"a.jpg#1 A dog with spaces\""), "{e}");
        let ds = read(&p, true).unwrap();
        assert_eq!(ds.report.count(NoteKind::SkippedMalformed), 1);
        assert_eq!(ds.report.count(NoteKind::NoFinalNewline), 0);
        assert_eq!(ds.caption_count(), 1);
    }

    #[test]
    fn truncated_file_is_noted_or_an_error() {
        let (_d, p) = write(b"a.jpg#0\tok\na.jpg#1\tA dog ru");
        let ds = read(&p, false).unwrap();
        assert_eq!(ds.report.count(NoteKind::NoFinalNewline), 1);
        let (_d, p) = write(b"a.jpg#0\tok\na.jpg#");
        let e = read(&p, false).unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn sniffing() {
        assert!(sniff("1000268201_693b08cb0e.jpg#0\tA child"));
        assert!(sniff("x.jpg#12 spaces"));
        assert!(!sniff("image,caption"));
        assert!(!sniff("x.jpg#a\tcap"));
    }
}
