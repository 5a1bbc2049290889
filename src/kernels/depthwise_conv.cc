// Depthwise 2-D convolution (NCHW, float32, no bias) for MindSpore's CPU backend, as AOT custom operators.
//
// Why: MindSpore 2.10 hands oneDNN NCHW tensors, and oneDNN then runs depthwise convs through a gemm per group,
// which made depthwise forward + backward ~80% of a GhostNet training step on CPU. GhostNet's depthwise planes
// are small (2x2 to 16x16 at 32 px inputs), so vectorising along a row wastes most of a SIMD register; here the
// vector lanes are instead LANES consecutive channels of one image: a block of planes is packed into a
// zero-padded [rows][cols][LANES] buffer, every kernel tap is then one branch-free multiply-add of LANES values,
// and the result is unpacked into NCHW. The geometry is fixed at compile time (one library per geometry, built by
// depthwise.py) so the tap loops unroll. Maps 16+ pixels wide take a plane-at-a-time path instead (forward_plane),
// which the backward shares: the input gradient of a stride-1 "same" conv is a forward conv with the kernel turned
// by 180 degrees, and the weight gradient reads the same plane copy.
//
// Geometry macros: DW_KH, DW_KW (kernel), DW_SH, DW_SW (stride), DW_PH, DW_PW (zero padding, both sides),
// DW_NAME(fn) (unique exported names per geometry).
//
// Entry points follow MindSpore's AOT signature:
//   int fn(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *stream, void *extra)
// with inputs first, then outputs: forward (x, w), input_grad and weight_grad (x, w, dy), so that every output
// shape is an input's, and for inference forward_bias / forward_bias_relu (x, w, b), bias and ReLU applied as each
// output is written.
#include "parallel.h"

