//! `compile --captioner`: the whole captioner in C gives the Rust engine's captions, from
//! feature rows and from pixels, on x86-64 and (under qemu-user, where the cross compilers
//! and qemu are installed) on aarch64, armhf and riscv64; bad arguments get their error
//! codes; int8 and external weights work; the bare-metal Cortex-M7 build runs under
//! qemu-system-arm. Tests that need a tool skip, saying which, where it is missing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::sync::OnceLock;

use common::{bin, train_concept_model};
use tempfile::TempDir;

struct Fixture {
    _dir: TempDir,
    root: PathBuf,
    model: PathBuf,
    /// Every image's feature row, float32, in `names` order.
    rows: PathBuf,
    names: Vec<String>,
    /// The images as PPM, decoded by our decoder, with the files they came from.
    ppms: Vec<(PathBuf, PathBuf)>,
    /// The real Flickr8k photos as PPM (with AUTOCAPTION_SHARED).
    real: Vec<(PathBuf, PathBuf)>,
    /// The f32 captioner, generated and built for this machine.
    c: PathBuf,
}

fn have(tool: &str) -> bool {
    Process::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn write_ppms(files: &[PathBuf], dir: &Path) -> Vec<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir).unwrap();
    files
        .iter()
        .map(|f| {
            let img = autocaption_vision::load_rgb(f).unwrap();
            let stem = f.file_stem().unwrap().to_string_lossy().into_owned();
            let out = dir.join(format!("{stem}.ppm"));
            std::fs::write(&out, autocaption_pipeline::device::ppm(&img)).unwrap();
            (out, f.clone())
        })
        .collect()
}

fn compile(model: &Path, out: &Path, extra: &[&str]) {
    bin()
        .args(["compile", "-q", "--captioner"])
        .arg(model)
        .arg("--out")
        .arg(out)
        .args(["--name", "captioner"])
        .args(extra)
        .assert()
        .success();
}

/// Builds the example program in `dir` with `cc` (and extra flags).
fn build(dir: &Path, cc: &str, flags: &[&str], out: &str) -> PathBuf {
    let mut sources = vec!["captioner.c".to_string(), "main.c".to_string()];
    if dir.join("captioner_encoder.c").exists() {
        sources.push("captioner_encoder.c".into());
    }
    let status = Process::new(cc)
        .args([
            "-std=c99",
            "-O2",
            "-ffp-contract=off",
            "-Wall",
            "-Wextra",
            "-Werror",
        ])
        .args(flags)
        .args(["-o", out])
        .args(&sources)
        .arg("-lm")
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(status.success(), "{cc} failed in {}", dir.display());
    dir.join(out)
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = TempDir::new().unwrap();
        let root = dir.path().to_path_buf();
        let (model, images) = train_concept_model(&root, 48);
        let store = autocaption_pipeline::FeatureStore::load(&root.join("f.safetensors")).unwrap();
        let rows = root.join("rows.f32");
        let bytes: Vec<u8> = store.data().iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(&rows, bytes).unwrap();
        let names = store.names().to_vec();
        let files: Vec<PathBuf> = names.iter().map(|n| images.join(n)).collect();
        let ppms = write_ppms(&files, &root.join("ppm"));
        let real = match std::env::var_os("AUTOCAPTION_SHARED") {
            Some(s) => {
                let photos = PathBuf::from(s).join("data/flickr8k/images");
                let list = autocaption_pipeline::expand_photos(&[photos]).unwrap();
                write_ppms(&list, &root.join("real"))
            }
            None => Vec::new(),
        };
        let c = root.join("c");
        compile(&model, &c, &[]);
        let exe = build(&c, "cc", &[], "captioner");
        Fixture {
            _dir: dir,
            root,
            model,
            rows,
            names,
            ppms,
            real,
            c: exe,
        }
    })
}

/// (caption, score) per line of the C program's output for `args`.
fn run_c(exe: &Path, wrapper: Option<&str>, args: &[String]) -> Vec<(String, f64)> {
    let mut cmd = match wrapper {
        Some(w) => {
            let mut c = Process::new(w);
            c.arg(exe);
            c
        }
        None => Process::new(exe),
    };
    let out = cmd
        .args(args)
        .current_dir(exe.parent().unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} failed: {}",
        exe.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[1].to_string(), f[2].parse().unwrap())
        })
        .collect()
}

