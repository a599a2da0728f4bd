/* One direction of an ONNX RNN: h = f(x W^T + h R^T + Wb + Rb). scratch: 2*H floats. */
static int $P_rnn_$S(ptrdiff_t T, ptrdiff_t B, ptrdiff_t I, ptrdiff_t H, int reverse,
                     const float *X, ptrdiff_t xt, ptrdiff_t xb,
                     const float *W, const float *R, const float *Wb, const float *Rb,
                     const float *h0, ptrdiff_t hb, const int32_t *lens,
                     float *Y, ptrdiff_t yt, ptrdiff_t yb, float *Yh,
                     const int *act, const float *alpha, const float *beta, float clip, float *scratch)
{
    float *h = scratch, *g = scratch + H;
    for (ptrdiff_t b = 0; b < B; ++b) {
        const ptrdiff_t len = lens ? (ptrdiff_t)lens[b] : T;
        if (len < 0 || len > T) return 1;
        for (ptrdiff_t j = 0; j < H; ++j) h[j] = h0 ? h0[b * hb + j] : 0;
        for (ptrdiff_t s = 0; s < len; ++s) {
            const ptrdiff_t t = reverse ? len - 1 - s : s;
            const float *x = X + t * xt + b * xb;
            for (ptrdiff_t j = 0; j < H; ++j)
                g[j] = (Wb ? Wb[j] : 0) + (Rb ? Rb[j] : 0) + $P_dot_$S(x, W + j * I, I) + $P_dot_$S(h, R + j * H, H);
            for (ptrdiff_t j = 0; j < H; ++j) h[j] = $P_act_$S(act[0], alpha[0], beta[0], $P_clip_$S(g[j], clip));
            if (Y)
                for (ptrdiff_t j = 0; j < H; ++j) Y[t * yt + b * yb + j] = h[j];
        }
        if (Yh)
            for (ptrdiff_t j = 0; j < H; ++j) Yh[b * hb + j] = h[j];
    }
    return 0;
}
