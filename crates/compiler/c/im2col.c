/* Unfolds one image X [C, H, W] for a 2-D convolution into col [C*kh*kw, OH*OW]: row
 * (c*kh + i)*kw + j holds, for every output position, the input under kernel tap (i, j) of
 * channel c, or 0 in the padding. */
static void $P_im2col_$S(ptrdiff_t C, ptrdiff_t H, ptrdiff_t W, ptrdiff_t kh, ptrdiff_t kw,
                         ptrdiff_t sh, ptrdiff_t sw, ptrdiff_t ph, ptrdiff_t pw, ptrdiff_t dh,
                         ptrdiff_t dw, ptrdiff_t OH, ptrdiff_t OW, const $T *X, $T *col)
{
    for (ptrdiff_t c = 0; c < C; ++c)
        for (ptrdiff_t i = 0; i < kh; ++i)
            for (ptrdiff_t j = 0; j < kw; ++j) {
                $T *out = col + ((c * kh + i) * kw + j) * OH * OW;
                for (ptrdiff_t oh = 0; oh < OH; ++oh) {
                    const ptrdiff_t ih = oh * sh - ph + i * dh;
                    $T *o = out + oh * OW;
                    if (ih < 0 || ih >= H) {
                        for (ptrdiff_t ow = 0; ow < OW; ++ow) o[ow] = 0;
                        continue;
                    }
                    const $T *x = X + (c * H + ih) * W;
                    if (sw == 1 && dw == 1) {
                        /* One contiguous run, clipped to the input. */
                        const ptrdiff_t off = j - pw;
                        ptrdiff_t lo = off < 0 ? -off : 0, hi = W - off < OW ? W - off : OW;
                        if (hi < lo) hi = lo;
                        for (ptrdiff_t ow = 0; ow < lo; ++ow) o[ow] = 0;
                        memcpy(o + lo, x + lo + off, (size_t)(hi - lo) * sizeof($T));
                        for (ptrdiff_t ow = hi; ow < OW; ++ow) o[ow] = 0;
                    } else {
                        for (ptrdiff_t ow = 0; ow < OW; ++ow) {
                            const ptrdiff_t iw = ow * sw - pw + j * dw;
                            o[ow] = iw >= 0 && iw < W ? x[iw] : 0;
                        }
                    }
                }
            }
}
