/* ---- Preprocessing: the model's preset, rounding as the Rust engine does ----------- */

#define AC_S @UPPER@_IMAGE_SIZE

#if AC_PRESET == 1
/* Keras (the seed's load_img + preprocess_input): PIL's nearest resize to S×S (an f64
 * coordinate stepped by from/to from half a step, truncated), RGB → BGR, minus the
 * channel means. */
static void ac_nearest(int from, int to, int *idx)
{
    const double step = (double)from / (double)to;
    double xx = step * 0.5;
    for (int i = 0; i < to; ++i) {
        int v = (int)xx;
        idx[i] = v < from - 1 ? v : from - 1;
        xx += step;
    }
}

#define AC_PREP_BYTES (2L * AC_S * 4)
static void ac_preprocess(const unsigned char *px, int w, int h, long stride, float *out,
                          unsigned char *scratch)
{
    int *xs = (int *)(void *)scratch, *ys = xs + AC_S;
    ac_nearest(w, AC_S, xs);
    ac_nearest(h, AC_S, ys);
    for (int y = 0; y < AC_S; ++y) {
        const unsigned char *row = px + (long)ys[y] * stride;
        for (int x = 0; x < AC_S; ++x) {
            const unsigned char *p = row + 3L * xs[x];
            *out++ = (float)p[2] - 103.939f;
            *out++ = (float)p[1] - 116.779f;
            *out++ = (float)p[0] - 123.68f;
        }
    }
}

#elif AC_PRESET == 2
/* torchvision (Resize 256 with Pillow's bilinear filter, CenterCrop S, ToTensor,
 * Normalize): Pillow's fixed-point resampling (coefficients computed in double, 22
 * fractional bits, each pass rounded to bytes), only for the pixels the crop keeps. */
#define AC_PREC 22
#define AC_RESIZE 256
/* Taps of one output pixel: at most 2·support + 3 with support = from / 256. */
#define AC_TAPS (2 * ((@UPPER@_MAX_SIDE + AC_RESIZE - 1) / AC_RESIZE) + 4)

