//! Features of a folder of images into a feature file, resumable: while it runs, every few
//! hundred images are appended to the store as a part file of their own (a save costs the
//! same whatever was done before it); at the end the parts are merged into the one file and
//! removed. A killed run keeps its parts, and a rerun with the same output skips what they
//! and the file hold.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use autocaption_features::{EncoderSpec, FeatureStore};
use autocaption_io::Progress;
use serde::Serialize;

use crate::encoder::Encoder;
use crate::images::list_images;
use crate::{Error, Result};

/// Settings of [`extract`].
#[derive(Debug, Clone)]
pub struct ExtractSettings {
    /// Folder of images (not searched recursively).
    pub images: PathBuf,
    /// The feature file to write.
    pub out: PathBuf,
    /// Images per forward pass.
    pub batch_size: usize,
    /// Images between saves of a part.
    pub save_every: usize,
    /// Only this shard of the images (see [`crate::Shard`]).
    pub shard: Option<crate::Shard>,
}

impl ExtractSettings {
    /// Checks the settings without touching disk.
    pub fn validate(&self) -> Result<()> {
        if !(1..=256).contains(&self.batch_size) {
            return Err(Error::Invalid(format!(
                "--batch-size {}: expected 1 to 256 images",
                self.batch_size
            )));
        }
        if !(1..=10_000_000).contains(&self.save_every) {
            return Err(Error::Invalid(format!(
                "--save-every {}: expected 1 to 10000000 images",
                self.save_every
            )));
        }
        Ok(())
    }

    /// The folder where parts wait to be merged: `OUT.parts`.
    pub fn parts_dir(&self) -> PathBuf {
        let mut name = self.out.file_name().unwrap_or_default().to_os_string();
        name.push(".parts");
        self.out.with_file_name(name)
    }
}

/// An image that could not be read.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// Its file name.
    pub image: String,
    /// Why.
    pub error: String,
}

/// One periodic save.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Save {
    /// Rows in the store after it.
    pub rows_total: usize,
    /// Rows it wrote.
    pub rows_written: usize,
    /// Bytes it wrote.
    pub bytes: usize,
    /// Seconds it took.
    pub seconds: f64,
    /// Seconds from the start of the run's extraction to the end of this save.
    pub at_seconds: f64,
}

/// Where rows of the final file come from.
enum Source {
    /// In memory.
    Store(Box<FeatureStore>),
    /// A part on disk, read when its turn comes.
    File(PathBuf),
}

/// What [`extract`] did.
#[derive(Debug, Clone, Serialize)]
pub struct ExtractReport {
    /// Images in the folder.
    pub images_found: usize,
    /// Of those, already in the store (or its parts) from an earlier run.
    pub already_done: usize,
    /// Newly extracted.
    pub extracted: usize,
    /// Images that could not be read.
    pub failed: Vec<Failure>,
    /// The encoder.
    pub encoder: EncoderSpec,
    /// Rows in the written store.
    pub rows: usize,
    /// The periodic saves of this run.
    pub saves: Vec<Save>,
    /// Seconds the final merge took.
    pub merge_seconds: f64,
}

