//! Captions for a photo collection: in chunks (memory stays flat however many photos), into a
//! JSON Lines record that a killed run resumes from, a CSV, an accessible HTML gallery and XMP
//! sidecars; one shard of N at a time, and shard outputs merged into exactly what one run
//! writes.

use std::collections::{BTreeMap, HashSet};
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use autocaption_features::FeatureStore;
use autocaption_io::{Ours, Progress};
use serde::{Deserialize, Serialize};

use crate::captioner::{Caption, CaptionOptions, Captioner, PhotoResult};
use crate::extract::Failure;
use crate::xmp::{write_sidecar, SidecarCaption, SidecarNaming};
use crate::{Error, Result};

/// One shard of N: the photos whose file name hashes (FNV-1a, 64 bits) to `index` modulo
/// `count`. The name alone decides, so every machine agrees whatever the folder's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard, from 0.
    pub index: usize,
    /// How many.
    pub count: usize,
}

impl FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || {
            format!(
                "--shard {s:?}: expected I/N with 0 ≤ I < N ≤ 100000 (e.g. 0/4 … 3/4; \
                 Kubernetes' JOB_COMPLETION_INDEX and Slurm's SLURM_ARRAY_TASK_ID count from 0)"
            )
        };
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            i.trim().parse::<usize>().map_err(|_| bad())?,
            n.trim().parse::<usize>().map_err(|_| bad())?,
        );
        if count == 0 || count > 100_000 || index >= count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }
}

impl Shard {
    /// Whether the photo named `name` (a file name or a path: its file name decides) is in
    /// this shard.
    pub fn holds(&self, name: &str) -> bool {
        let file = Path::new(name)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| name.to_string());
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in file.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        (h % self.count as u64) as usize == self.index
    }
}

/// One photo's line of the record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaptionRecord {
    /// The photo, as given (a folder's photos as FOLDER/NAME).
    pub image: String,
    /// The best caption.
    pub caption: String,
    /// Its length-normalised log-probability.
    pub score: f64,
    /// The other beams, best first.
    #[serde(default)]
    pub alternatives: Vec<Caption>,
}

/// Settings of [`caption_collection`].
#[derive(Debug, Clone)]
pub struct CollectionSettings {
    /// The photos (folders expanded).
    pub photos: Vec<PathBuf>,
    /// Only this shard of them.
    pub shard: Option<Shard>,
    /// The JSON Lines record: resumable, mergeable.
    pub out: Option<PathBuf>,
    /// `image,caption,score` as CSV.
    pub csv: Option<PathBuf>,
    /// An HTML gallery.
    pub html: Option<PathBuf>,
    /// XMP sidecars beside the photos.
    pub xmp: Option<SidecarNaming>,
    /// How captions are made.
    pub options: CaptionOptions,
    /// Photos a chunk (one part of the record a chunk).
    pub save_every: usize,
}

/// What [`caption_collection`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CollectionReport {
    /// Photos given (in this shard).
    pub photos: usize,
    /// Of those, captioned by an earlier run.
    pub already_done: usize,
    /// Captioned now.
    pub captioned: usize,
    /// Photos that could not be read.
    pub failed: Vec<Failure>,
    /// Sidecars written.
    pub sidecars: usize,
    /// Lines of the record.
    pub rows: usize,
}

/// Something worth telling while [`caption_collection`] runs.
#[derive(Debug, Clone)]
pub enum CollectionEvent<'a> {
    /// A photo could not be read and is skipped.
    Skipped(&'a Failure),
    /// A chunk was saved: photos in the record so far.
    Saved(usize),
}

/// The folder of a record's parts: `OUT.parts`.
pub fn parts_dir(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".parts");
    out.with_file_name(name)
}

const CSV_HEADER: &str = "image,caption,score";
const HTML_GENERATOR: &str = "<meta name=\"generator\" content=\"autocaption caption\">";

