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

namespace {

template <bool RELU>
int run(int nparam, void **params, int64_t **shapes, const char **dtypes) {
  if (nparam != 6 || !ghost_kernels::all_float32(nparam, dtypes)) return 1;
  const int64_t n = shapes[0][0], inputs = shapes[0][1], h = shapes[0][2], w = shapes[0][3], c = shapes[1][0];
  if (shapes[5][1] != 2 * c || shapes[3][0] != c || (h + 2 * DW_PH - DW_KH) / DW_SH + 1 != h ||
      (w + 2 * DW_PW - DW_KW) / DW_SW + 1 != w)
    return 1;
  const auto *x = static_cast<const float *>(params[0]);
  auto *y = static_cast<float *>(params[5]);
  int64_t image_shape[4] = {1, inputs, h, w}, half_shape[4] = {1, c, h, w};
  const char *types[4] = {"float32", "float32", "float32", "float32"};
  for (int64_t b = 0; b < n; ++b) {
    float *intrinsic = y + b * 2 * c * h * w, *ghosts = intrinsic + c * h * w;
    void *pointwise_params[4] = {const_cast<float *>(x + b * inputs * h * w), params[1], params[2], intrinsic};
    int64_t *pointwise_shapes[4] = {image_shape, shapes[1], shapes[2], half_shape};
    if (pointwise_kernels::pointwise<RELU>(4, pointwise_params, pointwise_shapes, types)) return 1;
    void *depthwise_params[4] = {intrinsic, params[3], params[4], ghosts};
    int64_t *depthwise_shapes[4] = {half_shape, shapes[3], shapes[4], half_shape};
    if (depthwise_kernels::forward<RELU>(4, depthwise_params, depthwise_shapes, types, true)) return 1;
  }
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