/// Something worth telling the user while [`extract`] runs.
#[derive(Debug, Clone)]
pub enum ExtractEvent<'a> {
    /// An image could not be read and is skipped.
    Skipped(&'a Failure),
    /// A part was saved.
    Saved(&'a Save),
}

/// Extracts features of every image in `s.images` with `encoder` into `s.out`, resuming
/// from what an earlier run with the same encoder left there.
pub fn extract(
    encoder: &Encoder,
    s: &ExtractSettings,
    progress: &dyn Progress,
    on_event: &mut dyn FnMut(ExtractEvent<'_>),
) -> Result<ExtractReport> {
    s.validate()?;
    autocaption_io::refuse_input(&s.out, &[&s.images])?;
    autocaption_io::refuse_input(&s.parts_dir(), &[&s.images])?;
    let mut names = list_images(&s.images)?;
    let found = names.len();
    if let Some(shard) = s.shard {
        names.retain(|n| shard.holds(n));
    }
    if found == 0 {
        return Err(Error::file(
            &s.images,
            format!(
                "no images found (looked for {})",
                autocaption_data::IMAGE_EXTENSIONS.join(", ")
            ),
        ));
    }
    let parts_dir = s.parts_dir();
    let spec = encoder.spec().clone();
    let earlier_out = if s.out.exists() {
        Some(read_same_encoder(&s.out, &spec)?)
    } else {
        None
    };
    // Parts are checked and their names kept; their rows are read again at the end.
    let mut part_files = Vec::new();
    let mut part_names: Vec<Vec<String>> = Vec::new();
    if parts_dir.is_dir() {
        part_files = crate::collection::part_files(&parts_dir, "safetensors")?;
        for p in &part_files {
            part_names.push(read_same_encoder(p, &spec)?.names().to_vec());
        }
    }
    let done: HashSet<&str> = earlier_out
        .iter()
        .flat_map(|st| st.names().iter().map(String::as_str))
        .chain(part_names.iter().flatten().map(String::as_str))
        .collect();
    let todo: Vec<&String> = names
        .iter()
        .filter(|n| !done.contains(n.as_str()))
        .collect();
    let already_done = names.len() - todo.len();
    drop(done);

    let paths: Vec<PathBuf> = todo.iter().map(|n| s.images.join(n)).collect();
    let mut failed = Vec::new();
    let mut saves = Vec::new();
    // What the file will hold, in order: the earlier file's rows, each part's, this run's
    // (each name once). Only names stay in memory; rows are on disk in parts until the end.
    let mut names_out: Vec<String> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut keep = |names: &[String], names_out: &mut Vec<String>| {
        names
            .iter()
            .map(|n| {
                let new = seen.insert(n.clone());
                if new {
                    names_out.push(n.clone());
                }
                new
            })
            .collect::<Vec<bool>>()
    };
    let mut sources: Vec<(Source, Vec<bool>)> = Vec::new();
    if let Some(st) = earlier_out {
        let k = keep(st.names(), &mut names_out);
        sources.push((Source::Store(Box::new(st)), k));
    }
    for (p, names) in part_files.iter().zip(part_names) {
        let k = keep(&names, &mut names_out);
        sources.push((Source::File(p.clone()), k));
    }
    let (mut pending_names, mut pending_rows) = (Vec::new(), Vec::new());
    let mut next_part = part_files.len();
    let started = Instant::now();
    encoder.encode_files(&paths, s.batch_size, true, progress, &mut |b| {
        for (i, error) in b.failed {
            let f = Failure {
                image: todo[i].clone(),
                error,
            };
            on_event(ExtractEvent::Skipped(&f));
            failed.push(f);
        }
        pending_names.extend(b.done.iter().map(|&i| todo[i].clone()));
        pending_rows.extend(b.features);
        if pending_names.len() >= s.save_every {
            let t = Instant::now();
            let part = FeatureStore::new(
                std::mem::take(&mut pending_names),
                spec.feature_dim,
                std::mem::take(&mut pending_rows),
            )
            .with_encoder(spec.clone());
            let bytes = part.to_bytes();
            std::fs::create_dir_all(&parts_dir)
                .map_err(|e| Error::file(&parts_dir, format!("cannot create: {e}")))?;
            let file = parts_dir.join(format!("part-{next_part:06}.safetensors"));
            autocaption_io::write_atomic(&file, &bytes)?;
            next_part += 1;
            let k = keep(part.names(), &mut names_out);
            sources.push((Source::File(file), k));
            let save = Save {
                rows_total: names_out.len(),
                rows_written: part.len(),
                bytes: bytes.len(),
                seconds: t.elapsed().as_secs_f64(),
                at_seconds: started.elapsed().as_secs_f64(),
            };
            on_event(ExtractEvent::Saved(&save));
            saves.push(save);
        }
        Ok(())
    })?;

    // The one file: what was there, every part, the rest, streamed a source at a time;
    // then the parts go.
    let t = Instant::now();
    let nothing_new = part_files.is_empty() && saves.is_empty() && pending_names.is_empty();
    let k = keep(&pending_names, &mut names_out);
    sources.push((
        Source::Store(Box::new(FeatureStore::new(
            pending_names,
            spec.feature_dim,
            pending_rows,
        ))),
        k,
    ));
    if !(nothing_new && s.out.exists()) {
        let mut failure: Option<Error> = None;
        let written = FeatureStore::save_streamed(
            &s.out,
            &names_out,
            spec.feature_dim,
            Some(&spec),
            &mut |w| {
                for (src, keep) in &sources {
                    let loaded;
                    let st = match src {
                        Source::Store(st) => st,
                        Source::File(p) => match FeatureStore::load(p) {
                            Ok(st) => {
                                loaded = st;
                                &loaded
                            }
                            Err(e) => {
                                failure = Some(e.into());
                                return Err(std::io::Error::other("a part could not be read"));
                            }
                        },
                    };
                    for (i, _) in keep.iter().enumerate().filter(|(_, k)| **k) {
                        w.write_all(&autocaption_io::f32_to_le_bytes(st.row(i)))?;
                    }
                }
                Ok(())
            },
        );
        if let Some(e) = failure {
            return Err(e);
        }
        written?;
    }
    if parts_dir.exists() {
        std::fs::remove_dir_all(&parts_dir)
            .map_err(|e| Error::file(&parts_dir, format!("cannot remove after merging: {e}")))?;
    }
    Ok(ExtractReport {
        images_found: names.len(),
        already_done,
        extracted: todo.len() - failed.len(),
        failed,
        encoder: spec,
        rows: names_out.len(),
        saves,
        merge_seconds: t.elapsed().as_secs_f64(),
    })
}

/// A store written earlier to the same output, which must come from the same encoder.
fn read_same_encoder(path: &Path, spec: &EncoderSpec) -> Result<FeatureStore> {
    let st = FeatureStore::load(path)?;
    match st.encoder() {
        Some(e) if e.same_encoder(spec) => Ok(st),
        Some(e) => Err(Error::file(
            path,
            format!(
                "made with another encoder ({}) than this run's ({}); choose another --out to \
                 keep features from different encoders apart",
                e.describe(),
                spec.describe()
            ),
        )),
        None if st.dim() != spec.feature_dim => Err(Error::file(
            path,
            format!(
                "holds {}-d features, this encoder gives {}; choose another --out",
                st.dim(),
                spec.feature_dim
            ),
        )),
        None => Err(Error::file(
            path,
            "does not record the encoder that made it, so it cannot be resumed safely; choose \
             another --out (or remove it)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use autocaption_concepts::{ConceptConfig, ConceptNet};
    use autocaption_io::NoProgress;

    fn encoder(seed: u64, dir: &Path) -> Encoder {
        let config = ConceptConfig {
            size: 16,
            channels: [4, 4, 4, 4],
            words: 3,
        };
        let net = ConceptNet::new(config, seed);
        let bytes = net.weights_bytes();
        let path = dir.join(format!("concepts-{seed}.safetensors"));
        std::fs::write(&path, &bytes).unwrap();
        Encoder::concept(net, &path, &bytes)
    }

    fn images(dir: &Path, n: u8) -> PathBuf {
        let images = dir.join("images");
        std::fs::create_dir(&images).unwrap();
        for i in 0..n {
            image::RgbImage::from_fn(20, 20, |x, y| {
                image::Rgb([i * 40, x as u8 * 9, y as u8 * 9])
            })
            .save(images.join(format!("im{i}.png")))
            .unwrap();
        }
        images
    }

    #[test]
    fn saves_parts_and_resumes_to_the_same_bytes() {
        let t = tempfile::tempdir().unwrap();
        let enc = encoder(1, t.path());
        let dir = images(t.path(), 5);
        let s = |out: &str| ExtractSettings {
            images: dir.clone(),
            out: t.path().join(out),
            batch_size: 1,
            save_every: 2,
            shard: None,
        };
        let full = s("full.safetensors");
        let r = extract(&enc, &full, &NoProgress, &mut |_| {}).unwrap();
        assert_eq!((r.extracted, r.rows, r.saves.len()), (5, 5, 2));
        assert_eq!(
            r.saves.iter().map(|s| s.rows_written).collect::<Vec<_>>(),
            vec![2, 2],
            "each save writes only its own rows"
        );
        assert!(!full.parts_dir().exists(), "merged parts are removed");
        let whole = FeatureStore::load(&full.out).unwrap();
        assert_eq!(whole.encoder(), Some(enc.spec()));

        // A run killed after its first save left one part: the rerun keeps it and does
        // the rest, to the same bytes.
        let resumed = s("resumed.safetensors");
        std::fs::create_dir(resumed.parts_dir()).unwrap();
        let first = FeatureStore::new(
            whole.names()[..2].to_vec(),
            whole.dim(),
            whole.data()[..2 * whole.dim()].to_vec(),
        )
        .with_encoder(enc.spec().clone());
        std::fs::write(
            resumed.parts_dir().join("part-000000.safetensors"),
            first.to_bytes(),
        )
        .unwrap();
        let r = extract(&enc, &resumed, &NoProgress, &mut |_| {}).unwrap();
        assert_eq!((r.already_done, r.extracted), (2, 3));
        assert_eq!(
            std::fs::read(&resumed.out).unwrap(),
            std::fs::read(&full.out).unwrap()
        );
        assert!(!resumed.parts_dir().exists());

        // A run killed after writing the merged file and before removing its parts leaves
        // the same rows twice (found by the SIGKILL test): the rerun takes each once.
        std::fs::create_dir(resumed.parts_dir()).unwrap();
        std::fs::write(
            resumed.parts_dir().join("part-000000.safetensors"),
            first.to_bytes(),
        )
        .unwrap();
        let r = extract(&enc, &resumed, &NoProgress, &mut |_| {}).unwrap();
        assert_eq!((r.already_done, r.extracted, r.rows), (5, 0, 5));
        assert_eq!(
            std::fs::read(&resumed.out).unwrap(),
            std::fs::read(&full.out).unwrap()
        );
        assert!(!resumed.parts_dir().exists());

        // Another encoder's features are never mixed in.
        let other = encoder(2, t.path());
        let e = extract(&other, &full, &NoProgress, &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains("made with another encoder"), "{e}");
        // A file that does not record its encoder is not resumed.
        let legacy = s("legacy.safetensors");
        FeatureStore::new(
            vec!["im0.png".into()],
            whole.dim(),
            whole.data()[..whole.dim()].to_vec(),
        )
        .save(&legacy.out)
        .unwrap();
        let e = extract(&enc, &legacy, &NoProgress, &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains("does not record the encoder"), "{e}");
    }
}