impl CollectionSettings {
    /// Checks everything that can be checked without the model: ranges, and that no output
    /// is an input or a file of someone else's.
    pub fn validate(&self) -> Result<()> {
        self.options.validate()?;
        if !(1..=1_000_000).contains(&self.save_every) {
            return Err(Error::Invalid(format!(
                "--save-every {}: expected 1 to 1000000 photos",
                self.save_every
            )));
        }
        if self.out.is_none() && self.csv.is_none() && self.html.is_none() && self.xmp.is_none() {
            return Err(Error::Invalid(
                "nothing to write: give --out, --csv, --html or --xmp".into(),
            ));
        }
        let inputs: Vec<&Path> = self.photos.iter().map(PathBuf::as_path).collect();
        let outs: Vec<&PathBuf> = [&self.out, &self.csv, &self.html]
            .into_iter()
            .flatten()
            .collect();
        for (i, o) in outs.iter().enumerate() {
            autocaption_io::refuse_input(o, &inputs)?;
            for other in &outs[i + 1..] {
                if autocaption_io::resolved(o) == autocaption_io::resolved(other) {
                    return Err(Error::Invalid(format!(
                        "{} is named for two outputs",
                        o.display()
                    )));
                }
            }
        }
        if let Some(out) = &self.out {
            autocaption_io::refuse_input(&parts_dir(out), &inputs)?;
            if out.exists() {
                read_record(out)?;
            }
        }
        if let Some(csv) = &self.csv {
            autocaption_io::check_output(
                csv,
                true,
                Ours::FileStarting(CSV_HEADER.as_bytes()),
                &inputs,
            )?;
        }
        if let Some(html) = &self.html {
            autocaption_io::check_output(
                html,
                true,
                Ours::FileMentioning(HTML_GENERATOR),
                &inputs,
            )?;
        }
        Ok(())
    }
}

/// Reads a record (or a part of one); every line must be a caption record.
pub fn read_record(path: &Path) -> Result<Vec<CaptionRecord>> {
    let text = autocaption_io::read_to_string(path)?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str::<CaptionRecord>(l).map_err(|e| {
                Error::file(
                    path,
                    format!(
                        "line {}: not a caption record of `autocaption caption --out` ({e})",
                        i + 1
                    ),
                )
            })
        })
        .collect()
}

fn record_bytes(records: &[CaptionRecord]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        out.extend(serde_json::to_vec(r).expect("records serialise"));
        out.push(b'\n');
    }
    out
}

/// Progress of the encoder's phase only (it counts photos), so that chunks add up to one bar.
struct PhotosOnly<'a> {
    inner: &'a dyn Progress,
    counting: std::sync::atomic::AtomicBool,
}

impl Progress for PhotosOnly<'_> {
    fn start(&self, what: &str, _total: u64) {
        self.counting
            .store(what == "features", std::sync::atomic::Ordering::Relaxed);
    }
    fn advance(&self, n: u64) {
        if self.counting.load(std::sync::atomic::Ordering::Relaxed) {
            self.inner.advance(n);
        }
    }
    fn finish(&self) {}
}

