//! `autocaption compile`.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{bail, Context};
use autocaption_compiler::{compile, Options};

use crate::Global;

/// Compile an ONNX model ahead of time into dependency-free C99.
///
/// MODEL may also be the seed's Keras HDF5 model (`model.save("model.h5")`, read as `import
/// keras` reads it): it is compiled as the graph `export` writes for decoder.onnx.
///
/// Writes NAME.c and NAME.h into OUT: the weights in one aligned image, packed in the layout
/// each kernel reads (embedded as hexadecimal words, or NAME.weights with --weights
/// external; int8 with --quantize int8), no heap (one scratch arena, its size in the header
/// as NAME_ARENA_BYTES, caller-provided or static), no file I/O, nothing beyond the C99
/// standard library and libm. The entry point `int NAME_run([weights,] inputs...,
/// outputs..., void *arena)` returns NAME_OK or an error code. Shapes are fixed at compile
/// time: the batch with --batch, other symbolic dimensions with --dim, and inputs that
/// decide a shape (a Reshape's target, …) with --fix. With --main, also a main.c that reads
/// inputs from .pb or raw files and prints the outputs, and a Makefile.
///
/// The kernels build with any C99 compiler; with AVX2 and FMA enabled (-mavx2 -mfma,
/// -march=native) they use those instructions, and a plain -O2 build by GCC or Clang on x86
/// picks them at run time when the CPU has them.
///
/// An unsupported op fails with the list of every unsupported node.
///
/// With --captioner MODEL_DIR instead of MODEL: a whole captioner for a device, pixels in and
/// words out. NAME.c holds the model's preprocessing (the same values as the Rust engine's on
/// the same decoded pixels), the decoder, greedy and beam search (width chosen at run time up
/// to --max-beam) and the vocabulary; NAME_encoder.c the model's encoder (ResNet-50 or the
/// concept CNN) compiled as above. `NAME_caption_rgb` takes 8-bit RGB pixels,
/// `NAME_caption_features` a feature row; both write the caption as UTF-8 text, no heap, no
/// I/O, arena sizes in NAME.h. main.c (a program reading binary PPM, raw RGB or float32
/// feature files) and a Makefile come with it. Captions are the same as `autocaption caption`
/// gives for the same model and options.
#[derive(Debug, clap::Args)]
#[command(long_about)]
pub struct Args {
    /// The ONNX model (or, with --captioner, nothing).
    #[arg(required_unless_present = "captioner", conflicts_with = "captioner")]
    model: Option<PathBuf>,

    /// Compile the whole captioner of this model directory (from `autocaption train`) instead
    /// of one ONNX graph.
    #[arg(long, value_name = "MODEL_DIR")]
    captioner: Option<PathBuf>,

    /// With --captioner: leave the encoder out (only NAME_caption_features, for devices that
    /// get features elsewhere).
    #[arg(long, requires = "captioner")]
    no_encoder: bool,

    /// With --captioner: the widest beam a call may ask for (1 to 64).
    #[arg(long, default_value_t = 5, requires = "captioner")]
    max_beam: usize,

    /// With --captioner: the most words a caption may have (1 to 200).
    #[arg(long, default_value_t = 30, requires = "captioner")]
    max_words: usize,

    /// With --captioner: the largest width or height NAME_caption_rgb takes (256 to 65536;
    /// the preprocessing's scratch in the arena grows with it).
    #[arg(long, default_value_t = 8192, requires = "captioner")]
    max_side: usize,

    /// Output directory (other files in it are left alone).
    #[arg(long, short)]
    out: PathBuf,

    /// Replace generated files of an earlier `compile` in --out (files it did not write are
    /// never replaced).
    #[arg(long)]
    force: bool,

    /// Identifier prefix and file name of the generated code.
    #[arg(long, default_value = "model")]
    name: String,

    /// Size of every symbolic (or unknown) leading dimension not given by --dim: the batch
    /// the code is built for.
    #[arg(long, value_name = "N")]
    batch: Option<usize>,

    /// Where the weights go: `embed` (in NAME.c, as 64-bit hexadecimal words) or `external`
    /// (NAME.weights: a 64-byte header with magic, version, size and checksum, then the
    /// weights; NAME_run takes it as its first argument and returns NAME_ERR_WEIGHTS when it
    /// does not match, NAME_check_weights verifies it whole).
    #[arg(long, default_value = "embed")]
    weights: autocaption_compiler::WeightStorage,

    /// Store MatMul, Gemm, Conv and LSTM weights as per-output-channel symmetric int8 with
    /// their scales (4× fewer bytes; activations stay f32). `evaluate --int8` shows what it
    /// costs a caption model in quality.
    #[arg(long, value_name = "int8")]
    quantize: Option<autocaption_compiler::Quantize>,