namespace {

constexpr int KH = DW_KH, KW = DW_KW, SH = DW_SH, SW = DW_SW, PH = DW_PH, PW = DW_PW;
constexpr int TAPS = KH * KW;
constexpr int LANES = 16;

struct Geometry {
  int64_t n, c, h, w, oh, ow, hp, wp;
  Geometry(const int64_t *x_shape, const int64_t *y_shape)
      : n(x_shape[0]), c(x_shape[1]), h(x_shape[2]), w(x_shape[3]), oh(y_shape[2]), ow(y_shape[3]),
        hp(x_shape[2] + 2 * PH), wp(x_shape[3] + 2 * PW) {}
  int64_t in_plane() const { return h * w; }
  int64_t out_plane() const { return oh * ow; }
  int64_t blocks_per_image() const { return (c + LANES - 1) / LANES; }
};

using ghost_kernels::parallel_for;

using ghost_kernels::scratch;

// `lanes` planes of rows x cols starting at `src` -> [padded_rows][padded_cols][LANES], zero outside the planes,
// plane element (r, c) at (r + top, c + left).
void pack_planes(const float *src, int lanes, int64_t rows, int64_t cols, int64_t top, int64_t left,
                 int64_t padded_rows, int64_t padded_cols, float *buf) {
  std::memset(buf, 0, sizeof(float) * padded_rows * padded_cols * LANES);
  for (int l = 0; l < lanes; ++l) {
    const float *plane = src + l * rows * cols;
    for (int64_t r = 0; r < rows; ++r) {
      float *row = buf + ((r + top) * padded_cols + left) * LANES + l;
      for (int64_t c = 0; c < cols; ++c) row[c * LANES] = plane[r * cols + c];
    }
  }
}

void pack_input(const float *src, int lanes, const Geometry &g, float *buf) {
  pack_planes(src, lanes, g.h, g.w, PH, PW, g.hp, g.wp, buf);
}

// Per-lane kernel taps [TAPS][LANES] of channels c0 .. c0 + lanes - 1 (unused lanes zero).
void pack_taps(const float *w, int64_t c0, int lanes, float *taps) {
  std::memset(taps, 0, sizeof(float) * TAPS * LANES);
  for (int l = 0; l < lanes; ++l)
    for (int t = 0; t < TAPS; ++t) taps[t * LANES + l] = w[(c0 + l) * TAPS + t];
}

// Epilogue of the inference entry points: `bias` may be null (the training forward has none), RELU clamps.
template <bool RELU>
inline float finish(float value, const float *bias, int64_t channel) {
  if (bias != nullptr) value += bias[channel];
  return RELU && value < 0 ? 0.0f : value;
}

// Narrow maps (fewer output columns than a vector): LANES channels at a time, one multiply-add per tap.
template <bool RELU>
void forward_block(const float *x, const float *w, const float *bias, float *y, int64_t image, int64_t c0,
                   const Geometry &g) {
  thread_local std::vector<float> in_buffer;
  float *buf = scratch(in_buffer, g.hp * g.wp * LANES);
  alignas(64) float taps[TAPS * LANES];
  const int lanes = static_cast<int>(std::min<int64_t>(LANES, g.c - c0));
  pack_input(x + (image * g.c + c0) * g.in_plane(), lanes, g, buf);
  pack_taps(w, c0, lanes, taps);
  float *out = y + (image * g.c + c0) * g.out_plane();
  for (int64_t oy = 0; oy < g.oh; ++oy) {
    for (int64_t ox = 0; ox < g.ow; ++ox) {
      alignas(64) float acc[LANES] = {};
      for (int ky = 0; ky < KH; ++ky)
        for (int kx = 0; kx < KW; ++kx) {
          const float *in = buf + ((oy * SH + ky) * g.wp + ox * SW + kx) * LANES;
          const float *tap = taps + (ky * KW + kx) * LANES;
          for (int l = 0; l < LANES; ++l) acc[l] += tap[l] * in[l];
        }
      for (int l = 0; l < lanes; ++l) out[l * g.out_plane() + oy * g.ow + ox] = finish<RELU>(acc[l], bias, c0 + l);
    }
  }
}

// Wide maps (the first stages at 224 px): one plane at a time, each output row in vectors of VEC pixels, every
// tap one multiply-add of a vector loaded from a zero-bordered copy of the plane. With a column stride the copy is
// split into SW phases (phase s holds padded columns s, s + SW, ...), so that a tap's inputs are contiguous there
// too. The lane layout above costs a transposing copy in and out of every plane, which at 112 x 112 took longer
// than the arithmetic (1.3 ms for one 48-channel 3x3 conv at batch 1).
constexpr int VEC = 16;
typedef float vec __attribute__((vector_size(VEC * sizeof(float)), aligned(sizeof(float))));

// The zero-bordered, phase-split copy of one input plane that the wide paths read: tap (ky, kx) of output
// vector v in row oy starts at `tap(oy, ky, kx) + v * VEC`.
struct PhasedPlane {
  float *buf;
  int64_t cols, plane;  // row length of a phase, floats per phase
  const float *tap(int64_t oy, int ky, int kx) const {
    return buf + kx % SW * plane + (oy * SH + ky) * cols + kx / SW;
  }
};

// Row length of a phase of the plane copy: wide enough for every input column and for every tap's vector load
// (whole vectors past the last output).
int64_t phase_cols(const Geometry &g, int64_t vectors) {
  return std::max<int64_t>(vectors * VEC + (KW - 1) / SW, (g.wp + SW - 1) / SW);
}

// Floats of one phase-split plane copy.
int64_t phased_size(const Geometry &g, int64_t vectors) { return SW * g.hp * phase_cols(g, vectors); }

// The phase-split copy of the plane at `src` into `buf` (phased_size floats).
PhasedPlane phase_split(const float *src, const Geometry &g, int64_t vectors, float *buf) {
  const int64_t cols = phase_cols(g, vectors);
  const int64_t plane = g.hp * cols;
  std::memset(buf, 0, sizeof(float) * SW * plane);
  for (int s = 0; s < SW; ++s) {
    const int64_t first = ((s - PW) % SW + SW) % SW;  // first input column landing in phase s
    for (int64_t r = 0; r < g.h; ++r) {
      float *dst = buf + s * plane + (r + PH) * cols + (first + PW) / SW;
      const float *line = src + r * g.w + first;
      for (int64_t c = 0; first + c * SW < g.w; ++c) dst[c] = line[c * SW];
    }
  }
  return {buf, cols, plane};
}

PhasedPlane phase_split(const float *src, const Geometry &g, int64_t vectors, std::vector<float> &storage) {
  return phase_split(src, g, vectors, scratch(storage, phased_size(g, vectors)));
}

template <bool RELU>
void forward_plane(const float *x, const float *w, const float *bias, float *y, int64_t plane, const Geometry &g) {
  const int64_t vectors = (g.ow + VEC - 1) / VEC;
  thread_local std::vector<float> in_buffer, row_buffer;
  const PhasedPlane in = phase_split(x + plane * g.in_plane(), g, vectors, in_buffer);
  float *row = scratch(row_buffer, vectors * VEC);
  const int64_t channel = plane % g.c;
  vec taps[TAPS];
  for (int t = 0; t < TAPS; ++t) taps[t] = vec{} + w[channel * TAPS + t];
  const vec start = vec{} + (bias != nullptr ? bias[channel] : 0.0f);
  float *out = y + plane * g.out_plane();
  for (int64_t oy = 0; oy < g.oh; ++oy, out += g.ow) {
    for (int64_t v = 0; v < vectors; ++v) {
      vec acc = start;
      for (int ky = 0; ky < KH; ++ky)
        for (int kx = 0; kx < KW; ++kx)
          acc += taps[ky * KW + kx] * *reinterpret_cast<const vec *>(in.tap(oy, ky, kx) + v * VEC);
      if (RELU) acc = acc > vec{} ? acc : vec{};
      *reinterpret_cast<vec *>(row + v * VEC) = acc;
    }
    std::memcpy(out, row, sizeof(float) * g.ow);
  }
}

template <bool RELU>
int forward(int nparam, void **params, int64_t **shapes, const char **dtypes, bool has_bias) {
  if (!ghost_kernels::all_float32(nparam, dtypes)) return 1;
  const auto *x = static_cast<const float *>(params[0]);
  const auto *w = static_cast<const float *>(params[1]);
  const auto *bias = has_bias ? static_cast<const float *>(params[2]) : nullptr;
  auto *y = static_cast<float *>(params[has_bias ? 3 : 2]);
  const Geometry g(shapes[0], shapes[has_bias ? 3 : 2]);
  const int64_t work = g.n * g.c * g.out_plane() * TAPS;
  if (g.ow >= LANES) {
    parallel_for(g.n * g.c, work, [&](int64_t first, int64_t last) {
      for (int64_t plane = first; plane < last; ++plane) forward_plane<RELU>(x, w, bias, y, plane, g);
    });
  } else {
    parallel_for(g.n * g.blocks_per_image(), work, [&](int64_t first, int64_t last) {
      for (int64_t b = first; b < last; ++b)
        forward_block<RELU>(x, w, bias, y, b / g.blocks_per_image(), b % g.blocks_per_image() * LANES, g);
    });
  }
  return 0;
}

// dx(iy, ix) = sum over taps (ky, kx) with (iy + PH - ky, ix + PW - kx) = (SH * oy, SW * ox) of w * dy(oy, ox),
// gathered per input pixel (a scatter from dy would read back its own stores and stall). dy is packed with a
// border of KH rows and KW columns of zeros so that out-of-range (oy, ox) need no test.
void input_grad_block(const float *w, const float *dy, float *dx, int64_t image, int64_t c0, const Geometry &g) {
  thread_local std::vector<float> grad_buffer;
  const int64_t rows = g.oh + 2 * KH, cols = g.ow + 2 * KW;
  float *grad = scratch(grad_buffer, rows * cols * LANES);
  alignas(64) float taps[TAPS * LANES];
  const int lanes = static_cast<int>(std::min<int64_t>(LANES, g.c - c0));
  pack_planes(dy + (image * g.c + c0) * g.out_plane(), lanes, g.oh, g.ow, KH, KW, rows, cols, grad);
  pack_taps(w, c0, lanes, taps);
  float *out = dx + (image * g.c + c0) * g.in_plane();
  for (int64_t iy = 0; iy < g.h; ++iy)
    for (int64_t ix = 0; ix < g.w; ++ix) {
      alignas(64) float acc[LANES] = {};
      for (int ky = 0; ky < KH; ++ky) {
        const int64_t ty = iy + PH - ky;
        if (ty % SH != 0) continue;
        const float *row = grad + (ty / SH + KH) * cols * LANES;
        for (int kx = 0; kx < KW; ++kx) {
          const int64_t tx = ix + PW - kx;
          if (tx % SW != 0) continue;
          const float *d = row + (tx / SW + KW) * LANES;
          const float *tap = taps + (ky * KW + kx) * LANES;
          for (int l = 0; l < LANES; ++l) acc[l] += tap[l] * d[l];
        }
      }
      for (int l = 0; l < lanes; ++l) out[l * g.in_plane() + iy * g.w + ix] = acc[l];
    }
}

// The weight gradient sums over the whole batch, which for a layer of few channels left one block (one thread)
// doing all the work: the images are split into a fixed number of groups, each group's sums go to its own slice of
// `partial` ([group][C][TAPS]), and the groups are added in order afterwards, so the result does not depend on the
// thread count.
constexpr int64_t WEIGHT_GRAD_GROUPS = 8;

// Kernel gradient of channels c0 .. c0 + LANES - 1, summed over images [first, last), into dw (C, TAPS).
void weight_grad_block(const float *x, const float *dy, float *dw, int64_t c0, int64_t first, int64_t last,
                       const Geometry &g) {
  thread_local std::vector<float> in_buffer, grad_buffer;
  float *buf = scratch(in_buffer, g.hp * g.wp * LANES);
  float *grad = scratch(grad_buffer, g.out_plane() * LANES);
  alignas(64) float acc[TAPS * LANES] = {};
  const int lanes = static_cast<int>(std::min<int64_t>(LANES, g.c - c0));
  for (int64_t image = first; image < last; ++image) {
    pack_input(x + (image * g.c + c0) * g.in_plane(), lanes, g, buf);
    pack_planes(dy + (image * g.c + c0) * g.out_plane(), lanes, g.oh, g.ow, 0, 0, g.oh, g.ow, grad);
    for (int64_t oy = 0; oy < g.oh; ++oy)
      for (int64_t ox = 0; ox < g.ow; ++ox) {
        const float *d = grad + (oy * g.ow + ox) * LANES;
        for (int ky = 0; ky < KH; ++ky)
          for (int kx = 0; kx < KW; ++kx) {
            const float *in = buf + ((oy * SH + ky) * g.wp + ox * SW + kx) * LANES;
            float *__restrict__ a = acc + (ky * KW + kx) * LANES;
#pragma GCC ivdep
            for (int l = 0; l < LANES; ++l) a[l] += d[l] * in[l];
          }
      }
  }
  for (int l = 0; l < lanes; ++l)
    for (int t = 0; t < TAPS; ++t) dw[(c0 + l) * TAPS + t] = acc[t * LANES + l];
}

// Wide maps: kernel gradient of one channel over images [first, last), into dw (TAPS). Each output row's dy is
// read in vectors that multiply the tap-shifted input vectors of the forward's plane copy; lanes past the row's
// end hold zero dy, so they add nothing.
void weight_grad_plane(const float *x, const float *dy, float *dw, int64_t channel, int64_t first, int64_t last,
                       const Geometry &g) {
  const int64_t vectors = (g.ow + VEC - 1) / VEC;
  thread_local std::vector<float> in_buffer, row_buffer;
  float *row = scratch(row_buffer, vectors * VEC);
  std::memset(row, 0, sizeof(float) * vectors * VEC);
  vec acc[TAPS] = {};
  for (int64_t image = first; image < last; ++image) {
    const int64_t plane = image * g.c + channel;
    const PhasedPlane in = phase_split(x + plane * g.in_plane(), g, vectors, in_buffer);
    const float *grad = dy + plane * g.out_plane();
    for (int64_t oy = 0; oy < g.oh; ++oy) {
      std::memcpy(row, grad + oy * g.ow, sizeof(float) * g.ow);
      for (int64_t v = 0; v < vectors; ++v) {
        const vec d = *reinterpret_cast<const vec *>(row + v * VEC);
        for (int ky = 0; ky < KH; ++ky)
          for (int kx = 0; kx < KW; ++kx)
            acc[ky * KW + kx] += d * *reinterpret_cast<const vec *>(in.tap(oy, ky, kx) + v * VEC);
      }
    }
  }
  for (int t = 0; t < TAPS; ++t) {
    float sum = 0.0f;
    for (int l = 0; l < VEC; ++l) sum += acc[t][l];
    dw[t] = sum;
  }
}

// Dense convs with few input channels (a network's stem: 1 or 3 of them), on the same plane copies: each input
// plane is split once per image, and every output channel sums its taps over all of them, a vector of output
// pixels at a time. oneDNN runs such a conv well only under src/runtime.py's AVX2 cap (with AVX-512 it takes its
// reference kernel on NCHW), and the cap also holds back the 1x1 convs, which with the stem here no longer need it.
// x (N, C, H, W), w (O, C, KH, KW), y / dy (N, O, OH, OW).

// The phase-split copies of image `image`'s C planes into `buf` (C * phased_size floats), one PhasedPlane each.
void split_image(const float *x, int64_t image, const Geometry &g, int64_t vectors, float *buf, PhasedPlane *planes) {
  const int64_t size = phased_size(g, vectors);
  for (int64_t c = 0; c < g.c; ++c)
    planes[c] = phase_split(x + (image * g.c + c) * g.in_plane(), g, vectors, buf + c * size);
}

template <bool RELU>
void dense_forward_image(const float *x, const float *w, const float *bias, float *y, int64_t image,
                         int64_t o_first, int64_t o_last, int64_t outputs, const Geometry &g) {
  const int64_t vectors = (g.ow + VEC - 1) / VEC;
  thread_local std::vector<float> in_buffer, row_buffer;
  thread_local std::vector<PhasedPlane> planes;
  planes.resize(g.c);
  split_image(x, image, g, vectors, scratch(in_buffer, g.c * phased_size(g, vectors)), planes.data());
  float *row = scratch(row_buffer, vectors * VEC);
  for (int64_t o = o_first; o < o_last; ++o) {
    const float *taps = w + o * g.c * TAPS;
    const vec start = vec{} + (bias != nullptr ? bias[o] : 0.0f);
    float *out = y + (image * outputs + o) * g.out_plane();
    for (int64_t oy = 0; oy < g.oh; ++oy, out += g.ow) {
      for (int64_t v = 0; v < vectors; ++v) {
        vec acc = start;
        for (int64_t c = 0; c < g.c; ++c)
          for (int ky = 0; ky < KH; ++ky)
            for (int kx = 0; kx < KW; ++kx)
              acc += taps[c * TAPS + ky * KW + kx] *
                     *reinterpret_cast<const vec *>(planes[c].tap(oy, ky, kx) + v * VEC);
        if (RELU) acc = acc > vec{} ? acc : vec{};
        *reinterpret_cast<vec *>(row + v * VEC) = acc;
      }
      std::memcpy(out, row, sizeof(float) * g.ow);
    }
  }
}

template <bool RELU>
int dense_forward(int nparam, void **params, int64_t **shapes, const char **dtypes, bool has_bias) {
  if (!ghost_kernels::all_float32(nparam, dtypes)) return 1;
  const auto *x = static_cast<const float *>(params[0]);
  const auto *w = static_cast<const float *>(params[1]);
  const auto *bias = has_bias ? static_cast<const float *>(params[2]) : nullptr;
  auto *y = static_cast<float *>(params[has_bias ? 3 : 2]);
  const Geometry g(shapes[0], shapes[has_bias ? 3 : 2]);
  const int64_t outputs = shapes[1][0];
  // A task is an image (its planes split once for all outputs), or a few outputs of it in small batches.
  const int64_t blocks = g.n >= 4 ? 1 : (outputs + 3) / 4;
  parallel_for(g.n * blocks, g.n * outputs * g.c * g.out_plane() * TAPS, [&](int64_t first, int64_t last) {
    for (int64_t task = first; task < last; ++task) {
      const int64_t block = task % blocks, o_first = block * outputs / blocks, o_last = (block + 1) * outputs / blocks;
      dense_forward_image<RELU>(x, w, bias, y, task / blocks, o_first, o_last, outputs, g);
    }
  });
  return 0;
}

// sums (O, C, TAPS) += the kernel gradient over images [first, last): per image and output channel, each output
// row of dy (zero past its end) multiplies the tap-shifted input vectors of every plane.
void dense_weight_grad_images(const float *x, const float *dy, int64_t outputs, int64_t first, int64_t last,
                              const Geometry &g, double *sums) {
  const int64_t vectors = (g.ow + VEC - 1) / VEC;
  thread_local std::vector<float> in_buffer, row_buffer, acc_buffer;
  thread_local std::vector<PhasedPlane> planes;
  planes.resize(g.c);
  float *buf = scratch(in_buffer, g.c * phased_size(g, vectors));
  float *row = scratch(row_buffer, vectors * VEC);
  std::memset(row, 0, sizeof(float) * vectors * VEC);
  vec *acc = reinterpret_cast<vec *>(scratch(acc_buffer, g.c * TAPS * VEC));
  for (int64_t image = first; image < last; ++image) {
    split_image(x, image, g, vectors, buf, planes.data());
    for (int64_t o = 0; o < outputs; ++o) {
      std::fill(acc, acc + g.c * TAPS, vec{});
      const float *grad = dy + (image * outputs + o) * g.out_plane();
      for (int64_t oy = 0; oy < g.oh; ++oy) {
        std::memcpy(row, grad + oy * g.ow, sizeof(float) * g.ow);
        for (int64_t v = 0; v < vectors; ++v) {
          const vec d = *reinterpret_cast<const vec *>(row + v * VEC);
          for (int64_t c = 0; c < g.c; ++c)
            for (int ky = 0; ky < KH; ++ky)
              for (int kx = 0; kx < KW; ++kx)
                acc[c * TAPS + ky * KW + kx] += d * *reinterpret_cast<const vec *>(planes[c].tap(oy, ky, kx) + v * VEC);
        }
      }
      for (int64_t t = 0; t < g.c * TAPS; ++t) {
        float sum = 0.0f;
        for (int l = 0; l < VEC; ++l) sum += acc[t][l];
        sums[o * g.c * TAPS + t] += sum;
      }
    }
  }
}

// dx (N, C, H, W) = the transposed conv of dy, gathered per input pixel. Plain loops: a stem's input gradient is
// not computed in training (the input is data), so this runs only when a caller asks for it (a saliency map).
void dense_input_grad_plane(const float *w, const float *dy, float *dx, int64_t outputs, int64_t image, int64_t c,
                            const Geometry &g) {
  float *out = dx + (image * g.c + c) * g.in_plane();
  for (int64_t iy = 0; iy < g.h; ++iy)
    for (int64_t ix = 0; ix < g.w; ++ix) {
      float acc = 0.0f;
      for (int ky = 0; ky < KH; ++ky) {
        const int64_t ty = iy + PH - ky;
        if (ty < 0 || ty % SH != 0 || ty / SH >= g.oh) continue;
        for (int kx = 0; kx < KW; ++kx) {
          const int64_t tx = ix + PW - kx;
          if (tx < 0 || tx % SW != 0 || tx / SW >= g.ow) continue;
          for (int64_t o = 0; o < outputs; ++o)
            acc += w[(o * g.c + c) * TAPS + ky * KW + kx] *
                   dy[(image * outputs + o) * g.out_plane() + ty / SH * g.ow + tx / SW];
        }
      }
      out[iy * g.w + ix] = acc;
    }
}

}  // namespace