/// The Rust engine's (caption, score) for `caption ARGS --json`.
fn run_rust(args: &[&std::ffi::OsStr]) -> Vec<(String, f64)> {
    let out = bin()
        .arg("caption")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["caption"].as_str().unwrap().to_string(),
                v["score"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// Every caption equal, every score within `tol`; returns the largest score difference.
fn assert_same(what: &str, c: &[(String, f64)], rust: &[(String, f64)], tol: f64) -> f64 {
    assert_eq!(c.len(), rust.len(), "{what}: counts");
    let mut worst = 0.0f64;
    for (i, (a, b)) in c.iter().zip(rust).enumerate() {
        assert_eq!(a.0, b.0, "{what}: caption {i}");
        worst = worst.max((a.1 - b.1).abs());
    }
    assert!(worst <= tol, "{what}: scores differ by {worst}");
    worst
}

fn beam_args(beam: usize) -> Vec<String> {
    vec!["-b".into(), beam.to_string()]
}

fn paths(v: &[(PathBuf, PathBuf)], first: bool) -> Vec<String> {
    v.iter()
        .map(|(a, b)| if first { a } else { b }.to_string_lossy().into_owned())
        .collect()
}

#[test]
fn the_c_captioner_gives_the_engines_captions_from_features_and_pixels() {
    let f = fixture();
    for beam in [1, 3, 5] {
        let mut args = beam_args(beam);
        args.push(f.rows.to_string_lossy().into_owned());
        let c = run_c(&f.c, None, &args);
        let features = f.root.join("f.safetensors");
        let b = beam.to_string();
        let rust = run_rust(&[
            "--model".as_ref(),
            f.model.as_os_str(),
            "--features".as_ref(),
            features.as_os_str(),
            "--beam".as_ref(),
            b.as_ref(),
        ]);
        assert_eq!(c.len(), f.names.len());
        let d = assert_same(&format!("features, beam {beam}"), &c, &rust, 1e-4);
        eprintln!(
            "features, beam {beam}: {} identical captions, scores within {d:.1e}",
            c.len()
        );

        for (set, label) in [(&f.ppms, "pixels"), (&f.real, "real photos")] {
            if set.is_empty() {
                eprintln!("{label}: skipped (AUTOCAPTION_SHARED is not set)");
                continue;
            }
            let mut args = beam_args(beam);
            args.extend(paths(set, true));
            let c = run_c(&f.c, None, &args);
            let mut rargs: Vec<std::ffi::OsString> = vec![
                "--model".into(),
                f.model.clone().into(),
                "--beam".into(),
                b.clone().into(),
            ];
            rargs.extend(paths(set, false).into_iter().map(Into::into));
            let refs: Vec<&std::ffi::OsStr> = rargs.iter().map(|s| s.as_os_str()).collect();
            let rust = run_rust(&refs);
            let d = assert_same(&format!("{label}, beam {beam}"), &c, &rust, 1e-4);
            eprintln!(
                "{label}, beam {beam}: {} identical captions, scores within {d:.1e}",
                c.len()
            );
        }
    }
}

#[test]
fn other_architectures_give_the_same_captions_under_qemu() {
    let f = fixture();
    let mut inputs = vec![f.rows.to_string_lossy().into_owned()];
    inputs.extend(paths(&f.ppms, true));
    inputs.extend(paths(&f.real, true));
    let mut args = beam_args(3);
    args.extend(inputs);
    let x86 = run_c(&f.c, None, &args);
    let mut ran = 0;
    for (gcc, qemu) in [
        ("aarch64-linux-gnu-gcc", "qemu-aarch64"),
        ("arm-linux-gnueabihf-gcc", "qemu-arm"),
        ("riscv64-linux-gnu-gcc", "qemu-riscv64"),
    ] {
        if !have(gcc) || !have(qemu) {
            eprintln!("skipped {qemu}: {gcc} or {qemu} is not installed");
            continue;
        }
        let exe = build(
            f.c.parent().unwrap(),
            gcc,
            &["-static"],
            &format!("captioner-{qemu}"),
        );
        let t = std::time::Instant::now();
        let out = run_c(&exe, Some(qemu), &args);
        let d = assert_same(qemu, &out, &x86, 1e-4);
        eprintln!(
            "{qemu}: {} captions identical to x86-64's, scores within {d:.1e} ({:.1} s)",
            out.len(),
            t.elapsed().as_secs_f64()
        );
        ran += 1;
    }
    if ran == 0 {
        eprintln!("skipped: no cross compiler with its qemu-user");
    }
}

#[test]
fn int8_and_external_weights_caption_close_to_f32() {
    let f = fixture();
    let dir = f.root.join("int8");
    compile(
        &f.model,
        &dir,
        &["--quantize", "int8", "--weights", "external"],
    );
    assert!(dir.join("captioner.weights").exists());
    assert!(dir.join("captioner_encoder.weights").exists());
    let exe = build(&dir, "cc", &[], "captioner");
    let mut args = beam_args(3);
    args.push(f.rows.to_string_lossy().into_owned());
    args.extend(paths(&f.ppms, true));
    let int8 = run_c(&exe, None, &args);
    let mut args = beam_args(3);
    args.push(f.rows.to_string_lossy().into_owned());
    args.extend(paths(&f.ppms, true));
    let f32 = run_c(&f.c, None, &args);
    let same = int8.iter().zip(&f32).filter(|(a, b)| a.0 == b.0).count();
    eprintln!("int8: {same} of {} captions as f32", f32.len());
    assert!(
        same * 10 >= f32.len() * 7,
        "int8 agrees on only {same} of {}",
        f32.len()
    );
    // Weights of another build are refused with the weights error.
    let out = Process::new(&exe)
        .args(["-W", "captioner_encoder.weights"])
        .arg(&f.rows)
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

const HARNESS: &str = r#"
#include "captioner.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;
#define EXPECT(call, code) do { int rc_ = (call); if (rc_ != (code)) { \
    printf("FAIL line %d: %s gave %d, wanted %d\n", __LINE__, #call, rc_, (code)); ++failures; } } while (0)

int main(void)
{
    static double arena[(CAPTIONER_ARENA_BYTES + 7) / 8];
    static float feat[CAPTIONER_FEATURE_DIM];
    static unsigned char px[3 * 40 * 30];
    static char text[8192];
    char tiny[4];
    captioner_options o = CAPTIONER_DEFAULT_OPTIONS, bad;
    captioner_result r;
    for (int i = 0; i < CAPTIONER_FEATURE_DIM; ++i) feat[i] = 0.5f;
    for (int i = 0; i < (int)sizeof px; ++i) px[i] = (unsigned char)(i * 7);

    EXPECT(captioner_caption_features(feat, &o, text, sizeof text, &r, arena), CAPTIONER_OK);
    EXPECT(captioner_caption_rgb(px, 40, 30, 120, &o, text, sizeof text, &r, arena), CAPTIONER_OK);
    EXPECT(captioner_caption_rgb(px, 40, 30, 120, &o, text, sizeof text, NULL, NULL), CAPTIONER_OK);
    /* Null pointers. */
    EXPECT(captioner_caption_features(NULL, &o, text, sizeof text, &r, arena), CAPTIONER_ERR_NULL);
    EXPECT(captioner_caption_features(feat, NULL, text, sizeof text, &r, arena), CAPTIONER_ERR_NULL);
    EXPECT(captioner_caption_features(feat, &o, NULL, sizeof text, &r, arena), CAPTIONER_ERR_NULL);
    EXPECT(captioner_caption_rgb(NULL, 40, 30, 120, &o, text, sizeof text, &r, arena), CAPTIONER_ERR_NULL);
    /* Image sizes and strides. */
    EXPECT(captioner_caption_rgb(px, 0, 0, 0, &o, text, sizeof text, &r, arena), CAPTIONER_ERR_IMAGE);
    EXPECT(captioner_caption_rgb(px, 40, 0, 120, &o, text, sizeof text, &r, arena), CAPTIONER_ERR_IMAGE);
    EXPECT(captioner_caption_rgb(px, -5, 30, 120, &o, text, sizeof text, &r, arena), CAPTIONER_ERR_IMAGE);
    EXPECT(captioner_caption_rgb(px, CAPTIONER_MAX_SIDE + 1, 1, 3 * (CAPTIONER_MAX_SIDE + 1), &o, text, sizeof text, &r, arena), CAPTIONER_ERR_IMAGE);
    EXPECT(captioner_caption_rgb(px, 40, 30, 119, &o, text, sizeof text, &r, arena), CAPTIONER_ERR_IMAGE);
    /* Options. */
    bad = o; bad.beam = 0;
    EXPECT(captioner_caption_features(feat, &bad, text, sizeof text, &r, arena), CAPTIONER_ERR_OPTIONS);
    bad = o; bad.beam = CAPTIONER_MAX_BEAM + 1;
    EXPECT(captioner_caption_features(feat, &bad, text, sizeof text, &r, arena), CAPTIONER_ERR_OPTIONS);
    bad = o; bad.max_words = 0;
    EXPECT(captioner_caption_features(feat, &bad, text, sizeof text, &r, arena), CAPTIONER_ERR_OPTIONS);
    bad = o; bad.max_words = CAPTIONER_MAX_WORDS + 1;
    EXPECT(captioner_caption_features(feat, &bad, text, sizeof text, &r, arena), CAPTIONER_ERR_OPTIONS);
    bad = o; bad.length_alpha = -1.0;
    EXPECT(captioner_caption_features(feat, &bad, text, sizeof text, &r, arena), CAPTIONER_ERR_OPTIONS);
    bad = o; bad.length_alpha = NAN;
    EXPECT(captioner_caption_features(feat, &bad, text, sizeof text, &r, arena), CAPTIONER_ERR_OPTIONS);
    bad = o; bad.alternatives = o.beam;
    EXPECT(captioner_caption_features(feat, &bad, text, sizeof text, &r, arena), CAPTIONER_ERR_OPTIONS);
    /* Text buffers too small: whole words only, always NUL-terminated. */
    EXPECT(captioner_caption_features(feat, &o, tiny, 0, &r, arena), CAPTIONER_ERR_TEXT);
    memset(tiny, 'x', sizeof tiny);
    EXPECT(captioner_caption_features(feat, &o, tiny, 1, &r, arena), CAPTIONER_ERR_TEXT);
    if (tiny[0] != '\0') { printf("FAIL: capacity 1 not an empty string\n"); ++failures; }
    memset(tiny, 'x', sizeof tiny);
    EXPECT(captioner_caption_features(feat, &o, tiny, 3, &r, arena), CAPTIONER_ERR_TEXT);
    if (memchr(tiny, '\0', 3) == NULL) { printf("FAIL: capacity 3 not terminated\n"); ++failures; }
    /* Features that are not numbers. */
    feat[7] = NAN;
    EXPECT(captioner_caption_features(feat, &o, text, sizeof text, &r, arena), CAPTIONER_ERR_FEATURES);
    feat[7] = INFINITY;
    EXPECT(captioner_caption_features(feat, &o, text, sizeof text, &r, arena), CAPTIONER_ERR_FEATURES);
    feat[7] = 0.5f;
    /* Alternatives: one a line, as many as asked. */
    o.beam = 3; o.alternatives = 2;
    EXPECT(captioner_caption_features(feat, &o, text, sizeof text, &r, arena), CAPTIONER_OK);
    int lines = 1;
    for (const char *p = text; *p; ++p) lines += *p == '\n';
    if (lines != r.count || r.count < 1 || r.count > 3) { printf("FAIL: %d lines, count %d\n", lines, r.count); ++failures; }
    /* Extreme shapes are captioned, not crashed on. */
    o.alternatives = 0;
    static unsigned char wide[3 * 2000];
    EXPECT(captioner_caption_rgb(wide, 2000, 1, 6000, &o, text, sizeof text, &r, arena), CAPTIONER_OK);
    EXPECT(captioner_caption_rgb(wide, 1, 2000, 3, &o, text, sizeof text, &r, arena), CAPTIONER_OK);
    EXPECT(captioner_caption_rgb(wide, 1, 1, 3, &o, text, sizeof text, &r, arena), CAPTIONER_OK);
    printf("%d failures\n", failures);
    return failures != 0;
}
"#;

#[test]
fn bad_arguments_get_the_documented_error_codes() {
    let f = fixture();
    let dir = f.root.join("harness");
    compile(&f.model, &dir, &[]);
    std::fs::write(dir.join("harness.c"), HARNESS).unwrap();
    // With the sanitizers where the compiler has them: no crash, no out-of-bounds access.
    let sanitize = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"];
    let probe = Process::new("cc")
        .args(sanitize)
        .args(["-x", "c", "-o"])
        .arg(dir.join("probe"))
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .unwrap()
                .write_all(b"int main(void){return 0;}")?;
            c.wait()
        })
        .is_ok_and(|s| s.success());
    let flags: Vec<&str> = if probe { sanitize.to_vec() } else { Vec::new() };
    let status = Process::new("cc")
        .args([
            "-std=c99",
            "-O1",
            "-g",
            "-ffp-contract=off",
            "-Wall",
            "-Werror",
        ])
        .args(&flags)
        .args([
            "-o",
            "harness",
            "harness.c",
            "captioner.c",
            "captioner_encoder.c",
            "-lm",
        ])
        .current_dir(&dir)
        .status()
        .unwrap();
    assert!(status.success());
    let out = Process::new(dir.join("harness")).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "{text}(sanitizers: {})",
        if probe { "on" } else { "not available" }
    );
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("0 failures"));
}

