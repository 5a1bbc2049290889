// A Ghost module's inference form in one launch (NCHW, float32): y = concat(a, dw(a) + b2), a = pw(x) + b1, each
// followed by the module's ReLU or none, for MindSpore's CPU backend as an AOT custom operator.
//
// Why: at batch 1 a launch of MindSpore's CPU runtime cost ~40 us beside a kernel's few, and a Ghost module in the
// inference form was three (the 1x1 conv, the depthwise conv, the Concat): 96 of ghostnet_100's 181 launches.
// Here the two kernels of pointwise_conv.cc and depthwise_conv.cc run image by image in one launch, each writing
// its half of the output in place, so the Concat has nothing left to do.
//
// Macros: the depthwise geometry of depthwise_conv.cc (DW_KH ... DW_NAME), stride 1 and "same" padding.
// Entry points follow MindSpore's AOT signature (inputs, then outputs), see depthwise_conv.cc:
//   ghost_forward(x, w1, b1, w2, b2) -> y      ghost_forward_relu(x, w1, b1, w2, b2) -> y
#include "parallel.h"

namespace pointwise_kernels {
#include "pointwise_conv.cc"
}  // namespace pointwise_kernels

namespace depthwise_kernels {
#include "depthwise_conv.cc"
}  // namespace depthwise_kernels

namespace ghost_module {

// One image: y (2C,H,W) = concat(a, dw(a) + b2), a = pw(x) + b1, x (I,H,W), w1 (C,I,1,1), w2 (C,1,KH,KW); each
// conv followed by the ReLU when RELU. Each kernel writes its half of y in place. False on a kernel's refusal.
template <bool RELU>
bool image(const float *x, int64_t inputs, int64_t h, int64_t w, const float *w1, const float *b1, int64_t c,
           const float *w2, const float *b2, float *y) {
  int64_t image_shape[4] = {1, inputs, h, w}, half_shape[4] = {1, c, h, w};
  int64_t w1_shape[4] = {c, inputs, 1, 1}, w2_shape[4] = {c, 1, DW_KH, DW_KW}, bias_shape[1] = {c};
  const char *types[4] = {"float32", "float32", "float32", "float32"};
  float *ghosts = y + c * h * w;
  void *pointwise_params[4] = {const_cast<float *>(x), const_cast<float *>(w1), const_cast<float *>(b1), y};
  int64_t *pointwise_shapes[4] = {image_shape, w1_shape, bias_shape, half_shape};
  if (pointwise_kernels::pointwise<RELU>(4, pointwise_params, pointwise_shapes, types)) return false;
  void *depthwise_params[4] = {y, const_cast<float *>(w2), const_cast<float *>(b2), ghosts};
  int64_t *depthwise_shapes[4] = {half_shape, w2_shape, bias_shape, half_shape};
  return depthwise_kernels::forward<RELU>(4, depthwise_params, depthwise_shapes, types, true) == 0;
}

// The cheap conv keeps the map's size: stride 1, "same" padding.
inline bool keeps_size(int64_t h, int64_t w) {
  return (h + 2 * DW_PH - DW_KH) / DW_SH + 1 == h && (w + 2 * DW_PW - DW_KW) / DW_SW + 1 == w;
}

}  // namespace ghost_module

namespace {

template <bool RELU>
int run(int nparam, void **params, int64_t **shapes, const char **dtypes) {
  if (nparam != 6 || !ghost_kernels::all_float32(nparam, dtypes)) return 1;
  const int64_t n = shapes[0][0], inputs = shapes[0][1], h = shapes[0][2], w = shapes[0][3], c = shapes[1][0];
  if (shapes[5][1] != 2 * c || shapes[3][0] != c || !ghost_module::keeps_size(h, w)) return 1;
  const auto *x = static_cast<const float *>(params[0]);
  const auto *w1 = static_cast<const float *>(params[1]), *b1 = static_cast<const float *>(params[2]);
  const auto *w2 = static_cast<const float *>(params[3]), *b2 = static_cast<const float *>(params[4]);
  auto *y = static_cast<float *>(params[5]);
  for (int64_t b = 0; b < n; ++b)
    if (!ghost_module::image<RELU>(x + b * inputs * h * w, inputs, h, w, w1, b1, c, w2, b2, y + b * 2 * c * h * w))
      return 1;
  return 0;
}

}  // namespace

extern "C" {

// params: x (N,I,H,W), w1 (C,I,1,1), b1 (C), w2 (C,1,KH,KW), b2 (C) -> y (N,2C,H,W)
int ghost_forward(int nparam, void **params, int *, int64_t **shapes, const char **dtypes, void *, void *) {
  return run<false>(nparam, params, shapes, dtypes);
}

int ghost_forward_relu(int nparam, void **params, int *, int64_t **shapes, const char **dtypes, void *, void *) {
  return run<true>(nparam, params, shapes, dtypes);
}

}  // extern "C"
