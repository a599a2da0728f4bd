/* The register tiles, the only code with a path per instruction set (see simd.c):
 * instantiated once (the path chosen at compile time), or twice, an AVX2 copy and a vector
 * copy, with dispatchers choosing at run time. $V names the copy, $AVX and $VEC choose its
 * path, $TGT is its target attribute. */
/* t[r][0..16] += sum over k < K of a[r*lda + k] * b[k*bk + 0..16], r < 4. */
static $P_UNUSED $TGT void $P_tile4$V(ptrdiff_t K, const float *a, ptrdiff_t lda, const float *restrict b,
                     ptrdiff_t bk, float *restrict t)
{
#if $AVX
    const float *a0 = a, *a1 = a + lda, *a2 = a + 2 * lda, *a3 = a + 3 * lda;
    __m256 c00 = _mm256_loadu_ps(t), c01 = _mm256_loadu_ps(t + 8);
    __m256 c10 = _mm256_loadu_ps(t + 16), c11 = _mm256_loadu_ps(t + 24);
    __m256 c20 = _mm256_loadu_ps(t + 32), c21 = _mm256_loadu_ps(t + 40);
    __m256 c30 = _mm256_loadu_ps(t + 48), c31 = _mm256_loadu_ps(t + 56);
    for (ptrdiff_t k = 0; k < K; ++k) {
        const __m256 b0 = _mm256_loadu_ps(b + k * bk), b1 = _mm256_loadu_ps(b + k * bk + 8);
        __m256 x = _mm256_broadcast_ss(a0 + k);
        c00 = _mm256_fmadd_ps(x, b0, c00);
        c01 = _mm256_fmadd_ps(x, b1, c01);
        x = _mm256_broadcast_ss(a1 + k);
        c10 = _mm256_fmadd_ps(x, b0, c10);
        c11 = _mm256_fmadd_ps(x, b1, c11);
        x = _mm256_broadcast_ss(a2 + k);
        c20 = _mm256_fmadd_ps(x, b0, c20);
        c21 = _mm256_fmadd_ps(x, b1, c21);
        x = _mm256_broadcast_ss(a3 + k);
        c30 = _mm256_fmadd_ps(x, b0, c30);
        c31 = _mm256_fmadd_ps(x, b1, c31);
    }
    _mm256_storeu_ps(t, c00);
    _mm256_storeu_ps(t + 8, c01);
    _mm256_storeu_ps(t + 16, c10);
    _mm256_storeu_ps(t + 24, c11);
    _mm256_storeu_ps(t + 32, c20);
    _mm256_storeu_ps(t + 40, c21);
    _mm256_storeu_ps(t + 48, c30);
    _mm256_storeu_ps(t + 56, c31);
#elif $VEC
    /* Two halves of 8 columns: 8 accumulators, within 16 registers. */
    for (int half = 0; half < 16; half += 8) {
        $P_v4 c00 = $P_ld4(t + half), c01 = $P_ld4(t + half + 4);
        $P_v4 c10 = $P_ld4(t + 16 + half), c11 = $P_ld4(t + 20 + half);
        $P_v4 c20 = $P_ld4(t + 32 + half), c21 = $P_ld4(t + 36 + half);
        $P_v4 c30 = $P_ld4(t + 48 + half), c31 = $P_ld4(t + 52 + half);
        for (ptrdiff_t k = 0; k < K; ++k) {
            const $P_v4 b0 = $P_ld4(b + k * bk + half), b1 = $P_ld4(b + k * bk + half + 4);
            const float x0 = a[k], x1 = a[lda + k], x2 = a[2 * lda + k], x3 = a[3 * lda + k];
            c00 += x0 * b0;
            c01 += x0 * b1;
            c10 += x1 * b0;
            c11 += x1 * b1;
            c20 += x2 * b0;
            c21 += x2 * b1;
            c30 += x3 * b0;
            c31 += x3 * b1;
        }
        $P_st4(t + half, c00);
        $P_st4(t + half + 4, c01);
        $P_st4(t + 16 + half, c10);
        $P_st4(t + 20 + half, c11);
        $P_st4(t + 32 + half, c20);
        $P_st4(t + 36 + half, c21);
        $P_st4(t + 48 + half, c30);
        $P_st4(t + 52 + half, c31);
    }
#else
    float c0[16], c1[16], c2[16], c3[16];
    for (int j = 0; j < 16; ++j) {
        c0[j] = t[j];
        c1[j] = t[16 + j];
        c2[j] = t[32 + j];
        c3[j] = t[48 + j];
    }
    for (ptrdiff_t k = 0; k < K; ++k) {
        const float *restrict bb = b + k * bk;
        const float x0 = a[k], x1 = a[lda + k], x2 = a[2 * lda + k], x3 = a[3 * lda + k];
        for (int j = 0; j < 16; ++j) {
            c0[j] += x0 * bb[j];
            c1[j] += x1 * bb[j];
            c2[j] += x2 * bb[j];
            c3[j] += x3 * bb[j];
        }
    }
    for (int j = 0; j < 16; ++j) {
        t[j] = c0[j];
        t[16 + j] = c1[j];
        t[32 + j] = c2[j];
        t[48 + j] = c3[j];
    }
#endif
}

