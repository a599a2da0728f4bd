//! 3×3 stride-1 convolutions by Winograd's minimal filtering F(2×2, 3×3) (A. Lavin and
//! S. Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016): each 2×2 block of
//! outputs comes from a 4×4 block of inputs with 16 multiplications per channel pair instead
//! of 36, so the arithmetic of the product falls 2.25×. The products themselves are 16
//! ordinary matrix products, one per point of the 4×4 transform, on the transformed weights
//! packed once into column panels.
//!
//! Transforms (B, G, A as in the paper): inputs `V = Bᵀ d B`, weights `U = G g Gᵀ`
//! (computed in f64 once per convolution), outputs `Y = Aᵀ (U ⊙ V) A`.

use autocaption_tensor::{Epilogue, PanelMatrix, WeightFormat};
use rayon::prelude::*;

use crate::{Conv, Maps, Padding};

/// Tiles a thread must get for the transform to pay: below this the 16 small products,
/// each streaming its share of the transformed weights (16/9 the bytes of the kernel), cost
/// more than the 2.25× they save. With the transforms packed once, the 14×14 stage at batch
/// 1 (25 tiles a thread) pays; the 7×7 stage (8) does not.
const MIN_TILES_PER_THREAD: usize = 16;

/// Bytes of transformed input a block of tiles may take (per thread, kept in cache): with
/// the products' output as large again, the pair stays in a core's L2.
const BLOCK_BYTES: usize = 512 << 10;

/// Fewest tiles in a block (when the threads have that many): each of the 16 transformed
/// weight matrices is read once a block, so wide layers (512 channels: 1 MB each) need
/// enough rows to use it.
const MIN_BLOCK_TILES: usize = 32;

/// Transformed weights up to this size stay in L3 from one block to the next (a share of
/// its 48 MB here, which other tenants and the maps use too).
const L3_WEIGHTS_BYTES: usize = 8 << 20;

static ENABLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Turns the Winograd path on (the default) or off for the whole process; off, every
/// convolution is a direct product (for comparisons: `bench encode --no-winograd`).
pub fn set_winograd(enabled: bool) {
    ENABLED.store(enabled, std::sync::atomic::Ordering::Relaxed);
}

/// True when `conv` can and should run as Winograd on an `h × w` map of `n` images.
pub(crate) fn applies(conv: &Conv, n: usize, h: usize, w: usize) -> bool {
    if !ENABLED.load(std::sync::atomic::Ordering::Relaxed) {
        return false;
    }
    let shape = conv.kh == 3 && conv.kw == 3 && conv.stride == 1 && conv.pad == Padding::same(1);
    // Few channels make the 16 products too thin to beat one fat direct product.
    let wide = conv.cin >= 96 && conv.cout >= 96;
    let tiles = n * h.div_ceil(2) * w.div_ceil(2);
    shape && wide && tiles >= MIN_TILES_PER_THREAD * rayon::current_num_threads()
}

/// How many blocks of tile rows `conv` on `n` images of `h × w` is cut into, a whole number
/// for each thread. Each block streams all 16 transformed weight matrices once. Weights
/// that stay in L3 ([`L3_WEIGHTS_BYTES`]) are read again from it cheaply, so their blocks
/// are sized to keep the transformed input and products in L2 ([`BLOCK_BYTES`]). Larger
/// weights come from memory for each block: then blocks in L2 cost that many passes over
/// them, and one block a thread costs one pass plus a trip through memory for its
/// transformed input and products, and the cheaper wins. So the 28×28 and 14×14 stages
/// (1 and 4 MB of weights) run in blocks that fit L2, and the 7×7 stage at batch 8 (16 MB)
/// in one block a thread. (At batch 8, one block a thread made the 14×14 stage 6% slower:
/// 33.7 against 31.8 ms a pass.)
pub(crate) fn blocks(conv: &Conv, n: usize, h: usize, w: usize) -> usize {
    let (cin, cout) = (conv.cin, conv.cout);
    let tw = w.div_ceil(2);
    let tile_rows = n * h.div_ceil(2);
    let threads = rayon::current_num_threads().max(1);
    let rows_fit = (BLOCK_BYTES / (16 * 4 * tw * cin.max(cout)))
        .max(MIN_BLOCK_TILES.div_ceil(tw))
        .max(1);
    let in_cache = tile_rows.div_ceil(rows_fit).div_ceil(threads);
    let weights = 16 * cin * cout * 4;
    let spill = 2 * 16 * 4 * (cin + cout) * tile_rows.div_ceil(threads) * tw;
    let per_thread = if weights > L3_WEIGHTS_BYTES && weights + spill < in_cache * weights {
        1
    } else {
        in_cache
    };
    per_thread * threads
}

