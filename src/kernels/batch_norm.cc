// Training-mode BatchNorm over NCHW float32 for MindSpore's CPU backend, as AOT custom operators.
//
// Why: MindSpore 2.10 runs BatchNorm on CPU through oneDNN's generic NCHW kernel (ncsp_bnorm), which after the
// depthwise kernels made BN forward + backward the largest cost of a GhostNet training step. Per channel, the
// statistics are sums over N planes of H*W contiguous floats: the inner loops run along a plane and vectorise.
// Sums are kept in double so E[x^2] - E[x]^2 loses nothing for activations of any scale.
//
// Macros: BN_EPS (epsilon), BN_RELU (1: a ReLU fused after the affine transform, which saves the separate ReLU
// and ReluGrad passes over the map), BN_NAME(fn) (unique exported names per variant).
// Entry points follow MindSpore's AOT signature (inputs first, then outputs), see depthwise_conv.cc.
#include "parallel.h"

namespace {

constexpr double EPS = BN_EPS;
constexpr bool RELU = BN_RELU;

struct Shape {
  int64_t n, c, plane;
  explicit Shape(const int64_t *s) : n(s[0]), c(s[1]), plane(s[2] * s[3]) {}
  int64_t count() const { return n * plane; }  // elements per channel
};

// moving * keep + batch * weight, rounded after each operation as MindSpore's Mul, Mul, Add are: never contracted
// into a fused multiply-add, so the moving statistics stay bit for bit those of MindSpore's own update.
__attribute__((noinline, optimize("fp-contract=off"))) float blend(float moving, float batch, float keep,
                                                                   float weight) {
  const float kept = moving * keep;
  const float added = batch * weight;
  return kept + added;
}

}  // namespace

