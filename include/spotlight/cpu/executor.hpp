// Executors run `tasks` independent tasks, f(0) .. f(tasks - 1), each
// exactly once, in any order and on any thread. Every CPU kernel splits its
// work into tasks whose number depends on the shape alone, and combines task
// results in task order: results are identical for any executor and any
// thread count. The PyTorch ops pass an executor over at::parallel_for.
#pragma once

#include <algorithm>
#include <exception>
#include <thread>
#include <vector>

#include "spotlight/core/config.hpp"

namespace spotlight::cpu {

struct SerialExecutor {
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

}  // namespace spotlight::cpu
