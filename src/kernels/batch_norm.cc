// Training-mode BatchNorm over NCHW float32 for MindSpore's CPU backend, as AOT custom operators.
//
// Why: MindSpore 2.10 runs BatchNorm on CPU through oneDNN's generic NCHW kernel (ncsp_bnorm), which after the
// depthwise kernels made BN forward + backward the largest cost of a GhostNet training step. Per channel, the
// statistics are sums over N planes of H*W contiguous floats. Sums end in double so E[x^2] - E[x]^2 loses nothing
// for activations of any scale; before that they run in float vector lanes, because a plain float sum is one
// serial chain of additions that -O3 may not reorder (GCC "vectorises" it as an in-order reduction that still adds
// one element at a time, 4 cycles each), which made the statistics passes twice as slow as the whole rest.
//
// Two layouts of the work, both vectorised: planes of a vector or more run channel by channel along each plane;
// smaller planes (4x4 and below: GhostNet's last stages at 32 px, where a plane is a few scalar iterations) run a
// block of channels at once, as one span of (channels x plane) contiguous floats per image, each channel's
// coefficients repeated over its plane.
//
// Macros: BN_EPS (epsilon), BN_RELU (1: a ReLU fused after the affine transform, which saves the separate ReLU
// and ReluGrad passes over the map), BN_CONCAT (1: the output is concat((prefix, BN(x)), channels), written in
// place: a Ghost module's intrinsic maps and its BN'd cheap maps, where MindSpore's Concat and the two Slices of
// its gradient were three more passes over both), BN_NAME(fn) (unique exported names per variant).
// Entry points follow MindSpore's AOT signature (inputs first, then outputs), see depthwise_conv.cc.
#include <tuple>
#include <utility>

#include "parallel.h"

namespace {

constexpr double EPS = BN_EPS;
constexpr bool RELU = BN_RELU;
constexpr bool CONCAT = BN_CONCAT;
constexpr int VEC = 16;
typedef float vec __attribute__((vector_size(VEC * sizeof(float)), aligned(sizeof(float))));

// Float lanes hold at most this many additions each before they are added into the double sums: as precise as
// the per-plane float sums before them, without a horizontal sum per plane.
constexpr int64_t FLUSH_EVERY = 256;

typedef double dvec __attribute__((vector_size(VEC * sizeof(double)), aligned(sizeof(double))));

inline vec load(const float *p) { return *reinterpret_cast<const vec *>(p); }
inline dvec &wide(double *p) { return *reinterpret_cast<dvec *>(p); }
inline dvec widen(vec v) { return __builtin_convertvector(v, dvec); }

inline float relu_mask(float grad, float out) { return RELU && !(out > 0.0f) ? 0.0f : grad; }

using ghost_kernels::scratch;

// Running double sums fed by VEC float lanes.
struct LaneSum {
  vec lanes{};
  double total = 0.0;
  void add(vec v) { lanes += v; }
  void flush() {
    for (int l = 0; l < VEC; ++l) total += lanes[l];
    lanes = vec{};
  }
};

// x's shape, and where its channels lie in y (and dy): behind `prefix` channels of another tensor with BN_CONCAT.
struct Shape {
  int64_t n, c, plane, prefix;
  Shape(const int64_t *s, int64_t prefix_channels = 0)
      : n(s[0]), c(s[1]), plane(s[2] * s[3]), prefix(prefix_channels) {}
  int64_t count() const { return n * plane; }  // elements per channel
  int64_t image() const { return c * plane; }  // floats per image of x
  int64_t out_image() const { return (prefix + c) * plane; }  // floats per image of y
  int64_t in(int64_t b, int64_t ch) const { return b * image() + ch * plane; }  // offset of x's plane (b, ch)
  int64_t out(int64_t b, int64_t ch) const { return b * out_image() + (prefix + ch) * plane; }  // ... in y
  bool small() const { return plane < VEC; }
};

// moving * keep + batch * weight, rounded after each operation as MindSpore's Mul, Mul, Add are: never contracted
// into a fused multiply-add, so the moving statistics follow MindSpore's own update rule.
__attribute__((noinline, optimize("fp-contract=off"))) float blend(float moving, float batch, float keep,
                                                                   float weight) {
  const float kept = moving * keep;
  const float added = batch * weight;
  return kept + added;
}

// ---------------------------------------------------------------------------------------------------- forward

struct Forward {
  const float *x, *gamma, *beta, *factors;
  float *moving_mean, *moving_var, *y, *mean_out, *invstd_out, *var_out;
  Shape s;

