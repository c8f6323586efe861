// Executors run `tasks` independent tasks, f(0) .. f(tasks - 1), each
// exactly once, in any order and on any thread. Every CPU kernel splits its
// work into tasks whose number depends on the shape alone, and combines task
// results in task order: results are identical for any executor and any
// thread count. The PyTorch ops pass an executor over at::parallel_for.
// An executor may report its thread count, threads(): executor_threads.
#pragma once

#include <algorithm>
#include <exception>
#include <thread>
#include <vector>

#include "spotlight/core/config.hpp"

namespace spotlight::cpu {

struct SerialExecutor {
  unsigned threads() const { return 1; }

  template <class F>
  void operator()(index_t tasks, F&& f) const {
    for (index_t t = 0; t < tasks; ++t) f(t);
  }
};

// Plain std::thread executor for programs without a thread pool of their
// own: contiguous ranges of tasks, one per thread, the caller's thread included.
class ThreadExecutor {
 public:
  explicit ThreadExecutor(unsigned threads = std::thread::hardware_concurrency())
      : threads_(std::max(1u, threads)) {}

  unsigned threads() const { return threads_; }

  template <class F>
  void operator()(index_t tasks, F&& f) const {
    const index_t workers = std::min<index_t>(threads_, tasks);
    if (workers <= 1) {
      SerialExecutor{}(tasks, f);
      return;
    }
    std::vector<std::exception_ptr> errors(static_cast<size_t>(workers));
    auto run = [&](index_t w) {
      try {
        for (index_t t = tasks * w / workers; t < tasks * (w + 1) / workers; ++t) f(t);
      } catch (...) {
        errors[static_cast<size_t>(w)] = std::current_exception();
      }
    };
    std::vector<std::thread> pool;
    pool.reserve(static_cast<size_t>(workers - 1));
    for (index_t w = 1; w < workers; ++w) pool.emplace_back(run, w);
    run(0);
    for (auto& t : pool) t.join();
    for (auto& e : errors)
      if (e) std::rethrow_exception(e);
  }

 private:
  unsigned threads_;
};

// The hardware's thread count (at least 1).
inline index_t hardware_threads() {
  static const index_t threads = std::max(1u, std::thread::hardware_concurrency());
  return threads;
}

// How many threads an executor runs its tasks on: its threads(), or the
// hardware's for an executor that does not say. Kernels choose between
// equivalent task splits with it (see whole_samples), never the results.
template <class Exec>
index_t executor_threads(const Exec& exec) {
  if constexpr (requires { exec.threads(); })
    return std::max<index_t>(1, static_cast<index_t>(exec.threads()));
  else
    return hardware_threads();
}

}  // namespace spotlight::cpu
