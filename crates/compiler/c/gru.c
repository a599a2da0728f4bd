/* One direction of an ONNX GRU (layouts as for the LSTM). W [3H, I], R [3H, H] in gate
 * order z, r, h; Wb, Rb [3H]. act/alpha/beta: the f, g activations. scratch: 8*H floats. */
static int $P_gru_$S(ptrdiff_t T, ptrdiff_t B, ptrdiff_t I, ptrdiff_t H, int reverse,
                     const float *X, ptrdiff_t xt, ptrdiff_t xb,
                     const float *W, const float *R, const float *Wb, const float *Rb,
                     const float *h0, ptrdiff_t hb, const int32_t *lens,
                     float *Y, ptrdiff_t yt, ptrdiff_t yb, float *Yh,
                     const int *act, const float *alpha, const float *beta, float clip,
                     int linear_before_reset, float *scratch)
{
    float *h = scratch, *gx = scratch + H, *gh = scratch + 4 * H, *rh = scratch + 7 * H;
    for (ptrdiff_t b = 0; b < B; ++b) {
        const ptrdiff_t len = lens ? (ptrdiff_t)lens[b] : T;
        if (len < 0 || len > T) return 1;
        for (ptrdiff_t j = 0; j < H; ++j) h[j] = h0 ? h0[b * hb + j] : 0;
        for (ptrdiff_t s = 0; s < len; ++s) {
            const ptrdiff_t t = reverse ? len - 1 - s : s;
            const float *x = X + t * xt + b * xb;
            for (ptrdiff_t r = 0; r < 3 * H; ++r) {
                gx[r] = (Wb ? Wb[r] : 0) + $P_dot_$S(x, W + r * I, I);
                gh[r] = (Rb ? Rb[r] : 0) + (r < 2 * H || linear_before_reset ? $P_dot_$S(h, R + r * H, H) : 0);
            }
            for (ptrdiff_t j = 0; j < H; ++j) {
                const float r = $P_act_$S(act[0], alpha[0], beta[0], $P_clip_$S(gx[H + j] + gh[H + j], clip));
                rh[j] = r * h[j];
                gh[H + j] = r; /* keep r for the candidate below */
            }
            for (ptrdiff_t j = 0; j < H; ++j) {
                const float z = $P_act_$S(act[0], alpha[0], beta[0], $P_clip_$S(gx[j] + gh[j], clip));
                const float r = gh[H + j];
                const float pre = linear_before_reset ? gx[2 * H + j] + r * gh[2 * H + j]
                                                      : gx[2 * H + j] + gh[2 * H + j] + $P_dot_$S(rh, R + (2 * H + j) * H, H);
                const float hh = $P_act_$S(act[1], alpha[1], beta[1], $P_clip_$S(pre, clip));
                gx[j] = (1 - z) * hh + z * h[j]; /* the new state, written back below */
            }
            for (ptrdiff_t j = 0; j < H; ++j) h[j] = gx[j];
            if (Y)
                for (ptrdiff_t j = 0; j < H; ++j) Y[t * yt + b * yb + j] = h[j];
        }
        if (Yh)
            for (ptrdiff_t j = 0; j < H; ++j) Yh[b * hb + j] = h[j];
    }
    return 0;
}
