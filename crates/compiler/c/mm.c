/* Matrix products for float32, register-tiled: tiles of 4 rows x 16 columns (1 x 16 for a
 * lone row), k-blocked so a tile's operands stay in the first-level cache.
 *
 * Y[i*ldy + j] = act(sum_k A[i*lda + k] * B(k, j) + rb[i] + cb[j] + Z[i*ldz + j]),
 * i < M, j < N. B(k, j) is a packed constant when ldb == 0 (panels of 16 columns: column j
 * of row k at B[(j / 16) * K * 16 + k * 16 + j % 16], the last panel zero-padded), else
 * B[k*ldb + j]. rb, cb and Z may be NULL; relu clamps at 0 last.
 *
 * The paths are chosen in simd.c. */
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
