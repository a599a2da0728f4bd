//! Karpathy's split files (`dataset_flickr8k.json`, `dataset_coco.json`, …):
//! `images[].{filename, filepath?, split, sentences[].raw}`. `val` is the dev split and
//! `restval` is used for training, as in most papers.

use std::path::Path;

use serde::Deserialize;

use crate::builder::DatasetBuilder;
use crate::lines::TextFile;
use crate::{DataError, Dataset, Format, NoteKind, Split};

#[derive(Deserialize)]
struct KarpathyFile {
    images: Vec<KarpathyImage>,
}

#[derive(Deserialize)]
struct KarpathyImage {
    filename: String,
    #[serde(default)]
    filepath: Option<String>,
    split: String,
    sentences: Vec<Sentence>,
    #[serde(default)]
    cocoid: Option<u64>,
    #[serde(default)]
    imgid: Option<u64>,
}

#[derive(Deserialize)]
struct Sentence {
    raw: String,
}

/// Reads a Karpathy split file; splits come from the file itself.
pub fn read(path: &Path) -> Result<Dataset, DataError> {
    let file = TextFile::read(path, "Karpathy split JSON")?;
    let data: KarpathyFile =
        serde_json::from_str(&file.text).map_err(|e| DataError::json(path, e))?;
    let mut b = DatasetBuilder::new(path, Format::Karpathy);
    for (k, img) in data.images.iter().enumerate() {
        let name = match &img.filepath {
            Some(dir) if !dir.is_empty() => format!("{dir}/{}", img.filename),
            _ => img.filename.clone(),
        };
        let split = match img.split.as_str() {
            "restval" => {
                b.note(NoteKind::RestvalAsTrain, 0, &name);
                Split::Train
            }
            s => s.parse::<Split>().map_err(|why| DataError::Invalid {
                path: path.to_path_buf(),
                message: format!("images[{k}] ({name}): {why}"),
            })?,
        };
        for s in &img.sentences {
            b.caption(&name, None, &s.raw, 0);
        }
        if b.contains(&name) {
            let i = b.entry(&name);
            let entry = b.entry_mut(i);
            entry.id = img.cocoid.or(img.imgid);
            entry.split = Some(split);
        }
    }
    Ok(b.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_splits() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("dataset_flickr8k.json");
        std::fs::write(
            &p,
            r#"{"dataset":"flickr8k","images":[
              {"filename":"a.jpg","imgid":0,"split":"train","sentences":[{"raw":"A dog .","tokens":["a","dog"]}]},
              {"filename":"b.jpg","imgid":1,"split":"val","sentences":[{"raw":"x"},{"raw":"y"}]},
              {"filename":"c.jpg","filepath":"val2014","cocoid":5,"split":"restval","sentences":[{"raw":"z"}]}]}"#,
        )
        .unwrap();
        let ds = read(&p).unwrap();
        let splits: Vec<_> = ds.images.iter().map(|i| i.split).collect();
        assert_eq!(
            splits,
            vec![Some(Split::Train), Some(Split::Dev), Some(Split::Train)]
        );
        assert_eq!(ds.images[2].name, "val2014/c.jpg");
        assert_eq!(ds.images[2].id, Some(5));
        assert_eq!(ds.report.count(NoteKind::RestvalAsTrain), 1);
    }
}
