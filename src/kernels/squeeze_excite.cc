// Squeeze-and-excitation's inference form in one launch (NCHW, float32): y = x * hard_sigmoid(W2 relu(W1 mean(x)
// + b1) + b2), with hard_sigmoid(v) = relu6(v + 3) / 6 (GhostNet's gate), as a MindSpore AOT custom operator.
//
// Why: at batch 1 an SE block in the inference form was seven launches of MindSpore's CPU runtime (the pooling
// MatMul, two 1x1 convs, the gate's Add, ReLU6 and Div, the scaling), ~40 us each beside a few us of arithmetic.
// The two 1x1 convs on the pooled vector are pointwise_conv.cc's dot products (included here).
//
// Entry points follow MindSpore's AOT signature (inputs, then outputs), see depthwise_conv.cc:
//   se_forward(x, w1, b1, w2, b2) -> y      x (N,C,H,W), w1 (R,C,1,1), b1 (R), w2 (C,R,1,1), b2 (C)
//   global_mean(x) -> y                     y (N,C,1,1)
#include "parallel.h"

namespace pointwise_kernels {
#include "pointwise_conv.cc"
}  // namespace pointwise_kernels

namespace {

constexpr int LANES = 16;
typedef float lanes_t __attribute__((vector_size(LANES * sizeof(float)), aligned(sizeof(float))));

// The mean of a plane: float lanes, then a double total.
float plane_mean(const float *p, int64_t size) {
  lanes_t lanes{};
  int64_t i = 0;
  for (; i + LANES <= size; i += LANES) lanes += *reinterpret_cast<const lanes_t *>(p + i);
  double sum = 0.0;
  for (int l = 0; l < LANES; ++l) sum += lanes[l];
  for (; i < size; ++i) sum += p[i];
  return static_cast<float>(sum / static_cast<double>(size));
}

float hard_sigmoid(float v) { return std::min(std::max(v + 3.0f, 0.0f), 6.0f) / 6.0f; }

}  // namespace

namespace squeeze_excite {

// One image: out (C,P) = in * gate(in); out may be in (the gate is computed before the first write).
void image(const float *in, int64_t channels, int64_t plane, const float *w1, const float *b1, int64_t reduced,
           const float *w2, const float *b2, float *out) {
  thread_local std::vector<float> buffer;
  if (buffer.size() < static_cast<size_t>(2 * channels + reduced)) buffer.resize(2 * channels + reduced);
  float *pooled = buffer.data(), *hidden = pooled + channels, *gate = hidden + reduced;
  for (int64_t c = 0; c < channels; ++c) pooled[c] = plane_mean(in + c * plane, plane);
  pointwise_kernels::dot_products<true>(pooled, 1, w1, b1, channels, 0, reduced, hidden);
  pointwise_kernels::dot_products<false>(hidden, 1, w2, b2, reduced, 0, channels, gate);
  for (int64_t c = 0; c < channels; ++c) {
    const float scale = hard_sigmoid(gate[c]);
    for (int64_t i = 0; i < plane; ++i) out[c * plane + i] = in[c * plane + i] * scale;
  }
}

}  // namespace squeeze_excite

extern "C" {

int se_forward(int nparam, void **params, int *, int64_t **shapes, const char **dtypes, void *, void *) {
  if (nparam != 6 || !ghost_kernels::all_float32(nparam, dtypes)) return 1;
  const int64_t n = shapes[0][0], channels = shapes[0][1], plane = shapes[0][2] * shapes[0][3];
  const int64_t reduced = shapes[1][0];
  if (shapes[1][1] != channels || shapes[3][0] != channels || shapes[3][1] != reduced) return 1;
  const auto *x = static_cast<const float *>(params[0]);
  const auto *w1 = static_cast<const float *>(params[1]), *b1 = static_cast<const float *>(params[2]);
  const auto *w2 = static_cast<const float *>(params[3]), *b2 = static_cast<const float *>(params[4]);
  auto *y = static_cast<float *>(params[5]);
  ghost_kernels::parallel_for(n, 2 * n * channels * (plane + reduced), [&](int64_t first, int64_t last) {
    for (int64_t b = first; b < last; ++b)
      squeeze_excite::image(x + b * channels * plane, channels, plane, w1, b1, reduced, w2, b2,
                            y + b * channels * plane);
  });
  return 0;
}

// Global average pooling's inference form (the SE block's first step on its own): x (N,C,H,W) -> y (N,C,1,1).
// The MatMul form of it took 0.09-0.10 ms before GhostNet's head at batch 1 (960 planes of 7 x 7), this 0.01.
int global_mean(int nparam, void **params, int *, int64_t **shapes, const char **dtypes, void *, void *) {
  if (nparam != 2 || !ghost_kernels::all_float32(nparam, dtypes)) return 1;
  const int64_t planes = shapes[0][0] * shapes[0][1], plane = shapes[0][2] * shapes[0][3];
  const auto *x = static_cast<const float *>(params[0]);
  auto *y = static_cast<float *>(params[1]);
  ghost_kernels::parallel_for(planes, planes * plane, [&](int64_t first, int64_t last) {
    for (int64_t p = first; p < last; ++p) y[p] = plane_mean(x + p * plane, plane);
  });
  return 0;
}

}  // extern "C"
