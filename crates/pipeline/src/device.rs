//! A whole captioner in C for devices (`compile --captioner`): pixels in, words out.
//!
//! The generated library has two parts:
//!
//! - the encoder (`NAME_encoder.c`), the model's ResNet-50 or concept CNN exported to ONNX
//!   and compiled by [`autocaption_compiler`] at batch 1 (its kernels, its weight formats);
//! - `NAME.c`, written from the templates beside this file: the model's preprocessing
//!   preset (the same roundings as [`autocaption_vision::preprocess`] and the concept CNN's
//!   resize), the decoder's incremental step, greedy and beam search ([`autocaption_model`]'s
//!   rules: the same candidates, tie-breaks, stopping and scores), and the vocabulary.
//!
//! The decoder is not compiled from `decoder_step.onnx`: a beam's live rows change from word
//! to word (an image's beams finish one by one), the image's share of the merge LSTM is
//! computed once per image, and the embedding replaces the engine's per-word table (the
//! table is vocabulary × 4·units floats: 32 MB for the seed's model, too big for a device).
//! Its products run `k` in order for every output, so with `-ffp-contract=off` every
//! architecture rounds them alike.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use autocaption_compiler::quant::{int8_channels, int8_equalized};
use autocaption_compiler::weights::{blob, check_code, fnv1a, hex_words, HEADER_BYTES};
use autocaption_compiler::{Options, Quantize, WeightStorage};
use autocaption_vision::{Layout, Preset};

use crate::encoder::{Encoder, Network};
use crate::model_dir::{Decoding, ModelDir};
use crate::{Error, Result};

const CAPTIONER_C: &str = include_str!("device/captioner.c");
const PIXELS_C: &str = include_str!("device/pixels.c");
const MAIN_C: &str = include_str!("device/main.c");

/// What `compile --captioner` builds.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceSettings {
    /// Prefix of every public identifier and of the file names.
    pub name: String,
    /// Per-output-channel int8 weights (decoder and encoder), activations in f32.
    pub int8: bool,
    /// Weights in `NAME.weights` (and `NAME_encoder.weights`) instead of in the C source.
    pub external: bool,
    /// Include the encoder and `NAME_caption_rgb` (else only `NAME_caption_features`).
    pub encoder: bool,
    /// Widest beam a call may ask for.
    pub max_beam: usize,
    /// Most words a caption may have.
    pub max_words: usize,
    /// Largest image side `NAME_caption_rgb` takes (the preprocessing's scratch grows with it).
    pub max_side: usize,
}

impl Default for DeviceSettings {
    fn default() -> Self {
        Self {
            name: "captioner".into(),
            int8: false,
            external: false,
            encoder: true,
            max_beam: 5,
            max_words: 30,
            max_side: 8192,
        }
    }
}

impl DeviceSettings {
    /// Checks the limits before anything is built.
    pub fn validate(&self) -> Result<()> {
        let n = &self.name;
        if n.is_empty()
            || n.starts_with(|c: char| c.is_ascii_digit())
            || !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(Error::Invalid(format!(
                "--name '{n}' is not a C identifier (letters, digits and '_', not starting with a digit)"
            )));
        }
        if !(1..=crate::MAX_BEAM).contains(&self.max_beam) {
            return Err(Error::Invalid(format!(
                "--max-beam must be from 1 to {}, got {}",
                crate::MAX_BEAM,
                self.max_beam
            )));
        }
        if !(1..=crate::MAX_WORDS).contains(&self.max_words) {
            return Err(Error::Invalid(format!(
                "--max-words must be from 1 to {}, got {}",
                crate::MAX_WORDS,
                self.max_words
            )));
        }
        if !(256..=65536).contains(&self.max_side) {
            return Err(Error::Invalid(format!(
                "--max-side must be from 256 to 65536, got {}",
                self.max_side
            )));
        }
        Ok(())
    }
}

/// Sizes of a generated captioner, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeviceSizes {
    /// The decoder's weights (without a blob header).
    pub decoder_weights: usize,
    /// The encoder's weights (0 without an encoder).
    pub encoder_weights: usize,
    /// Scratch `NAME_caption_features` needs.
    pub features_arena: usize,
    /// Scratch `NAME_caption_rgb` needs (the header's `ARENA_BYTES`, at least the former).
    pub arena: usize,
    /// Generated C source (`.c` and `.h`), weights excluded where they are external.
    pub source: usize,
}

