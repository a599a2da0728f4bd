//! Every input under `fuzz/seeds/TARGET/` and `fuzz/regressions/TARGET/` (the minimised
//! inputs that once crashed a target) through its target, on stable Rust: each must return.

use std::path::PathBuf;

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

#[test]
fn every_checked_in_input_returns() {
    let mut ran = 0;
    for kind in ["seeds", "regressions"] {
        let root = fuzz_dir().join(kind);
        let Ok(dirs) = std::fs::read_dir(&root) else {
            continue;
        };
        for dir in dirs {
            let dir = dir.unwrap().path();
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            let target = autocaption_fuzzing::target(&name)
                .unwrap_or_else(|| panic!("{}: no fuzz target named {name}", dir.display()));
            let mut files: Vec<_> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            files.sort();
            for f in files {
                eprintln!("{kind}/{name}/{}", f.file_name().unwrap().to_string_lossy());
                target(&std::fs::read(&f).unwrap());
                ran += 1;
            }
        }
    }
    assert!(ran > 0, "no seeds found under {}", fuzz_dir().display());
}

#[test]
fn every_target_has_a_cargo_fuzz_binary() {
    for (name, _) in autocaption_fuzzing::TARGETS {
        let p = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
        assert!(p.is_file(), "{} missing", p.display());
    }
}

#[test]
fn empty_and_garbage_inputs_return() {
    for (_, f) in autocaption_fuzzing::TARGETS {
        f(b"");
        f(b"\0\0\0\0\xff\xff\xff\xff");
        f(&[0x89; 300]);
    }
}