  // Channel ch's outputs from its batch sums; returns y = x * scale + shift's (scale, shift).
  std::pair<float, float> statistics(int64_t ch, double sum, double squares) const {
    const double m = static_cast<double>(s.count());
    const double mean = sum / m;
    const double var = std::max(0.0, squares / m - mean * mean);
    const double invstd = 1.0 / std::sqrt(var + EPS);
    mean_out[ch] = static_cast<float>(mean);
    invstd_out[ch] = static_cast<float>(invstd);
    var_out[ch] = static_cast<float>(m > 1 ? var * m / (m - 1) : var);
    moving_mean[ch] = blend(moving_mean[ch], mean_out[ch], factors[0], factors[1]);
    moving_var[ch] = blend(moving_var[ch], var_out[ch], factors[0], factors[1]);
    return {static_cast<float>(gamma[ch] * invstd), static_cast<float>(beta[ch] - mean * gamma[ch] * invstd)};
  }

  void channel(int64_t ch) const {
    LaneSum sum, squares;
    double rest = 0.0, rest_squares = 0.0;
    int64_t held = 0;
    for (int64_t b = 0; b < s.n; ++b) {
      const float *p = x + s.in(b, ch);
      int64_t i = 0;
      for (; i + VEC <= s.plane; i += VEC) {
        const vec v = load(p + i);
        sum.add(v);
        squares.add(v * v);
      }
      for (; i < s.plane; ++i) rest += p[i], rest_squares += static_cast<double>(p[i]) * p[i];
      if ((held += s.plane / VEC) >= FLUSH_EVERY || b + 1 == s.n) sum.flush(), squares.flush(), held = 0;
    }
    const auto [scale, shift] = statistics(ch, sum.total + rest, squares.total + rest_squares);
    for (int64_t b = 0; b < s.n; ++b) {
      const float *p = x + s.in(b, ch);
      float *q = y + s.out(b, ch);
      for (int64_t i = 0; i < s.plane; ++i) {
        const float v = p[i] * scale + shift;
        q[i] = RELU ? std::max(v, 0.0f) : v;
      }
    }
  }

  // Small planes: channels [c0, c1) as one span per image; sums (in double) per span element over the images,
  // then per channel over its plane.
  void block(int64_t c0, int64_t c1) const {
    const int64_t span = (c1 - c0) * s.plane;
    thread_local std::vector<double> sums;
    thread_local std::vector<float> expanded;
    double *sum = scratch(sums, 2 * span), *squares = sum + span;
    float *scale = scratch(expanded, 2 * span), *shift = scale + span;
    std::fill(sum, sum + 2 * span, 0.0);
    for (int64_t b = 0; b < s.n; ++b) {
      const float *p = x + s.in(b, c0);
      for (int64_t j = 0; j < span; ++j) sum[j] += p[j], squares[j] += static_cast<double>(p[j]) * p[j];
    }
    for (int64_t ch = c0; ch < c1; ++ch) {
      const int64_t first = (ch - c0) * s.plane;
      double channel_sum = 0.0, channel_squares = 0.0;
      for (int64_t i = first; i < first + s.plane; ++i) channel_sum += sum[i], channel_squares += squares[i];
      const auto [a, t] = statistics(ch, channel_sum, channel_squares);
      std::fill(scale + first, scale + first + s.plane, a);
      std::fill(shift + first, shift + first + s.plane, t);
    }
    for (int64_t b = 0; b < s.n; ++b) {
      const float *p = x + s.in(b, c0);
      float *q = y + s.out(b, c0);
      for (int64_t j = 0; j < span; ++j) {
        const float v = p[j] * scale[j] + shift[j];
        q[j] = RELU ? std::max(v, 0.0f) : v;
      }
    }
  }
};

// --------------------------------------------------------------------------------------------------- backward

// dx = gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)), xhat = (x - mean) * invstd, with dy zero where
// the fused ReLU cut y.
struct Backward {
  const float *x, *gamma, *mean_in, *invstd_in, *y, *dy;
  float *dx, *dgamma, *dbeta;
  Shape s;