/// A generated captioner: its files and sizes.
#[derive(Debug, Clone)]
pub struct DeviceCaptioner {
    /// File names and contents, written together by [`DeviceCaptioner::write`].
    pub files: Vec<(String, Vec<u8>)>,
    /// What it takes.
    pub sizes: DeviceSizes,
    /// One line on the preprocessing preset.
    pub preprocessing: String,
}

impl DeviceCaptioner {
    /// Writes every file into `dir` at once (each atomically; see
    /// [`autocaption_io::write_files_atomic`]).
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir).map_err(|e| Error::File {
            path: dir.to_path_buf(),
            message: e.to_string(),
        })?;
        let staged: Vec<(PathBuf, Vec<u8>)> = self
            .files
            .iter()
            .map(|(n, b)| (dir.join(n), b.clone()))
            .collect();
        autocaption_io::write_files_atomic(&staged)?;
        Ok(staged.into_iter().map(|(p, _)| p).collect())
    }
}

/// The weights image: arrays at 64-byte boundaries, named by `#define`s of their offsets.
#[derive(Default)]
struct Image {
    bytes: Vec<u8>,
    defines: String,
}

impl Image {
    fn push(&mut self, bytes: &[u8]) -> usize {
        while !self.bytes.len().is_multiple_of(64) {
            self.bytes.push(0);
        }
        let at = self.bytes.len();
        self.bytes.extend_from_slice(bytes);
        at
    }

    fn floats(&mut self, v: &[f32]) -> usize {
        let b: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.push(&b)
    }

    fn define(&mut self, name: &str, value: impl std::fmt::Display) {
        let _ = writeln!(self.defines, "#define {name} {value}");
    }

    /// A `k × n` kernel (row-major `[k][n]`) as `AC_MAT_<name>`; with int8, equalised
    /// per-column int8 as `compile --quantize int8` and `evaluate --int8` use. `split`
    /// cuts the rows into two matrices sharing their column scales (the merge LSTM's image
    /// and text inputs).
    fn matrix(
        &mut self,
        names: &[&str],
        split: &[usize],
        w: &[f32],
        k: usize,
        n: usize,
        int8: bool,
    ) {
        assert_eq!(w.len(), k * n);
        let bounds: Vec<usize> = std::iter::once(0)
            .chain(split.iter().copied())
            .chain(std::iter::once(k))
            .collect();
        if !int8 {
            for (i, name) in names.iter().enumerate() {
                let (r0, r1) = (bounds[i], bounds[i + 1]);
                let at = self.floats(&w[r0 * n..r1 * n]);
                self.define(
                    &format!("AC_MAT_{name}"),
                    format!("{{{at}L, -1L, -1L, {}, {n}}}", r1 - r0),
                );
            }
            return;
        }
        let (q, cols, rows) = int8_equalized(k, n, |kk, j| w[kk * n + j]);
        let cols_at = self.floats(&cols);
        for (i, name) in names.iter().enumerate() {
            let (r0, r1) = (bounds[i], bounds[i + 1]);
            // Column-major [j][k] → row-major [k][j].
            let mut rm = Vec::with_capacity((r1 - r0) * n);
            for kk in r0..r1 {
                for j in 0..n {
                    rm.push(q[j * k + kk] as u8);
                }
            }
            let at = self.push(&rm);
            let rows_at = self.floats(&rows[r0..r1]);
            self.define(
                &format!("AC_MAT_{name}"),
                format!("{{{at}L, {cols_at}L, {rows_at}L, {}, {n}}}", r1 - r0),
            );
        }
    }
}

/// A C string literal of `s` (bytes beyond ASCII as octal escapes).
fn c_string(s: &str) -> String {
    let mut out = String::from("\"");
    for b in s.bytes() {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\{b:03o}");
            }
        }
    }
    out.push('"');
    out
}