/// Captions `s.photos` (this shard of them) with `captioner`, resuming from what an earlier
/// run with the same `--out` left.
pub fn caption_collection(
    captioner: &Captioner,
    s: &CollectionSettings,
    progress: &dyn Progress,
    on_event: &mut dyn FnMut(CollectionEvent<'_>),
) -> Result<CollectionReport> {
    s.validate()?;
    let photos: Vec<&PathBuf> = s
        .photos
        .iter()
        .filter(|p| s.shard.is_none_or(|sh| sh.holds(&p.to_string_lossy())))
        .collect();
    // What is done: the images of the record and its parts (names only; the records stay on
    // disk, so memory does not grow with the collection).
    let scratch;
    let parts = match &s.out {
        Some(out) => parts_dir(out),
        None => {
            scratch = tempfile::tempdir().map_err(|e| {
                Error::Invalid(format!(
                    "cannot make a temporary folder for the chunks: {e}"
                ))
            })?;
            scratch.path().join("parts")
        }
    };
    let mut done: HashSet<String> = HashSet::new();
    let mut sources: Vec<PathBuf> = Vec::new();
    if let Some(out) = s.out.as_ref().filter(|o| o.exists()) {
        done.extend(read_record(out)?.into_iter().map(|r| r.image));
        sources.push(out.clone());
    }
    let mut next_part = 0;
    if parts.is_dir() {
        for p in part_files(&parts, "jsonl")? {
            done.extend(read_record(&p)?.into_iter().map(|r| r.image));
            sources.push(p);
            next_part += 1;
        }
    }
    let todo: Vec<PathBuf> = photos
        .iter()
        .filter(|p| !done.contains(p.to_string_lossy().as_ref()))
        .map(|p| (*p).clone())
        .collect();
    let mut report = CollectionReport {
        photos: photos.len(),
        already_done: photos.len() - todo.len(),
        ..Default::default()
    };
    let model = captioner.model().name();
    progress.start("captions", todo.len() as u64);
    let counted = PhotosOnly {
        inner: progress,
        counting: std::sync::atomic::AtomicBool::new(false),
    };
    // Chunks of whole encoder batches: only the run's last batch is padded.
    let batch = captioner.encoder().map_or(1, |e| e.batch_size());
    let chunk_len = s.save_every.div_ceil(batch) * batch;
    for chunk in todo.chunks(chunk_len) {
        let results = captioner.caption_files_batched(chunk, &s.options, true, &counted)?;
        let mut new = Vec::with_capacity(chunk.len());
        for (p, r) in chunk.iter().zip(results) {
            let image = p.to_string_lossy().into_owned();
            match r {
                PhotoResult::Captions(c) => {
                    let mut c = c.into_iter();
                    let best = c.next().expect("a caption a photo");
                    if let Some(naming) = s.xmp {
                        let side = SidecarCaption {
                            caption: &best.text,
                            score: best.score,
                            model: &model,
                        };
                        write_sidecar(p, naming, &side)?;
                        report.sidecars += 1;
                    }
                    new.push(CaptionRecord {
                        image,
                        caption: best.text,
                        score: best.score,
                        alternatives: c.collect(),
                    });
                }
                PhotoResult::Unreadable(why) => {
                    let f = Failure { image, error: why };
                    on_event(CollectionEvent::Skipped(&f));
                    report.failed.push(f);
                }
            }
        }
        report.captioned += new.len();
        // The chunk's part, sorted by image, is the record of what is done: written whole or
        // not at all.
        new.sort_by(|a, b| a.image.cmp(&b.image));
        std::fs::create_dir_all(&parts)
            .map_err(|e| Error::file(&parts, format!("cannot create: {e}")))?;
        let file = parts.join(format!("part-{next_part:06}.jsonl"));
        autocaption_io::write_atomic(&file, &record_bytes(&new))?;
        sources.push(file);
        next_part += 1;
        done.extend(new.into_iter().map(|r| r.image));
        on_event(CollectionEvent::Saved(done.len()));
    }
    progress.finish();
    // The record holds every photo captioned into it, in the order of their paths: the
    // sorted sources merged a line at a time.
    report.rows = write_outputs(
        &sources,
        false,
        s.out.as_deref(),
        s.csv.as_deref(),
        s.html.as_deref(),
    )?;
    // Only the parts go (anything else someone put in the folder stays, and so does the
    // folder then).
    if s.out.is_some() {
        for p in part_files(&parts, "jsonl").unwrap_or_default() {
            std::fs::remove_file(&p)
                .map_err(|e| Error::file(&p, format!("cannot remove after merging: {e}")))?;
        }
        let _ = std::fs::remove_dir(&parts);
    }
    Ok(report)
}

/// Most files read at once by a merge; more are first merged in groups.
const MAX_OPEN: usize = 128;

/// Calls `visit` with the records of `sources` (each sorted by image) in the order of their
/// images, each image once: later copies must equal the first when `strict`, and are
/// dropped otherwise. Returns how many were visited.
fn merge_sorted(
    sources: &[PathBuf],
    strict: bool,
    visit: &mut dyn FnMut(&CaptionRecord) -> std::io::Result<()>,
) -> Result<usize> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    use std::io::BufRead;
    let next = |lines: &mut std::io::Lines<std::io::BufReader<std::fs::File>>,
                path: &Path,
                at: &mut usize|
     -> Result<Option<CaptionRecord>> {
        for line in lines.by_ref() {
            *at += 1;
            let line = line.map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
            if line.trim().is_empty() {
                continue;
            }
            return serde_json::from_str(&line).map(Some).map_err(|e| {
                Error::file(
                    path,
                    format!("line {at}: not a caption record of `autocaption caption --out` ({e})"),
                )
            });
        }
        Ok(None)
    };
    let mut readers = Vec::with_capacity(sources.len());
    for p in sources {
        autocaption_io::check_regular_file(p)?;
        let f = std::fs::File::open(p).map_err(|e| Error::file(p, format!("cannot open: {e}")))?;
        readers.push((std::io::BufReader::new(f).lines(), 0usize));
    }
    let mut heap = BinaryHeap::new();
    for (i, (lines, at)) in readers.iter_mut().enumerate() {
        if let Some(r) = next(lines, &sources[i], at)? {
            heap.push(Reverse((r.image.clone(), i, RecordOrd(r))));
        }
    }
    let mut last: Option<CaptionRecord> = None;
    let mut count = 0;
    while let Some(Reverse((image, i, RecordOrd(r)))) = heap.pop() {
        let (lines, at) = &mut readers[i];
        if let Some(n) = next(lines, &sources[i], at)? {
            if n.image < image {
                return Err(Error::file(
                    &sources[i],
                    format!(
                        "line {at}: {} comes after {image}: not sorted as `autocaption caption --out` writes",
                        n.image
                    ),
                ));
            }
            heap.push(Reverse((n.image.clone(), i, RecordOrd(n))));
        }
        if let Some(prev) = &last {
            if prev.image == r.image {
                if strict && *prev != r {
                    return Err(Error::file(
                        &sources[i],
                        format!(
                            "{} is captioned differently in another input (shards of different runs?)",
                            r.image
                        ),
                    ));
                }
                continue;
            }
        }
        visit(&r).map_err(|e| Error::Invalid(format!("cannot write: {e}")))?;
        count += 1;
        last = Some(r);
    }
    Ok(count)
}

