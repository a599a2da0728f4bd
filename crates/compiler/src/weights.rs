//! The weights image: every constant the generated code reads, laid out once in one
//! little-endian byte image at 64-byte aligned offsets (packed panels and quantised
//! weights included), then either embedded in `NAME.c` as 64-bit hexadecimal words (about
//! 2.4 characters of source a byte, where decimal floats took about 4) or written as an
//! external blob `NAME.weights`: a 64-byte header, then the image.
//!
//! The blob's header, all fields little-endian:
//!
//! | bytes  | field                                              |
//! |--------|----------------------------------------------------|
//! | 0..8   | magic `ACWEIGHT`                                    |
//! | 8..12  | format version, 1                                   |
//! | 12..16 | header bytes, 64                                    |
//! | 16..24 | image bytes                                         |
//! | 24..32 | FNV-1a 64 checksum of the image                     |
//! | 32..64 | zero                                                |
//!
//! The generated code knows the image's size and checksum; `NAME_check_weights` verifies a
//! blob whole (header and checksum), `NAME_run` its header, and both return
//! `NAME_ERR_WEIGHTS` when it does not match, or on a big-endian machine (the weights are
//! little-endian; embedded weights refuse such a target at compile time).

use std::fmt::Write;

/// Alignment of every tensor in the image, and of the image in the blob.
pub const ALIGN: usize = 64;
/// Bytes of the blob's header.
pub const HEADER_BYTES: usize = 64;
/// The blob's magic.
pub const MAGIC: &[u8; 8] = b"ACWEIGHT";
/// The blob's format version.
pub const VERSION: u32 = 1;

/// Where the weights of the generated code live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightStorage {
    /// In `NAME.c`, as 64-bit hexadecimal words.
    #[default]
    Embed,
    /// In `NAME.weights`, passed to `NAME_run` by the caller.
    External,
}

impl std::str::FromStr for WeightStorage {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "embed" => Ok(Self::Embed),
            "external" => Ok(Self::External),
            other => Err(format!("'{other}': expected embed or external")),
        }
    }
}

impl std::fmt::Display for WeightStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Embed => "embed",
            Self::External => "external",
        })
    }
}

/// FNV-1a, 64 bits: the blob's checksum (the generated C computes the same).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A constant the code may read: its C element type and little-endian bytes.
#[derive(Debug, Clone)]
pub struct Entry {
    /// C element type (`float`, `int8_t`, …).
    pub c_type: &'static str,
    /// The bytes.
    pub bytes: std::rc::Rc<Vec<u8>>,
}

/// The constants of one compilation, by placeholder index.
#[derive(Debug, Default)]
pub struct Constants {
    entries: Vec<Entry>,
}

/// The placeholder an operand's pointer holds until the image is laid out.
fn placeholder(k: usize) -> String {
    format!("@W{k}@")
}

impl Constants {
    /// Registers a constant and returns the pointer expression the code uses for it.
    pub fn add(&mut self, c_type: &'static str, bytes: Vec<u8>) -> String {
        self.entries.push(Entry {
            c_type,
            bytes: std::rc::Rc::new(bytes),
        });
        placeholder(self.entries.len() - 1)
    }

