/* Matrix products for float32, register-tiled: tiles of 4 rows x 16 columns (1 x 16 for a
 * lone row), k-blocked so a tile's operands stay in the first-level cache.
 *
 * Y[i*ldy + j] = act(sum_k A[i*lda + k] * B(k, j) + rb[i] + cb[j] + Z[i*ldz + j]),
 * i < M, j < N. B(k, j) is a packed constant when ldb == 0 (panels of 16 columns: column j
 * of row k at B[(j / 16) * K * 16 + k * 16 + j % 16], the last panel zero-padded), else
 * B[k*ldb + j]. rb, cb and Z may be NULL; relu clamps at 0 last.
 *
 * The paths are chosen in simd.c. */
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

/* Rows i0..i0+rows (rows <= 4) by columns j0..j0+cols (cols <= 16) over k0..k0+kc: loads
 * the partial sums from Y unless first, accumulates, and writes them back, with the
 * epilogue when last. */
static void $P_mm_tile(ptrdiff_t rows, ptrdiff_t cols, ptrdiff_t i0, ptrdiff_t j0, ptrdiff_t k0,
                       ptrdiff_t kc, ptrdiff_t K, int first, int last,
                       const float *A, ptrdiff_t lda, const float *B, ptrdiff_t ldb,
                       const float *rb, const float *cb, const float *Z, ptrdiff_t ldz,
                       int relu, float *Y, ptrdiff_t ldy)
{
    float t[64];
    for (ptrdiff_t r = 0; r < rows; ++r)
        for (ptrdiff_t j = 0; j < 16; ++j)
            t[r * 16 + j] = (!first && j < cols) ? Y[(i0 + r) * ldy + j0 + j] : 0;
    const float *a = A + i0 * lda + k0;
    if (ldb == 0 || cols == 16) {
        const float *b = ldb ? B + k0 * ldb + j0 : B + (j0 / 16) * K * 16 + k0 * 16;
        const ptrdiff_t bk = ldb ? ldb : 16;
        if (rows == 4)
            $P_tile4(kc, a, lda, b, bk, t);
        else
            for (ptrdiff_t r = 0; r < rows; ++r) $P_tile1(kc, a + r * lda, b, bk, t + r * 16);
    } else {
        /* A partial tile of a dense B: only its columns are read. */
        for (ptrdiff_t r = 0; r < rows; ++r)
            for (ptrdiff_t k = 0; k < kc; ++k) {
                const float x = a[r * lda + k];
                const float *bb = B + (k0 + k) * ldb + j0;
                for (ptrdiff_t j = 0; j < cols; ++j) t[r * 16 + j] += x * bb[j];
            }
    }
    for (ptrdiff_t r = 0; r < rows; ++r) {
        float *y = Y + (i0 + r) * ldy + j0;
        for (ptrdiff_t j = 0; j < cols; ++j) {
            float v = t[r * 16 + j];
            if (last) {
                if (rb) v += rb[i0 + r];
                if (cb) v += cb[j0 + j];
                if (Z) v += Z[(i0 + r) * ldz + j0 + j];
                if (relu && v < 0) v = 0;
            }
            y[j] = v;
        }
    }
}

static void $P_mm_$S(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const float *A, ptrdiff_t lda,
                     const float *B, ptrdiff_t ldb, const float *rb, const float *cb,
                     const float *Z, ptrdiff_t ldz, int relu, float *Y, ptrdiff_t ldy)
{
    /* A lone row reads each weight once: nothing to keep in cache, no k blocks. */
    const ptrdiff_t KC = M < 4 ? K : 256;
    if (K == 0) {
        for (ptrdiff_t i = 0; i < M; ++i)
            for (ptrdiff_t j = 0; j < N; ++j) {
                float v = (rb ? rb[i] : 0) + (cb ? cb[j] : 0) + (Z ? Z[i * ldz + j] : 0);
                Y[i * ldy + j] = relu && v < 0 ? 0 : v;
            }
        return;
    }
    /* Keep the smaller operand block in cache: with few rows sweep the rows inside. */
    const int rows_inside = M <= N;
    for (ptrdiff_t k0 = 0; k0 < K; k0 += KC) {
        const ptrdiff_t kc = K - k0 < KC ? K - k0 : KC;
        const int first = k0 == 0, last = k0 + kc == K;
        if (rows_inside) {
            for (ptrdiff_t j0 = 0; j0 < N; j0 += 16)
                for (ptrdiff_t i0 = 0; i0 < M; i0 += 4)
                    $P_mm_tile(M - i0 < 4 ? M - i0 : 4, N - j0 < 16 ? N - j0 : 16, i0, j0, k0, kc,
                               K, first, last, A, lda, B, ldb, rb, cb, Z, ldz, relu, Y, ldy);
        } else {
            for (ptrdiff_t i0 = 0; i0 < M; i0 += 4)
                for (ptrdiff_t j0 = 0; j0 < N; j0 += 16)
                    $P_mm_tile(M - i0 < 4 ? M - i0 : 4, N - j0 < 16 ? N - j0 : 16, i0, j0, k0, kc,
                               K, first, last, A, lda, B, ldb, rb, cb, Z, ldz, relu, Y, ldy);
        }
    }
}