extern "C" {

// params: x (N,C,H,W), gamma (C), beta (C), moving mean (C), moving variance (C), (keep, weight) (2)
//         -> y (N,C,H,W), mean (C), invstd (C), unbiased variance (C).
// Also updates the moving statistics in place: moving = moving * keep + batch * weight (one launch, where
// MindSpore's Mul, Mul, Add and Assign per statistic were eight per BN layer).
int BN_NAME(forward)(int nparam, void **params, int *, int64_t **shapes, const char **dtypes, void *, void *) {
  if (!ghost_kernels::all_float32(nparam, dtypes)) return 1;
  const auto *x = static_cast<const float *>(params[0]);
  const auto *gamma = static_cast<const float *>(params[1]);
  const auto *beta = static_cast<const float *>(params[2]);
  auto *moving_mean = static_cast<float *>(params[3]);
  auto *moving_var = static_cast<float *>(params[4]);
  const auto *factors = static_cast<const float *>(params[5]);
  auto *y = static_cast<float *>(params[6]);
  auto *mean_out = static_cast<float *>(params[7]);
  auto *invstd_out = static_cast<float *>(params[8]);
  auto *var_out = static_cast<float *>(params[9]);
  const Shape s(shapes[0]);
  ghost_kernels::parallel_for(s.c, s.n * s.c * s.plane, [&](int64_t first, int64_t last) {
    for (int64_t ch = first; ch < last; ++ch) {
      double sum = 0.0, squares = 0.0;
      for (int64_t b = 0; b < s.n; ++b) {
        const float *p = x + (b * s.c + ch) * s.plane;
        float plane_sum = 0.0f, plane_squares = 0.0f;
        for (int64_t i = 0; i < s.plane; ++i) {
          plane_sum += p[i];
          plane_squares += p[i] * p[i];
        }
        sum += plane_sum;
        squares += plane_squares;
      }
      const double m = static_cast<double>(s.count());
      const double mean = sum / m;
      const double var = std::max(0.0, squares / m - mean * mean);
      const double invstd = 1.0 / std::sqrt(var + EPS);
      mean_out[ch] = static_cast<float>(mean);
      invstd_out[ch] = static_cast<float>(invstd);
      var_out[ch] = static_cast<float>(m > 1 ? var * m / (m - 1) : var);
      moving_mean[ch] = blend(moving_mean[ch], mean_out[ch], factors[0], factors[1]);
      moving_var[ch] = blend(moving_var[ch], var_out[ch], factors[0], factors[1]);
      const float scale = static_cast<float>(gamma[ch] * invstd);
      const float shift = static_cast<float>(beta[ch] - mean * gamma[ch] * invstd);
      for (int64_t b = 0; b < s.n; ++b) {
        const float *p = x + (b * s.c + ch) * s.plane;
        float *q = y + (b * s.c + ch) * s.plane;
        for (int64_t i = 0; i < s.plane; ++i) {
          const float v = p[i] * scale + shift;
          q[i] = RELU ? std::max(v, 0.0f) : v;
        }
      }
    }
  });
  return 0;
}

// params: x, gamma, mean, invstd, y (the forward's output: the ReLU mask), dy -> dx (N,C,H,W), dgamma (C), dbeta (C)
int BN_NAME(backward)(int nparam, void **params, int *, int64_t **shapes, const char **dtypes, void *, void *) {
  if (!ghost_kernels::all_float32(nparam, dtypes)) return 1;
  const auto *x = static_cast<const float *>(params[0]);
  const auto *gamma = static_cast<const float *>(params[1]);
  const auto *mean_in = static_cast<const float *>(params[2]);
  const auto *invstd_in = static_cast<const float *>(params[3]);
  const auto *y = static_cast<const float *>(params[4]);
  const auto *dy_out = static_cast<const float *>(params[5]);
  auto *dx = static_cast<float *>(params[6]);
  auto *dgamma = static_cast<float *>(params[7]);
  auto *dbeta = static_cast<float *>(params[8]);
  const Shape s(shapes[0]);
  ghost_kernels::parallel_for(s.c, s.n * s.c * s.plane, [&](int64_t first, int64_t last) {
    for (int64_t ch = first; ch < last; ++ch) {
      const float mean = mean_in[ch], invstd = invstd_in[ch];
      double sum_dy = 0.0, sum_dy_centered = 0.0;
      for (int64_t b = 0; b < s.n; ++b) {
        const float *p = x + (b * s.c + ch) * s.plane;
        const float *g = dy_out + (b * s.c + ch) * s.plane;
        const float *o = y + (b * s.c + ch) * s.plane;
        float plane_dy = 0.0f, plane_dy_centered = 0.0f;
        for (int64_t i = 0; i < s.plane; ++i) {
          const float gi = RELU && !(o[i] > 0.0f) ? 0.0f : g[i];
          plane_dy += gi;
          plane_dy_centered += gi * (p[i] - mean);
        }
        sum_dy += plane_dy;
        sum_dy_centered += plane_dy_centered;
      }
      const double m = static_cast<double>(s.count());
      dbeta[ch] = static_cast<float>(sum_dy);
      dgamma[ch] = static_cast<float>(sum_dy_centered * invstd);
      // dx = gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)), xhat = (x - mean) * invstd
      const float k = static_cast<float>(gamma[ch] * invstd);
      const float mean_dy = static_cast<float>(sum_dy / m);
      const float c2 = static_cast<float>(sum_dy_centered / m * invstd * invstd);
      for (int64_t b = 0; b < s.n; ++b) {
        const float *p = x + (b * s.c + ch) * s.plane;
        const float *g = dy_out + (b * s.c + ch) * s.plane;
        const float *o = y + (b * s.c + ch) * s.plane;
        float *q = dx + (b * s.c + ch) * s.plane;
        for (int64_t i = 0; i < s.plane; ++i) {
          const float gi = RELU && !(o[i] > 0.0f) ? 0.0f : g[i];
          q[i] = k * (gi - mean_dy - (p[i] - mean) * c2);
        }
      }
    }
  });
  return 0;
}

}  // extern "C"