/// Builds the C captioner of `model` (with `encoder` for the pixels path).
pub fn compile_captioner(
    model: &ModelDir,
    encoder: Option<&Encoder>,
    s: &DeviceSettings,
) -> Result<DeviceCaptioner> {
    s.validate()?;
    if model.config.decoding == Decoding::Prefix {
        return Err(Error::Invalid(format!(
            "{}: this model is decoded over pre-padded windows (an imported seed model without \
             a mask); the C captioner decodes incrementally, as models `train` makes are",
            model.path.display()
        )));
    }
    let encoder = if s.encoder {
        Some(encoder.ok_or_else(|| {
            Error::Invalid(format!(
                "{}: no encoder for the pixels path; give its weights, or --no-encoder",
                model.path.display()
            ))
        })?)
    } else {
        None
    };
    let (name, upper) = (s.name.as_str(), s.name.to_uppercase());
    let m = &model.model;
    let c = &m.config;
    let (start, end) = model.start_end();
    let int8 = s.int8;

    let mut img = Image::default();
    let d = &mut img;
    for (key, v) in [
        ("AC_V", c.vocab_size),
        ("AC_F", c.feature_dim),
        ("AC_E", c.embed_dim),
        ("AC_U1", c.text_lstm),
        ("AC_TD", c.text_dense),
        ("AC_ID", c.image_dense),
        ("AC_U2", c.merge_lstm),
        ("AC_U3", c.decoder_lstm),
        ("AC_START", start as usize),
        ("AC_END", end as usize),
        ("AC_INT8", usize::from(int8)),
        ("AC_IMAGE_RELU", usize::from(m.image_dense.relu)),
        ("AC_TEXT_RELU", usize::from(m.text_dense.relu)),
    ] {
        d.define(key, v);
    }
    let (g2, id) = (4 * c.merge_lstm, c.image_dense);
    d.matrix(
        &["IMAGE"],
        &[],
        &m.image_dense.kernel.value,
        c.feature_dim,
        id,
        int8,
    );
    let at = d.floats(&m.image_dense.bias.value);
    d.define("AC_B_IMAGE", format!("{at}L"));
    d.matrix(
        &["MERGE_IMAGE", "MERGE_TEXT"],
        &[id],
        &m.merge_lstm.kernel.value,
        id + c.text_dense,
        g2,
        int8,
    );
    let at = d.floats(&m.merge_lstm.bias.value);
    d.define("AC_B_MERGE", format!("{at}L"));
    d.matrix(
        &["MERGE_R"],
        &[],
        &m.merge_lstm.recurrent.value,
        c.merge_lstm,
        g2,
        int8,
    );
    let e = &m.embedding.table.value;
    if int8 {
        let (q, scales) = int8_channels(c.vocab_size, c.embed_dim, |r, k| e[r * c.embed_dim + k]);
        let at = d.push(&q.iter().map(|&v| v as u8).collect::<Vec<u8>>());
        d.define("AC_EMBED", format!("{at}L"));
        let at = d.floats(&scales);
        d.define("AC_EMBED_SCALES", format!("{at}L"));
    } else {
        let at = d.floats(e);
        d.define("AC_EMBED", format!("{at}L"));
    }
    let g1 = 4 * c.text_lstm;
    d.matrix(
        &["TEXT_X"],
        &[],
        &m.text_lstm.kernel.value,
        c.embed_dim,
        g1,
        int8,
    );
    d.matrix(
        &["TEXT_R"],
        &[],
        &m.text_lstm.recurrent.value,
        c.text_lstm,
        g1,
        int8,
    );
    let at = d.floats(&m.text_lstm.bias.value);
    d.define("AC_B_TEXT", format!("{at}L"));
    d.matrix(
        &["TEXT_DENSE"],
        &[],
        &m.text_dense.kernel.value,
        c.text_lstm,
        c.text_dense,
        int8,
    );
    let at = d.floats(&m.text_dense.bias.value);
    d.define("AC_B_TEXT_DENSE", format!("{at}L"));
    let g3 = 4 * c.decoder_lstm;
    d.matrix(
        &["DEC_X"],
        &[],
        &m.decoder_lstm.kernel.value,
        c.merge_lstm,
        g3,
        int8,
    );
    d.matrix(
        &["DEC_R"],
        &[],
        &m.decoder_lstm.recurrent.value,
        c.decoder_lstm,
        g3,
        int8,
    );
    let at = d.floats(&m.decoder_lstm.bias.value);
    d.define("AC_B_DEC", format!("{at}L"));
    d.matrix(
        &["OUT"],
        &[],
        &m.output.kernel.value,
        c.decoder_lstm,
        c.vocab_size,
        int8,
    );
    let at = d.floats(&m.output.bias.value);
    d.define("AC_B_OUT", format!("{at}L"));
    while !d.bytes.len().is_multiple_of(8) {
        d.bytes.push(0);
    }

    // The vocabulary as the tokenizer decodes each word alone ("" for padding and the
    // start and end tokens, which captions leave out).
    let mut vocab = format!("static const char *const ac_vocab[{}] = {{\n", c.vocab_size);
    for i in 0..c.vocab_size {
        let _ = writeln!(
            vocab,
            "    {},",
            c_string(&model.tokenizer.decode(&[i as u32]))
        );
    }
    vocab.push_str("};\n");

    // Arena sizes (see ac_carve and AC_DEC_FLOATS in captioner.c).
    let (k, w) = (s.max_beam, s.max_words);
    let maxg = [g1, g2, g3].into_iter().max().unwrap_or(0);
    let maxo = maxg.max(c.vocab_size);
    let maxi = c.feature_dim.max(maxo);
    let floats = g2
        + 2 * k * 2 * (c.text_lstm + c.merge_lstm + c.decoder_lstm)
        + k * maxg
        + k * c.text_dense
        + k * c.embed_dim
        + k * c.vocab_size
        + k * (maxi + maxo);
    let hyp = 32 + (4 * w).div_ceil(8) * 8;
    let features_arena = 4 * floats + 4 * 2 * k * w + 8 + k * hyp + k * k * 16;

    // The encoder, compiled at batch 1.
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut arena = features_arena;
    let mut encoder_weights = 0;
    let mut preprocessing = "none (features path only)".to_string();
    let mut pixels = String::new();
    let mut header_extra = String::new();
    let enc_name = format!("{name}_encoder");
    if let Some(enc) = encoder {
        let (onnx, size, preset, describe) = match enc.network() {
            Network::ResNet(net) => {
                let preset = Preset::for_layout(net.config.layout);
                let p = match net.config.layout {
                    Layout::Keras => 1,
                    Layout::Torchvision => 2,
                };
                (
                    autocaption_export::encoder(net, preset.size()),
                    preset.size(),
                    p,
                    preset.describe().to_string(),
                )
            }
            Network::Concept(net) => (
                autocaption_export::concept_encoder(net),
                net.config.size,
                3,
                format!(
                    "concept CNN (image crate resize to {0}×{0}, triangle filter; x/255 − 0.5)",
                    net.config.size
                ),
            ),
        };
        preprocessing = describe;
        let opts = Options {
            name: enc_name.clone(),
            batch: Some(1),
            weights: if s.external {
                WeightStorage::External
            } else {
                WeightStorage::Embed
            },
            quantize: int8.then_some(Quantize::Int8),
            ..Options::default()
        };
        let compiled = autocaption_compiler::compile(&onnx, &opts, "the model's encoder")
            .map_err(|e| Error::Invalid(format!("compiling the encoder: {e}")))?;
        let src = &compiled.sources;
        encoder_weights = src.const_bytes;
        let enc_upper = enc_name.to_uppercase();
        // The captioner passes its own arena: no static one in the encoder.
        let source = format!("#define {enc_upper}_NO_STATIC_ARENA\n{}", src.source);
        files.push((format!("{enc_name}.c"), source.into_bytes()));
        files.push((format!("{enc_name}.h"), src.header.clone().into_bytes()));
        if let Some(b) = &src.blob {
            files.push((format!("{enc_name}.weights"), b.clone()));
        }
        let align = |x: usize| x.div_ceil(64) * 64;
        let feat = align(4 * c.feature_dim);
        let input = align(4 * size * size * 3);
        let taps = |r: usize| 2 * s.max_side.div_ceil(r) + 4;
        let prep = match preset {
            1 => 2 * size * 4,
            2 => 2 * size * (taps(256) + 2) * 4 + 3 * size * 4,
            _ => 3 * s.max_side * 4 + 2 * taps(size) * 4,
        };
        arena = arena
            .max(feat + input + prep.max(src.arena_bytes))
            .max(feat + features_arena);
        let _ = writeln!(
            header_extra,
            "/* Side of the square image the encoder takes, after the preprocessing. */\n\
             #define {upper}_IMAGE_SIZE {size}\n\
             /* Largest width or height {name}_caption_rgb takes. */\n\
             #define {upper}_MAX_SIDE {}\n",
            s.max_side
        );
        pixels = PIXELS_C.to_string();
        img.define("AC_PRESET", preset);
    }

    // NAME.c
    let sum = fnv1a(&img.bytes);
    let mut model_part = String::new();
    let _ = writeln!(
        model_part,
        "\n/* The model: sizes, token ids, and where each array sits in the weights image. */"
    );
    model_part.push_str(&img.defines);
    model_part.push('\n');
    model_part.push_str(&vocab);
    let (weights_access, weights_param, prologue, encoder_param, encoder_arg);
    if s.external {
        weights_access = check_code(name, img.bytes.len(), sum);
        weights_param = "const void *weights, ";
        prologue = format!(
            "if (!{name}_header_ok((const unsigned char *)weights)) return {upper}_ERR_WEIGHTS;\n    const unsigned char *wb = (const unsigned char *)weights + {HEADER_BYTES};"
        );
        encoder_param = "const void *encoder_weights, ";
        encoder_arg = "encoder_weights, ";
    } else {
        let _ = writeln!(
            model_part,
            "\n/* The weights: {} bytes, little-endian (FNV-1a 64 0x{sum:x}). */\n\
             #if defined(__BYTE_ORDER__) && defined(__ORDER_BIG_ENDIAN__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__\n\
             #error \"{name}.c holds its weights little-endian; compile with --weights external on a big-endian target\"\n\
             #endif\n\
             #if defined(__GNUC__)\n#define AC_ALIGNED __attribute__((aligned(64)))\n#else\n#define AC_ALIGNED\n#endif\n\
             static const uint64_t ac_weights[{}] AC_ALIGNED = {{\n{}}};",
            img.bytes.len(),
            img.bytes.len() / 8,
            hex_words(&img.bytes)
        );
        weights_access = String::new();
        weights_param = "";
        // Read through a volatile once a call, so the compiler treats the weights as memory.
        prologue = "const unsigned char *volatile wbv = (const unsigned char *)ac_weights;\n    const unsigned char *wb = wbv;".to_string();
        encoder_param = "";
        encoder_arg = "";
    }
    let fill = |t: &str| {
        t.replace("@WEIGHTS_ACCESS@", &weights_access)
            .replace("@WEIGHTS_PARAM@", weights_param)
            .replace("@WEIGHTS_PROLOGUE@", &prologue)
            .replace("@ENCODER_PARAM@", encoder_param)
            .replace("@ENCODER_ARG@", encoder_arg)
            .replace("@NAME@", name)
            .replace("@UPPER@", &upper)
            .replace("@LABEL@", &model.name())
    };
    let source = fill(
        &CAPTIONER_C
            .replace(
                "@ENCODER_INCLUDE@",
                &if encoder.is_some() {
                    format!("#include \"{enc_name}.h\"")
                } else {
                    String::new()
                },
            )
            .replace("@MODEL@", &model_part)
            .replace("@PIXELS@", &pixels),
    );

    // NAME.h
    let header = header(
        name,
        &upper,
        s,
        c.feature_dim,
        c.vocab_size,
        features_arena,
        arena,
        encoder.is_some(),
        s.external.then_some(HEADER_BYTES + img.bytes.len()),
        &header_extra,
        &model.name(),
    );
    let main = fill(MAIN_C)
        .replace("@HAS_ENCODER@", if encoder.is_some() { "1" } else { "0" })
        .replace("@EXTERNAL@", if s.external { "1" } else { "0" });
    let mut sources = vec![name.to_string()];
    if encoder.is_some() {
        sources.push(enc_name.clone());
    }
    let objs: Vec<String> = sources.iter().map(|n| format!("{n}.c")).collect();
    let makefile =
        format!(
        "# Builds the example captioner {name} (generated by autocaption compile --captioner).\n\
         # -ffp-contract=off: every float operation rounds as written, on every architecture.\n\
         CC ?= cc\nCFLAGS ?= -std=c99 -O3 -Wall\nCFLAGS += -ffp-contract=off\n\n\
         {name}: {srcs} main.c {hdrs}\n\t$(CC) $(CFLAGS) -o $@ {srcs} main.c -lm $(LDFLAGS)\n\n\
         clean:\n\trm -f {name}\n\n.PHONY: clean\n",
        srcs = objs.join(" "),
        hdrs = sources.iter().map(|n| format!("{n}.h")).collect::<Vec<_>>().join(" "),
    );
    let code_bytes = source.len() + header.len();
    let mut out = vec![
        (format!("{name}.c"), source.into_bytes()),
        (format!("{name}.h"), header.into_bytes()),
    ];
    if s.external {
        out.push((format!("{name}.weights"), blob(&img.bytes)));
    }
    out.append(&mut files);
    out.push(("main.c".into(), main.into_bytes()));
    out.push(("Makefile".into(), makefile.into_bytes()));
    let source_bytes = code_bytes
        + out
            .iter()
            .filter(|(n, _)| n.starts_with(&enc_name) && (n.ends_with(".c") || n.ends_with(".h")))
            .map(|(_, b)| b.len())
            .sum::<usize>();
    Ok(DeviceCaptioner {
        files: out,
        sizes: DeviceSizes {
            decoder_weights: img.bytes.len(),
            encoder_weights,
            features_arena,
            arena,
            source: source_bytes,
        },
        preprocessing,
    })
}

