/* Direct convolution over up to three spatial dimensions (lower ranks padded with 1s).
 * X [N, C, in], W [M, C/G, k], B [M] or NULL, Y [N, M, out]; pad = leading padding. */
static void $P_conv_$S(ptrdiff_t N, ptrdiff_t C, ptrdiff_t M, ptrdiff_t G,
                       const ptrdiff_t *in, const ptrdiff_t *out, const ptrdiff_t *k,
                       const ptrdiff_t *stride, const ptrdiff_t *pad, const ptrdiff_t *dil,
                       const $T *X, const $T *W, const $T *B, $T *Y)
{
    const ptrdiff_t cg = C / G, mg = M / G;
    const ptrdiff_t isz = in[0] * in[1] * in[2], osz = out[0] * out[1] * out[2], ksz = k[0] * k[1] * k[2];
    for (ptrdiff_t n = 0; n < N; ++n) {
        for (ptrdiff_t m = 0; m < M; ++m) {
            const ptrdiff_t g = m / mg;
            $T *y = Y + (n * M + m) * osz;
            for (ptrdiff_t od = 0; od < out[0]; ++od)
            for (ptrdiff_t oh = 0; oh < out[1]; ++oh)
            for (ptrdiff_t ow = 0; ow < out[2]; ++ow) {
                $T s = B ? B[m] : 0;
                for (ptrdiff_t c = 0; c < cg; ++c) {
                    const $T *x = X + (n * C + g * cg + c) * isz;
                    const $T *w = W + (m * cg + c) * ksz;
                    for (ptrdiff_t kd = 0; kd < k[0]; ++kd) {
                        const ptrdiff_t id = od * stride[0] - pad[0] + kd * dil[0];
                        if (id < 0 || id >= in[0]) continue;
                        for (ptrdiff_t kh = 0; kh < k[1]; ++kh) {
                            const ptrdiff_t ih = oh * stride[1] - pad[1] + kh * dil[1];
                            if (ih < 0 || ih >= in[1]) continue;
                            const $T *xr = x + (id * in[1] + ih) * in[2];
                            const $T *wr = w + (kd * k[1] + kh) * k[2];
                            for (ptrdiff_t kw = 0; kw < k[2]; ++kw) {
                                const ptrdiff_t iw = ow * stride[2] - pad[2] + kw * dil[2];
                                if (iw < 0 || iw >= in[2]) continue;
                                s += xr[iw] * wr[kw];
                            }
                        }
                    }
                }
                y[(od * out[1] + oh) * out[2] + ow] = s;
            }
        }
    }
}
