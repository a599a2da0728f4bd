//! The synthetic set loads through the ordinary Flickr8k reader, and is byte-for-byte
//! reproducible from its seed.

use std::collections::BTreeMap;
use std::path::Path;

use autocaption_data::{load, Format, LoadOptions, Split};
use autocaption_io::NoProgress;
use autocaption_synth::{generate, SynthOptions};

fn read_all(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for sub in ["", "images"] {
        for e in std::fs::read_dir(dir.join(sub)).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                out.insert(
                    format!("{sub}/{}", p.file_name().unwrap().to_string_lossy()),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

#[test]
fn loads_as_flickr8k_with_splits_and_images() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("synth");
    let opts = SynthOptions {
        count: 40,
        seed: 5,
        width: 64,
        height: 64,
        ..SynthOptions::default()
    };
    let s = generate(&out, &opts, false, &NoProgress).unwrap();
    assert_eq!(s.split_counts, [32, 4, 4]);
    assert_eq!(s.captions, 200);
    let ds = load(&out, &LoadOptions::default()).unwrap();
    assert_eq!(ds.format, Format::Flickr8k);
    assert_eq!(ds.images.len(), 40);
    assert_eq!(ds.caption_count(), 200);
    assert!(ds.report.is_empty(), "{}", ds.report);
    assert_eq!(ds.split(Split::Dev).count(), 4);
    assert!(ds.images.iter().all(|i| i.path.is_some()));
    let img = image::open(ds.images[0].path.as_ref().unwrap()).unwrap();
    assert_eq!((img.width(), img.height()), (64, 64));
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let d = tempfile::tempdir().unwrap();
    let opts = |seed| SynthOptions {
        count: 12,
        seed,
        width: 48,
        height: 48,
        ..SynthOptions::default()
    };
    generate(&d.path().join("a"), &opts(1), false, &NoProgress).unwrap();
    generate(&d.path().join("b"), &opts(1), false, &NoProgress).unwrap();
    generate(&d.path().join("c"), &opts(2), false, &NoProgress).unwrap();
    let (a, b, c) = (
        read_all(&d.path().join("a")),
        read_all(&d.path().join("b")),
        read_all(&d.path().join("c")),
    );
    assert_eq!(a, b);
    assert_ne!(a["/Flickr8k.token.txt"], c["/Flickr8k.token.txt"]);
}

#[test]
fn refuses_to_overwrite_and_rejects_bad_options() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("s");
    let small = SynthOptions {
        count: 3,
        width: 32,
        height: 32,
        ..SynthOptions::default()
    };
    generate(&out, &small, false, &NoProgress).unwrap();
    assert!(generate(&out, &small, false, &NoProgress)
        .unwrap_err()
        .to_string()
        .contains("already exists"));
    let none = SynthOptions {
        count: 0,
        ..small.clone()
    };
    assert!(generate(&d.path().join("t"), &none, false, &NoProgress).is_err());
    assert!(!d.path().join("t").exists());
}
