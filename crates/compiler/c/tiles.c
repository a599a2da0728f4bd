/* The register tiles of the products with a packed right operand (see mm.c). */
/* t[r][0..16] += sum over k < K of a[r*lda + k] * b[k*bk + 0..16], r < 4. */
static void $P_tile4(ptrdiff_t K, const float *a, ptrdiff_t lda, const float *restrict b,
                     ptrdiff_t bk, float *restrict t)
{
#ifdef $P_MM_AVX2
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
#elif defined($P_MM_VEC)
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
static void $P_tile1(ptrdiff_t K, const float *restrict a, const float *restrict b, ptrdiff_t bk,
                     float *restrict t)
{
    ptrdiff_t k = 0;
#ifdef $P_MM_AVX2
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
#elif defined($P_MM_VEC)
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

