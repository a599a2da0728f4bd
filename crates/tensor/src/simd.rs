//! Runtime CPU dispatch for element-wise kernels: the body is compiled three times (AVX-512,
//! AVX2 + FMA, baseline) and the best the CPU supports is chosen at run time, so the binary
//! stays portable and still uses wide vectors.

/// Defines a function whose body is compiled for AVX-512, for AVX2 + FMA and for the
/// baseline, and runs the best one the CPU supports. Helpers it calls must be
/// `#[inline(always)]` to be compiled with the same features.
#[macro_export]
macro_rules! simd_fn {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn generic($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")]
                unsafe fn v4($($arg: $ty),*) $(-> $ret)? { generic($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn v3($($arg: $ty),*) $(-> $ret)? { generic($($arg),*) }
                if $crate::has_avx512() {
                    // SAFETY: the CPU supports every feature v4 was compiled for.
                    return unsafe { v4($($arg),*) };
                }
                if $crate::has_avx2_fma() {
                    // SAFETY: the CPU supports AVX2 and FMA.
                    return unsafe { v3($($arg),*) };
                }
            }
            generic($($arg),*)
        }
    };
}

/// True when the CPU has the AVX-512 subsets [`simd_fn!`] compiles for.
#[inline]
pub fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512dq")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// True when the CPU has AVX2 and FMA.
#[inline]
pub fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}