    /// Lays out the constants `code` mentions and replaces their placeholders with pointers
    /// into the image at `base` (a `const unsigned char *` expression). Returns the code and
    /// the image.
    pub fn layout(&self, code: &str, base: &str) -> (String, Vec<u8>) {
        let mut offsets: Vec<Option<usize>> = vec![None; self.entries.len()];
        let mut image: Vec<u8> = Vec::new();
        let mut out = String::with_capacity(code.len());
        let mut rest = code;
        while let Some(start) = rest.find("@W") {
            let after = &rest[start + 2..];
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            let k: Option<usize> = after[..digits].parse().ok();
            match (k, after.as_bytes().get(digits)) {
                (Some(k), Some(b'@')) if k < self.entries.len() => {
                    let e = &self.entries[k];
                    let off = *offsets[k].get_or_insert_with(|| {
                        image.resize(image.len().div_ceil(ALIGN) * ALIGN, 0);
                        let off = image.len();
                        image.extend_from_slice(&e.bytes);
                        off
                    });
                    out.push_str(&rest[..start]);
                    let _ = write!(out, "((const {} *)({base} + {off}))", e.c_type);
                    rest = &after[digits + 1..];
                }
                _ => {
                    out.push_str(&rest[..start + 2]);
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        image.resize(image.len().div_ceil(ALIGN) * ALIGN, 0);
        (out, image)
    }
}

/// The image as the body of a `static const uint64_t` array: little-endian 64-bit words in
/// hexadecimal, eight to a line.
pub fn hex_words(image: &[u8]) -> String {
    let mut s = String::with_capacity(image.len() * 5 / 2);
    for (i, w) in image.chunks(8).enumerate() {
        let mut b = [0u8; 8];
        b[..w.len()].copy_from_slice(w);
        let _ = write!(s, "0x{:x},", u64::from_le_bytes(b));
        if i % 8 == 7 {
            s.push('\n');
        }
    }
    s
}

/// The little-endian bytes of a tensor's elements (booleans as one byte each).
pub fn le_bytes(data: &autocaption_onnx::TensorData) -> Vec<u8> {
    use autocaption_onnx::TensorData as T;
    match data {
        T::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        T::F64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        T::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        T::U64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        T::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        T::U32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        T::I16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        T::U16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        T::I8(v) => v.iter().map(|&x| x as u8).collect(),
        T::U8(v) => v.clone(),
        T::Bool(v) => v.iter().map(|&x| u8::from(x)).collect(),
    }
}

/// The external blob: header, then the image.
pub fn blob(image: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(HEADER_BYTES + image.len());
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&VERSION.to_le_bytes());
    b.extend_from_slice(&(HEADER_BYTES as u32).to_le_bytes());
    b.extend_from_slice(&(image.len() as u64).to_le_bytes());
    b.extend_from_slice(&fnv1a(image).to_le_bytes());
    b.resize(HEADER_BYTES, 0);
    b.extend_from_slice(image);
    b
}

/// C code of `NAME_check_weights` and the header check `NAME_run` calls, for an image of
/// `bytes` bytes with checksum `sum`.
pub fn check_code(name: &str, bytes: usize, sum: u64) -> String {
    let upper = name.to_uppercase();
    format!(
        r#"static uint64_t {name}_le64(const unsigned char *p)
{{
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}}

/* Whether the blob's header is this code's: magic, version, sizes, checksum field. */
static int {name}_header_ok(const unsigned char *p)
{{
    static const char magic[8] = {{'A', 'C', 'W', 'E', 'I', 'G', 'H', 'T'}};
    const uint32_t one = 1;
    /* The weights are little-endian: a big-endian machine would read them wrong. */
    if (*(const unsigned char *)&one != 1) return 0;
    if (!p || ((uintptr_t)p & 7u) != 0 || memcmp(p, magic, 8) != 0) return 0;
    return {name}_le64(p + 8) == ((uint64_t){header} << 32 | {version}u) && {name}_le64(p + 16) == UINT64_C({bytes})
        && {name}_le64(p + 24) == UINT64_C(0x{sum:x});
}}

int {name}_check_weights(const void *weights, size_t bytes)
{{
    const unsigned char *p = (const unsigned char *)weights;
    if (bytes < {header}u + {bytes}u || !{name}_header_ok(p)) return {upper}_ERR_WEIGHTS;
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (size_t i = 0; i < {bytes}u; ++i) {{
        h ^= p[{header} + i];
        h *= UINT64_C(0x100000001b3);
    }}
    return h == UINT64_C(0x{sum:x}) ? {upper}_OK : {upper}_ERR_WEIGHTS;
}}

"#,
        header = HEADER_BYTES,
        version = VERSION,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_places_only_mentioned_constants_aligned() {
        let mut c = Constants::default();
        let a = c.add("float", vec![1; 12]);
        let b = c.add("int8_t", vec![2; 3]);
        let d = c.add("float", vec![3; 4]);
        let code = format!("f({d}, {a}); g({d}); h(x@W, @W99@)");
        let (out, image) = c.layout(&code, "wb");
        assert_eq!(
            out,
            "f(((const float *)(wb + 0)), ((const float *)(wb + 64))); g(((const float *)(wb + 0))); h(x@W, @W99@)"
        );
        assert!(!out.contains(&b));
        assert_eq!(image.len(), 128);
        assert_eq!(&image[..4], &[3; 4]);
        assert_eq!(&image[64..76], &[1; 12]);
    }

    #[test]
    fn hex_words_are_little_endian() {
        let s = hex_words(&[1, 0, 0, 0, 0, 0, 0, 0x80, 0xff]);
        assert_eq!(s, "0x8000000000000001,0xff,");
    }

    #[test]
    fn blob_header() {
        let b = blob(&[7; 64]);
        assert_eq!(&b[..8], MAGIC);
        assert_eq!(b.len(), 128);
        assert_eq!(u64::from_le_bytes(b[16..24].try_into().unwrap()), 64);
        assert_eq!(
            u64::from_le_bytes(b[24..32].try_into().unwrap()),
            fnv1a(&[7; 64])
        );
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
    }
}