    /// Size of a symbolic dimension, `NAME=SIZE` (repeatable).
    #[arg(long = "dim", value_name = "NAME=SIZE")]
    dims: Vec<String>,

    /// Fix an input to the tensor in an ONNX TensorProto file, `NAME=FILE.pb` (repeatable).
    #[arg(long = "fix", value_name = "NAME=FILE")]
    fixed: Vec<String>,

    /// Also write main.c (a command-line runner) and a Makefile.
    #[arg(long)]
    main: bool,

    /// Build the runner with this C compiler after writing it (implies --main).
    #[arg(long)]
    cc: Option<String>,

    /// With --cc, build for this target triple (passed as --target, for clang).
    #[arg(long, requires = "cc")]
    target: Option<String>,
}

impl Args {
    fn device_settings(&self) -> autocaption_pipeline::device::DeviceSettings {
        autocaption_pipeline::device::DeviceSettings {
            name: self.name.clone(),
            int8: self.quantize.is_some(),
            external: self.weights == autocaption_compiler::WeightStorage::External,
            encoder: !self.no_encoder,
            max_beam: self.max_beam,
            max_words: self.max_words,
            max_side: self.max_side,
        }
    }
}

fn pair(s: &str, what: &str) -> anyhow::Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() && !v.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => bail!("{what} '{s}': expected NAME=VALUE"),
    }
}

/// The ONNX graph of `path`: an ONNX file, or the seed's Keras HDF5 model turned into the
/// graph `export` writes as decoder.onnx (the seed's interface: `embedding_input` [N, 30]
/// pre-padded token ids as floats and `dense_input` [N, F] → `activation_3` [N, vocab]).
fn read_model(path: &std::path::Path) -> anyhow::Result<autocaption_onnx::proto::ModelProto> {
    autocaption_io::check_regular_file(path)?;
    let mut head = [0u8; 8];
    let is_hdf5 = std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok()
        && &head == b"\x89HDF\r\n\x1a\n";
    if is_hdf5 {
        let keras = autocaption_keras::read_model_file(path)?;
        Ok(autocaption_export::decoder(&keras.model))
    } else {
        Ok(autocaption_onnx::read_model(path)?)
    }
}

/// Refuses, before anything is compiled or written, to overwrite an input, a file an earlier
/// `compile` did not write, or (without --force) one it did.
fn check_outputs(args: &Args) -> anyhow::Result<()> {
    use autocaption_io::{check_output, Ours};
    let generated = Ours::FileMentioning("generated by autocaption compile");
    let mut names = vec![args.name.clone()];
    if args.captioner.is_some() && !args.no_encoder {
        names.push(format!("{}_encoder", args.name));
    }
    let mut files = Vec::new();
    for name in &names {
        files.push((format!("{name}.c"), generated));
        files.push((format!("{name}.h"), generated));
        if args.weights == autocaption_compiler::WeightStorage::External {
            files.push((format!("{name}.weights"), Ours::FileStarting(b"ACWEIGHT")));
        }
    }
    if args.main || args.cc.is_some() || args.captioner.is_some() {
        files.push(("main.c".into(), generated));
        files.push(("Makefile".into(), generated));
    }
    if args.cc.is_some() {
        files.push((args.name.clone(), Ours::FileStarting(b"")));
    }
    let fixed: Vec<PathBuf> = args
        .fixed
        .iter()
        .filter_map(|f| f.split_once('=').map(|(_, v)| PathBuf::from(v)))
        .collect();
    let mut inputs: Vec<&std::path::Path> = args.model.iter().map(PathBuf::as_path).collect();
    inputs.extend(args.captioner.iter().map(PathBuf::as_path));
    inputs.extend(fixed.iter().map(PathBuf::as_path));
    for (file, ours) in files {
        check_output(&args.out.join(file), args.force, ours, &inputs)?;
    }
    Ok(())
}

