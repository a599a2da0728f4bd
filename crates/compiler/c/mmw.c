/* The product with constant weights on the left, for convolutions: Y[i*ldy + j] =
 * act(sum_k A(i, k) * B[k*ldb + j] + rb[i] + Z[i*ldz + j]), i < M, j < N. A is packed at
 * compile time in panels of 6 rows (row r of panel p, column k at Ap[(p*K + k)*6 + r], the
 * last panel zero-padded); blocks of B (256 deep, 256 wide) are packed here into panels of
 * 16 columns in `pack` (256*256 floats), so the 6x16 tile reads both operands
 * contiguously. rb and Z may be NULL; relu clamps at 0 last. Paths as in $P_mm_f32. */

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
