//! Two-column caption CSVs: Kaggle's `captions.txt` (header `image,caption`, captions with
//! commas double-quoted) and the plain `image,caption` CSV that sits beside a folder of
//! images (header optional).

use std::path::Path;

use crate::builder::DatasetBuilder;
use crate::lines::{excerpt, TextFile};
use crate::{is_image_name, DataError, Dataset, Format};

/// Reads a caption CSV. For [`Format::Kaggle`] the header `image,caption` is required; for
/// [`Format::Csv`] a first row whose first field is not an image name is taken as a header.
pub fn read(path: &Path, format: Format, lenient: bool) -> Result<Dataset, DataError> {
    let file = TextFile::read(path, "caption CSV")?;
    let mut b = DatasetBuilder::new(path, format);
    b.check_final_newline(&file.text);
    for (n, line) in file.lines() {
        if line.trim().is_empty() {
            b.blank_line(n);
        }
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(file.text.as_bytes());
    let mut first = true;
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line() as usize);
            file.malformed(line, format!("not valid CSV: {e}"))
        })?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        if std::mem::take(&mut first) {
            let is_header = match format {
                Format::Kaggle => {
                    let fields: Vec<_> = record
                        .iter()
                        .map(|f| f.trim().to_ascii_lowercase())
                        .collect();
                    if fields != ["image", "caption"] {
                        return Err(file.malformed(
                            line,
                            format!(
                                "expected the header \"image,caption\", found {}",
                                excerpt(file.first_line())
                            ),
                        ));
                    }
                    true
                }
                _ => !record.get(0).is_some_and(|f| is_image_name(f.trim())),
            };
            if is_header {
                continue;
            }
        }
        match parse(&record) {
            Ok((name, caption)) => b.caption(name, None, caption, line),
            Err(why) if lenient => b.skipped(line, &why),
            Err(why) => return Err(file.malformed(line, why)),
        }
    }
    Ok(b.finish())
}

fn parse(record: &csv::StringRecord) -> Result<(&str, &str), String> {
    if record.len() != 2 {
        let joined: Vec<_> = record.iter().collect();
        let hint = if record.len() > 2 {
            " (is a caption with a comma missing its double quotes?)"
        } else {
            " (is the delimiter a comma?)"
        };
        return Err(format!(
            "expected 2 fields \"image,caption\", found {} in {}{hint}",
            record.len(),
            excerpt(&joined.join(","))
        ));
    }
    let (name, caption) = (record[0].trim(), &record[1]);
    if caption.contains('\n') {
        return Err("unterminated double quote: the caption runs over several lines".into());
    }
    if name.is_empty() {
        return Err("image name is empty".into());
    }
    Ok((name, caption))
}

/// True when the first line is Kaggle's header.
pub(crate) fn sniff_kaggle(first_line: &str) -> bool {
    let fields: Vec<_> = first_line
        .split(',')
        .map(|f| f.trim().to_ascii_lowercase())
        .collect();
    fields == ["image", "caption"]
}

/// True when the first line looks like a two-column CSV row or header.
pub(crate) fn sniff_csv(first_line: &str) -> bool {
    first_line.contains(',')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NoteKind;

    fn write(name: &str, text: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(name);
        std::fs::write(&p, text).unwrap();
        (d, p)
    }

    #[test]
    fn kaggle_quoted_commas() {
        let (_d, p) = write(
            "captions.txt",
            b"image,caption\na.jpg,A dog .\na.jpg,\"A dog, a cat .\"\nb.jpg,x y\n",
        );
        let ds = read(&p, Format::Kaggle, false).unwrap();
        assert_eq!(ds.images.len(), 2);
        assert_eq!(ds.images[0].captions[1], "A dog, a cat .");
    }

    #[test]
    fn kaggle_requires_header() {
        let (_d, p) = write("captions.txt", b"a.jpg,A dog .\n");
        let e = read(&p, Format::Kaggle, false).unwrap_err().to_string();
        assert!(e.contains("line 1: expected the header"), "{e}");
    }

    #[test]
    fn unquoted_comma_is_an_error_with_line_or_skipped() {
        let (_d, p) = write("c.csv", b"image,caption\na.jpg,ok\na.jpg,one, two\n");
        let e = read(&p, Format::Kaggle, false).unwrap_err().to_string();
        assert!(e.contains("c.csv line 3: expected 2 fields"), "{e}");
        let ds = read(&p, Format::Kaggle, true).unwrap();
        assert_eq!(ds.report.count(NoteKind::SkippedMalformed), 1);
    }

    #[test]
    fn unterminated_quote() {
        let (_d, p) = write(
            "c.csv",
            b"image,caption\na.jpg,ok\na.jpg,\"never closed\nb.jpg,x\n",
        );
        let e = read(&p, Format::Kaggle, false).unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("unterminated"), "{e}");
    }

    #[test]
    fn plain_csv_without_header() {
        let (_d, p) = write("c.csv", b"a.png,first\nb.png,second\n");
        let ds = read(&p, Format::Csv, false).unwrap();
        assert_eq!(ds.images.len(), 2);
        let (_d, p) = write("c.csv", b"file,text\na.png,first\n");
        assert_eq!(read(&p, Format::Csv, false).unwrap().images.len(), 1);
    }
}