/* t[0..16] += sum over k < K of a[k] * b[k*bk + 0..16] (a lone row: four chains over k). */
static $P_UNUSED $TGT void $P_tile1$V(ptrdiff_t K, const float *restrict a, const float *restrict b, ptrdiff_t bk,
                     float *restrict t)
{
    ptrdiff_t k = 0;
#if $AVX
    __m256 c0 = _mm256_loadu_ps(t), c1 = _mm256_loadu_ps(t + 8);
    __m256 d0 = _mm256_setzero_ps(), d1 = _mm256_setzero_ps();
    __m256 e0 = _mm256_setzero_ps(), e1 = _mm256_setzero_ps();
    __m256 f0 = _mm256_setzero_ps(), f1 = _mm256_setzero_ps();
    for (; k + 4 <= K; k += 4) {
        const float *bb = b + k * bk;
        __m256 x = _mm256_broadcast_ss(a + k);
        c0 = _mm256_fmadd_ps(x, _mm256_loadu_ps(bb), c0);
        c1 = _mm256_fmadd_ps(x, _mm256_loadu_ps(bb + 8), c1);
        x = _mm256_broadcast_ss(a + k + 1);
        d0 = _mm256_fmadd_ps(x, _mm256_loadu_ps(bb + bk), d0);
        d1 = _mm256_fmadd_ps(x, _mm256_loadu_ps(bb + bk + 8), d1);
        x = _mm256_broadcast_ss(a + k + 2);
        e0 = _mm256_fmadd_ps(x, _mm256_loadu_ps(bb + 2 * bk), e0);
        e1 = _mm256_fmadd_ps(x, _mm256_loadu_ps(bb + 2 * bk + 8), e1);
        x = _mm256_broadcast_ss(a + k + 3);
        f0 = _mm256_fmadd_ps(x, _mm256_loadu_ps(bb + 3 * bk), f0);
        f1 = _mm256_fmadd_ps(x, _mm256_loadu_ps(bb + 3 * bk + 8), f1);
    }
    for (; k < K; ++k) {
        const __m256 x = _mm256_broadcast_ss(a + k);
        c0 = _mm256_fmadd_ps(x, _mm256_loadu_ps(b + k * bk), c0);
        c1 = _mm256_fmadd_ps(x, _mm256_loadu_ps(b + k * bk + 8), c1);
    }
    _mm256_storeu_ps(t, _mm256_add_ps(_mm256_add_ps(c0, d0), _mm256_add_ps(e0, f0)));
    _mm256_storeu_ps(t + 8, _mm256_add_ps(_mm256_add_ps(c1, d1), _mm256_add_ps(e1, f1)));
#elif $VEC
    $P_v4 c0 = $P_ld4(t), c1 = $P_ld4(t + 4), c2 = $P_ld4(t + 8), c3 = $P_ld4(t + 12);
    $P_v4 d0 = {0, 0, 0, 0}, d1 = d0, d2 = d0, d3 = d0;
    for (; k + 2 <= K; k += 2) {
        const float *bb = b + k * bk;
        const float x = a[k], y = a[k + 1];
        c0 += x * $P_ld4(bb);
        c1 += x * $P_ld4(bb + 4);
        c2 += x * $P_ld4(bb + 8);
        c3 += x * $P_ld4(bb + 12);
        d0 += y * $P_ld4(bb + bk);
        d1 += y * $P_ld4(bb + bk + 4);
        d2 += y * $P_ld4(bb + bk + 8);
        d3 += y * $P_ld4(bb + bk + 12);
    }
    for (; k < K; ++k) {
        const float x = a[k];
        c0 += x * $P_ld4(b + k * bk);
        c1 += x * $P_ld4(b + k * bk + 4);
        c2 += x * $P_ld4(b + k * bk + 8);
        c3 += x * $P_ld4(b + k * bk + 12);
    }
    $P_st4(t, c0 + d0);
    $P_st4(t + 4, c1 + d1);
    $P_st4(t + 8, c2 + d2);
    $P_st4(t + 12, c3 + d3);
#else
    float c[16], d[16], e[16], f[16];
    for (int j = 0; j < 16; ++j) {
        c[j] = t[j];
        d[j] = e[j] = f[j] = 0;
    }
    for (; k + 4 <= K; k += 4) {
        const float *restrict bb = b + k * bk;
        const float x0 = a[k], x1 = a[k + 1], x2 = a[k + 2], x3 = a[k + 3];
        for (int j = 0; j < 16; ++j) {
            c[j] += x0 * bb[j];
            d[j] += x1 * bb[bk + j];
            e[j] += x2 * bb[2 * bk + j];
            f[j] += x3 * bb[3 * bk + j];
        }
    }
    for (; k < K; ++k)
        for (int j = 0; j < 16; ++j) c[j] += a[k] * b[k * bk + j];
    for (int j = 0; j < 16; ++j) t[j] = (c[j] + d[j]) + (e[j] + f[j]);
#endif
}

