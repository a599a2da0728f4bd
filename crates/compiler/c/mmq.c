/* $P_mm_f32 with int8 weights: Y[i*ldy + j] = act(cs[j] * sum_k A[i*lda + k] * ks[k] *
 * Bq(k, j) + cb[j] + Z[i*ldz + j]). Bq holds symmetric int8 weights in the packed panels of
 * $P_mm_f32 (16 columns a panel, zero-padded), cs the scale of each column (output
 * channel), ks of each row (input channel, which equalises rows of very different
 * magnitudes; NULL for none). Each block of 256 rows of a panel is widened to float once and
 * fed to the float tiles. cb and Z may be NULL. */
/* out[0..n] = (float)q[0..n]. */
static void $P_widen(ptrdiff_t n, const int8_t *restrict q, float *restrict out)
{
    ptrdiff_t i = 0;
#if defined($P_MM_VEC)
    /* Sign-extend by shifting each byte to the top of a 32-bit lane, then back. */
    typedef int32_t v4w __attribute__((vector_size(16)));
    for (; i + 4 <= n; i += 4) {
        const v4w w = {(int32_t)((uint32_t)(uint8_t)q[i] << 24), (int32_t)((uint32_t)(uint8_t)q[i + 1] << 24),
                       (int32_t)((uint32_t)(uint8_t)q[i + 2] << 24), (int32_t)((uint32_t)(uint8_t)q[i + 3] << 24)};
        const $P_v4 f = __builtin_convertvector(w >> 24, $P_v4);
        memcpy(out + i, &f, sizeof f);
    }
#endif
    for (; i < n; ++i) out[i] = (float)q[i];
}

static void $P_mmq_f32(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const float *A, ptrdiff_t lda,
                       const int8_t *Bq, const float *cs, const float *ks, const float *cb,
                       const float *Z, ptrdiff_t ldz, int relu, float *Y, ptrdiff_t ldy)
{
    enum { KC = 256 };
    float buf[KC * 16], abuf[4 * KC];
    for (ptrdiff_t j0 = 0; j0 < N; j0 += 16) {
        const ptrdiff_t cols = N - j0 < 16 ? N - j0 : 16;
        const int8_t *panel = Bq + (j0 / 16) * K * 16;
        for (ptrdiff_t k0 = 0; k0 < K || k0 == 0; k0 += KC) {
            const ptrdiff_t kc = K - k0 < KC ? K - k0 : KC;
            const int first = k0 == 0, last = k0 + kc >= K;
            /* Rows share one widened block; with AVX2 lone rows read int8 directly. */
            const int widen = M >= 4 || !$P_avx2();
            if (widen) $P_widen(kc * 16, panel + k0 * 16, buf);
            for (ptrdiff_t i0 = 0; i0 < M; i0 += 4) {
                const ptrdiff_t rows = M - i0 < 4 ? M - i0 : 4;
                float t[64];
                for (ptrdiff_t r = 0; r < 4; ++r)
                    for (ptrdiff_t j = 0; j < 16; ++j)
                        t[16 * r + j] = (!first && r < rows && j < cols) ? Y[(i0 + r) * ldy + j0 + j] : 0;
                const float *a = A + i0 * lda + k0;
                ptrdiff_t la = lda;
                if (ks) {
                    for (ptrdiff_t r = 0; r < rows; ++r)
                        for (ptrdiff_t k = 0; k < kc; ++k) abuf[r * KC + k] = a[r * lda + k] * ks[k0 + k];
                    a = abuf;
                    la = KC;
                }
                if (kc > 0) {
                    if (rows == 4)
                        $P_tile4(kc, a, la, buf, 16, t);
                    else if (widen)
                        for (ptrdiff_t r = 0; r < rows; ++r) $P_tile1(kc, a + r * la, buf, 16, t + 16 * r);
                    else
                        for (ptrdiff_t r = 0; r < rows; ++r)
                            $P_tile1q(kc, a + r * la, panel + k0 * 16, t + 16 * r);
                }
                for (ptrdiff_t r = 0; r < rows; ++r) {
                    float *y = Y + (i0 + r) * ldy + j0;
                    for (ptrdiff_t j = 0; j < cols; ++j) {
                        float v = t[16 * r + j];
                        if (last) {
                            v *= cs[j0 + j];
                            if (cb) v += cb[j0 + j];
                            if (Z) v += Z[(i0 + r) * ldz + j0 + j];
                            if (relu && v < 0) v = 0;
                        }
                        y[j] = v;
                    }
                }
            }
        }
    }
}