extern "C" {

// params: x (N,C,H,W), w (C,1,KH,KW) -> y (N,C,OH,OW)
int DW_NAME(forward)(int nparam, void **params, int *, int64_t **shapes, const char **dtypes, void *, void *) {
  return forward<false>(nparam, params, shapes, dtypes, false);
}

// Inference (a BN-folded conv): params x, w, b (C) -> y, with the ReLU that follows it in the _relu variant.
int DW_NAME(forward_bias)(int nparam, void **params, int *, int64_t **shapes, const char **dtypes, void *, void *) {
  return forward<false>(nparam, params, shapes, dtypes, true);
}

int DW_NAME(forward_bias_relu)(int nparam, void **params, int *, int64_t **shapes, const char **dtypes, void *,
                               void *) {
  return forward<true>(nparam, params, shapes, dtypes, true);
}

// params: x (only its shape is read), w, dy (N,C,OH,OW) -> dx (N,C,H,W)
int DW_NAME(input_grad)(int nparam, void **params, int *, int64_t **shapes, const char **dtypes, void *, void *) {
  if (!ghost_kernels::all_float32(nparam, dtypes)) return 1;
  const auto *w = static_cast<const float *>(params[1]);
  const auto *dy = static_cast<const float *>(params[2]);
  auto *dx = static_cast<float *>(params[3]);
  const Geometry g(shapes[0], shapes[2]);
  const int64_t work = g.n * g.c * g.in_plane() * TAPS;
  constexpr bool same_stride_1 = SH == 1 && SW == 1 && KH == 2 * PH + 1 && KW == 2 * PW + 1;
  if (same_stride_1 && g.w >= LANES) {
    // dx is then the forward conv of dy (same size as x) with the kernel turned by 180 degrees: the wide path.
    std::vector<float> turned(g.c * TAPS);
    for (int64_t c = 0; c < g.c; ++c)
      for (int t = 0; t < TAPS; ++t) turned[c * TAPS + t] = w[c * TAPS + TAPS - 1 - t];
    parallel_for(g.n * g.c, work, [&](int64_t first, int64_t last) {
      for (int64_t plane = first; plane < last; ++plane) forward_plane<false>(dy, turned.data(), nullptr, dx, plane, g);
    });
    return 0;
  }
  parallel_for(g.n * g.blocks_per_image(), work, [&](int64_t first, int64_t last) {
    for (int64_t b = first; b < last; ++b)
      input_grad_block(w, dy, dx, b / g.blocks_per_image(), b % g.blocks_per_image() * LANES, g);
  });
  return 0;
}

// params: x, w (only its shape is read), dy -> dw (C,1,KH,KW)
int DW_NAME(weight_grad)(int nparam, void **params, int *, int64_t **shapes, const char **dtypes, void *, void *) {
  if (!ghost_kernels::all_float32(nparam, dtypes)) return 1;
  const auto *x = static_cast<const float *>(params[0]);
  const auto *dy = static_cast<const float *>(params[2]);
  auto *dw = static_cast<float *>(params[3]);
  const Geometry g(shapes[0], shapes[2]);
  const int64_t groups = std::min(g.n, WEIGHT_GRAD_GROUPS);
  const bool wide = g.ow >= LANES;
  const int64_t units = wide ? g.c : g.blocks_per_image();  // channels, or blocks of LANES channels
  std::vector<float> partial(groups * g.c * TAPS);
  parallel_for(units * groups, g.n * g.c * g.out_plane() * TAPS, [&](int64_t first, int64_t last) {
    for (int64_t task = first; task < last; ++task) {
      const int64_t unit = task / groups, group = task % groups;
      const int64_t images_from = group * g.n / groups, images_to = (group + 1) * g.n / groups;
      float *sums = partial.data() + group * g.c * TAPS;
      if (wide) {
        weight_grad_plane(x, dy, sums + unit * TAPS, unit, images_from, images_to, g);
      } else {
        weight_grad_block(x, dy, sums, unit * LANES, images_from, images_to, g);
      }
    }
  });
  for (int64_t i = 0; i < g.c * TAPS; ++i) {
    float sum = 0.0f;
    for (int64_t group = 0; group < groups; ++group) sum += partial[group * g.c * TAPS + i];
    dw[i] = sum;
  }
  return 0;
}

// Dense convs with few input channels. params: x (N,C,H,W), w (O,C,KH,KW) -> y (N,O,OH,OW)
int DW_NAME(dense_forward)(int nparam, void **params, int *, int64_t **shapes, const char **dtypes, void *, void *) {
  return dense_forward<false>(nparam, params, shapes, dtypes, false);
}

// Inference (a BN-folded conv): params x, w, b (O) -> y, with the ReLU that follows it in the _relu variant.
int DW_NAME(dense_forward_bias)(int nparam, void **params, int *, int64_t **shapes, const char **dtypes, void *,
                                void *) {
  return dense_forward<false>(nparam, params, shapes, dtypes, true);
}

int DW_NAME(dense_forward_bias_relu)(int nparam, void **params, int *, int64_t **shapes, const char **dtypes, void *,
                                     void *) {
  return dense_forward<true>(nparam, params, shapes, dtypes, true);
}

// params: x (only its shape is read), w, dy (N,O,OH,OW) -> dx (N,C,H,W)
int DW_NAME(dense_input_grad)(int nparam, void **params, int *, int64_t **shapes, const char **dtypes, void *,
                              void *) {
  if (!ghost_kernels::all_float32(nparam, dtypes)) return 1;
  const auto *w = static_cast<const float *>(params[1]);
  const auto *dy = static_cast<const float *>(params[2]);
  auto *dx = static_cast<float *>(params[3]);
  const Geometry g(shapes[0], shapes[2]);
  const int64_t outputs = shapes[1][0];
  parallel_for(g.n * g.c, g.n * g.c * g.in_plane() * outputs * TAPS, [&](int64_t first, int64_t last) {
    for (int64_t plane = first; plane < last; ++plane)
      dense_input_grad_plane(w, dy, dx, outputs, plane / g.c, plane % g.c, g);
  });
  return 0;
}

// params: x, w (only its shape is read), dy -> dw (O,C,KH,KW): the batch in fixed groups added in order, as the
// depthwise weight gradient does, so the result does not depend on the thread count.
int DW_NAME(dense_weight_grad)(int nparam, void **params, int *, int64_t **shapes, const char **dtypes, void *,
                               void *) {
  if (!ghost_kernels::all_float32(nparam, dtypes)) return 1;
  const auto *x = static_cast<const float *>(params[0]);
  const auto *dy = static_cast<const float *>(params[2]);
  auto *dw = static_cast<float *>(params[3]);
  const Geometry g(shapes[0], shapes[2]);
  const int64_t outputs = shapes[1][0], size = outputs * g.c * TAPS;
  const int64_t groups = std::min(g.n, WEIGHT_GRAD_GROUPS);
  std::vector<double> partial(groups * size, 0.0);
  parallel_for(groups, g.n * size * g.out_plane(), [&](int64_t first, int64_t last) {
    for (int64_t group = first; group < last; ++group)
      dense_weight_grad_images(x, dy, outputs, group * g.n / groups, (group + 1) * g.n / groups, g,
                               partial.data() + group * size);
  });
  for (int64_t i = 0; i < size; ++i) {
    double sum = 0.0;
    for (int64_t group = 0; group < groups; ++group) sum += partial[group * size + i];
    dw[i] = static_cast<float>(sum);
  }
  return 0;
}

}  // extern "C"
