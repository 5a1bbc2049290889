// Shared by the custom CPU kernels: thread count, a blocking parallel_for and the float32 guard.
#pragma once
#include <sched.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

namespace ghost_kernels {

// Threads for one call: the CPUs this process may use, or $GHOSTNET_KERNEL_THREADS. No OpenMP: an OpenMP team
// spin-waits between calls and fights MindSpore's own thread pool for the cores.
inline int thread_count() {
  static const int count = [] {
    if (const char *env = std::getenv("GHOSTNET_KERNEL_THREADS")) return std::max(1, std::atoi(env));
    cpu_set_t set;
    return sched_getaffinity(0, sizeof(set), &set) == 0 ? std::max(1, CPU_COUNT(&set)) : 1;
  }();
  return count;
}

// body(first, last) over [0, tasks) in contiguous chunks, one per thread; serial when the call is too small
// (`work` elements) for a thread start (~20 us) to pay off.
template <typename Body>
void parallel_for(int64_t tasks, int64_t work, const Body &body) {
  const int threads = static_cast<int>(std::min<int64_t>(thread_count(), tasks));
  if (threads <= 1 || work < (1 << 16)) {
    body(0, tasks);
    return;
  }
  std::vector<std::thread> helpers;
  const int64_t chunk = (tasks + threads - 1) / threads;
  for (int t = 1; t < threads; ++t)
    helpers.emplace_back(body, std::min(tasks, t * chunk), std::min(tasks, (t + 1) * chunk));
  body(0, std::min(tasks, chunk));
  for (auto &helper : helpers) helper.join();
}

// The kernels are float32 only; the Python cells keep mixed precision away from them, this is the last guard.
inline bool all_float32(int nparam, const char **dtypes) {
  for (int i = 0; i < nparam; ++i)
    if (std::strcmp(dtypes[i], "float32") != 0) return false;
  return true;
}

}  // namespace ghost_kernels