/* t[r][0..16] += sum over k < kc of a[k*6 + r] * b[k*16 + 0..16], r < 6. */
static $P_UNUSED $TGT void $P_k6x16$V(ptrdiff_t kc, const float *restrict a, const float *restrict b, float *restrict t)
{
#if $AVX
    /* Twelve named accumulators (an array would live on the stack). */
    __m256 c00 = _mm256_loadu_ps(t), c01 = _mm256_loadu_ps(t + 8);
    __m256 c10 = _mm256_loadu_ps(t + 16), c11 = _mm256_loadu_ps(t + 24);
    __m256 c20 = _mm256_loadu_ps(t + 32), c21 = _mm256_loadu_ps(t + 40);
    __m256 c30 = _mm256_loadu_ps(t + 48), c31 = _mm256_loadu_ps(t + 56);
    __m256 c40 = _mm256_loadu_ps(t + 64), c41 = _mm256_loadu_ps(t + 72);
    __m256 c50 = _mm256_loadu_ps(t + 80), c51 = _mm256_loadu_ps(t + 88);
    for (ptrdiff_t k = 0; k < kc; ++k) {
        const __m256 b0 = _mm256_loadu_ps(b + 16 * k), b1 = _mm256_loadu_ps(b + 16 * k + 8);
        const float *ak = a + 6 * k;
        __m256 x = _mm256_broadcast_ss(ak);
        c00 = _mm256_fmadd_ps(x, b0, c00);
        c01 = _mm256_fmadd_ps(x, b1, c01);
        x = _mm256_broadcast_ss(ak + 1);
        c10 = _mm256_fmadd_ps(x, b0, c10);
        c11 = _mm256_fmadd_ps(x, b1, c11);
        x = _mm256_broadcast_ss(ak + 2);
        c20 = _mm256_fmadd_ps(x, b0, c20);
        c21 = _mm256_fmadd_ps(x, b1, c21);
        x = _mm256_broadcast_ss(ak + 3);
        c30 = _mm256_fmadd_ps(x, b0, c30);
        c31 = _mm256_fmadd_ps(x, b1, c31);
        x = _mm256_broadcast_ss(ak + 4);
        c40 = _mm256_fmadd_ps(x, b0, c40);
        c41 = _mm256_fmadd_ps(x, b1, c41);
        x = _mm256_broadcast_ss(ak + 5);
        c50 = _mm256_fmadd_ps(x, b0, c50);
        c51 = _mm256_fmadd_ps(x, b1, c51);
    }
    _mm256_storeu_ps(t, c00);
    _mm256_storeu_ps(t + 8, c01);
    _mm256_storeu_ps(t + 16, c10);
    _mm256_storeu_ps(t + 24, c11);
    _mm256_storeu_ps(t + 32, c20);
    _mm256_storeu_ps(t + 40, c21);
    _mm256_storeu_ps(t + 48, c30);
    _mm256_storeu_ps(t + 56, c31);
    _mm256_storeu_ps(t + 64, c40);
    _mm256_storeu_ps(t + 72, c41);
    _mm256_storeu_ps(t + 80, c50);
    _mm256_storeu_ps(t + 88, c51);
#elif $VEC
    /* Halves of 8 columns: twelve named accumulators. */
    for (int h = 0; h < 16; h += 8) {
        $P_v4 c00 = $P_ld4(t + h), c01 = $P_ld4(t + h + 4);
        $P_v4 c10 = $P_ld4(t + 16 + h), c11 = $P_ld4(t + 20 + h);
        $P_v4 c20 = $P_ld4(t + 32 + h), c21 = $P_ld4(t + 36 + h);
        $P_v4 c30 = $P_ld4(t + 48 + h), c31 = $P_ld4(t + 52 + h);
        $P_v4 c40 = $P_ld4(t + 64 + h), c41 = $P_ld4(t + 68 + h);
        $P_v4 c50 = $P_ld4(t + 80 + h), c51 = $P_ld4(t + 84 + h);
        for (ptrdiff_t k = 0; k < kc; ++k) {
            const $P_v4 b0 = $P_ld4(b + 16 * k + h), b1 = $P_ld4(b + 16 * k + h + 4);
            const float *ak = a + 6 * k;
            c00 += ak[0] * b0;
            c01 += ak[0] * b1;
            c10 += ak[1] * b0;
            c11 += ak[1] * b1;
            c20 += ak[2] * b0;
            c21 += ak[2] * b1;
            c30 += ak[3] * b0;
            c31 += ak[3] * b1;
            c40 += ak[4] * b0;
            c41 += ak[4] * b1;
            c50 += ak[5] * b0;
            c51 += ak[5] * b1;
        }
        $P_st4(t + h, c00);
        $P_st4(t + h + 4, c01);
        $P_st4(t + 16 + h, c10);
        $P_st4(t + 20 + h, c11);
        $P_st4(t + 32 + h, c20);
        $P_st4(t + 36 + h, c21);
        $P_st4(t + 48 + h, c30);
        $P_st4(t + 52 + h, c31);
        $P_st4(t + 64 + h, c40);
        $P_st4(t + 68 + h, c41);
        $P_st4(t + 80 + h, c50);
        $P_st4(t + 84 + h, c51);
    }
#else
    for (ptrdiff_t k = 0; k < kc; ++k)
        for (int r = 0; r < 6; ++r)
            for (int j = 0; j < 16; ++j) t[16 * r + j] += a[6 * k + r] * b[16 * k + j];
#endif
}