/// `U = G g Gᵀ` for every (input, output) channel pair: 16 matrices `[cin][cout]`, packed.
fn transform_weights(conv: &Conv) -> Vec<PanelMatrix> {
    let (cin, cout) = (conv.cin, conv.cout);
    let g_mat: [[f64; 3]; 4] = [
        [1.0, 0.0, 0.0],
        [0.5, 0.5, 0.5],
        [0.5, -0.5, 0.5],
        [0.0, 0.0, 1.0],
    ];
    let mut u = vec![0.0f32; 16 * cin * cout];
    for ci in 0..cin {
        for co in 0..cout {
            let g =
                |ky: usize, kx: usize| conv.weight[((ky * 3 + kx) * cin + ci) * cout + co] as f64;
            // t = G g (4×3), then t Gᵀ (4×4).
            let mut t = [[0.0f64; 3]; 4];
            for (trow, grow) in t.iter_mut().zip(&g_mat) {
                for (j, v) in trow.iter_mut().enumerate() {
                    *v = (0..3).map(|k| grow[k] * g(k, j)).sum();
                }
            }
            for i in 0..4 {
                for (j, row) in g_mat.iter().enumerate() {
                    let v: f64 = (0..3).map(|k| t[i][k] * row[k]).sum();
                    u[((i * 4 + j) * cin + ci) * cout + co] = v as f32;
                }
            }
        }
    }
    u.chunks_exact(cin * cout)
        .map(|m| PanelMatrix::pack(m, cin, cout, WeightFormat::F32).expect("f32 keeps every value"))
        .collect()
}

/// `conv` (3×3, stride 1, padding 1) on `x` into `out` (already shaped), then bias,
/// `residual` and ReLU.
pub(crate) fn forward(conv: &Conv, x: &Maps, residual: Option<&Maps>, out: &mut Maps) {
    let u = conv
        .derived
        .winograd
        .get_or_init(|| transform_weights(conv));
    let (cin, cout) = (conv.cin, conv.cout);
    let (h, w) = (x.h, x.w);
    let (th, tw) = (h.div_ceil(2), w.div_ceil(2));
    // Blocks of whole tile rows: each maps to a contiguous run of output rows.
    let tile_rows = x.n * th;
    let blocks = blocks(conv, x.n, h, w);
    let per_block = tile_rows.div_ceil(blocks.min(tile_rows));
    // Output rows of global tile row g: image g / th, rows 2·(g % th) .. +2 (1 at an odd edge).
    let out_rows = |g: usize| (2 * (g % th) + 2).min(h) - 2 * (g % th);
    let mut chunks = Vec::new();
    let mut rest = &mut out.data[..];
    for g0 in (0..tile_rows).step_by(per_block) {
        let g1 = (g0 + per_block).min(tile_rows);
        let len: usize = (g0..g1).map(|g| out_rows(g) * w * cout).sum();
        let (chunk, tail) = rest.split_at_mut(len);
        chunks.push((g0, g1, chunk));
        rest = tail;
    }
    chunks.into_par_iter().for_each(|(g0, g1, o)| {
        BUFFERS.with(|b| {
            let mut b = b.borrow_mut();
            let (v, m) = &mut *b;
            let tiles = (g1 - g0) * tw;
            v.resize(tiles * 16 * cin, 0.0);
            m.resize(tiles * 16 * cout, 0.0);
            input_transform(x, g0, g1, th, tw, &mut v[..tiles * 16 * cin]);
            for (xi, u) in u.iter().enumerate() {
                let row =
                    |t: usize, k0: usize| &v[(t * 16 + xi) * cin + k0..(t * 16 + xi + 1) * cin];
                let (panels, out) = (0..u.panels(), &mut m[xi * cout..]);
                u.mul_rows(tiles, cin, row, panels, out, 16 * cout, Epilogue::default());
            }
            let r0 = residual.map(|r| {
                let first: usize = (g0 / th) * h + 2 * (g0 % th);
                &r.data[first * w * cout..first * w * cout + o.len()]
            });
            output_transform(conv, &m[..tiles * 16 * cout], g0, g1, th, tw, h, w, r0, o);
        });
    });
}