#[allow(clippy::too_many_arguments)]
fn header(
    name: &str,
    upper: &str,
    s: &DeviceSettings,
    feature_dim: usize,
    vocab: usize,
    features_arena: usize,
    arena: usize,
    pixels: bool,
    blob_bytes: Option<usize>,
    extra: &str,
    label: &str,
) -> String {
    let mut h = format!(
        "/* {name}.h: a whole captioner, generated by autocaption compile --captioner from {label}.\n \
         * C99, no heap, no I/O: the caller gives the scratch memory (the arena). */\n\
         #ifndef {upper}_H\n#define {upper}_H\n\n#include <stddef.h>\n#include <stdint.h>\n\n\
         #ifdef __cplusplus\nextern \"C\" {{\n#endif\n\n\
         /* Width of a feature row {name}_caption_features takes. */\n#define {upper}_FEATURE_DIM {feature_dim}\n\
         /* Words in the vocabulary. */\n#define {upper}_VOCAB_SIZE {vocab}\n\
         /* Widest beam and most words a call may ask for (compiled in). */\n\
         #define {upper}_MAX_BEAM {}\n#define {upper}_MAX_WORDS {}\n\n{extra}\
         /* Scratch memory, in bytes, 8-byte aligned: {name}_caption_features needs\n \
         * {upper}_FEATURES_ARENA_BYTES, {name}_caption_rgb {upper}_ARENA_BYTES. */\n\
         #define {upper}_FEATURES_ARENA_BYTES {features_arena}\n#define {upper}_ARENA_BYTES {arena}\n\n",
        s.max_beam, s.max_words
    );
    if let Some(b) = blob_bytes {
        let _ = writeln!(
            h,
            "/* Bytes of {name}.weights (a {HEADER_BYTES}-byte header, then the decoder's weights). */\n\
             #define {upper}_WEIGHTS_BYTES {b}\n"
        );
    }
    let _ = writeln!(
        h,
        "/* Return codes. */\n\
         #define {upper}_OK 0\n\
         #define {upper}_ERR_WEIGHTS 4 /* a weights blob is not this code's (magic, version, size, checksum), or not 8-byte aligned */\n\
         #define {upper}_ERR_NULL 10 /* a required pointer is NULL (or the arena, with {upper}_NO_STATIC_ARENA) */\n\
         #define {upper}_ERR_IMAGE 11 /* width or height is below 1 or above MAX_SIDE, or stride < 3 * width */\n\
         #define {upper}_ERR_OPTIONS 12 /* beam, max_words, length_alpha or alternatives out of range */\n\
         #define {upper}_ERR_TEXT 13 /* the text buffer is too small: it holds as many whole words as fit */\n\
         #define {upper}_ERR_ENCODER 14 /* the encoder failed */\n\
         #define {upper}_ERR_FEATURES 15 /* a feature is NaN or infinite */\n\n\
         /* How to caption. */\n\
         typedef struct {{\n    int beam;            /* 1 (greedy) to {upper}_MAX_BEAM */\n    \
         int max_words;       /* 1 to {upper}_MAX_WORDS */\n    \
         double length_alpha; /* beam scores are log p / length^alpha; 0 to 1e6 */\n    \
         int alternatives;    /* more captions after the best, one a line: 0 to beam - 1 */\n}} {name}_options;\n\n\
         /* The autocaption CLI's defaults: beam 3 (or the widest compiled), 30 words, alpha 0.7. */\n\
         #define {upper}_DEFAULT_OPTIONS {{{}, {}, 0.7, 0}}\n\n\
         /* What a call found, best first (optional). */\n\
         typedef struct {{\n    int count;                          /* captions written to text */\n    \
         double score[{upper}_MAX_BEAM];     /* log p / length^alpha (greedy: log p) */\n    \
         double log_prob[{upper}_MAX_BEAM];  /* sum of the words' log-probabilities */\n    \
         int words[{upper}_MAX_BEAM];        /* words in the caption */\n    \
         int finished[{upper}_MAX_BEAM];     /* 1: ended by the end token; 0: cut at max_words */\n}} {name}_result;\n",
        s.max_beam.min(3),
        s.max_words.min(30)
    );
    let weights_doc = if blob_bytes.is_some() {
        format!(
            " * weights: the bytes of {name}.weights, 8-byte aligned (read from a file, mapped or in\n \
             *   flash); its header is checked on every call, its checksum by {name}_check_weights.\n"
        )
    } else {
        String::new()
    };
    let wparam = if blob_bytes.is_some() {
        "const void *weights, "
    } else {
        ""
    };
    let _ = writeln!(
        h,
        "/*\n * Captions one feature row ({upper}_FEATURE_DIM floats, from the model's encoder).\n{weights_doc} \
         * text: receives the caption as UTF-8, NUL-terminated (with options->alternatives, the\n \
         *   others follow, one a line); text_capacity its size in bytes.\n \
         * result: NULL, or receives scores and lengths.\n \
         * arena: {upper}_FEATURES_ARENA_BYTES bytes, 8-byte aligned, not shared with a concurrent\n \
         *   call; NULL uses a static arena unless {upper}_NO_STATIC_ARENA is defined.\n \
         * Returns {upper}_OK or an error code above.\n */\n\
         int {name}_caption_features({wparam}const float *features, const {name}_options *options,\n    \
         char *text, size_t text_capacity, {name}_result *result, void *arena);\n"
    );
    if blob_bytes.is_some() {
        let _ = writeln!(
            h,
            "/* Checks {name}.weights whole (header, size, checksum; reads every byte once).\n \
             * Returns {upper}_OK or {upper}_ERR_WEIGHTS. */\nint {name}_check_weights(const void *weights, size_t bytes);\n"
        );
    }
    if pixels {
        let eparam = if blob_bytes.is_some() {
            "const void *weights, const void *encoder_weights, "
        } else {
            ""
        };
        let edoc = if blob_bytes.is_some() {
            format!(" * encoder_weights: the bytes of {name}_encoder.weights, likewise.\n")
        } else {
            String::new()
        };
        let _ = writeln!(
            h,
            "/*\n * Captions an RGB photo: pixels are 8-bit R, G, B, row by row, stride bytes from one\n \
             * row to the next (at least 3 * width); 1 to {upper}_MAX_SIDE pixels each way. The\n \
             * model's preprocessing, its encoder, then as {name}_caption_features.\n{weights_doc}{edoc} \
             * arena: {upper}_ARENA_BYTES bytes, 8-byte aligned (NULL: as above).\n */\n\
             int {name}_caption_rgb({eparam}const unsigned char *pixels, int width, int height,\n    \
             int stride, const {name}_options *options, char *text, size_t text_capacity,\n    \
             {name}_result *result, void *arena);\n"
        );
    }
    let _ = writeln!(
        h,
        "#ifdef __cplusplus\n}}\n#endif\n\n#endif /* {upper}_H */"
    );
    h
}

