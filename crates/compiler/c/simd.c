/* The kernels' three paths, the same arithmetic: AVX2 and FMA intrinsics when those are
 * enabled (-mavx2 -mfma, or -march= a CPU that has them); else GCC/Clang vector extensions
 * (SSE2, NEON, ...); else, or with -DAUTOCAPTION_PORTABLE, plain C99. */
#if defined(__AVX2__) && defined(__FMA__) && !defined(AUTOCAPTION_PORTABLE)
#include <immintrin.h>
#define $P_MM_AVX2 1
#elif defined(__GNUC__) && !defined(AUTOCAPTION_PORTABLE)
/* GCC and Clang vector extensions: 4 floats a register on any target (SSE2, NEON, ...). */
#define $P_MM_VEC 1
typedef float $P_v4 __attribute__((vector_size(16)));
static $P_v4 $P_ld4(const float *p)
{
    $P_v4 v;
    memcpy(&v, p, sizeof v);
    return v;
}
static void $P_st4(float *p, $P_v4 v)
{
    memcpy(p, &v, sizeof v);
}
#endif

