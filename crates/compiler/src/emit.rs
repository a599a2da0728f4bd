//! The C writer: from the typed graph and its storage plan ([`crate::plan`]), the source
//! (the weights image, the kernels' helpers, the entry point), the header, and a `main.c`
//! and `Makefile`. Each op writes its own statements through the [`Emitter`].

use std::collections::HashSet;
use std::fmt::Write;

use crate::emitter::Emitter;
use crate::error::CompileError;
use crate::graph::Graph;
use crate::ir::{NodeIo, Operand};
use crate::plan::{plan, Plan, Storage};
use crate::weights::WeightStorage;

/// Error codes the generated entry point returns, with their meaning.
pub const ERROR_CODES: [(&str, i32, &str); 5] = [
    ("OK", 0, "success"),
    ("ERR_INDEX", 1, "an index input (Gather) is out of range"),
    (
        "ERR_SEQUENCE_LENGTH",
        2,
        "a sequence_lens entry is negative or beyond the sequence",
    ),
    (
        "ERR_ARENA",
        3,
        "no arena was given and the static one was compiled out",
    ),
    (
        "ERR_WEIGHTS",
        4,
        "the weights blob is not this code's: a wrong magic, version, size or checksum, a truncated or corrupted blob, one not 8-byte aligned, or a big-endian machine",
    ),
];

/// The generated files.
#[derive(Debug, Clone)]
pub struct CSources {
    /// `NAME.c`.
    pub source: String,
    /// `NAME.h`.
    pub header: String,
    /// `main.c`, a command-line runner reading inputs from `.pb` or raw files.
    pub main: String,
    /// `Makefile` building the runner.
    pub makefile: String,
    /// Bytes of scratch arena the entry point needs.
    pub arena_bytes: usize,
    /// Bytes of constant data (the weights image).
    pub const_bytes: usize,
    /// With external weights, the blob `NAME.weights`.
    pub blob: Option<Vec<u8>>,
    /// The entry point's inputs and outputs, in order: name and bytes.
    pub interface: Interface,
}

/// The entry point's inputs and outputs, in order: name and bytes.
#[derive(Debug, Clone, Default)]
pub struct Interface {
    /// Inputs.
    pub inputs: Vec<(String, usize)>,
    /// Outputs.
    pub outputs: Vec<(String, usize)>,
}

fn c_ident(name: &str, taken: &mut HashSet<String>) -> String {
    let mut s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, 'x');
    }
    let base = s.clone();
    let mut k = 1;
    while !taken.insert(s.clone()) {
        k += 1;
        s = format!("{base}_{k}");
    }
    s
}

