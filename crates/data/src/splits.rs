//! Train/dev/test membership: official split files, or a deterministic assignment.

use std::path::{Path, PathBuf};

use crate::lines::TextFile;
use crate::{DataError, Dataset, NoteKind, Split};

/// File names tried for each split, in order.
fn candidates(split: Split) -> &'static [&'static str] {
    match split {
        Split::Train => &["Flickr_8k.trainImages.txt", "trainImages.txt", "train.txt"],
        Split::Dev => &[
            "Flickr_8k.devImages.txt",
            "devImages.txt",
            "dev.txt",
            "val.txt",
        ],
        Split::Test => &["Flickr_8k.testImages.txt", "testImages.txt", "test.txt"],
    }
}

/// The split files found in `dir`.
pub(crate) fn find_split_files(dir: &Path) -> Vec<(Split, PathBuf)> {
    Split::ALL
        .into_iter()
        .filter_map(|s| {
            candidates(s)
                .iter()
                .map(|n| dir.join(n))
                .find(|p| p.is_file())
                .map(|p| (s, p))
        })
        .collect()
}

/// Marks the images listed in the split files; reports listed images without captions,
/// images listed twice, and images in no split.
pub(crate) fn apply_split_files(
    ds: &mut Dataset,
    files: &[(Split, PathBuf)],
) -> Result<(), DataError> {
    let index: std::collections::HashMap<String, usize> = ds
        .images
        .iter()
        .enumerate()
        .map(|(i, e)| (e.name.clone(), i))
        .collect();
    for (split, path) in files {
        let file = TextFile::read(path, "split list")?;
        let short = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        for (n, line) in file.lines() {
            let name = line.trim();
            if name.is_empty() {
                continue;
            }
            match index.get(name) {
                None => ds.report.add(NoteKind::SplitWithoutCaptions, || {
                    format!("{short} line {n}: {name}")
                }),
                Some(&i) => match ds.images[i].split {
                    None => ds.images[i].split = Some(*split),
                    Some(s) if s == *split => {}
                    Some(s) => ds.report.add(NoteKind::InTwoSplits, || {
                        format!("{short} line {n}: {name} (already in {s})")
                    }),
                },
            }
        }
    }
    Ok(())
}

/// Reports images that have no split.
pub(crate) fn report_unsplit(ds: &mut Dataset) {
    let unsplit: Vec<&str> = ds
        .images
        .iter()
        .filter(|i| i.split.is_none())
        .map(|i| i.name.as_str())
        .collect();
    if let Some(first) = unsplit.first() {
        let example = first.to_string();
        ds.report
            .add_many(NoteKind::NoSplit, unsplit.len(), || example);
    }
}

/// Fractions of the images without a split that go to train, dev and test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SplitFractions {
    /// Share for training.
    pub train: f64,
    /// Share for validation.
    pub dev: f64,
    /// Share for the held-out test.
    pub test: f64,
}

impl std::str::FromStr for SplitFractions {
    type Err = String;
    /// Parses "0.8,0.1,0.1" (or "80,10,10"); the parts are normalised to sum to 1.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<f64> = s
            .split(',')
            .map(|p| p.trim().parse::<f64>())
            .collect::<Result<_, _>>()
            .map_err(|_| format!("expected three numbers like 0.8,0.1,0.1, found {s:?}"))?;
        let [train, dev, test] = parts[..] else {
            return Err(format!(
                "expected three numbers like 0.8,0.1,0.1, found {s:?}"
            ));
        };
        let sum = train + dev + test;
        if parts.iter().any(|p| !p.is_finite() || *p < 0.0) || sum <= 0.0 {
            return Err(format!(
                "split fractions must be non-negative with a positive sum, found {s:?}"
            ));
        }
        Ok(Self {
            train: train / sum,
            dev: dev / sum,
            test: test / sum,
        })
    }
}

fn mix(mut z: u64) -> u64 {
    // splitmix64's finaliser: a well-spread hash step.
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
    z ^ (z >> 31)
}

fn name_key(name: &str, seed: u64) -> u64 {
    // FNV-1a over the name, then mixed with the seed: independent of file order.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    mix(h ^ mix(seed))
}

/// Gives every image without a split one, deterministically from `seed` and the image names
/// (not their order), in exactly the requested proportions (rounded). Returns how many were
/// assigned.
pub fn assign_splits(ds: &mut Dataset, fractions: SplitFractions, seed: u64) -> usize {
    let mut free: Vec<(u64, usize)> = ds
        .images
        .iter()
        .enumerate()
        .filter(|(_, e)| e.split.is_none())
        .map(|(i, e)| (name_key(&e.name, seed), i))
        .collect();
    free.sort_unstable();
    let n = free.len();
    let n_train = (fractions.train * n as f64).round() as usize;
    let n_dev = ((fractions.dev * n as f64).round() as usize).min(n - n_train.min(n));
    for (rank, &(_, i)) in free.iter().enumerate() {
        ds.images[i].split = Some(if rank < n_train {
            Split::Train
        } else if rank < n_train + n_dev {
            Split::Dev
        } else {
            Split::Test
        });
    }
    if n > 0 {
        let example = format!(
            "{n_train} train, {n_dev} dev, {} test (seed {seed})",
            n - n_train.min(n) - n_dev
        );
        ds.report.add_many(NoteKind::AutoSplit, n, || example);
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Format, ImageEntry, Report};

    fn dataset(n: usize) -> Dataset {
        Dataset {
            source: "x".into(),
            format: Format::Csv,
            images: (0..n)
                .map(|i| ImageEntry {
                    name: format!("{i}.jpg"),
                    id: None,
                    path: None,
                    split: None,
                    captions: vec!["c".into()],
                })
                .collect(),
            records_read: n,
            names_read: n,
            report: Report::default(),
        }
    }

    #[test]
    fn auto_split_is_exact_and_order_independent() {
        let f: SplitFractions = "80,10,10".parse().unwrap();
        let mut a = dataset(1000);
        assert_eq!(assign_splits(&mut a, f, 3), 1000);
        assert_eq!(a.split(Split::Train).count(), 800);
        assert_eq!(a.split(Split::Dev).count(), 100);
        assert_eq!(a.split(Split::Test).count(), 100);
        let mut b = dataset(1000);
        b.images.reverse();
        assign_splits(&mut b, f, 3);
        for e in &b.images {
            let same = a.images.iter().find(|x| x.name == e.name).unwrap();
            assert_eq!(same.split, e.split);
        }
        let mut c = dataset(1000);
        assign_splits(&mut c, f, 4);
        assert_ne!(
            a.images.iter().map(|e| e.split).collect::<Vec<_>>(),
            c.images.iter().map(|e| e.split).collect::<Vec<_>>()
        );
    }

    #[test]
    fn fractions_parse() {
        assert!("0.8,0.1".parse::<SplitFractions>().is_err());
        assert!("1,-1,1".parse::<SplitFractions>().is_err());
        assert_eq!("1,1,2".parse::<SplitFractions>().unwrap().test, 0.5);
    }
}
