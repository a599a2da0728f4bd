//! COCO captions JSON (`captions_train2017.json`, `captions_val2017.json`):
//! `images[].{id, file_name}` and `annotations[].{image_id, caption}`.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use crate::builder::DatasetBuilder;
use crate::lines::TextFile;
use crate::{DataError, Dataset, Format, NoteKind};

#[derive(Deserialize)]
struct CocoFile {
    images: Vec<CocoImage>,
    annotations: Vec<CocoAnnotation>,
}

#[derive(Deserialize)]
struct CocoImage {
    id: u64,
    file_name: String,
}

#[derive(Deserialize)]
struct CocoAnnotation {
    image_id: u64,
    caption: String,
}

/// Reads a COCO captions file. Images keep their COCO ids, for COCO result files.
pub fn read(path: &Path) -> Result<Dataset, DataError> {
    let file = TextFile::read(path, "COCO captions JSON")?;
    let coco: CocoFile = serde_json::from_str(&file.text).map_err(|e| DataError::json(path, e))?;
    let mut b = DatasetBuilder::new(path, Format::Coco);
    let mut by_id: HashMap<u64, String> = HashMap::with_capacity(coco.images.len());
    for img in &coco.images {
        if let Some(old) = by_id.insert(img.id, img.file_name.clone()) {
            return Err(DataError::Invalid {
                path: path.to_path_buf(),
                message: format!(
                    "image id {} is used by both {old:?} and {:?}",
                    img.id, img.file_name
                ),
            });
        }
        let i = b.entry(&img.file_name);
        b.entry_mut(i).id = Some(img.id);
    }
    for ann in &coco.annotations {
        match by_id.get(&ann.image_id) {
            Some(name) => b.caption(name, None, &ann.caption, 0),
            None => b.note(
                NoteKind::UnknownImageId,
                0,
                &format!("image_id {}", ann.image_id),
            ),
        }
    }
    let mut ds = b.finish();
    let without = coco.images.len() - ds.images.len();
    if without > 0 {
        let file = path.display().to_string();
        ds.report
            .add_many(NoteKind::ImageWithoutCaptions, without, || file);
    }
    Ok(ds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ids_and_reports_orphans() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("captions_val2017.json");
        std::fs::write(
            &p,
            r#"{"info":{},"images":[{"id":7,"file_name":"7.jpg","width":1},{"id":9,"file_name":"9.jpg"}],
               "annotations":[{"id":1,"image_id":7,"caption":"A cat."},{"id":2,"image_id":8,"caption":"lost"}]}"#,
        )
        .unwrap();
        let ds = read(&p).unwrap();
        assert_eq!(ds.images.len(), 1);
        assert_eq!(ds.images[0].id, Some(7));
        assert_eq!(ds.report.count(NoteKind::UnknownImageId), 1);
        assert_eq!(ds.report.count(NoteKind::ImageWithoutCaptions), 1);
    }

    #[test]
    fn truncated_json_names_line_and_column() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.json");
        std::fs::write(&p, "{\"images\": [\n{\"id\": 1, \"file_na").unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(e.contains("c.json line 2, column"), "{e}");
    }
}
