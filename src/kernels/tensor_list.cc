// Operations over a whole list of float32 tensors in one call, as MindSpore AOT custom operators.
//
// Why: a GhostNet training step runs a few operators per parameter tensor (~270 gradients, ~430 EMA tensors), and
// on the CPU backend each launch costs more than its arithmetic: ms.amp.all_finite's IsFinite + ReduceAll per
// gradient took 50 ms of a 500 ms step at 32 px, the EMA's mul / mul / add / assign per tensor 30 ms, the backup of
// the BN statistics one Assign per tensor (320 launches, ~8 ms of a 156 ms step). Here one
// launch walks every tensor, split into chunks over the threads.
//
// Entry points follow MindSpore's AOT signature (inputs first, then outputs), see depthwise_conv.cc.
#include <algorithm>
#include <atomic>
#include <utility>

#include "parallel.h"

namespace {

constexpr int64_t CHUNK = 1 << 15;

struct Span {
  int tensor;
  int64_t first, last;
};

// Every tensor's elements cut into spans of at most CHUNK, so that one large tensor does not sit on one thread.
std::vector<Span> spans(int first_tensor, int last_tensor, int *ndims, int64_t **shapes, int64_t *total) {
  std::vector<Span> out;
  *total = 0;
  for (int t = first_tensor; t < last_tensor; ++t) {
    int64_t count = 1;
    for (int d = 0; d < ndims[t]; ++d) count *= shapes[t][d];
    for (int64_t i = 0; i < count; i += CHUNK) out.push_back({t, i, std::min(count, i + CHUNK)});
    *total += count;
  }
  return out;
}

}  // namespace

extern "C" {

// params: tensors 0 .. nparam-2 (float32) -> output (1,) float32: 1 if every element is finite, else 0.
int all_finite(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *, void *) {
  if (!ghost_kernels::all_float32(nparam, dtypes)) return 1;
  const int tensors = nparam - 1;
  int64_t total = 0;
  const std::vector<Span> work = spans(0, tensors, ndims, shapes, &total);
  std::atomic<bool> finite{true};
  ghost_kernels::parallel_for(static_cast<int64_t>(work.size()), total, [&](int64_t first, int64_t last) {
    uint32_t bad = 0;
    for (int64_t s = first; s < last; ++s) {
      const auto *bits = static_cast<const uint32_t *>(params[work[s].tensor]);
      for (int64_t i = work[s].first; i < work[s].last; ++i)  // exponent all ones: inf or nan
        bad |= static_cast<uint32_t>((bits[i] & 0x7f800000u) == 0x7f800000u);
      if (bad) break;
    }
    if (bad) finite.store(false);
  });
  *static_cast<float *>(params[tensors]) = finite.load() ? 1.0f : 0.0f;
  return 0;
}

// params: decay (1,), averages[0..k), values[0..k) (float32, pairwise the same shapes) -> output (1,) = decay.
// Updates the averages in place: average += (value - average) * (1 - decay).
int ema_update(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *, void *) {
  if (!ghost_kernels::all_float32(nparam, dtypes) || (nparam - 2) % 2 != 0) return 1;
  const int k = (nparam - 2) / 2;
  const float decay = *static_cast<const float *>(params[0]);
  const float weight = 1.0f - decay;
  int64_t total = 0;
  const std::vector<Span> work = spans(1, 1 + k, ndims, shapes, &total);
  ghost_kernels::parallel_for(static_cast<int64_t>(work.size()), total, [&](int64_t first, int64_t last) {
    for (int64_t s = first; s < last; ++s) {
      auto *average = static_cast<float *>(params[work[s].tensor]);
      const auto *value = static_cast<const float *>(params[work[s].tensor + k]);
      for (int64_t i = work[s].first; i < work[s].last; ++i) average[i] += (value[i] - average[i]) * weight;
    }
  });
  *static_cast<float *>(params[nparam - 1]) = decay;
  return 0;
}

// params: destinations[0..k), sources[0..k) (float32, pairwise the same shapes) -> output (1,) = 1.
// Copies each source into its destination in place (the training step's backup and restore of the BN statistics).
int copy_into(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *, void *) {
  if (!ghost_kernels::all_float32(nparam, dtypes) || (nparam - 1) % 2 != 0) return 1;
  const int k = (nparam - 1) / 2;
  int64_t total = 0;
  const std::vector<Span> work = spans(0, k, ndims, shapes, &total);
  ghost_kernels::parallel_for(static_cast<int64_t>(work.size()), total, [&](int64_t first, int64_t last) {
    for (int64_t s = first; s < last; ++s) {
      auto *destination = static_cast<float *>(params[work[s].tensor]);
      const auto *source = static_cast<const float *>(params[work[s].tensor + k]);
      std::copy(source + work[s].first, source + work[s].last, destination + work[s].first);
    }
  });
  *static_cast<float *>(params[nparam - 1]) = 1.0f;
  return 0;
}

}  // extern "C"
