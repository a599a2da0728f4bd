//! Checks against the real Flickr8k and COCO caption files in `$AUTOCAPTION_SHARED/data`.
//! Skipped (with a message) when the variable is unset, as on a machine without that folder.

use std::path::PathBuf;

use autocaption_data::{load, Format, LoadOptions, NoteKind, PrepareOptions, Prepared, Split};

fn shared() -> Option<PathBuf> {
    match std::env::var_os("AUTOCAPTION_SHARED") {
        Some(p) => Some(PathBuf::from(p).join("data")),
        None => {
            eprintln!("AUTOCAPTION_SHARED is unset: skipping the real-data check");
            None
        }
    }
}

fn opts(format: Format) -> LoadOptions {
    LoadOptions {
        format: Some(format),
        ..LoadOptions::default()
    }
}

#[test]
fn flickr8k_token_file_counts_and_seed_vocabulary() {
    let Some(root) = shared() else { return };
    let ds = load(
        &root.join("flickr8k/Flickr8k.token.txt"),
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(ds.format, Format::Flickr8k);
    assert_eq!(ds.records_read, 40_460);
    assert_eq!(ds.names_read, 8_092);
    assert_eq!(ds.images.len(), 8_091);
    assert_eq!(ds.caption_count(), 40_455);
    assert_eq!(ds.report.count(NoteKind::NotAnImage), 1);
    // 92 ids are in no split; one of them is the ghost, already dropped.
    assert_eq!(ds.report.count(NoteKind::NoSplit), 91);
    assert_eq!(ds.split(Split::Train).count(), 6_000);
    assert_eq!(ds.split(Split::Dev).count(), 1_000);
    assert_eq!(ds.split(Split::Test).count(), 1_000);

    let prepared = Prepared::build(&ds, &PrepareOptions::default()).unwrap();
    // The seed model's Embedding(4487, 128): train split, words seen at least twice.
    assert_eq!(prepared.manifest.stats.vocab_size, 4_487);
    assert_eq!(prepared.manifest.stats.vocab_size_all_words, 7_614);
    assert_eq!(
        prepared.tokenizer.vocab.words()[..2],
        ["startseq", "endseq"]
    );
}

#[test]
fn flickr8k_kaggle_csv_counts() {
    let Some(root) = shared() else { return };
    let ds = load(&root.join("flickr8k/captions.txt"), &LoadOptions::default()).unwrap();
    assert_eq!(ds.format, Format::Kaggle);
    assert_eq!(ds.caption_count(), 40_455);
    assert_eq!(ds.images.len(), 8_091);
    assert_eq!(ds.split(Split::Train).count(), 6_000);
    let prepared = Prepared::build(&ds, &PrepareOptions::default()).unwrap();
    assert_eq!(prepared.manifest.stats.vocab_size, 4_487);
}

#[test]
fn flickr8k_directory_finds_real_images() {
    let Some(root) = shared() else { return };
    let ds = load(&root.join("flickr8k"), &opts(Format::Flickr8k)).unwrap();
    let with_file = ds.images.iter().filter(|i| i.path.is_some()).count();
    assert_eq!(with_file, 105);
    assert_eq!(ds.report.count(NoteKind::ImageFileMissing), 8_091 - 105);
}

#[test]
fn coco_val2017_counts() {
    let Some(root) = shared() else { return };
    let ds = load(
        &root.join("coco/captions_val2017.json"),
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(ds.format, Format::Coco);
    assert_eq!(ds.images.len(), 5_000);
    assert_eq!(ds.records_read, 25_014);
    assert!(ds.images.iter().all(|i| i.id.is_some()));
    assert_eq!(ds.caption_count(), 25_014);
}
