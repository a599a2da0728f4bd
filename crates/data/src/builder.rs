//! Collects captions from any format into a [`Dataset`], applying the quirk rules once.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::{is_image_name, Dataset, Format, ImageEntry, NoteKind, Report};

pub(crate) struct DatasetBuilder {
    source: PathBuf,
    format: Format,
    images: Vec<ImageEntry>,
    by_name: HashMap<String, usize>,
    // (image index, caption number) pairs seen, for formats that number captions.
    numbered: HashSet<(usize, u32)>,
    dropped_names: HashMap<String, usize>,
    records: usize,
    pub report: Report,
}

impl DatasetBuilder {
    pub fn new(source: &Path, format: Format) -> Self {
        Self {
            source: source.to_path_buf(),
            format,
            images: Vec::new(),
            by_name: HashMap::new(),
            numbered: HashSet::new(),
            dropped_names: HashMap::new(),
            records: 0,
            report: Report::default(),
        }
    }

    fn place(&self, line: usize) -> String {
        let file = self.source.file_name().map_or_else(
            || self.source.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        if line == 0 {
            file
        } else {
            format!("{file} line {line}")
        }
    }

    /// Index of the entry for `name`, created if new.
    pub fn entry(&mut self, name: &str) -> usize {
        if let Some(&i) = self.by_name.get(name) {
            return i;
        }
        self.images.push(ImageEntry {
            name: name.to_string(),
            id: None,
            path: None,
            split: None,
            captions: Vec::new(),
        });
        self.by_name.insert(name.to_string(), self.images.len() - 1);
        self.images.len() - 1
    }

    pub fn entry_mut(&mut self, i: usize) -> &mut ImageEntry {
        &mut self.images[i]
    }

    /// Adds one caption record read at `line` (0 when the format has no lines). `number` is
    /// the caption's number within its image where the format has one.
    pub fn caption(&mut self, name: &str, number: Option<u32>, caption: &str, line: usize) {
        self.records += 1;
        if name.chars().any(char::is_control) {
            let place = self.place(line);
            self.report.add(NoteKind::SkippedMalformed, || {
                format!("{place}: the image name {name:?} has a control character")
            });
            return;
        }
        if !is_image_name(name) {
            let n = self.dropped_names.entry(name.to_string()).or_insert(0);
            *n += 1;
            if *n == 1 {
                let place = self.place(line);
                self.report
                    .add(NoteKind::NotAnImage, || format!("{place}: {name:?}"));
            }
            return;
        }
        let i = self.entry(name);
        if let Some(n) = number {
            if !self.numbered.insert((i, n)) {
                let place = self.place(line);
                self.report
                    .add(NoteKind::DuplicateLine, || format!("{place}: {name}#{n}"));
                return;
            }
        }
        let caption = caption.trim();
        if caption.is_empty() {
            let place = self.place(line);
            self.report
                .add(NoteKind::EmptyCaption, || format!("{place}: {name}"));
            return;
        }
        // Two annotators can write the same sentence: noted, and kept, as the seed does.
        if self.images[i].captions.iter().any(|c| c == caption) {
            let place = self.place(line);
            self.report.add(NoteKind::DuplicateCaption, || {
                format!("{place}: {name}: {caption:?}")
            });
        }
        self.images[i].captions.push(caption.to_string());
    }

    /// Notes a text file whose last line has no line break, a sign of a cut-off file.
    pub fn check_final_newline(&mut self, text: &str) {
        if !text.ends_with('\n') {
            let last = text.lines().count();
            let place = self.place(last);
            self.report.add(NoteKind::NoFinalNewline, || place);
        }
    }

    pub fn blank_line(&mut self, line: usize) {
        let place = self.place(line);
        self.report.add(NoteKind::BlankLine, || place);
    }

    pub fn skipped(&mut self, line: usize, why: &str) {
        let place = self.place(line);
        self.report
            .add(NoteKind::SkippedMalformed, || format!("{place}: {why}"));
    }

    pub fn note(&mut self, kind: NoteKind, line: usize, what: &str) {
        let place = self.place(line);
        self.report.add(kind, || format!("{place}: {what}"));
    }

    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    pub fn finish(self) -> Dataset {
        let names_read = self.images.len() + self.dropped_names.len();
        let mut images = self.images;
        // An image whose every caption was dropped is no image of the dataset.
        images.retain(|i| !i.captions.is_empty());
        Dataset {
            source: self.source,
            format: self.format,
            images,
            records_read: self.records,
            names_read,
            report: self.report,
        }
    }
}
