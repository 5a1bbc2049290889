// A GhostNet bottleneck's inference form in one launch (NCHW, float32), for MindSpore's CPU backend as an AOT
// custom operator:
//   y = ghost2(se(dw(ghost1(x)))) + shortcut(x)
// ghost1 with its ReLU, ghost2 without (ghost_module.cc); dw, the strided depthwise conv + bias (only when the block
// is strided); se (squeeze_excite.cc, only when the block has one); shortcut the identity or depthwise conv + bias
// then 1x1 conv + bias. BN folded into every conv.
//
// Why: at batch 1 a launch of MindSpore's CPU runtime costs tens of microseconds around a kernel of the same order,
// and wakes its thread pool (system time that competes with the kernels' own threads for the two cores). The
// bottleneck's parts were 2 to 6 launches each (16 residual Adds, the shortcuts' convs): here the same kernels run
// one after the other in one launch, through buffers of this thread, and the residual is added once at the end,
// so the output is bit for bit that of the separate launches.
//
// Macros: the cheap convs' geometry as for ghost_module.cc (DW_KH ... DW_NAME), and the block's own depthwise
// geometry (the strided conv's, or the shortcut's when the block is not strided; both the same when both exist)
// as BDW_KH, BDW_KW, BDW_SH, BDW_SW, BDW_PH, BDW_PW, BDW_NAME(fn).
//
// Entry points follow MindSpore's AOT signature (inputs, then outputs), see depthwise_conv.cc, one per block layout
// (the parts a layout lacks are stand-ins, never read):
//   bottleneck[_dw][_se][_proj](x, ghost1 (w1, b1, w2, b2), dw (w, b), se (w1, b1, w2, b2), ghost2 (w1, b1, w2, b2),
//                               shortcut (dw w, dw b, pw w, pw b)) -> y
#include "ghost_module.cc"
#include "squeeze_excite.cc"

#undef DW_KH
#undef DW_KW
#undef DW_SH
#undef DW_SW
#undef DW_PH
#undef DW_PW
#undef DW_NAME
#define DW_KH BDW_KH
#define DW_KW BDW_KW
#define DW_SH BDW_SH
#define DW_SW BDW_SW
#define DW_PH BDW_PH
#define DW_PW BDW_PW
#define DW_NAME(fn) BDW_NAME(fn)

namespace block_depthwise_kernels {
#include "depthwise_conv.cc"
}  // namespace block_depthwise_kernels