/// A photo as binary PPM (P6, maxval 255): what the example `main.c` reads.
pub fn ppm(img: &image::RgbImage) -> Vec<u8> {
    let mut out = format!("P6\n{} {}\n255\n", img.width(), img.height()).into_bytes();
    out.extend_from_slice(img.as_raw());
    out
}

/// What [`bench_captioner`] compares.
#[derive(Debug, Clone)]
pub struct DeviceBench {
    /// The model directory.
    pub model: PathBuf,
    /// Photos, decoded by our decoder and handed to both as the same pixels.
    pub photos: Vec<PathBuf>,
    /// How the C is generated (the name is ignored).
    pub settings: DeviceSettings,
    /// Decoding options for both.
    pub options: crate::CaptionOptions,
    /// The C compiler and its flags.
    pub cc: String,
    /// Flags for the C compiler.
    pub cflags: Vec<String>,
    /// Calls a photo, for each side; the mean is reported.
    pub repeats: usize,
    /// Where the generated code, PPMs and program go.
    pub work: PathBuf,
}

/// One photo of [`bench_captioner`].
#[derive(Debug, Clone)]
pub struct DevicePhoto {
    /// File name.
    pub name: String,
    /// The C captioner's caption and score.
    pub c: (String, f64),
    /// The Rust engine's.
    pub rust: (String, f64),
    /// Mean seconds a call, C and Rust (one thread each; processor time for the C).
    pub c_seconds: f64,
    /// See `c_seconds`.
    pub rust_seconds: f64,
}

