//! Flickr30k `results.csv`: header `image_name| comment_number| comment`, then
//! `1000092795.jpg| 0| Two young guys …`. The real file has a line whose second delimiter is
//! missing (`2199200615.jpg| 4 A dog runs …`); such lines are recovered and reported.

use std::path::Path;

use crate::builder::DatasetBuilder;
use crate::lines::{excerpt, TextFile};
use crate::{DataError, Dataset, Format, NoteKind};

const LAYOUT: &str = r#"expected "<image>| <n>| <caption>""#;

/// Reads a Flickr30k results file.
pub fn read(path: &Path, lenient: bool) -> Result<Dataset, DataError> {
    let file = TextFile::read(path, "Flickr30k results")?;
    let mut b = DatasetBuilder::new(path, Format::Flickr30k);
    b.check_final_newline(&file.text);
    let mut header_seen = false;
    for (n, line) in file.lines() {
        if line.trim().is_empty() {
            b.blank_line(n);
            continue;
        }
        if !header_seen {
            header_seen = true;
            if sniff(line) {
                continue;
            }
        }
        match parse_line(line) {
            Ok((name, number, caption, recovered)) => {
                if recovered {
                    b.note(NoteKind::RecoveredLine, n, &excerpt(line));
                }
                b.caption(name, Some(number), caption, n)
            }
            Err(why) if lenient => b.skipped(n, &why),
            Err(why) => return Err(file.malformed(n, why)),
        }
    }
    Ok(b.finish())
}

fn parse_line(line: &str) -> Result<(&str, u32, &str, bool), String> {
    let fields: Vec<&str> = line.splitn(3, '|').collect();
    let number_of = |s: &str| s.trim().parse::<u32>().ok();
    match fields.as_slice() {
        [name, number, caption] => {
            let number = number_of(number).ok_or_else(|| {
                format!(
                    "{LAYOUT}, caption number {} is not a number",
                    excerpt(number)
                )
            })?;
            Ok((name.trim(), number, caption.trim(), false))
        }
        [name, rest] => {
            // The missing-delimiter quirk: "<n> <caption>" in one field.
            let rest = rest.trim_start();
            let (number, caption) = rest
                .split_once(' ')
                .and_then(|(n, c)| Some((number_of(n)?, c)))
                .ok_or_else(|| format!("{LAYOUT}, found 2 fields in {}", excerpt(line)))?;
            Ok((name.trim(), number, caption.trim(), true))
        }
        _ => Err(format!("{LAYOUT}, found no '|' in {}", excerpt(line))),
    }
}

/// True when the first line is the Flickr30k header.
pub(crate) fn sniff(first_line: &str) -> bool {
    let fields: Vec<_> = first_line.split('|').map(str::trim).collect();
    fields == ["image_name", "comment_number", "comment"]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_recovers_missing_delimiter() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("results.csv");
        std::fs::write(
            &p,
            "image_name| comment_number| comment\n1.jpg| 0| Two guys .\n1.jpg| 1| A b|c .\n2.jpg| 4 A dog runs .\n",
        )
        .unwrap();
        let ds = read(&p, false).unwrap();
        assert_eq!(ds.images[0].captions, vec!["Two guys .", "A b|c ."]);
        assert_eq!(ds.images[1].captions, vec!["A dog runs ."]);
        assert_eq!(ds.report.count(NoteKind::RecoveredLine), 1);
        std::fs::write(&p, "image_name| comment_number| comment\n1.jpg, 0, tabs\n").unwrap();
        let e = read(&p, false).unwrap_err().to_string();
        assert!(e.contains("results.csv line 2: expected"), "{e}");
    }
}