/* Pillow's precompute_coeffs + normalize_coeffs_8bpc for output pixel xx. */
static int ac_coeffs(int from, int to, int xx, int *k)
{
    const double scale = (double)from / (double)to;
    const double filterscale = scale > 1.0 ? scale : 1.0;
    const double support = filterscale, ss = 1.0 / filterscale;
    const double center = ((double)xx + 0.5) * scale;
    long xmin = (long)(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    long xmax = (long)(center + support + 0.5);
    if (xmax > from) xmax = from;
    xmax -= xmin;
    double w[AC_TAPS], total = 0.0;
    for (long x = 0; x < xmax; ++x) {
        double t = (((double)(x + xmin) - center + 0.5) * ss);
        t = t < 0 ? -t : t;
        w[x] = t < 1.0 ? 1.0 - t : 0.0;
        total += w[x];
    }
    for (long x = 0; x < xmax; ++x) {
        double v = total != 0.0 ? w[x] / total : w[x];
        double one = (double)(1u << AC_PREC);
        k[1 + x] = v < 0.0 ? (int)(-0.5 + v * one) : (int)(0.5 + v * one);
    }
    k[0] = (int)xmax;
    return (int)xmin;
}

static unsigned char ac_clip8(int sum)
{
    int v = sum >> AC_PREC;
    return (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* Python's round(x / 2), halves to even. */
static int ac_half_even(int x)
{
    return x % 4 == 1 ? x / 2 : (x + 1) / 2;
}

#define AC_PREP_BYTES (2L * AC_S * (AC_TAPS + 2) * 4 + 3L * AC_S * 4)
static void ac_preprocess(const unsigned char *px, int w, int h, long stride, float *out,
                          unsigned char *scratch)
{
    static const float mean[3] = {0.485f, 0.456f, 0.406f}, sd[3] = {0.229f, 0.224f, 0.225f};
    const int shorter = w < h ? w : h, longer = w < h ? h : w;
    const int nl = (int)((double)AC_RESIZE * (double)longer / (double)shorter);
    const int nw = w <= h ? AC_RESIZE : nl, nh = w <= h ? nl : AC_RESIZE;
    const int top = ac_half_even(nh > AC_S ? nh - AC_S : 0);
    const int left = ac_half_even(nw > AC_S ? nw - AC_S : 0);
    int *hk = (int *)(void *)scratch, *vk = hk + (long)AC_S * (AC_TAPS + 2);
    int *acc = vk + (long)AC_S * (AC_TAPS + 2);
    const int hpass = nw != w, vpass = nh != h;
    const int half = 1 << (AC_PREC - 1);
    /* Coefficients of the kept columns and rows: [xmin, taps, k...]. */
    for (int x = 0; x < AC_S; ++x) {
        int *c = hk + (long)x * (AC_TAPS + 2);
        if (x + left < nw) c[0] = hpass ? ac_coeffs(w, nw, x + left, c + 1) : x + left;
    }
    for (int y = 0; y < AC_S; ++y) {
        int *c = vk + (long)y * (AC_TAPS + 2);
        if (y + top < nh) c[0] = vpass ? ac_coeffs(h, nh, y + top, c + 1) : y + top;
    }
    for (int y = 0; y < AC_S; ++y) {
        const int *vc = vk + (long)y * (AC_TAPS + 2);
        const int inside_y = y + top < nh;
        const int vtaps = vpass ? vc[1] : 1;
        for (int i = 0; i < 3 * AC_S; ++i) acc[i] = half;
        for (int t = 0; inside_y && t < vtaps; ++t) {
            const unsigned char *row = px + (long)(vc[0] + t) * stride;
            const int kv = vpass ? vc[2 + t] : 0;
            for (int x = 0; x < AC_S; ++x) {
                if (x + left >= nw) continue;
                const int *hc = hk + (long)x * (AC_TAPS + 2);
                for (int ch = 0; ch < 3; ++ch) {
                    int v;
                    if (hpass) {
                        int sum = half;
                        for (int j = 0; j < hc[1]; ++j) sum += row[3L * (hc[0] + j) + ch] * hc[2 + j];
                        v = ac_clip8(sum);
                    } else {
                        v = row[3L * hc[0] + ch];
                    }
                    if (vpass)
                        acc[3 * x + ch] += v * kv;
                    else
                        acc[3 * x + ch] = v;
                }
            }
        }
        for (int x = 0; x < AC_S; ++x)
            for (int ch = 0; ch < 3; ++ch) {
                int v = 0;
                if (inside_y && x + left < nw) v = vpass ? ac_clip8(acc[3 * x + ch]) : acc[3 * x + ch];
                *out++ = ((float)v / 255.0f - mean[ch]) / sd[ch];
            }
    }
}

#else
/* The concept CNN's: the image crate's resize to S×S with its triangle filter (a vertical
 * pass then a horizontal one, in f32, rounded to bytes once), then x/255 − 0.5. Done one
 * output row at a time: the vertical pass of that row, then its horizontal pass. */
#define AC_TAPS (2 * ((@UPPER@_MAX_SIDE + AC_S - 1) / AC_S) + 4)
#define AC_PREP_BYTES (3L * @UPPER@_MAX_SIDE * 4 + 2L * AC_TAPS * 4)

/* Left end and normalised weights of output pixel o for from → to pixels. */
static int ac_tri(int from, int to, int o, float *ws, int *count)
{
    const float ratio = (float)from / (float)to;
    const float sratio = ratio < 1.0f ? 1.0f : ratio;
    const float support = 1.0f * sratio;
    float input = ((float)o + 0.5f) * ratio;
    long left = (long)floorf(input - support);
    if (left < 0) left = 0;
    if (left > from - 1) left = from - 1;
    long right = (long)ceilf(input + support);
    if (right < left + 1) right = left + 1;
    if (right > from) right = from;
    input = input - 0.5f;
    float sum = 0.0f;
    int n = 0;
    for (long i = left; i < right; ++i) {
        float x = ((float)i - input) / sratio;
        float ax = x < 0 ? -x : x;
        float wv = ax < 1.0f ? 1.0f - ax : 0.0f;
        ws[n++] = wv;
        sum += wv;
    }
    for (int i = 0; i < n; ++i) ws[i] /= sum;
    *count = n;
    return (int)left;
}

static void ac_preprocess(const unsigned char *px, int w, int h, long stride, float *out,
                          unsigned char *scratch)
{
    float *vrow = (float *)(void *)scratch, *ws = vrow + 3L * @UPPER@_MAX_SIDE;
    if (w == AC_S && h == AC_S) {
        for (int y = 0; y < AC_S; ++y)
            for (int i = 0; i < 3 * AC_S; ++i)
                *out++ = (float)px[(long)y * stride + i] / 255.0f - 0.5f;
        return;
    }
    for (int oy = 0; oy < AC_S; ++oy) {
        int n;
        int top = ac_tri(h, AC_S, oy, ws, &n);
        for (int i = 0; i < 3 * w; ++i) vrow[i] = 0.0f;
        for (int t = 0; t < n; ++t) {
            const unsigned char *row = px + (long)(top + t) * stride;
            const float wv = ws[t];
            for (int i = 0; i < 3 * w; ++i) vrow[i] += (float)row[i] * wv;
        }
        for (int ox = 0; ox < AC_S; ++ox) {
            int m;
            int l = ac_tri(w, AC_S, ox, ws, &m);
            float t[3] = {0.0f, 0.0f, 0.0f};
            for (int i = 0; i < m; ++i)
                for (int ch = 0; ch < 3; ++ch) t[ch] += vrow[3L * (l + i) + ch] * ws[i];
            for (int ch = 0; ch < 3; ++ch) {
                float v = t[ch] < 0.0f ? 0.0f : t[ch] > 255.0f ? 255.0f : t[ch];
                *out++ = (float)(unsigned char)roundf(v) / 255.0f - 0.5f;
            }
        }
    }
}
#endif

/* The features sit at the arena's start; then the network's input, with the
 * preprocessing's scratch and then the encoder's arena after it. */
#define AC_ALIGN64(x) (((x) + 63L) / 64 * 64)
#define AC_FEAT_BYTES AC_ALIGN64(4L * AC_F)
#define AC_INPUT_BYTES AC_ALIGN64(4L * AC_S * AC_S * 3)

int @NAME@_caption_rgb(@WEIGHTS_PARAM@@ENCODER_PARAM@const unsigned char *pixels, int width,
                       int height, int stride, const @NAME@_options *options, char *text,
                       size_t text_capacity, @NAME@_result *result, void *arena)
{
    unsigned char *a = (unsigned char *)arena;
    int rc = ac_common_checks(pixels, options, text, text_capacity, &a);
    if (rc != @UPPER@_OK) return rc;
    if (width < 1 || height < 1 || width > @UPPER@_MAX_SIDE || height > @UPPER@_MAX_SIDE ||
        (long)stride < 3L * width)
        return @UPPER@_ERR_IMAGE;
    @WEIGHTS_PROLOGUE@
    float *features = (float *)(void *)a;
    float *input = (float *)(void *)(a + AC_FEAT_BYTES);
    unsigned char *rest = a + AC_FEAT_BYTES + AC_INPUT_BYTES;
    ac_preprocess(pixels, width, height, stride, input, rest);
    rc = @NAME@_encoder_run(@ENCODER_ARG@input, features, rest);
    if (rc != 0) return rc == @UPPER@_ENCODER_ERR_WEIGHTS ? @UPPER@_ERR_WEIGHTS : @UPPER@_ERR_ENCODER;
    return ac_caption(wb, features, options, text, text_capacity, result, a + AC_FEAT_BYTES);
}

/* The arena the header states must hold what this file uses. */
typedef char ac_pixels_arena_fits[
    AC_FEAT_BYTES + AC_INPUT_BYTES + AC_PREP_BYTES <= @UPPER@_ARENA_BYTES &&
    AC_FEAT_BYTES + AC_INPUT_BYTES + @UPPER@_ENCODER_ARENA_BYTES <= @UPPER@_ARENA_BYTES ? 1 : -1];