/// What [`bench_captioner`] measured.
#[derive(Debug, Clone)]
pub struct DeviceReport {
    /// Every photo.
    pub photos: Vec<DevicePhoto>,
    /// Sizes of the generated captioner.
    pub sizes: DeviceSizes,
    /// Seconds to generate and to build the C.
    pub generate: f64,
    /// See `generate`.
    pub build: f64,
}

/// Photo → caption in the generated C against the Rust engine, both on one thread, on the
/// same decoded pixels (the C reads them as PPM): captions, scores and the mean time a call
/// of each, photo by photo.
pub fn bench_captioner(b: &DeviceBench) -> Result<DeviceReport> {
    use crate::bench_compiled::{failed, io_err};
    use std::process::Command;
    use std::time::Instant;
    if b.repeats == 0 {
        return Err(Error::Invalid("repeats must be at least 1".into()));
    }
    let t = Instant::now();
    let captioner = crate::Captioner::load(&b.model, None)?;
    let mut settings = b.settings.clone();
    settings.name = "captioner".into();
    settings.max_beam = settings.max_beam.max(b.options.beam);
    settings.max_words = settings.max_words.max(b.options.max_words);
    let built = compile_captioner(captioner.model(), captioner.encoder(), &settings)?;
    built.write(&b.work)?;
    let generate = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let out = Command::new(&b.cc)
        .args(&b.cflags)
        .args(["-ffp-contract=off", "-o", "captioner", "captioner.c"])
        .args((settings.encoder).then_some("captioner_encoder.c"))
        .args(["main.c", "-lm"])
        .current_dir(&b.work)
        .output()
        .map_err(|e| Error::Invalid(format!("cannot run the C compiler '{}': {e}", b.cc)))?;
    if !out.status.success() {
        return Err(failed(&format!("{} on {}", b.cc, b.work.display()), &out));
    }
    let build = t.elapsed().as_secs_f64();

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .map_err(|e| Error::Invalid(format!("a one-thread pool: {e}")))?;
    let mut photos = Vec::new();
    for (i, path) in b.photos.iter().enumerate() {
        let img = autocaption_vision::load_rgb(path).map_err(|e| Error::File {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let ppm_path = b.work.join(format!("photo{i}.ppm"));
        std::fs::write(&ppm_path, ppm(&img)).map_err(|e| io_err(&ppm_path, e))?;
        // Rust, one thread: the library call `caption` makes for one photo.
        let mut times = Vec::with_capacity(b.repeats);
        let mut caption = None;
        for _ in 0..b.repeats {
            let t = Instant::now();
            let c = pool.install(|| {
                captioner.caption_images(
                    std::slice::from_ref(&img),
                    &b.options,
                    &autocaption_io::NoProgress,
                )
            })?;
            times.push(t.elapsed().as_secs_f64());
            caption = c.into_iter().next().and_then(|v| v.into_iter().next());
        }
        let caption = caption.ok_or_else(|| Error::Invalid("no caption".into()))?;
        // C, the same pixels.
        let mut cmd = Command::new(b.work.join("captioner"));
        cmd.args(["-b", &b.options.beam.to_string()])
            .args(["-w", &b.options.max_words.to_string()])
            .args(["-a", &format!("{}", b.options.length_alpha)])
            .args(["-t", &b.repeats.to_string()])
            .arg(&ppm_path)
            .current_dir(&b.work);
        let out = cmd
            .output()
            .map_err(|e| Error::Invalid(format!("cannot run the captioner: {e}")))?;
        if !out.status.success() {
            return Err(failed("the generated captioner", &out));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let fields: Vec<&str> = stdout.trim_end().split('\t').collect();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let c_ms = stderr.lines().find_map(|l| {
            l.rsplit(": ")
                .next()?
                .strip_suffix(" ms a caption")?
                .parse::<f64>()
                .ok()
        });
        let (Some(c_text), Some(c_score), Some(c_ms)) = (
            fields.get(1),
            fields.get(2).and_then(|s| s.parse::<f64>().ok()),
            c_ms,
        ) else {
            return Err(failed("reading the captioner's output", &out));
        };
        photos.push(DevicePhoto {
            name: path
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            c: (c_text.to_string(), c_score),
            rust: (caption.text, caption.score),
            c_seconds: c_ms / 1e3,
            rust_seconds: times.iter().sum::<f64>() / times.len() as f64,
        });
    }
    Ok(DeviceReport {
        photos,
        sizes: built.sizes,
        generate,
        build,
    })
}
