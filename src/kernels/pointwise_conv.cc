// 1x1 convolution + bias (+ ReLU) in one pass (NCHW, float32), the inference form of a BN-folded pointwise conv,
// as AOT custom operators for MindSpore's CPU backend.
//
// Why: after BN folding, each of GhostNet's ~50 pointwise convs ran as three MindSpore launches on CPU (oneDNN
// Conv2D, BiasAdd, ReLU), and at batch 1 the launches cost about as much as the arithmetic (GhostNet 1.0x at
// 224 px: Conv2D 8.4 ms, BiasAdd 3.7 ms, ReLU 1.9 ms, ~40 us per launch on top). Here one launch does all three.
//
// y[n][o][p] = act(b[o] + sum_i w[o][i] * x[n][i][p]): per image a (O x I) x (I x P) product. A task is a panel of
// PANEL consecutive pixels and a range of output channels; the micro-kernel keeps ROWS x (PANEL / VEC) vector
// accumulators in registers, streams the input panel row by row (one load per VEC pixels, ROWS FMAs per load) and
// writes each output once with bias and activation applied. Maps smaller than one vector (the SE convs and the
// head on 1x1 maps) are matrix-vector products: one dot product over the input channels per output.
//
// Entry points follow MindSpore's AOT signature (inputs, then outputs):
//   pw_bias(x, w, b) -> y      pw_bias_relu(x, w, b) -> y      dense_bias(x, w, b) -> y (2-D x and y)
// Included by the fused kernels (ghost_module.cc, squeeze_excite.cc, both in ghost_bottleneck.cc): once per library.
#ifndef GHOST_KERNELS_POINTWISE_CONV_CC
#define GHOST_KERNELS_POINTWISE_CONV_CC
#include "parallel.h"

