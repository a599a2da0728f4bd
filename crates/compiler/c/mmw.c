/* The product with constant weights on the left, for convolutions: Y[i*ldy + j] =
 * act(sum_k A(i, k) * B[k*ldb + j] + rb[i] + Z[i*ldz + j]), i < M, j < N. A is packed at
 * compile time in panels of 6 rows (row r of panel p, column k at Ap[(p*K + k)*6 + r], the
 * last panel zero-padded); blocks of B (256 deep, 256 wide) are packed here into panels of
 * 16 columns in `pack` (256*256 floats), so the 6x16 tile reads both operands
 * contiguously. rb and Z may be NULL; relu clamps at 0 last. Paths as in $P_mm_f32. */

/* t[r][0..16] += sum over k < kc of a[k*6 + r] * b[k*16 + 0..16], r < 6. */
static void $P_k6x16(ptrdiff_t kc, const float *restrict a, const float *restrict b, float *restrict t)
{
#ifdef $P_MM_AVX2
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
#elif defined($P_MM_VEC)
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

/* With Aq (not NULL) instead of Ap, the weights are per-row symmetric int8 in the same
 * panels, rs their scales: each panel's block is widened to float once. */
static void $P_mmw_$S(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const float *Ap, const int8_t *Aq,
                      const float *rs, const float *B, ptrdiff_t ldb, const float *rb,
                      const float *Z, ptrdiff_t ldz, int relu, float *Y, ptrdiff_t ldy, float *pack)
{
    enum { KC = 256, NC = 256 };
    float abuf[KC * 6];
    for (ptrdiff_t j0 = 0; j0 < N; j0 += NC) {
        const ptrdiff_t nc = N - j0 < NC ? N - j0 : NC;
        for (ptrdiff_t k0 = 0; k0 < K || k0 == 0; k0 += KC) {
            const ptrdiff_t kc = K - k0 < KC ? K - k0 : KC;
            const int first = k0 == 0, last = k0 + kc >= K;
            /* Pack B[k0.., j0..] into panels of 16 columns, zero-padded. */
            for (ptrdiff_t p = 0; p * 16 < nc; ++p) {
                const ptrdiff_t w = nc - 16 * p < 16 ? nc - 16 * p : 16;
                float *dst = pack + p * kc * 16;
                if (w == 16) {
                    for (ptrdiff_t k = 0; k < kc; ++k)
                        memcpy(dst + 16 * k, B + (k0 + k) * ldb + j0 + 16 * p, 16 * sizeof(float));
                } else {
                    for (ptrdiff_t k = 0; k < kc; ++k) {
                        const float *src = B + (k0 + k) * ldb + j0 + 16 * p;
                        ptrdiff_t j = 0;
                        for (; j < w; ++j) dst[16 * k + j] = src[j];
                        for (; j < 16; ++j) dst[16 * k + j] = 0;
                    }
                }
            }
            for (ptrdiff_t i0 = 0; i0 < M; i0 += 6) {
                const ptrdiff_t rows = M - i0 < 6 ? M - i0 : 6;
                const float *a = Aq ? abuf : Ap + (i0 / 6 * K + k0) * 6;
                if (Aq)
                    for (ptrdiff_t q = 0; q < kc * 6; ++q) abuf[q] = (float)Aq[(i0 / 6 * K + k0) * 6 + q];
                for (ptrdiff_t p = 0; p * 16 < nc; ++p) {
                    const ptrdiff_t cols = nc - 16 * p < 16 ? nc - 16 * p : 16;
                    const ptrdiff_t jj = j0 + 16 * p;
                    float t[96];
                    if (first) {
                        memset(t, 0, sizeof t);
                    } else if (cols == 16) {
                        for (ptrdiff_t r = 0; r < rows; ++r)
                            memcpy(t + 16 * r, Y + (i0 + r) * ldy + jj, 16 * sizeof(float));
                    } else {
                        for (ptrdiff_t r = 0; r < 6; ++r)
                            for (ptrdiff_t j = 0; j < 16; ++j)
                                t[16 * r + j] = (r < rows && j < cols) ? Y[(i0 + r) * ldy + jj + j] : 0;
                    }
                    if (kc > 0) $P_k6x16(kc, a, pack + p * kc * 16, t);
                    for (ptrdiff_t r = 0; r < rows; ++r) {
                        float *restrict y = Y + (i0 + r) * ldy + jj;
                        float *restrict v = t + 16 * r;
                        if (last) {
                            const float bias = rb ? rb[i0 + r] : 0, scale = Aq ? rs[i0 + r] : 1;
                            for (int j = 0; j < 16; ++j) v[j] = v[j] * scale + bias;
                            if (Z)
                                for (ptrdiff_t j = 0; j < cols; ++j) v[j] += Z[(i0 + r) * ldz + jj + j];
                            if (relu)
                                for (int j = 0; j < 16; ++j) v[j] = v[j] < 0 ? 0 : v[j];
                        }
                        if (cols == 16)
                            memcpy(y, v, 16 * sizeof(float));
                        else
                            for (ptrdiff_t j = 0; j < cols; ++j) y[j] = v[j];
                    }
                }
            }
        }
    }
}