#[test]
fn the_cortex_m7_build_runs_under_qemu() {
    if !have("arm-none-eabi-gcc") {
        eprintln!("skipped: arm-none-eabi-gcc is not installed");
        return;
    }
    let f = fixture();
    let dir = f.root.join("m7");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/cortex-m7");
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    compile(
        &f.model,
        &dir.join("captioner"),
        &["--no-encoder", "--quantize", "int8"],
    );
    // Four rows, and the same rows captioned by the same int8 code on this machine.
    let store = autocaption_pipeline::FeatureStore::load(&f.root.join("f.safetensors")).unwrap();
    let dim = store.dim();
    let rows: Vec<u8> = store.data()[..4 * dim]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    std::fs::write(dir.join("rows.f32"), rows).unwrap();
    let out = Process::new("sh")
        .arg("make-features.sh")
        .arg("rows.f32")
        .arg(dim.to_string())
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::write(dir.join("features.h"), out.stdout).unwrap();
    let out = Process::new("make")
        .arg("captioner.elf")
        .current_dir(&dir)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{log}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // arm-none-eabi-size: text data bss.
    let sizes: Vec<u64> = log
        .lines()
        .find(|l| {
            l.ends_with("captioner.elf")
                && l.split_whitespace()
                    .next()
                    .is_some_and(|w| w.parse::<u64>().is_ok())
        })
        .unwrap()
        .split_whitespace()
        .take(3)
        .map(|v| v.parse().unwrap())
        .collect();
    eprintln!(
        "Cortex-M7: flash {} bytes (text {} + data {}), RAM {} bytes (data + bss, the arena and a 16 KB stack)",
        sizes[0] + sizes[1],
        sizes[0],
        sizes[1],
        sizes[1] + sizes[2]
    );
    let host = dir.join("captioner");
    let exe = build(&host, "cc", &[], "host");
    let want = run_c(
        &exe,
        None,
        &[dir.join("rows.f32").to_string_lossy().into_owned()],
    );
    if !have("qemu-system-arm") {
        eprintln!("not run: qemu-system-arm is not installed");
        return;
    }
    let out = Process::new("timeout")
        .args(["120", "qemu-system-arm", "-M", "mps2-an500", "-nographic"])
        .args(["-semihosting", "-kernel", "captioner.elf"])
        .current_dir(&dir)
        .output()
        .unwrap();
    // QEMU writes the program's semihosting output to its standard error.
    let printed = String::from_utf8_lossy(&out.stderr);
    eprintln!("qemu-system-arm mps2-an500 printed:\n{printed}");
    assert!(out.status.success(), "{printed}");
    let got: Vec<&str> = printed
        .lines()
        .map(|l| l.split_once('\t').unwrap().1)
        .collect();
    let want: Vec<&str> = want.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(got, want);
}

#[test]
fn bad_settings_are_refused_before_anything_is_written() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("out");
    for (args, says) in [
        (vec!["--max-beam", "0"], "--max-beam"),
        (vec!["--max-words", "500"], "--max-words"),
        (vec!["--max-side", "10"], "--max-side"),
        (vec!["--name", "9lives"], "C identifier"),
        (vec!["--batch", "2"], "--captioner"),
    ] {
        let o = bin()
            .args(["compile", "--captioner"])
            .arg(dir.path().join("no-such-model"))
            .arg("--out")
            .arg(&out)
            .args(&args)
            .output()
            .unwrap();
        assert!(!o.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!out.exists(), "{args:?} wrote {}", out.display());
    }
    // A model directory that is not one: named, nothing written.
    let o = bin()
        .args(["compile", "--captioner"])
        .arg(dir.path())
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("config.json"));
    assert!(!out.exists());
}