namespace {

const char *TYPES[4] = {"float32", "float32", "float32", "float32"};  // the kernels' dtypes argument

// The block's depthwise conv + bias on one image: x (C,H,W) -> y (C,OH,OW).
bool block_depthwise(const float *x, int64_t c, int64_t h, int64_t w, const float *weight, const float *bias,
                     int64_t oh, int64_t ow, float *y) {
  int64_t x_shape[4] = {1, c, h, w}, w_shape[4] = {c, 1, BDW_KH, BDW_KW}, b_shape[1] = {c}, y_shape[4] = {1, c, oh, ow};
  void *params[4] = {const_cast<float *>(x), const_cast<float *>(weight), const_cast<float *>(bias), y};
  int64_t *shapes[4] = {x_shape, w_shape, b_shape, y_shape};
  return block_depthwise_kernels::forward<false>(4, params, shapes, TYPES, true) == 0;
}

// 1x1 conv + bias on one image: x (I,P) -> y (O,P).
bool pointwise(const float *x, int64_t inputs, int64_t pixels, const float *weight, const float *bias,
               int64_t outputs, float *y) {
  int64_t x_shape[4] = {1, inputs, pixels, 1}, w_shape[4] = {outputs, inputs, 1, 1}, b_shape[1] = {outputs};
  int64_t y_shape[4] = {1, outputs, pixels, 1};
  void *params[4] = {const_cast<float *>(x), const_cast<float *>(weight), const_cast<float *>(bias), y};
  int64_t *shapes[4] = {x_shape, w_shape, b_shape, y_shape};
  return pointwise_kernels::pointwise<false>(4, params, shapes, TYPES) == 0;
}

template <bool DW, bool SE, bool PROJ>
int bottleneck(int nparam, void **params, int64_t **shapes, const char **dtypes) {
  constexpr int GHOST1 = 1, DEPTHWISE = 5, SQUEEZE = 7, GHOST2 = 11, SHORTCUT = 15, OUT = 19;
  if (nparam != OUT + 1 || !ghost_kernels::all_float32(nparam, dtypes)) return 1;
  const auto in = [&](int index) { return static_cast<const float *>(params[index]); };
  const int64_t n = shapes[0][0], inputs = shapes[0][1], h = shapes[0][2], w = shapes[0][3];
  const int64_t half1 = shapes[GHOST1][0], mid = 2 * half1, half2 = shapes[GHOST2][0], outputs = 2 * half2;
  const int64_t oh = shapes[OUT][2], ow = shapes[OUT][3];
  const bool strided_size =
      (h + 2 * BDW_PH - BDW_KH) / BDW_SH + 1 == oh && (w + 2 * BDW_PW - BDW_KW) / BDW_SW + 1 == ow;
  if (shapes[GHOST1][1] != inputs || shapes[GHOST1 + 2][0] != half1 || shapes[GHOST2][1] != mid ||
      shapes[GHOST2 + 2][0] != half2 || shapes[OUT][1] != outputs || !ghost_module::keeps_size(h, w) ||
      !ghost_module::keeps_size(oh, ow) || ((DW || PROJ) ? !strided_size : (oh != h || ow != w)) ||
      (DW && shapes[DEPTHWISE][0] != mid) || (SE && (shapes[SQUEEZE][1] != mid || shapes[SQUEEZE + 2][0] != mid)) ||
      (PROJ && (shapes[SHORTCUT][0] != inputs || shapes[SHORTCUT + 2][0] != outputs ||
                shapes[SHORTCUT + 2][1] != inputs)) ||
      (!PROJ && inputs != outputs))
    return 1;
  thread_local std::vector<float> expanded_storage, strided_storage, shortcut_dw_storage, shortcut_storage;
  float *expanded = ghost_kernels::scratch(expanded_storage, mid * h * w);
  float *strided = DW ? ghost_kernels::scratch(strided_storage, mid * oh * ow) : expanded;
  const int64_t in_size = inputs * h * w, out_size = outputs * oh * ow;
  for (int64_t b = 0; b < n; ++b) {
    const float *x = in(0) + b * in_size;
    float *y = static_cast<float *>(params[OUT]) + b * out_size;
    if (!ghost_module::image<true>(x, inputs, h, w, in(GHOST1), in(GHOST1 + 1), half1, in(GHOST1 + 2),
                                   in(GHOST1 + 3), expanded))
      return 1;
    if (DW && !block_depthwise(expanded, mid, h, w, in(DEPTHWISE), in(DEPTHWISE + 1), oh, ow, strided)) return 1;
    if (SE)
      squeeze_excite::image(strided, mid, oh * ow, in(SQUEEZE), in(SQUEEZE + 1), shapes[SQUEEZE][0],
                            in(SQUEEZE + 2), in(SQUEEZE + 3), strided);
    if (!ghost_module::image<false>(strided, mid, oh, ow, in(GHOST2), in(GHOST2 + 1), half2, in(GHOST2 + 2),
                                    in(GHOST2 + 3), y))
      return 1;
    const float *residual = x;
    if (PROJ) {
      float *shortcut_dw = ghost_kernels::scratch(shortcut_dw_storage, inputs * oh * ow);
      float *shortcut = ghost_kernels::scratch(shortcut_storage, out_size);
      if (!block_depthwise(x, inputs, h, w, in(SHORTCUT), in(SHORTCUT + 1), oh, ow, shortcut_dw) ||
          !pointwise(shortcut_dw, inputs, oh * ow, in(SHORTCUT + 2), in(SHORTCUT + 3), outputs, shortcut))
        return 1;
      residual = shortcut;
    }
    for (int64_t i = 0; i < out_size; ++i) y[i] += residual[i];
  }
  return 0;
}

}  // namespace

#define BOTTLENECK_ENTRY(name, DW, SE, PROJ)                                                                \
  int name(int nparam, void **params, int *, int64_t **shapes, const char **dtypes, void *, void *) {      \
    return bottleneck<DW, SE, PROJ>(nparam, params, shapes, dtypes);                                        \
  }

extern "C" {

BOTTLENECK_ENTRY(bottleneck, false, false, false)
BOTTLENECK_ENTRY(bottleneck_proj, false, false, true)
BOTTLENECK_ENTRY(bottleneck_se, false, true, false)
BOTTLENECK_ENTRY(bottleneck_se_proj, false, true, true)
BOTTLENECK_ENTRY(bottleneck_dw, true, false, false)
BOTTLENECK_ENTRY(bottleneck_dw_proj, true, false, true)
BOTTLENECK_ENTRY(bottleneck_dw_se, true, true, false)
BOTTLENECK_ENTRY(bottleneck_dw_se_proj, true, true, true)

}  // extern "C"
