/* The kernels' paths, the same arithmetic: AVX2 and FMA intrinsics; GCC/Clang vector
 * extensions (SSE2, NEON, ...); plain C99 (any compiler, or -DAUTOCAPTION_PORTABLE).
 * Built with AVX2 and FMA enabled (-mavx2 -mfma, or -march= a CPU that has them) the AVX2
 * tiles are the only ones. Built by GCC or Clang for any other x86 target (plain -O2), both
 * the AVX2 and the vector tiles are compiled and each call takes the AVX2 ones when the CPU
 * has AVX2 and FMA (-DAUTOCAPTION_NO_DISPATCH keeps the vector ones only). */
#if defined(__GNUC__)
#define $P_UNUSED __attribute__((unused))
#else
#define $P_UNUSED
#endif
#if !defined(AUTOCAPTION_PORTABLE) && defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define $P_MM_STATIC_AVX2 1
#elif !defined(AUTOCAPTION_PORTABLE) && !defined(AUTOCAPTION_NO_DISPATCH) && defined(__GNUC__) \
    && (defined(__x86_64__) || defined(__i386__)) && (defined(__clang__) || __GNUC__ >= 6)
#include <immintrin.h>
#define $P_MM_DISPATCH 1
#endif
#if defined(__GNUC__) && !defined(AUTOCAPTION_PORTABLE)
/* GCC and Clang vector extensions: 4 floats a register on any target. */
#define $P_MM_VEC 1
typedef float $P_v4 __attribute__((vector_size(16)));
static $P_UNUSED $P_v4 $P_ld4(const float *p)
{
    $P_v4 v;
    memcpy(&v, p, sizeof v);
    return v;
}
static $P_UNUSED void $P_st4(float *p, $P_v4 v)
{
    memcpy(p, &v, sizeof v);
}
#endif

/* Whether the AVX2 tiles run. */
static $P_UNUSED int $P_avx2(void)
{
#if defined($P_MM_STATIC_AVX2)
    return 1;
#elif defined($P_MM_DISPATCH)
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