  // Channel ch's dgamma and dbeta from its sums; returns dx = k * (dy - mean_dy - (x - mean) * c2)'s (k, mean_dy, c2).
  std::tuple<float, float, float> coefficients(int64_t ch, double sum_dy, double sum_dy_centered) const {
    const double m = static_cast<double>(s.count()), invstd = invstd_in[ch];
    dbeta[ch] = static_cast<float>(sum_dy);
    dgamma[ch] = static_cast<float>(sum_dy_centered * invstd);
    return {static_cast<float>(gamma[ch] * invstd), static_cast<float>(sum_dy / m),
            static_cast<float>(sum_dy_centered / m * invstd * invstd)};
  }

  void channel(int64_t ch) const {
    const float mean = mean_in[ch];
    const vec means = vec{} + mean;
    LaneSum sum_dy, sum_centered;
    double rest = 0.0, rest_centered = 0.0;
    int64_t held = 0;
    for (int64_t b = 0; b < s.n; ++b) {
      const float *p = x + s.in(b, ch), *o = y + s.out(b, ch), *g = dy + s.out(b, ch);
      int64_t i = 0;
      for (; i + VEC <= s.plane; i += VEC) {
        vec gi = load(g + i);
        if (RELU) gi = load(o + i) > vec{} ? gi : vec{};
        sum_dy.add(gi);
        sum_centered.add(gi * (load(p + i) - means));
      }
      for (; i < s.plane; ++i) {
        const float gi = relu_mask(g[i], o[i]);
        rest += gi, rest_centered += gi * (p[i] - mean);
      }
      if ((held += s.plane / VEC) >= FLUSH_EVERY || b + 1 == s.n) sum_dy.flush(), sum_centered.flush(), held = 0;
    }
    const auto [k, mean_dy, c2] = coefficients(ch, sum_dy.total + rest, sum_centered.total + rest_centered);
    for (int64_t b = 0; b < s.n; ++b) {
      const float *p = x + s.in(b, ch), *o = y + s.out(b, ch), *g = dy + s.out(b, ch);
      float *q = dx + s.in(b, ch);
      for (int64_t i = 0; i < s.plane; ++i) q[i] = k * (relu_mask(g[i], o[i]) - mean_dy - (p[i] - mean) * c2);
    }
  }

  // Small planes: as Forward::block.
  void block(int64_t c0, int64_t c1) const {
    const int64_t span = (c1 - c0) * s.plane;
    thread_local std::vector<double> sums;
    thread_local std::vector<float> expanded;
    double *sum_dy = scratch(sums, 2 * span), *sum_centered = sum_dy + span;
    float *means = scratch(expanded, 4 * span), *k = means + span, *mean_dy = k + span, *c2 = mean_dy + span;
    for (int64_t ch = c0; ch < c1; ++ch)
      std::fill(means + (ch - c0) * s.plane, means + (ch - c0 + 1) * s.plane, mean_in[ch]);
    std::fill(sum_dy, sum_dy + 2 * span, 0.0);
    for (int64_t b = 0; b < s.n; ++b) {
      const float *p = x + s.in(b, c0), *o = y + s.out(b, c0), *g = dy + s.out(b, c0);
      int64_t j = 0;
      for (; j + VEC <= span; j += VEC) {  // written out: GCC leaves the masked loop below scalar
        vec gi = load(g + j);
        if (RELU) gi = load(o + j) > vec{} ? gi : vec{};
        wide(sum_dy + j) += widen(gi);
        wide(sum_centered + j) += widen(gi * (load(p + j) - load(means + j)));
      }
      for (; j < span; ++j) {
        const float gi = relu_mask(g[j], o[j]);
        sum_dy[j] += gi, sum_centered[j] += gi * (p[j] - means[j]);
      }
    }
    for (int64_t ch = c0; ch < c1; ++ch) {
      const int64_t first = (ch - c0) * s.plane;
      double channel_dy = 0.0, channel_centered = 0.0;
      for (int64_t i = first; i < first + s.plane; ++i) channel_dy += sum_dy[i], channel_centered += sum_centered[i];
      const auto [a, m, c] = coefficients(ch, channel_dy, channel_centered);
      std::fill(k + first, k + first + s.plane, a);
      std::fill(mean_dy + first, mean_dy + first + s.plane, m);
      std::fill(c2 + first, c2 + first + s.plane, c);
    }
    for (int64_t b = 0; b < s.n; ++b) {
      const float *p = x + s.in(b, c0), *o = y + s.out(b, c0), *g = dy + s.out(b, c0);
      float *q = dx + s.in(b, c0);
      for (int64_t j = 0; j < span; ++j) q[j] = k[j] * (relu_mask(g[j], o[j]) - mean_dy[j] - (p[j] - means[j]) * c2[j]);
    }
  }
};

// The prefix's channels [first, last) of every image, between y's layout (prefix + c channels) and the prefix's
// own: forward from the prefix into y, backward from dy into the prefix's gradient.
struct PrefixCopy {
  const float *from = nullptr;
  float *to = nullptr;
  bool into_y = true;
  void operator()(const Shape &s, int64_t first, int64_t last) const {
    const int64_t prefix_image = s.prefix * s.plane;
    for (int64_t b = 0; b < s.n; ++b) {
      const float *source = from + b * (into_y ? prefix_image : s.out_image()) + first * s.plane;
      std::copy(source, source + (last - first) * s.plane,
                to + b * (into_y ? s.out_image() : prefix_image) + first * s.plane);
    }
  }
};

// Runs work.channel(ch) for every channel, or work.block over ranges of channels for small planes; with a `copy`,
// the prefix's channels first, in the same call (one wake-up of the threads).
template <typename Work>
void run(const Work &work, const PrefixCopy &copy = {}) {
  const Shape &s = work.s;
  const int64_t copies = copy.from ? s.prefix : 0;
  ghost_kernels::parallel_for(copies + s.c, s.n * (copies + s.c) * s.plane, [&](int64_t first, int64_t last) {
    if (first < copies) copy(s, first, std::min(last, copies));
    first = std::max<int64_t>(first - copies, 0), last -= copies;
    if (last <= first) return;
    if (s.small()) {
      work.block(first, last);
      return;
    }
    for (int64_t ch = first; ch < last; ++ch) work.channel(ch);
  });
}

}  // namespace