/// A record in a heap entry, never compared (image and source index decide).
struct RecordOrd(CaptionRecord);

impl PartialEq for RecordOrd {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for RecordOrd {}
impl PartialOrd for RecordOrd {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for RecordOrd {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

/// Merges `sources` in groups of [`MAX_OPEN`] into temporary files until few enough are left.
fn narrowed(sources: &[PathBuf], strict: bool, scratch: &Path) -> Result<Vec<PathBuf>> {
    let mut current = sources.to_vec();
    let mut round = 0;
    while current.len() > MAX_OPEN {
        let mut next = Vec::new();
        for (g, group) in current.chunks(MAX_OPEN).enumerate() {
            let file = scratch.join(format!("merge-{round}-{g:06}.jsonl"));
            let mut w = std::io::BufWriter::new(
                std::fs::File::create(&file)
                    .map_err(|e| Error::file(&file, format!("cannot create: {e}")))?,
            );
            merge_sorted(group, strict, &mut |r| write_line(&mut w, r))?;
            std::io::Write::flush(&mut w).map_err(|e| Error::file(&file, e.to_string()))?;
            next.push(file);
        }
        current = next;
        round += 1;
    }
    Ok(current)
}

fn write_line(w: &mut dyn std::io::Write, r: &CaptionRecord) -> std::io::Result<()> {
    serde_json::to_writer(&mut *w, r)?;
    w.write_all(b"\n")
}

/// Writes the record, the CSV and the gallery of the merged `sources` (each streamed, a
/// record at a time); returns the number of records.
fn write_outputs(
    sources: &[PathBuf],
    strict: bool,
    out: Option<&Path>,
    csv: Option<&Path>,
    html: Option<&Path>,
) -> Result<usize> {
    let scratch = tempfile::tempdir()
        .map_err(|e| Error::Invalid(format!("cannot make a temporary folder to merge in: {e}")))?;
    let sources = narrowed(sources, strict, scratch.path())?;
    let mut rows = 0;
    let mut failure: Option<Error> = None;
    let mut stream =
        |path: &Path,
         head: &str,
         line: &mut dyn FnMut(&mut dyn std::io::Write, &CaptionRecord) -> std::io::Result<()>,
         tail: &dyn Fn(usize) -> String|
         -> Result<()> {
            let written = autocaption_io::write_atomic_with(path, &mut |w| {
                w.write_all(head.as_bytes())?;
                match merge_sorted(&sources, strict, &mut |r| line(&mut *w, r)) {
                    Ok(n) => {
                        rows = n;
                        w.write_all(tail(n).as_bytes())
                    }
                    Err(e) => {
                        failure = Some(e);
                        Err(std::io::Error::other("merge failed"))
                    }
                }
            });
            if let Some(e) = failure.take() {
                return Err(e);
            }
            written?;
            Ok(())
        };
    if let Some(out) = out {
        stream(out, "", &mut |w, r| write_line(w, r), &|_| String::new())?;
    }
    if let Some(path) = csv {
        let head = format!("{CSV_HEADER}\n");
        stream(
            path,
            &head,
            &mut |w, r| {
                let mut c = csv::WriterBuilder::new()
                    .has_headers(false)
                    .from_writer(&mut *w);
                c.write_record([r.image.as_str(), r.caption.as_str(), &r.score.to_string()])
                    .map_err(std::io::Error::other)?;
                c.flush()
            },
            &|_| String::new(),
        )?;
    }
    if let Some(path) = html {
        let base = page_folder(path);
        stream(
            path,
            GALLERY_HEAD,
            &mut |w, r| w.write_all(gallery_item(r, &base).as_bytes()),
            &|n| {
                format!("</ul>\n<p>{n} photos, captioned by autocaption.</p>\n</main>\n</body>\n</html>\n")
            },
        )?;
    }
    if out.is_none() && csv.is_none() && html.is_none() {
        rows = merge_sorted(&sources, strict, &mut |_| Ok(()))?;
    }
    Ok(rows)
}

/// The part files (`part-*.EXT`) of `dir`, in order.
pub(crate) fn part_files(dir: &Path, ext: &str) -> Result<Vec<PathBuf>> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| Error::file(dir, format!("cannot read: {e}")))?;
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("part-") && n.ends_with(&format!(".{ext}")))
        })
        .collect();
    out.sort();
    Ok(out)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The folder a page at `path` links from (`gallery.html` has the parent "": the current
/// folder).
fn page_folder(path: &Path) -> PathBuf {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

/// `target` relative to the folder `base` (both made absolute), as a URL path.
fn relative_url(target: &Path, base: &Path) -> String {
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let (t, b) = (abs(target), abs(base));
    // Only the names count: the root (and a Windows prefix) must match, not be encoded.
    let tc: Vec<Component> = t.components().collect();
    let bc: Vec<Component> = b.components().collect();
    if tc.first() != bc.first() {
        return format!("file://{}", t.display());
    }
    let common = tc.iter().zip(&bc).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = vec!["..".into(); bc.len() - common];
    parts.extend(
        tc[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    parts
        .iter()
        .map(|p| {
            p.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The gallery's page up to its list (the count of photos goes after the list, as the
/// records stream through).
const GALLERY_HEAD: &str = "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
<meta name=\"generator\" content=\"autocaption caption\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
<title>Captions</title>\n<style>\n\
body { font: 16px/1.5 system-ui, sans-serif; margin: 1.5rem; color: #1d1d1f; }\n\
ul.gallery { list-style: none; padding: 0; display: grid; grid-template-columns: repeat(auto-fill, minmax(16rem, 1fr)); gap: 1.25rem; }\n\
figure { margin: 0; }\n\
img { width: 100%; height: 12rem; object-fit: contain; border-radius: 6px; background: #eee; }\n\
figcaption { font-weight: 600; margin-top: .4rem; }\n\
.meta, details { color: #55555a; font-size: .875rem; }\n\
</style>\n</head>\n<body>\n<main>\n<h1>Captions</h1>\n<ul class=\"gallery\">\n";

/// One photo of an accessible gallery: its caption as `alt` text and as visible text, its
/// file name and score, and the other beams.
fn gallery_item(r: &CaptionRecord, base: &Path) -> String {
    let src = relative_url(Path::new(&r.image), base);
    let name = Path::new(&r.image)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut out = format!(
        "<li><figure>\n<img src=\"{}\" alt=\"{}\" loading=\"lazy\">\n<figcaption>{}</figcaption>\n\
<p class=\"meta\">{} · score {:.3}</p>\n",
        escape(&src),
        escape(&r.caption),
        escape(&r.caption),
        escape(&name),
        r.score
    );
    if !r.alternatives.is_empty() {
        out.push_str("<details><summary>Other captions</summary><ol>\n");
        for a in &r.alternatives {
            out.push_str(&format!("<li>{} ({:.3})</li>\n", escape(&a.text), a.score));
        }
        out.push_str("</ol></details>\n");
    }
    out.push_str("</figure></li>\n");
    out
}

/// What [`merge`] joined.
#[derive(Debug, Clone, Serialize)]
pub struct MergeReport {
    /// `features` or `captions`.
    pub kind: &'static str,
    /// Files read.
    pub inputs: usize,
    /// Rows (images) in the output.
    pub rows: usize,
}

/// Joins shard outputs of `features` (feature files) or of `caption --out` (records) into
/// `out`: rows in the order of their names, each once (a row in two inputs must be the same
/// in both), so N shards give exactly the bytes one run gives. With caption records, `csv`
/// and `html` are written from the joined record.
/// An existing `out` is replaced only with `force`, and only when it is a file of the same
/// kind (a feature file, or a caption record).
pub fn merge(
    inputs: &[PathBuf],
    out: &Path,
    csv: Option<&Path>,
    html: Option<&Path>,
    force: bool,
) -> Result<MergeReport> {
    if inputs.is_empty() {
        return Err(Error::Invalid("name the shard outputs to merge".into()));
    }
    let refs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    let first = autocaption_io::read(&inputs[0])?;
    let records = first.first() == Some(&b'{') || first.is_empty();
    drop(first);
    let ours = if records {
        Ours::FileStarting(b"{\"image\":")
    } else {
        Ours::FileMentioning("\"__metadata__\"")
    };
    autocaption_io::check_output(out, force, ours, &refs)?;
    if records {
        if let Some(c) = csv {
            autocaption_io::check_output(
                c,
                true,
                Ours::FileStarting(CSV_HEADER.as_bytes()),
                &refs,
            )?;
        }
        if let Some(h) = html {
            autocaption_io::check_output(h, true, Ours::FileMentioning(HTML_GENERATOR), &refs)?;
        }
        let rows = write_outputs(inputs, true, Some(out), csv, html)?;
        return Ok(MergeReport {
            kind: "captions",
            inputs: inputs.len(),
            rows,
        });
    }
    if csv.is_some() || html.is_some() {
        return Err(Error::Invalid(
            "--csv and --html go with caption records, not feature files".into(),
        ));
    }
    let mut stores = Vec::with_capacity(inputs.len());
    for p in inputs {
        stores.push((FeatureStore::load(p)?, p));
    }
    let (first, first_path) = &stores[0];
    let spec = first.encoder().cloned();
    let dim = first.dim();
    for (st, p) in &stores[1..] {
        let same = match (st.encoder(), &spec) {
            (Some(a), Some(b)) => a.same_encoder(b),
            (None, None) => true,
            _ => false,
        };
        if !same || st.dim() != dim {
            return Err(Error::file(
                p,
                format!(
                    "made by another encoder (or of another width) than {}; shards of one run \
                     share their encoder",
                    first_path.display()
                ),
            ));
        }
    }
    let mut order: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut seen: HashSet<&str> = HashSet::new();
    for (si, (st, p)) in stores.iter().enumerate() {
        for (ri, name) in st.names().iter().enumerate() {
            if !seen.insert(name) {
                let (sj, rj) = order[name.as_str()];
                if stores[sj].0.row(rj) != st.row(ri) {
                    return Err(Error::file(
                        p,
                        format!(
                            "{name} has other features in {} (shards of different runs?)",
                            stores[sj].1.display()
                        ),
                    ));
                }
                continue;
            }
            order.insert(name, (si, ri));
        }
    }
    let mut names = Vec::with_capacity(order.len());
    let mut data = Vec::with_capacity(order.len() * dim);
    for (name, (si, ri)) in &order {
        names.push(name.to_string());
        data.extend_from_slice(stores[*si].0.row(*ri));
    }
    let rows = names.len();
    let mut merged = FeatureStore::new(names, dim, data);
    if let Some(spec) = spec {
        merged = merged.with_encoder(spec);
    }
    merged.save(out)?;
    Ok(MergeReport {
        kind: "features",
        inputs: inputs.len(),
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_by_file_name() {
        let shards: Vec<Shard> = (0..4).map(|i| format!("{i}/4").parse().unwrap()).collect();
        let names: Vec<String> = (0..1000).map(|i| format!("IMG_{i:04}.jpg")).collect();
        let mut counts = [0; 4];
        for n in &names {
            let owners: Vec<usize> = (0..4).filter(|&i| shards[i].holds(n)).collect();
            assert_eq!(owners.len(), 1, "{n}");
            counts[owners[0]] += 1;
            // The folder does not matter.
            assert!(shards[owners[0]].holds(&format!("/mnt/photos/{n}")));
        }
        assert!(counts.iter().all(|&c| c > 200), "{counts:?}");
        for bad in ["4/4", "0/0", "1", "-1/3", "a/b", "0/100001"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn many_sorted_sources_merge_in_groups_to_one_sorted_record() {
        let t = tempfile::tempdir().unwrap();
        let rec = |i: usize| CaptionRecord {
            image: format!("p/{i:05}.jpg"),
            caption: format!("caption {i}"),
            score: -(i as f64) / 7.0,
            alternatives: vec![],
        };
        // 300 sources (more than MAX_OPEN), interleaved, each sorted, with repeats.
        let sources: Vec<PathBuf> = (0..300)
            .map(|k| {
                let p = t.path().join(format!("s{k}.jsonl"));
                let rows: Vec<CaptionRecord> = (0..5)
                    .map(|j| rec(k + 300 * j))
                    .chain([rec(k / 2)])
                    .collect();
                let mut rows = rows;
                rows.sort_by(|a, b| a.image.cmp(&b.image));
                std::fs::write(&p, record_bytes(&rows)).unwrap();
                p
            })
            .collect();
        let out = t.path().join("out.jsonl");
        let n = write_outputs(&sources, true, Some(&out), None, None).unwrap();
        assert_eq!(n, 1500);
        let expected: Vec<CaptionRecord> = (0..1500).map(rec).collect();
        assert_eq!(std::fs::read(&out).unwrap(), record_bytes(&expected));
        // A source out of order is refused, naming it.
        std::fs::write(&sources[7], record_bytes(&[rec(9), rec(3)])).unwrap();
        let e = write_outputs(&sources, true, Some(&out), None, None).unwrap_err();
        assert!(
            e.to_string().contains("s7.jsonl") && e.to_string().contains("not sorted"),
            "{e}"
        );
    }

    #[test]
    fn urls_are_relative_and_escaped() {
        assert_eq!(
            relative_url(Path::new("/a/photos/my pic.jpg"), Path::new("/a/out")),
            "../photos/my%20pic.jpg"
        );
        assert_eq!(
            relative_url(Path::new("/a/x.jpg"), Path::new("/a")),
            "x.jpg"
        );
        // A page in the current folder: relative to it, never an encoded root.
        let here = std::env::current_dir().unwrap();
        assert_eq!(
            relative_url(&here.join("p/x.jpg"), Path::new(".")),
            "p/x.jpg"
        );
        assert_eq!(page_folder(Path::new("gallery.html")), Path::new("."));
        assert_eq!(page_folder(Path::new("out/g.html")), Path::new("out"));
        assert_eq!(
            relative_url(&here.join("p/x.jpg"), &page_folder(Path::new("g.html"))),
            "p/x.jpg"
        );
    }
}
