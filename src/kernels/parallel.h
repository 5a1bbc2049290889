// Shared by the custom CPU kernels: thread count, a blocking parallel_for, scratch buffers and the float32 guard.
#pragma once
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
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

// Helper threads that sleep on a condition variable between calls (no spinning), started on first use: starting
// a thread per call cost 20-50 us, as much as a whole batch-1 inference kernel. A call is cut into a few pieces per
// thread that the caller and the helpers claim in turn, and the caller never waits for a helper that has not woken
// yet: when another process holds a core, a woken helper can wait milliseconds for it, and with a fixed half left
// to the helper every launch waited as long (docs/results/cpu_performance.md). One pool per library (this header is
// compiled into each); a call that finds the pool busy (another MindSpore thread inside it) runs serially, and so
// does a forked child, whose copy of the pool has no threads.
class Pool {
 public:
  using Job = void (*)(const void *body, int64_t first, int64_t last);
  static constexpr int64_t PIECES_PER_THREAD = 4;

  static Pool &instance() {
    static Pool *pool = new Pool(thread_count() - 1);  // never destroyed: helpers outlive static destructors
    return *pool;
  }

  // Runs job(body, first, last) over consecutive ranges covering [0, tasks); false when it could not (busy, forked).
  bool run(int64_t tasks, Job job, const void *body) {
    std::unique_lock<std::mutex> busy(submit_, std::try_to_lock);
    if (!busy.owns_lock() || getpid() != owner_ || helpers_.empty()) return false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = job, body_ = body, tasks_ = tasks;
      pieces_ = std::min<int64_t>(tasks, PIECES_PER_THREAD * static_cast<int64_t>(helpers_.size() + 1));
      next_.store(0, std::memory_order_relaxed);
      open_ = true;
      ++generation_;
    }
    wake_.notify_all();
    work();
    std::unique_lock<std::mutex> lock(mutex_);
    open_ = false;  // a helper waking from now on finds the call over; wait only for those inside it
    done_.wait(lock, [this] { return active_ == 0; });
    return true;
  }

 private:
  explicit Pool(int helpers) : owner_(getpid()) {
    for (int index = 0; index < helpers; ++index) helpers_.emplace_back([this] { serve(); });
    for (auto &helper : helpers_) helper.detach();
  }

  void work() {
    for (int64_t piece = next_.fetch_add(1); piece < pieces_; piece = next_.fetch_add(1))
      job_(body_, piece * tasks_ / pieces_, (piece + 1) * tasks_ / pieces_);
  }

  void serve() {
    uint64_t seen = 0;
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return generation_ != seen; });
      seen = generation_;
      if (!open_) continue;
      ++active_;
      lock.unlock();
      work();
      lock.lock();
      if (--active_ == 0) done_.notify_one();
    }
  }

  std::mutex submit_, mutex_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> helpers_;
  const pid_t owner_;
  Job job_ = nullptr;
  const void *body_ = nullptr;
  int64_t tasks_ = 0, pieces_ = 0;
  std::atomic<int64_t> next_{0};
  uint64_t generation_ = 0;
  bool open_ = false;
  int active_ = 0;
};

// body(first, last) over [0, tasks) in contiguous ranges; serial when the call is too small
// (`work` multiply-adds) for waking the helpers (~10 us) to pay off.
template <typename Body>
void parallel_for(int64_t tasks, int64_t work, const Body &body) {
  if (tasks <= 1 || thread_count() <= 1 || work < (1 << 16)) {
    body(0, tasks);
    return;
  }
  const Pool::Job job = [](const void *b, int64_t first, int64_t last) { (*static_cast<const Body *>(b))(first, last); };
  if (!Pool::instance().run(tasks, job, &body)) body(0, tasks);
}

// `buffer` grown to at least `size` elements (never shrunk): a thread's scratch space, reused across calls.
template <typename T>
T *scratch(std::vector<T> &buffer, size_t size) {
  if (buffer.size() < size) buffer.resize(size);
  return buffer.data();
}

// The kernels are float32 only; the Python cells keep mixed precision away from them, this is the last guard.
inline bool all_float32(int nparam, const char **dtypes) {
  for (int i = 0; i < nparam; ++i)
    if (std::strcmp(dtypes[i], "float32") != 0) return false;
  return true;
}

}  // namespace ghost_kernels
