/* The activation functions of the ONNX recurrent ops, by code, with alpha and beta. */
static float $P_act_$S(int kind, float alpha, float beta, float x)
{
    switch (kind) {
    case 0: return 1.0f / (1.0f + expf(-x));                       /* Sigmoid */
    case 1: return tanhf(x);                                        /* Tanh */
    case 2: return x > 0 ? x : 0;                                   /* Relu */
    case 3: return x < 0 ? alpha * x : x;                           /* LeakyRelu */
    case 4: return x > alpha ? x : 0;                               /* ThresholdedRelu */
    case 5: return alpha * tanhf(beta * x);                         /* ScaledTanh */
    case 6: { float v = alpha * x + beta; return v < 0 ? 0 : v > 1 ? 1 : v; } /* HardSigmoid */
    case 7: return x >= 0 ? x : alpha * (expf(x) - 1);              /* Elu */
    case 8: return x / (1 + fabsf(x));                              /* Softsign */
    case 9: return logf(1 + expf(x));                               /* Softplus */
    default: return alpha * x + beta;                               /* Affine */
    }
}

static float $P_clip_$S(float x, float clip)
{
    return clip > 0 ? (x < -clip ? -clip : x > clip ? clip : x) : x;
}

static float $P_dot_$S(const float *restrict a, const float *restrict b, ptrdiff_t n)
{
    float s = 0;
    for (ptrdiff_t i = 0; i < n; ++i) s += a[i] * b[i];
    return s;
}