extern "C" {

// params: [prefix (N,P,H,W) with BN_CONCAT,] x (N,C,H,W), gamma (C), beta (C), moving mean (C), moving variance
//         (C), (keep, weight) (2) -> y (N,C,H,W) or (N,P+C,H,W) = concat(prefix, BN(x)), mean (C), invstd (C),
//         unbiased variance (C).
// Also updates the moving statistics in place: moving = moving * keep + batch * weight (one launch, where
// MindSpore's Mul, Mul, Add and Assign per statistic were eight per BN layer).
int BN_NAME(forward)(int nparam, void **params, int *, int64_t **shapes, const char **dtypes, void *, void *) {
  if (!ghost_kernels::all_float32(nparam, dtypes) || nparam != 10 + CONCAT) return 1;
  auto in = [&](int i) { return static_cast<const float *>(params[i + CONCAT]); };
  auto out = [&](int i) { return static_cast<float *>(params[i + CONCAT]); };
  const Shape shape(shapes[CONCAT], CONCAT ? shapes[0][1] : 0);
  run(Forward{in(0), in(1), in(2), in(5), out(3), out(4), out(6), out(7), out(8), out(9), shape},
      CONCAT ? PrefixCopy{static_cast<const float *>(params[0]), out(6), true} : PrefixCopy{});
  return 0;
}

// params: x, gamma, mean, invstd, y (the forward's output: the ReLU mask), dy, [prefix (its shape) with BN_CONCAT]
//         -> dx (N,C,H,W), dgamma (C), dbeta (C), [the prefix's gradient (N,P,H,W)]
int BN_NAME(backward)(int nparam, void **params, int *, int64_t **shapes, const char **dtypes, void *, void *) {
  if (!ghost_kernels::all_float32(nparam, dtypes) || nparam != 9 + 2 * CONCAT) return 1;
  auto in = [&](int i) { return static_cast<const float *>(params[i]); };
  auto out = [&](int i) { return static_cast<float *>(params[i + CONCAT]); };
  const Shape shape(shapes[0], CONCAT ? shapes[6][1] : 0);
  run(Backward{in(0), in(1), in(2), in(3), in(4), in(5), out(6), out(7), out(8), shape},
      CONCAT ? PrefixCopy{in(5), out(9), false} : PrefixCopy{});
  return 0;
}

}  // extern "C"