/// Runs `compile`.
pub fn run(args: Args, global: Global) -> anyhow::Result<()> {
    if args.batch.is_some_and(|b| b == 0 || b > 1 << 20) {
        bail!("--batch {}: expected 1 to 1048576", args.batch.unwrap_or(0));
    }
    let mut dims = HashMap::new();
    for d in &args.dims {
        let (k, v) = pair(d, "--dim")?;
        let n: usize = v
            .parse()
            .with_context(|| format!("--dim {d}: '{v}' is not a size"))?;
        if n == 0 || n > 1 << 20 {
            bail!("--dim {d}: expected a size from 1 to 1048576");
        }
        dims.insert(k, n);
    }
    let mut fixed = HashMap::new();
    for f in &args.fixed {
        let (k, v) = pair(f, "--fix")?;
        let (_, t) = autocaption_onnx::read_tensor(std::path::Path::new(&v))?;
        fixed.insert(k, t);
    }
    if let Some(dir) = &args.captioner {
        if !args.dims.is_empty() || !args.fixed.is_empty() || args.batch.is_some() {
            bail!("--dim, --fix and --batch are for one ONNX graph, not --captioner");
        }
        args.device_settings().validate()?;
        check_outputs(&args)?;
        return captioner(&args, dir, global);
    }
    check_outputs(&args)?;
    let model_path = args.model.clone().context("an ONNX model is needed")?;
    let model = read_model(&model_path)?;
    let opts = Options {
        name: args.name.clone(),
        dims,
        fixed,
        batch: args.batch,
        weights: args.weights,
        quantize: args.quantize,
    };
    let label = model_path
        .file_name()
        .map_or_else(|| "model".into(), |f| f.to_string_lossy().into_owned());
    let c = compile(&model, &opts, &label).with_context(|| format!("{}", model_path.display()))?;
    let with_main = args.main || args.cc.is_some();
    let files = c.write(&args.out, &args.name, with_main)?;
    if !global.quiet {
        println!(
            "{}: {} ONNX nodes → {} C kernels ({} folded to constants, {} Identity/Dropout removed, {} fused into the node before (bias, residual Add, Relu), {} dead); {:.1} MB of weights, arena {} bytes",
            model_path.display(),
            c.onnx_nodes,
            c.nodes,
            c.folded,
            c.passes.identities,
            c.passes.fused,
            c.passes.dead,
            c.sources.const_bytes as f64 / 1e6,
            c.sources.arena_bytes
        );
        for f in &files {
            println!("wrote {}", f.display());
        }
    }
    let sources = [format!("{}.c", args.name), "main.c".into()];
    build(
        &args,
        &["-std=c99", "-O2", "-Wall", "-Werror"],
        &sources,
        global,
    )
}

/// With --cc, builds the runner in --out from `sources` (file names there).
fn build(args: &Args, flags: &[&str], sources: &[String], global: Global) -> anyhow::Result<()> {
    let Some(cc) = &args.cc else {
        return Ok(());
    };
    let exe = args.out.join(&args.name);
    let mut cmd = std::process::Command::new(cc);
    if let Some(t) = &args.target {
        cmd.arg(format!("--target={t}"));
    }
    cmd.args(flags).arg("-o").arg(&exe);
    cmd.args(sources.iter().map(|f| args.out.join(f)))
        .arg("-lm");
    let status = cmd
        .status()
        .with_context(|| format!("cannot run the C compiler '{cc}'"))?;
    if !status.success() {
        bail!("{cc} failed on the generated code ({status})");
    }
    if !global.quiet {
        println!("built {}", exe.display());
    }
    Ok(())
}

/// `compile --captioner`: the whole captioner of a model directory.
fn captioner(args: &Args, dir: &std::path::Path, global: Global) -> anyhow::Result<()> {
    use autocaption_pipeline::{device, Encoder, ModelDir};
    let settings = args.device_settings();
    let model = ModelDir::load(dir)?;
    let encoder = if settings.encoder {
        Some(Encoder::for_model(&model, None)?)
    } else {
        None
    };
    let built = device::compile_captioner(&model, encoder.as_ref(), &settings)?;
    let files = built.write(&args.out)?;
    let z = &built.sizes;
    if !global.quiet {
        println!(
            "{}: captioner {} ({}{}); decoder weights {:.2} MB, encoder weights {:.2} MB, \
             source {:.2} MB, arena {} bytes (features path {} bytes); preprocessing: {}",
            dir.display(),
            args.name,
            if settings.int8 { "int8" } else { "f32" },
            if settings.external {
                ", external weights"
            } else {
                ""
            },
            z.decoder_weights as f64 / 1e6,
            z.encoder_weights as f64 / 1e6,
            z.source as f64 / 1e6,
            z.arena,
            z.features_arena,
            built.preprocessing
        );
        for f in &files {
            println!("wrote {}", f.display());
        }
    }
    let sources: Vec<String> = built
        .files
        .iter()
        .filter(|(f, _)| f.ends_with(".c"))
        .map(|(f, _)| f.clone())
        .collect();
    build(
        args,
        &["-std=c99", "-O3", "-ffp-contract=off", "-Wall"],
        &sources,
        global,
    )
}
