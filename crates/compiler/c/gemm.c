/* Y[i][j] = alpha * sum_k A[i*ars + k*acs] * B[k*brs + j*bcs] + beta * C[i*crs + j*ccs]
 * (the C term only when C is not NULL). Y is M x N, dense. */
static void $P_gemm_$S(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, $T alpha,
                       const $T *A, ptrdiff_t ars, ptrdiff_t acs,
                       const $T *B, ptrdiff_t brs, ptrdiff_t bcs,
                       $T beta, const $T *C, ptrdiff_t crs, ptrdiff_t ccs, $T *Y)
{
    for (ptrdiff_t i = 0; i < M; ++i) {
        $T *restrict y = Y + i * N;
        if (bcs == 1) {
            /* Rows of B are contiguous: accumulate a*B[k] into the output row. */
            for (ptrdiff_t j = 0; j < N; ++j) y[j] = 0;
            for (ptrdiff_t k = 0; k < K; ++k) {
                const $T a = A[i * ars + k * acs];
                const $T *restrict b = B + k * brs;
                for (ptrdiff_t j = 0; j < N; ++j) y[j] += a * b[j];
            }
        } else {
            for (ptrdiff_t j = 0; j < N; ++j) {
                $T s = 0;
                for (ptrdiff_t k = 0; k < K; ++k) s += A[i * ars + k * acs] * B[k * brs + j * bcs];
                y[j] = s;
            }
        }
        if (alpha != 1)
            for (ptrdiff_t j = 0; j < N; ++j) y[j] *= alpha;
        if (C)
            for (ptrdiff_t j = 0; j < N; ++j) y[j] += beta * C[i * crs + j * ccs];
    }
}
