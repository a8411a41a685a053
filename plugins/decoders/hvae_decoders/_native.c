/* hvae's fused LSTM cell: one pass over a layer-step's gates, forward and backward.

   The element-wise half of an LSTM step (four gate activations, the cell and output updates; in the
   backward pass, the gate gradients) as 6 to 11 separate PyTorch operations costs as much as the
   step's matrix product at batch 64, and more at batch 1 (benchmarks/RESULTS.md). Here it is one loop
   over the values, which the compiler vectorises. Plain C with no PyTorch headers: built at install
   as an optional extension (plugins/decoders/setup.py) and called through ctypes
   (hvae_decoders/native.py) with the tensors' addresses; as a Python module it is empty. Without it
   hvae runs the same maths as PyTorch operations.

   Gate order i, f, g, o (PyTorch's). float32 only. exp and tanh are polynomials accurate to a few
   units in the last place, so results equal PyTorch's to float rounding, not bit for bit. Rows are independent; within a row every value is read before it is
   written, so an output may be the very input it replaces (c_out == c), but not overlap it otherwise. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
/* One copy per instruction set, the best one picked when the library is loaded. */
#define HVAE_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define HVAE_CLONES
#endif

#define INLINE static inline __attribute__((always_inline))

/* exp(x) for x in float range: 2^n p(r), x = n ln 2 + r, |r| <= ln 2 / 2 (the Cephes expf scheme). */
INLINE float exp_(float x) {
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    float n = __builtin_floorf(x * 1.44269504088896341f + 0.5f);
    float r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

INLINE float sigmoid_(float x) { return 1.0f / (1.0f + exp_(-x)); }

/* tanh(x): an odd polynomial below |x| = 0.625, where 2 sigmoid(2x) - 1 would lose its leading digits
   (the Cephes tanhf scheme), else 1 - 2 / (exp(2|x|) + 1) with the sign of x; both computed, one kept,
   so the loop stays branch-free. */
INLINE float tanh_(float x) {
    float a = x < 0.0f ? -x : x, s = x * x;
    float p = -5.70498872745e-3f;
    p = p * s + 2.06390887954e-2f;
    p = p * s - 5.37397155531e-2f;
    p = p * s + 1.33314422036e-1f;
    p = p * s - 3.33332819422e-1f;
    float small = p * s * x + x;
    float big = 1.0f - 2.0f / (exp_(2.0f * a) + 1.0f);
    return a < 0.625f ? small : (x < 0.0f ? -big : big);
}

/* One row: gates (4H), plus `add` (4H) when not NULL, -> activations in place (i, f, tanh(g), o);
   c_out = f c + i tanh(g); h = o tanh(c_out). */
INLINE void forward_row(int64_t size, float *restrict gates, const float *restrict add, const float *restrict c,
                        float *restrict c_out, float *restrict h) {
    float *restrict gi = gates, *restrict gf = gates + size, *restrict gg = gates + 2 * size,
          *restrict go = gates + 3 * size;
    const float *restrict ai = add, *restrict af = add + size, *restrict ag = add + 2 * size,
                *restrict ao = add + 3 * size;
#pragma GCC ivdep
    for (int64_t j = 0; j < size; j++) {
        float i = sigmoid_(add ? gi[j] + ai[j] : gi[j]), f = sigmoid_(add ? gf[j] + af[j] : gf[j]),
              g = tanh_(add ? gg[j] + ag[j] : gg[j]), o = sigmoid_(add ? go[j] + ao[j] : go[j]);
        float cell = f * c[j] + i * g;
        gi[j] = i;
        gf[j] = f;
        gg[j] = g;
        go[j] = o;
        c_out[j] = cell;
        h[j] = o * tanh_(cell);
    }
}

/* rows x size cells; each argument's rows start `*_stride` floats apart; `add` may be NULL. */
HVAE_CLONES void hvae_lstm_forward(int64_t rows, int64_t size, float *gates, int64_t gates_stride,
                                   const float *add, int64_t add_stride, const float *c, int64_t c_stride,
                                   float *c_out, int64_t c_out_stride, float *h, int64_t h_stride) {
    for (int64_t n = 0; n < rows; n++) {
        float *g = gates + n * gates_stride, *c_n = c_out + n * c_out_stride, *h_n = h + n * h_stride;
        if (add)
            forward_row(size, g, add + n * add_stride, c + n * c_stride, c_n, h_n);
        else
            forward_row(size, g, NULL, c + n * c_stride, c_n, h_n);
    }
}

/* One row of the backward pass through a step. In: the activations (i, f, tanh(g), o) in `gates`,
   c_t, c_{t-1}, the gradient reaching h_t (`dh`, plus `grad_h` when not NULL) and c_t (`dc`). Out:
   the gradients of the pre-activation gates over the activations, and in `dc` the gradient reaching
   c_{t-1}. */
INLINE void backward_row(int64_t size, float *restrict gates, const float *restrict c, const float *restrict c_prev,
                         const float *restrict dh, const float *restrict grad_h, float *restrict dc) {
    float *restrict gi = gates, *restrict gf = gates + size, *restrict gg = gates + 2 * size,
          *restrict go = gates + 3 * size;
#pragma GCC ivdep
    for (int64_t j = 0; j < size; j++) {
        float i = gi[j], f = gf[j], g = gg[j], o = go[j];
        float dh_t = grad_h ? dh[j] + grad_h[j] : dh[j];
        float tanh_c = tanh_(c[j]);
        float dc_t = dc[j] + dh_t * o * (1.0f - tanh_c * tanh_c);
        go[j] = dh_t * tanh_c * o * (1.0f - o);
        gi[j] = dc_t * g * i * (1.0f - i);
        gg[j] = dc_t * i * (1.0f - g * g);
        gf[j] = dc_t * c_prev[j] * f * (1.0f - f);
        dc[j] = dc_t * f;
    }
}

/* gates rows are 4 size apart, every other argument's `size` apart (contiguous); grad_h may be NULL. */
HVAE_CLONES void hvae_lstm_backward(int64_t rows, int64_t size, float *gates, const float *c, const float *c_prev,
                                    const float *dh, const float *grad_h, float *dc) {
    for (int64_t n = 0; n < rows; n++) {
        int64_t at = n * size;
        if (grad_h)
            backward_row(size, gates + 4 * at, c + at, c_prev + at, dh + at, grad_h + at, dc + at);
        else
            backward_row(size, gates + 4 * at, c + at, c_prev + at, dh + at, NULL, dc + at);
    }
}

/* An empty module, so that importing every module of the package (as tools do) finds one. */
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native", "hvae's fused LSTM cell (called through ctypes).",
                                    -1, NULL};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&module); }
