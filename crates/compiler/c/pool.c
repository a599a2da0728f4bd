/* Max (avg = 0) or average (avg = 1) pooling over up to three spatial dimensions of NC
 * planes. pad/pad_end: padding before and after; the average divides by the window's
 * positions inside the padded extent (count_include_pad) or inside the input. I, if not
 * NULL, receives each maximum's flat index in the whole input (column-major within a
 * plane when col_major). */
static void $P_pool_$S(int avg, ptrdiff_t NC, const ptrdiff_t *in, const ptrdiff_t *out,
                       const ptrdiff_t *k, const ptrdiff_t *stride, const ptrdiff_t *pad,
                       const ptrdiff_t *pad_end, const ptrdiff_t *dil, int count_include_pad,
                       const $T *X, $T *Y, int64_t *I, int col_major)
{
    const ptrdiff_t isz = in[0] * in[1] * in[2], osz = out[0] * out[1] * out[2];
    for (ptrdiff_t p = 0; p < NC; ++p) {
        const $T *x = X + p * isz;
        for (ptrdiff_t od = 0; od < out[0]; ++od)
        for (ptrdiff_t oh = 0; oh < out[1]; ++oh)
        for (ptrdiff_t ow = 0; ow < out[2]; ++ow) {
            double sum = 0;
            ptrdiff_t count = 0, padded = 0, best = -1;
            $T m = 0;
            for (ptrdiff_t kd = 0; kd < k[0]; ++kd) {
                const ptrdiff_t id = od * stride[0] - pad[0] + kd * dil[0];
                if (id < -pad[0] || id >= in[0] + pad_end[0]) continue;
                for (ptrdiff_t kh = 0; kh < k[1]; ++kh) {
                    const ptrdiff_t ih = oh * stride[1] - pad[1] + kh * dil[1];
                    if (ih < -pad[1] || ih >= in[1] + pad_end[1]) continue;
                    for (ptrdiff_t kw = 0; kw < k[2]; ++kw) {
                        const ptrdiff_t iw = ow * stride[2] - pad[2] + kw * dil[2];
                        if (iw < -pad[2] || iw >= in[2] + pad_end[2]) continue;
                        ++padded;
                        if (id < 0 || id >= in[0] || ih < 0 || ih >= in[1] || iw < 0 || iw >= in[2]) continue;
                        const ptrdiff_t at = (id * in[1] + ih) * in[2] + iw;
                        ++count;
                        if (avg) {
                            sum += (double)x[at];
                        } else if (best < 0 || x[at] > m) {
                            m = x[at];
                            best = col_major ? (iw * in[1] + ih) * in[0] + id : at;
                        }
                    }
                }
            }
            const ptrdiff_t o = (od * out[1] + oh) * out[2] + ow;
            if (avg) {
                const ptrdiff_t div = count_include_pad ? padded : count;
                Y[p * osz + o] = ($T)(div > 0 ? sum / (double)div : 0);
            } else {
                Y[p * osz + o] = m;
                if (I) I[p * osz + o] = (int64_t)(best < 0 ? 0 : p * isz + best);
            }
        }
    }
}
