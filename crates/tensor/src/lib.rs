//! The compute core: contiguous `f32` buffers, one GEMM entry point (every matrix product in
//! the project goes through [`gemm`]), fast element-wise kernels for the activations, and
//! seeded random initialisers. No deep-learning framework: see DESIGN.md section 1.

mod act;
mod aligned;
mod bf16;
mod f16;
mod gemm;
mod init;
mod panel;
mod qgemm;
mod qpanel;
mod simd;
pub mod team;

pub use act::{exp, sigmoid, sigmoid_slice, tanh, tanh_slice};
pub use bf16::{
    bf16_is_faster, from_bf16, gemm_bf16, gemm_bf16_packed, has_bf16_kernel, round_bf16, to_bf16,
    PackedB,
};
pub use f16::{from_f16, to_f16};
pub use gemm::{gemm, gemm_serial, gemm_serial_ld, gemm_serial_ld_add, matmul, Precision, Trans};
pub use init::{glorot_uniform, orthogonal, uniform, Rng};
pub use panel::{Epilogue, OutOfRange, PanelMatrix, WeightFormat, PANEL};
pub use qgemm::{
    has_int8_dot, int8_kernel_name, weight_bits, weight_levels, PairWeights, QuantWeights, Rows,
    QBLOCKS, QMR, QNR,
};
pub use simd::{has_avx2_fma, has_avx512};
