/* One direction of an ONNX LSTM over every batch entry. X element (t, b, i) is at
 * X[t*xt + b*xb + i], Y's (t, b, j) at Y[t*yt + b*yb + j]; h0, c0, Yh, Yc rows b at b*hb.
 * W [4H, I] and R [4H, H] in gate order i, o, f, c; Wb, Rb [4H], P [3H] (i, o, f), h0, c0,
 * lens, Y, Yh, Yc may be NULL. act/alpha/beta: the f, g, h activations. scratch: 2*H + 4*H
 * floats. Returns 1 if a sequence length is out of range. Positions past a sequence's length
 * are left as they are (the caller zeroes Y). */
static int $P_lstm_$S(ptrdiff_t T, ptrdiff_t B, ptrdiff_t I, ptrdiff_t H, int reverse,
                      const float *X, ptrdiff_t xt, ptrdiff_t xb,
                      const float *W, const float *R, const float *Wb, const float *Rb, const float *P,
                      const float *h0, const float *c0, ptrdiff_t hb, const int32_t *lens,
                      float *Y, ptrdiff_t yt, ptrdiff_t yb, float *Yh, float *Yc,
                      const int *act, const float *alpha, const float *beta, float clip,
                      int input_forget, float *scratch)
{
    float *h = scratch, *c = scratch + H, *g = scratch + 2 * H;
    for (ptrdiff_t b = 0; b < B; ++b) {
        const ptrdiff_t len = lens ? (ptrdiff_t)lens[b] : T;
        if (len < 0 || len > T) return 1;
        for (ptrdiff_t j = 0; j < H; ++j) {
            h[j] = h0 ? h0[b * hb + j] : 0;
            c[j] = c0 ? c0[b * hb + j] : 0;
        }
        for (ptrdiff_t s = 0; s < len; ++s) {
            const ptrdiff_t t = reverse ? len - 1 - s : s;
            const float *x = X + t * xt + b * xb;
            for (ptrdiff_t r = 0; r < 4 * H; ++r)
                g[r] = (Wb ? Wb[r] : 0) + (Rb ? Rb[r] : 0) + $P_dot_$S(x, W + r * I, I) + $P_dot_$S(h, R + r * H, H);
            for (ptrdiff_t j = 0; j < H; ++j) {
                float gi = g[j], go = g[H + j], gf = g[2 * H + j], gc = g[3 * H + j];
                if (P) {
                    gi += P[j] * c[j];
                    gf += P[2 * H + j] * c[j];
                }
                const float i = $P_act_$S(act[0], alpha[0], beta[0], $P_clip_$S(gi, clip));
                const float f = input_forget ? 1 - i : $P_act_$S(act[0], alpha[0], beta[0], $P_clip_$S(gf, clip));
                const float cc = $P_act_$S(act[1], alpha[1], beta[1], $P_clip_$S(gc, clip));
                c[j] = f * c[j] + i * cc;
                if (P) go += P[H + j] * c[j];
                const float o = $P_act_$S(act[0], alpha[0], beta[0], $P_clip_$S(go, clip));
                h[j] = o * $P_act_$S(act[2], alpha[2], beta[2], c[j]);
            }
            if (Y)
                for (ptrdiff_t j = 0; j < H; ++j) Y[t * yt + b * yb + j] = h[j];
        }
        for (ptrdiff_t j = 0; j < H; ++j) {
            if (Yh) Yh[b * hb + j] = h[j];
            if (Yc) Yc[b * hb + j] = c[j];
        }
    }
    return 0;
}