thread_local! {
    /// Each thread's transformed input and product blocks, reused.
    static BUFFERS: std::cell::RefCell<(Vec<f32>, Vec<f32>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// `V = Bᵀ d B` for the tiles of global tile rows `g0 .. g1`: `v` is `[tiles][16][cin]`.
fn input_transform(x: &Maps, g0: usize, g1: usize, th: usize, tw: usize, v: &mut [f32]) {
    let c = x.c;
    let zeros = vec![0.0f32; c];
    let mut t = vec![0.0f32; 16 * c]; // Bᵀ d, row-major 4×4 of channel vectors
    for (i, tile) in v.chunks_exact_mut(16 * c).enumerate() {
        let g = g0 + i / tw;
        debug_assert!(g < g1);
        let (n, ty, tx) = (g / th, g % th, i % tw);
        let pixel = |r: usize, col: usize| -> &[f32] {
            let (y, xx) = ((2 * ty + r) as isize - 1, (2 * tx + col) as isize - 1);
            if y < 0 || xx < 0 || y >= x.h as isize || xx >= x.w as isize {
                &zeros
            } else {
                let at = ((n * x.h + y as usize) * x.w + xx as usize) * c;
                &x.data[at..at + c]
            }
        };
        // Bᵀ d over rows, for each of the 4 columns.
        for col in 0..4 {
            let (d0, d1, d2, d3) = (pixel(0, col), pixel(1, col), pixel(2, col), pixel(3, col));
            for k in 0..c {
                t[col * c + k] = d0[k] - d2[k];
                t[(4 + col) * c + k] = d1[k] + d2[k];
                t[(8 + col) * c + k] = d2[k] - d1[k];
                t[(12 + col) * c + k] = d1[k] - d3[k];
            }
        }
        // (Bᵀ d) B over columns, for each of the 4 rows.
        for r in 0..4 {
            let row = &t[r * 4 * c..(r + 1) * 4 * c];
            let (w0, w1, w2, w3) = (&row[..c], &row[c..2 * c], &row[2 * c..3 * c], &row[3 * c..]);
            let dst = &mut tile[r * 4 * c..(r + 1) * 4 * c];
            let (o0, rest) = dst.split_at_mut(c);
            let (o1, rest) = rest.split_at_mut(c);
            let (o2, o3) = rest.split_at_mut(c);
            for k in 0..c {
                o0[k] = w0[k] - w2[k];
                o1[k] = w1[k] + w2[k];
                o2[k] = w2[k] - w1[k];
                o3[k] = w1[k] - w3[k];
            }
        }
    }
}

/// `Y = Aᵀ m A` for each tile, plus bias and residual, then ReLU, into the output rows `o`
/// of tile rows `g0 .. g1` (`residual`, if any, covers the same rows).
#[allow(clippy::too_many_arguments)]
fn output_transform(
    conv: &Conv,
    m: &[f32],
    g0: usize,
    g1: usize,
    th: usize,
    tw: usize,
    h: usize,
    w: usize,
    residual: Option<&[f32]>,
    o: &mut [f32],
) {
    let c = conv.cout;
    let mut s = vec![0.0f32; 8 * c]; // Aᵀ m: 2 rows × 4 columns of channel vectors
    let mut row_base = 0; // first output row of the current tile row, within `o`
    for g in g0..g1 {
        let ty = g % th;
        let rows = (2 * ty + 2).min(h) - 2 * ty;
        for tx in 0..tw {
            let tile = &m[((g - g0) * tw + tx) * 16 * c..((g - g0) * tw + tx + 1) * 16 * c];
            let at = |i: usize, j: usize| &tile[(i * 4 + j) * c..(i * 4 + j + 1) * c];
            for j in 0..4 {
                let (m0, m1, m2, m3) = (at(0, j), at(1, j), at(2, j), at(3, j));
                let (s0, s1) = s.split_at_mut(4 * c);
                for k in 0..c {
                    s0[j * c + k] = m0[k] + m1[k] + m2[k];
                    s1[j * c + k] = m1[k] - m2[k] - m3[k];
                }
            }
            let cols = (2 * tx + 2).min(w) - 2 * tx;
            for r in 0..rows {
                let srow = &s[r * 4 * c..(r + 1) * 4 * c];
                let (w0, w1, w2, w3) = (
                    &srow[..c],
                    &srow[c..2 * c],
                    &srow[2 * c..3 * c],
                    &srow[3 * c..],
                );
                for col in 0..cols {
                    let at = ((row_base + r) * w + 2 * tx + col) * c;
                    let dst = &mut o[at..at + c];
                    let res = residual.map(|rr| &rr[at..at + c]);
                    for k in 0..c {
                        let mut y = if col == 0 {
                            w0[k] + w1[k] + w2[k]
                        } else {
                            w1[k] - w2[k] - w3[k]
                        } + conv.bias[k];
                        if let Some(res) = res {
                            y += res[k];
                        }
                        dst[k] = if conv.relu { y.max(0.0) } else { y };
                    }
                }
            }
        }
        row_base += rows;
    }
}