fn dims_text(shape: &[usize]) -> String {
    format!(
        "[{}]",
        shape
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Emits the C sources of `g` under the identifier prefix `name`.
pub fn emit(
    g: &Graph,
    name: &str,
    model_label: &str,
    storage_mode: WeightStorage,
    quantize: Option<crate::quant::Quantize>,
) -> Result<CSources, CompileError> {
    let nv = g.values.len();
    let Plan {
        storage,
        scratch_at,
        arena_bytes,
    } = plan(g);
    let resolve = |mut id: usize| {
        while let Some(Storage::Alias(r)) = storage[id] {
            id = r;
        }
        id
    };
    let upper = name.to_uppercase();
    let mut taken = HashSet::new();
    let mut e = Emitter::new(name, quantize);
    let mut ptr: Vec<String> = vec![String::new(); nv];
    // Constants the code reads become placeholders; only those still mentioned once the
    // code is written go into the weights image.
    let mut read: HashSet<usize> = g
        .nodes
        .iter()
        .flat_map(|n| n.inputs.iter().flatten().copied())
        .collect();
    read.extend(g.outputs.iter().copied());
    for (id, v) in g.values.iter().enumerate() {
        let (Some(Storage::Const), true) = (storage[id], read.contains(&id)) else {
            continue;
        };
        let data = v.fact.value.as_ref().expect("constant");
        let ty = v.fact.dtype.c_type();
        ptr[id] = if data.is_empty() {
            format!("(({ty} *)0)")
        } else {
            e.constant(ty, crate::weights::le_bytes(data))
        };
    }

    // The entry point's parameters.
    let mut params = Vec::new();
    let mut in_names = Vec::new();
    let mut out_names = Vec::new();
    for (k, &id) in g.inputs.iter().enumerate() {
        let v = &g.values[id];
        let p = format!("in_{}", c_ident(&v.name, &mut taken));
        params.push(format!("const {} *{p}", v.fact.dtype.c_type()));
        ptr[id] = p.clone();
        in_names.push((k, id, p));
    }
    for (k, &id) in g.outputs.iter().enumerate() {
        let v = &g.values[id];
        let p = format!("out_{}", c_ident(&v.name, &mut taken));
        params.push(format!("{} *{p}", v.fact.dtype.c_type()));
        out_names.push((k, id, p));
    }
    params.push("void *arena".into());
    if storage_mode == WeightStorage::External {
        params.insert(0, "const void *weights".into());
    }
    let signature = format!("int {name}_run({})", params.join(", "));

    let mut body = String::new();
    let _ = writeln!(body, "    unsigned char *a = (unsigned char *)arena;");
    if arena_bytes > 0 {
        let _ = writeln!(
            body,
            "#ifndef {upper}_NO_STATIC_ARENA\n    if (!a) a = (unsigned char *){name}_static_arena;\n#endif\n    if (!a) return {upper}_ERR_ARENA;"
        );
    }
    let _ = writeln!(body, "    (void)a;");
    // Pointers of node outputs.
    for n in &g.nodes {
        for &o in n.outputs.iter().flatten() {
            let ty = g.values[o].fact.dtype.c_type();
            match storage[o] {
                Some(Storage::Output(j)) => ptr[o] = out_names[j].2.clone(),
                Some(Storage::Arena(off)) => {
                    let v = format!("v{o}");
                    let _ = writeln!(body, "    {ty} *{v} = ({ty} *)(a + {off});");
                    ptr[o] = v;
                }
                Some(Storage::Alias(r)) => ptr[o] = ptr[r].clone(),
                _ => {}
            }
        }
    }
    for (step, n) in g.nodes.iter().enumerate() {
        let operand = |id: usize| Operand {
            ptr: ptr[id].clone(),
            dtype: g.values[id].fact.dtype,
            shape: g.values[id].fact.shape.clone(),
            value: g.values[id].fact.value.clone(),
        };
        let io = NodeIo {
            inputs: n.inputs.iter().map(|i| i.map(operand)).collect(),
            outputs: n.outputs.iter().map(|o| o.map(operand)).collect(),
            scratch: scratch_at[step].map(|off| format!("(a + {off})")),
        };
        e.push(&format!(
            "/* {} ({}) */\n{{",
            n.name.replace("*/", "* /"),
            n.op_type
        ));
        if n.op.is_view() {
            let o = n.outputs[0].expect("a view's output is used");
            if !matches!(storage[o], Some(Storage::Alias(_))) {
                let f = &g.values[o].fact;
                e.push(&format!(
                    "memcpy({}, {}, {});",
                    ptr[o],
                    io.input(0).map_err(|m| node_error(n, m))?.ptr,
                    f.len() * f.dtype.size()
                ));
            }
        } else {
            n.op.emit(&mut e, &io).map_err(|m| node_error(n, m))?;
        }
        e.push("}");
    }
    // Outputs the nodes did not write: inputs, constants, views, repeats.
    for (k, &id) in g.outputs.iter().enumerate() {
        if storage[id] == Some(Storage::Output(k)) {
            continue;
        }
        let f = &g.values[id].fact;
        if f.is_empty() {
            continue;
        }
        let _ = writeln!(
            e.body,
            "memcpy({}, {}, {});",
            out_names[k].2,
            ptr[resolve(id)],
            f.len() * f.dtype.size()
        );
    }

    let (code, image) = e.consts.layout(&e.body, "wb");
    e.body = code;
    let sum = crate::weights::fnv1a(&image);
    let mut source = format!(
        "/* {name}.c: generated by autocaption compile from {model_label}. C99, no heap, no I/O. */\n\
         #include \"{name}.h\"\n#include <math.h>\n#include <string.h>\n\n"
    );
    let mut prologue = String::new();
    match storage_mode {
        WeightStorage::Embed if !image.is_empty() => {
            let _ = writeln!(
                source,
                "#if defined(__BYTE_ORDER__) && defined(__ORDER_BIG_ENDIAN__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__\n\
                 #error \"{name}.c holds its weights little-endian; compile the model with --weights external on a big-endian target\"\n\
                 #endif\n\
                 #if defined(__GNUC__)\n#define {upper}_ALIGNED __attribute__((aligned(64)))\n#else\n#define {upper}_ALIGNED\n#endif\n\n\
                 /* The weights: {} bytes, little-endian 64-bit words (FNV-1a 64 0x{sum:x}). */\n\
                 static const uint64_t {name}_weights[{}] {upper}_ALIGNED = {{\n{}}};\n",
                image.len(),
                image.len() / 8,
                crate::weights::hex_words(&image)
            );
            let _ = writeln!(
                prologue,
                "    /* Read through a volatile once a call: the compiler then treats the weights as\n     * memory, never as constants to fold or to bound-check unreachable loads against. */\n    const unsigned char *volatile wbv = (const unsigned char *){name}_weights;\n    const unsigned char *wb = wbv;"
            );
        }
        WeightStorage::Embed => {}
        WeightStorage::External => {
            source.push_str(&crate::weights::check_code(name, image.len(), sum));
            let _ = writeln!(
                prologue,
                "    if (!{name}_header_ok((const unsigned char *)weights)) return {upper}_ERR_WEIGHTS;\n    const unsigned char *wb = (const unsigned char *)weights + {};\n    (void)wb;",
                crate::weights::HEADER_BYTES
            );
        }
    }
    let const_bytes = image.len();
    for h in &e.helpers {
        source.push_str(h);
        source.push('\n');
    }
    if arena_bytes > 0 {
        let _ = writeln!(
            source,
            "#ifndef {upper}_NO_STATIC_ARENA\nstatic double {name}_static_arena[({upper}_ARENA_BYTES + 7) / 8];\n#endif\n"
        );
    }
    let _ = writeln!(source, "{signature}\n{{\n{prologue}{body}");
    for line in e.body.lines() {
        if line.starts_with('#') || line.is_empty() {
            let _ = writeln!(source, "{line}");
        } else {
            let _ = writeln!(source, "    {line}");
        }
    }
    let _ = writeln!(source, "    return {upper}_OK;\n}}");

    // Header.
    let mut header = format!(
        "/* {name}.h: generated by autocaption compile from {model_label}. */\n\
         #ifndef {upper}_H\n#define {upper}_H\n\n#include <stddef.h>\n#include <stdint.h>\n\n\
         #ifdef __cplusplus\nextern \"C\" {{\n#endif\n\n"
    );
    let _ = writeln!(
        header,
        "/* Scratch memory {name}_run needs, in bytes (aligned to at least 8). */\n#define {upper}_ARENA_BYTES {}\n",
        arena_bytes
    );
    for (code, value, what) in ERROR_CODES {
        let _ = writeln!(header, "#define {upper}_{code} {value} /* {what} */");
    }
    if storage_mode == WeightStorage::External {
        let _ = writeln!(
            header,
            "\n/* Bytes of the weights blob {name}.weights (a {}-byte header, then the weights). */\n#define {upper}_WEIGHTS_BYTES {}\n\n\
             /* Checks a weights blob whole: header, size and checksum (reads every byte once).\n \
             * Returns {upper}_OK or {upper}_ERR_WEIGHTS. Call it once after loading the blob. */\n\
             int {name}_check_weights(const void *weights, size_t bytes);",
            crate::weights::HEADER_BYTES,
            crate::weights::HEADER_BYTES + const_bytes
        );
    }
    let _ = writeln!(
        header,
        "\n#define {upper}_NUM_INPUTS {}\n#define {upper}_NUM_OUTPUTS {}\n",
        g.inputs.len(),
        g.outputs.len()
    );
    let _ = writeln!(
        header,
        "/*\n * Runs the model. Inputs and outputs are dense row-major arrays:"
    );
    if storage_mode == WeightStorage::External {
        let _ = writeln!(
            header,
            " *   weights: the blob {name}.weights, 8-byte aligned (64 for the fastest loads), read\n \
             *     from a file, memory-mapped or in flash; its header is checked on every call\n \
             *     ({upper}_ERR_WEIGHTS), its checksum by {name}_check_weights."
        );
    }
    for (_, id, p) in &in_names {
        let f = &g.values[*id].fact;
        let _ = writeln!(
            header,
            " *   {p}: input '{}', {} {}",
            g.values[*id].name,
            f.dtype,
            dims_text(&f.shape)
        );
    }
    for (_, id, p) in &out_names {
        let f = &g.values[*id].fact;
        let _ = writeln!(
            header,
            " *   {p}: output '{}', {} {}",
            g.values[*id].name,
            f.dtype,
            dims_text(&f.shape)
        );
    }
    let _ = writeln!(
        header,
        concat!(
            " * arena: {upper}_ARENA_BYTES bytes of scratch, 8-byte aligned, not shared with a\n",
            " *   concurrent call; NULL uses a static arena (unless {upper}_NO_STATIC_ARENA is defined,\n",
            " *   in which case NULL fails with {upper}_ERR_ARENA).\n",
            " * Returns {upper}_OK or one of the error codes above.\n */\n{signature};\n"
        ),
        upper = upper,
        signature = signature
    );
    let _ = writeln!(
        header,
        "#ifdef __cplusplus\n}}\n#endif\n\n#endif /* {upper}_H */"
    );

    let main = main_c(g, name, &in_names, &out_names, storage_mode);
    let makefile = format!(
        "# Builds the command-line runner of {name} (generated by autocaption compile).\n\
         CC ?= cc\nCFLAGS ?= -std=c99 -O2 -Wall -Werror\n\n\
         {name}: {name}.c {name}.h main.c\n\t$(CC) $(CFLAGS) -o $@ {name}.c main.c -lm\n\n\
         clean:\n\trm -f {name}\n\n.PHONY: clean\n"
    );
    let bytes_of = |id: usize| g.values[id].fact.len() * g.values[id].fact.dtype.size();
    let interface = Interface {
        inputs: in_names
            .iter()
            .map(|(_, id, _)| (g.values[*id].name.clone(), bytes_of(*id)))
            .collect(),
        outputs: out_names
            .iter()
            .map(|(_, id, _)| (g.values[*id].name.clone(), bytes_of(*id)))
            .collect(),
    };
    let blob = (storage_mode == WeightStorage::External).then(|| crate::weights::blob(&image));
    Ok(CSources {
        source,
        header,
        main,
        makefile,
        arena_bytes,
        const_bytes,
        blob,
        interface,
    })
}

fn node_error(n: &crate::graph::Node, message: String) -> CompileError {
    CompileError::Node {
        node: n.name.clone(),
        op_type: n.op_type.clone(),
        message,
    }
}

fn main_c(
    g: &Graph,
    name: &str,
    ins: &[(usize, usize, String)],
    outs: &[(usize, usize, String)],
    storage_mode: WeightStorage,
) -> String {
    let upper = name.to_uppercase();
    let external = storage_mode == WeightStorage::External;
    let first = usize::from(external) + 1;
    let mut m = format!(
        "/* main.c: command-line runner for {name} (generated by autocaption compile).\n\
         * usage: {name} INPUT... with one file per input, in order: an ONNX TensorProto (.pb)\n\
         * or raw little-endian elements. Prints every output: a header line, then one value per line. */\n\
         #include \"{name}.h\"\n"
    );
    m.push_str(include_str!("../c/main_support.c"));
    let _ = writeln!(m, "\nint main(int argc, char **argv)\n{{");
    let mut usage: Vec<String> = ins
        .iter()
        .map(|(_, id, _)| g.values[*id].name.clone())
        .collect();
    if external {
        usage.insert(0, format!("{name}.weights"));
    }
    let _ = writeln!(
        m,
        "    if (argc != {}) {{\n        fprintf(stderr, \"usage: %s{}\\n\", argv[0]);\n        return 2;\n    }}",
        usage.len() + 1,
        usage.iter().map(|u| format!(" {}", u.replace(['"', '\\'], "_").to_uppercase())).collect::<String>()
    );
    let mut call = Vec::new();
    if external {
        let _ = writeln!(
            m,
            "    size_t wbytes = 0;\n    void *weights = read_all(argv[1], &wbytes);\n    if (!weights) return 1;\n    if ({name}_check_weights(weights, wbytes) != {upper}_OK) {{\n        fprintf(stderr, \"%s: not the weights of this code (error %d: truncated, corrupted or another model's)\\n\", argv[1], {upper}_ERR_WEIGHTS);\n        return 1;\n    }}"
        );
        call.push("weights".to_string());
    }
    for (k, id, _) in ins {
        let f = &g.values[*id].fact;
        let ty = f.dtype.c_type();
        let _ = writeln!(
            m,
            "    {ty} *x{k} = ({ty} *)malloc({} + 1);\n    if (!x{k} || read_tensor(argv[{}], {}, {}, sizeof({ty}), x{k})) return 1;",
            f.len() * f.dtype.size(),
            k + first,
            f.dtype.onnx_code(),
            f.len()
        );
        call.push(format!("x{k}"));
    }
    for (k, id, _) in outs {
        let f = &g.values[*id].fact;
        let ty = f.dtype.c_type();
        let _ = writeln!(
            m,
            "    {ty} *y{k} = ({ty} *)calloc({} + 1, 1);\n    if (!y{k}) return 1;",
            f.len() * f.dtype.size()
        );
        call.push(format!("y{k}"));
    }
    let _ = writeln!(
        m,
        "    void *arena = malloc({upper}_ARENA_BYTES + 1);\n    if (!arena) return 1;\n    int rc = {name}_run({}, arena);\n    if (rc != {upper}_OK) {{\n        fprintf(stderr, \"{name}_run failed with error %d\\n\", rc);\n        return 1;\n    }}",
        call.join(", ")
    );
    for (k, id, _) in outs {
        let v = &g.values[*id];
        let dims: Vec<String> = v.fact.shape.iter().map(|d| d.to_string()).collect();
        let _ = writeln!(
            m,
            "    {{\n        static const long dims[] = {{{}0}};\n        print_tensor(\"{}\", {}, dims, {}, y{k}, {});\n    }}",
            dims.iter().map(|d| format!("{d}, ")).collect::<String>(),
            v.name.replace(['"', '\\'], "_"),
            v.fact.dtype.onnx_code(),
            dims.len(),
            v.fact.len()
        );
    }
    let _ = writeln!(m, "    return 0;\n}}");
    m
}