/* t[0..16] += sum over k < K of a[k] * q[k*16 + 0..16], q int8 (a lone row with AVX2: the
 * weights widened in registers, a quarter of the bytes of $P_tile1 read). */
static $P_UNUSED $TGT void $P_tile1q$V(ptrdiff_t K, const float *restrict a, const int8_t *restrict q, float *restrict t)
{
    ptrdiff_t k = 0;
#if $AVX
    __m256 c0 = _mm256_loadu_ps(t), c1 = _mm256_loadu_ps(t + 8);
    __m256 d0 = _mm256_setzero_ps(), d1 = _mm256_setzero_ps();
    for (; k + 2 <= K; k += 2) {
        const __m128i w = _mm_loadu_si128((const __m128i *)(q + 16 * k));
        const __m128i v = _mm_loadu_si128((const __m128i *)(q + 16 * k + 16));
        const __m256 x = _mm256_broadcast_ss(a + k), y = _mm256_broadcast_ss(a + k + 1);
        c0 = _mm256_fmadd_ps(x, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(w)), c0);
        c1 = _mm256_fmadd_ps(x, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(w, 8))), c1);
        d0 = _mm256_fmadd_ps(y, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)), d0);
        d1 = _mm256_fmadd_ps(y, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(v, 8))), d1);
    }
    c0 = _mm256_add_ps(c0, d0);
    c1 = _mm256_add_ps(c1, d1);
    _mm256_storeu_ps(t, c0);
    _mm256_storeu_ps(t + 8, c1);
#endif
    for (; k < K; ++k)
        for (int j = 0; j < 16; ++j) t[j] += a[k] * (float)q[16 * k + j];
}