namespace {

constexpr int VEC = 16;              // floats per vector (GCC vector extension: AVX-512 here, split elsewhere)
constexpr int PANEL = 4 * VEC;       // pixels per task
constexpr int ROWS = 4;              // output channels per micro-kernel call
constexpr int64_t CHANNELS_PER_TASK = 64;

typedef float vec __attribute__((vector_size(VEC * sizeof(float)), aligned(sizeof(float))));

inline vec broadcast(float value) { return vec{} + value; }

template <bool RELU>
inline vec activate(vec v) {
  if constexpr (RELU) return v > vec{} ? v : vec{};
  return v;
}

template <bool RELU>
inline float activate(float v) {
  return RELU && v < 0 ? 0.0f : v;
}

// R output channels from `o` over one full panel: in points at the panel's first pixel of input channel 0 (rows
// `stride` floats apart), out at that of output channel o.
template <int R, bool RELU>
void panel_kernel(const float *in, int64_t stride, const float *w, const float *b, int64_t channels, int64_t o,
                  float *out) {
  constexpr int NV = PANEL / VEC;
  vec acc[R][NV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = broadcast(b[o + r]);
  const float *weights = w + o * channels;
  for (int64_t i = 0; i < channels; ++i) {
    const vec *row = reinterpret_cast<const vec *>(in + i * stride);
    vec x[NV];
    for (int v = 0; v < NV; ++v) x[v] = row[v];
    for (int r = 0; r < R; ++r) {
      const vec weight = broadcast(weights[r * channels + i]);
      for (int v = 0; v < NV; ++v) acc[r][v] += weight * x[v];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) reinterpret_cast<vec *>(out + r * stride)[v] = activate<RELU>(acc[r][v]);
}

template <bool RELU>
void panel(const float *in, int64_t stride, const float *w, const float *b, int64_t channels, int64_t o_first,
           int64_t o_last, float *out) {
  int64_t o = o_first;
  for (; o + ROWS <= o_last; o += ROWS) panel_kernel<ROWS, RELU>(in, stride, w, b, channels, o, out + o * stride);
  for (; o < o_last; ++o) panel_kernel<1, RELU>(in, stride, w, b, channels, o, out + o * stride);
}

// A panel narrower than PANEL (the map's last pixels): copied into a zero-padded [channels][PANEL] buffer,
// computed in full, and the valid pixels copied out.
template <bool RELU>
void partial_panel(const float *in, int64_t pixels, int64_t count, const float *w, const float *b, int64_t channels,
                   int64_t o_first, int64_t o_last, float *out) {
  thread_local std::vector<float> in_buffer, out_buffer;
  if (in_buffer.size() < static_cast<size_t>(channels * PANEL)) in_buffer.resize(channels * PANEL);
  if (out_buffer.size() < static_cast<size_t>((o_last - o_first) * PANEL)) out_buffer.resize((o_last - o_first) * PANEL);
  float *packed = in_buffer.data();
  for (int64_t i = 0; i < channels; ++i) {
    std::memcpy(packed + i * PANEL, in + i * pixels, sizeof(float) * count);
    std::memset(packed + i * PANEL + count, 0, sizeof(float) * (PANEL - count));
  }
  float *result = out_buffer.data() - o_first * PANEL;  // indexed by absolute output channel
  panel<RELU>(packed, PANEL, w, b, channels, o_first, o_last, result);
  for (int64_t o = o_first; o < o_last; ++o)
    std::memcpy(out + o * pixels, result + o * PANEL, sizeof(float) * count);
}

// Maps with fewer pixels than a vector: y[o][p] = act(b[o] + dot(w[o], x[:, p])), vectorised over channels.
template <bool RELU>
void dot_products(const float *x, int64_t pixels, const float *w, const float *b, int64_t channels, int64_t o_first,
                  int64_t o_last, float *y) {
  thread_local std::vector<float> column_buffer;
  if (column_buffer.size() < static_cast<size_t>(channels)) column_buffer.resize(channels);
  for (int64_t p = 0; p < pixels; ++p) {
    const float *column = x + p;
    if (pixels > 1) {
      for (int64_t i = 0; i < channels; ++i) column_buffer[i] = x[i * pixels + p];
      column = column_buffer.data();
    }
    for (int64_t o = o_first; o < o_last; ++o) {
      const float *weights = w + o * channels;
      vec acc{};
      int64_t i = 0;
      for (; i + VEC <= channels; i += VEC)
        acc += *reinterpret_cast<const vec *>(weights + i) * *reinterpret_cast<const vec *>(column + i);
      float sum = b[o];
      for (int l = 0; l < VEC; ++l) sum += acc[l];
      for (; i < channels; ++i) sum += weights[i] * column[i];
      y[o * pixels + p] = activate<RELU>(sum);
    }
  }
}

template <bool RELU>
int pointwise(int nparam, void **params, int64_t **shapes, const char **dtypes) {
  if (nparam != 4 || !ghost_kernels::all_float32(nparam, dtypes)) return 1;
  const auto *x = static_cast<const float *>(params[0]);
  const auto *w = static_cast<const float *>(params[1]);
  const auto *b = static_cast<const float *>(params[2]);
  auto *y = static_cast<float *>(params[3]);
  const int64_t images = shapes[0][0], channels = shapes[0][1], pixels = shapes[0][2] * shapes[0][3];
  const int64_t outputs = shapes[1][0];
  const int64_t panels = pixels < VEC ? 1 : (pixels + PANEL - 1) / PANEL;
  const int64_t channel_blocks = (outputs + CHANNELS_PER_TASK - 1) / CHANNELS_PER_TASK;
  const int64_t tasks = images * panels * channel_blocks;
  ghost_kernels::parallel_for(tasks, images * pixels * channels * outputs, [&](int64_t first, int64_t last) {
    for (int64_t task = first; task < last; ++task) {
      const int64_t block = task % channel_blocks, panel_index = task / channel_blocks % panels;
      const int64_t image = task / channel_blocks / panels;
      const int64_t o_first = block * CHANNELS_PER_TASK, o_last = std::min(outputs, o_first + CHANNELS_PER_TASK);
      const float *in = x + image * channels * pixels;
      float *out = y + image * outputs * pixels;
      if (pixels < VEC) {
        dot_products<RELU>(in, pixels, w, b, channels, o_first, o_last, out);
        continue;
      }
      const int64_t p0 = panel_index * PANEL, count = std::min<int64_t>(PANEL, pixels - p0);
      if (count == PANEL)
        panel<RELU>(in + p0, pixels, w, b, channels, o_first, o_last, out + p0);
      else
        partial_panel<RELU>(in + p0, pixels, count, w, b, channels, o_first, o_last, out + p0);
    }
  });
  return 0;
}

}  // namespace

extern "C" {

// params: x (N,I,H,W), w (O,I,1,1), b (O) -> y (N,O,H,W)
int pw_bias(int nparam, void **params, int *, int64_t **shapes, const char **dtypes, void *, void *) {
  return pointwise<false>(nparam, params, shapes, dtypes);
}

int pw_bias_relu(int nparam, void **params, int *, int64_t **shapes, const char **dtypes, void *, void *) {
  return pointwise<true>(nparam, params, shapes, dtypes);
}

// A dense layer's inference form, the same product on a 1x1 map: x (N,I), w (O,I), b (O) -> y (N,O). MindSpore's
// CPU MatMul packs its operands on every call: 0.28-0.36 ms for GhostNet's classifier at batch 1.
int dense_bias(int nparam, void **params, int *, int64_t **shapes, const char **dtypes, void *, void *) {
  if (nparam != 4) return 1;
  int64_t x_shape[4] = {shapes[0][0], shapes[0][1], 1, 1}, y_shape[4] = {shapes[3][0], shapes[3][1], 1, 1};
  int64_t *map_shapes[4] = {x_shape, shapes[1], shapes[2], y_shape};
  return pointwise<false>(nparam, params, map_shapes, dtypes);
}

}  // extern "C"

#endif  // GHOST_KERNELS_POINTWISE_CONV_CC
