#if defined(__GNUC__) && (defined(__clang__) || __GNUC__ >= 9) && !defined(AUTOCAPTION_PORTABLE)
/* Four lanes of the gate activations (GCC and Clang vector extensions, any target):
 * e^x by Cody-Waite reduction and Cephes' degree-6 polynomial (within 2 ulp for |x| <= 88,
 * clamped beyond), sigmoid(x) = 1 / (1 + e^-x), tanh(x) = 2 sigmoid(2x) - 1 (absolute
 * error below 1e-7). */
#define $P_LSTM_VEC 1
typedef float $P_f4 __attribute__((vector_size(16)));
typedef int32_t $P_i4 __attribute__((vector_size(16)));
static $P_f4 $P_lf4(const float *p)
{
    $P_f4 v;
    memcpy(&v, p, sizeof v);
    return v;
}
static $P_f4 $P_sel4($P_i4 m, $P_f4 a, $P_f4 b)
{
    return ($P_f4)((m & ($P_i4)a) | (~m & ($P_i4)b));
}
static $P_f4 $P_exp4($P_f4 x)
{
    const $P_f4 hi = {88.0f, 88.0f, 88.0f, 88.0f}, half = {0.5f, 0.5f, 0.5f, 0.5f};
    x = $P_sel4(x > hi, hi, x);
    x = $P_sel4(x < -hi, -hi, x);
    const $P_f4 fx = x * 1.44269504088896341f;
    const $P_i4 n = __builtin_convertvector(fx + $P_sel4(fx < 0, -half, half), $P_i4);
    const $P_f4 nf = __builtin_convertvector(n, $P_f4);
    const $P_f4 r = (x - nf * 0.693359375f) - nf * -2.12194440e-4f;
    $P_f4 p = r * 1.9875691500e-4f + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    return p * ($P_f4)((n + 127) << 23);
}
static $P_f4 $P_sig4($P_f4 x)
{
    return 1.0f / (1.0f + $P_exp4(-x));
}
static $P_f4 $P_tanh4($P_f4 x)
{
    return 2.0f / (1.0f + $P_exp4(-2.0f * x)) - 1.0f;
}
#endif

/* One direction of an LSTM with the default activations (sigmoid, tanh, tanh), no clip,
 * no peepholes, over every batch entry: the input projections of the whole sequence in one
 * product, then a step is one product with h and the gates, fused.
 * Wp: x -> gates packed for $P_mm_f32 (K = I rows, 4*Hp columns, gates interleaved by 16
 * units: column 64u + 16g + l is gate g (i, o, f, c) of unit 16u + l, Hp = H rounded up to
 * 16, padding units zero); Rp: h -> gates likewise (K = H); bias: Wb + Rb in that order
 * (NULL for none). With Wq and Rq (not NULL) instead, the weights are symmetric int8 in the
 * same panels, ws and rs their column scales, wk and rk their row scales ($P_mmq_f32). X, Y, h0, c0, Yh, Yc, lens as in
 * $P_lstm. scratch: (T + 1) * 4 * Hp + 3 * Hp floats. Returns 1 if a sequence length is out
 * of range. */
static int $P_lstmf_$S(ptrdiff_t T, ptrdiff_t B, ptrdiff_t I, ptrdiff_t H, ptrdiff_t Hp, int reverse,
                       const float *X, ptrdiff_t xt, ptrdiff_t xb, const float *Wp, const float *Rp,
                       const int8_t *Wq, const float *ws, const float *wk, const int8_t *Rq,
                       const float *rs, const float *rk,
                       const float *bias, const float *h0, const float *c0, ptrdiff_t hb,
                       const int32_t *lens, float *Y, ptrdiff_t yt, ptrdiff_t yb, float *Yh, float *Yc,
                       float *scratch)
{
    const ptrdiff_t G4 = 4 * Hp;
    float *G = scratch, *g = G + T * G4, *h = g + G4, *hn = h + Hp, *c = hn + Hp;
    for (ptrdiff_t b = 0; b < B; ++b) {
        const ptrdiff_t len = lens ? (ptrdiff_t)lens[b] : T;
        if (len < 0 || len > T) return 1;
        if (len > 0 && Wq) $P_mmq_f32(len, G4, I, X + b * xb, xt, Wq, ws, wk, bias, 0, 0, 0, G, G4);
        if (len > 0 && !Wq) $P_mm_f32(len, G4, I, X + b * xb, xt, Wp, 0, 0, bias, 0, 0, 0, G, G4);
        for (ptrdiff_t j = 0; j < H; ++j) {
            h[j] = h0 ? h0[b * hb + j] : 0;
            c[j] = c0 ? c0[b * hb + j] : 0;
        }
        for (ptrdiff_t s = 0; s < len; ++s) {
            const ptrdiff_t t = reverse ? len - 1 - s : s;
            if (Rq)
                $P_mmq_f32(1, G4, H, h, H, Rq, rs, rk, 0, G + t * G4, 0, 0, g, G4);
            else
                $P_mm_f32(1, G4, H, h, H, Rp, 0, 0, 0, G + t * G4, 0, 0, g, G4);
            for (ptrdiff_t u = 0; u * 16 < H; ++u) {
                const float *q = g + 64 * u;
                const ptrdiff_t n = H - 16 * u < 16 ? H - 16 * u : 16;
                float *cu = c + 16 * u, *hu = hn + 16 * u;
#ifdef $P_LSTM_VEC
                if (n == 16) {
                    for (int l = 0; l < 16; l += 4) {
                        const $P_f4 i = $P_sig4($P_lf4(q + l)), o = $P_sig4($P_lf4(q + 16 + l));
                        const $P_f4 f = $P_sig4($P_lf4(q + 32 + l)), cc = $P_tanh4($P_lf4(q + 48 + l));
                        const $P_f4 cn = f * $P_lf4(cu + l) + i * cc, hv = o * $P_tanh4(cn);
                        memcpy(cu + l, &cn, sizeof cn);
                        memcpy(hu + l, &hv, sizeof hv);
                    }
                    continue;
                }
#endif
                for (ptrdiff_t l = 0; l < n; ++l) {
                    const float i = 1 / (1 + expf(-q[l]));
                    const float o = 1 / (1 + expf(-q[16 + l]));
                    const float f = 1 / (1 + expf(-q[32 + l]));
                    const float cc = tanhf(q[48 + l]);
                    cu[l] = f * cu[l] + i * cc;
                    hu[l] = o * tanhf(cu[l]);
                }
            }
            memcpy(h, hn, (size_t)H * sizeof(float));
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
