// Timings of the CUDA header kernels (include/spotlight/cuda), float32, on
// the shapes of bench_cpu.cpp and a few that probe one design choice each.
// Standalone (no Google Benchmark: the GPU machine has none): each case is
// launched once to warm up, then `--repeats` times, each launch timed alone
// by CUDA events on its own stream; the table gives the median and the
// minimum, and GB/s of the median.
//
// GB/s counts bytes read + written once per call, as bench_cpu.cpp:
//   memcpy 2 (device-to-device copy of one N*V float buffer: the floor),
//   otsu 1, loss forward 2, loss backward 3, forward+backward 5,
//   standardize 2, tunable sigmoid 2.
// Probes:
//   otsu, bins 20000: the global-memory histogram (more than kMaxSharedBins),
//     on the batch and on a skewed copy of it (99% of voxels in one bin);
//   loss backward, reduction batch against mean, at N = 1024 and 1025 samples
//     of 64^3: at 1024 every block re-pools the N per-sample sums, at 1025 one
//     extra kernel pools them once (policy.cuh, kMaxInlinePoolSamples); mean
//     reads one sample's sums per block.
//
//   spotlight_bench_cuda [--repeats N] [--filter TEXT] [--output FILE.md]
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "bench_data.hpp"
#include "spotlight/cuda.cuh"
#include "spotlight/core/options.hpp"

namespace scu = spotlight::cuda;
using spotlight::defaults::kBins;
using spotlight::defaults::kK;
using spotlight::index_t;
using spotlight::LossOptions;
using spotlight::Reduction;

namespace {

#define BENCH_CHECK(...)                                                                                    \
  do {                                                                                                     \
    const cudaError_t bench_error_ = (__VA_ARGS__);                                                        \
    if (bench_error_ != cudaSuccess) {                                                                     \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #__VA_ARGS__, cudaGetErrorString(bench_error_)); \
      std::exit(2);                                                                                        \
    }                                                                                                      \
  } while (0)

// Device memory that frees itself.
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(size_t bytes) { BENCH_CHECK(cudaMalloc(&ptr_, std::max<size_t>(bytes, 1))); }
  Buffer(Buffer&& o) noexcept : ptr_(o.ptr_) { o.ptr_ = nullptr; }
  Buffer& operator=(Buffer&& o) noexcept {
    std::swap(ptr_, o.ptr_);
    return *this;
  }
  ~Buffer() { cudaFree(ptr_); }
  template <class U>
  U* as() const {
    return static_cast<U*>(ptr_);
  }

 private:
  void* ptr_ = nullptr;
};

struct Batch {
  std::string name;
  index_t samples = 0, voxels = 0;
  Buffer pred, target, grad, out;
  size_t elements() const { return static_cast<size_t>(samples * voxels); }
};

Batch make_batch(const spotlight_bench::Shape& shape, bool skewed = false) {
  Batch b;
  b.name = shape.name;
  b.samples = shape.samples;
  b.voxels = shape.voxels;
  std::vector<float> pred, target;
  spotlight_bench::make_data(shape, pred, target);
  if (skewed) {  // 99 of 100 voxels on one value: one histogram bin takes almost every count
    b.name += " skewed";
    for (size_t i = 0; i < target.size(); ++i)
      if (i % 100 != 0) target[i] = -0.4f;
  }
  const size_t bytes = target.size() * sizeof(float);
  b.pred = Buffer(bytes);
  b.target = Buffer(bytes);
  b.grad = Buffer(bytes);
  b.out = Buffer(bytes);
  BENCH_CHECK(cudaMemcpy(b.pred.as<float>(), pred.data(), bytes, cudaMemcpyHostToDevice));
  BENCH_CHECK(cudaMemcpy(b.target.as<float>(), target.data(), bytes, cudaMemcpyHostToDevice));
  return b;
}

struct Row {
  std::string name, shape;
  double median_us, min_us, gb_per_s;
};

struct Bench {
  int repeats = 30;
  std::string filter;
  std::vector<Row> rows;
  cudaStream_t stream = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr;

  // Times launch(stream) `repeats` times after one warm-up launch.
  void time(const std::string& name, const Batch& b, int arrays, const std::function<cudaError_t(cudaStream_t)>& launch) {
    const std::string label = name + " " + b.name;
    if (!filter.empty() && label.find(filter) == std::string::npos) return;
    BENCH_CHECK(launch(stream));
    BENCH_CHECK(cudaStreamSynchronize(stream));
    std::vector<double> us;
    for (int r = 0; r < repeats; ++r) {
      BENCH_CHECK(cudaEventRecord(start, stream));
      BENCH_CHECK(launch(stream));
      BENCH_CHECK(cudaEventRecord(stop, stream));
      BENCH_CHECK(cudaEventSynchronize(stop));
      float ms = 0;
      BENCH_CHECK(cudaEventElapsedTime(&ms, start, stop));
      us.push_back(1e3 * ms);
    }
    std::sort(us.begin(), us.end());
    const double median = us[us.size() / 2];
    const double bytes = static_cast<double>(b.elements()) * arrays * sizeof(float);
    rows.push_back({name, b.name, median, us.front(), bytes / (median * 1e-6) / 1e9});
    std::printf("%-44s %-22s median %10.1f us  min %10.1f us  %8.1f GB/s\n", name.c_str(), b.name.c_str(), median,
                us.front(), rows.back().gb_per_s);
    std::fflush(stdout);
  }
};

// The per-sample state the backward reads: one forward with Otsu thresholds.
struct LossState {
  Buffer loss, thresholds, sums, grad_out, fwork, bwork;
  size_t fbytes = 0, bbytes = 0;
};

LossState loss_state(const Batch& b, const LossOptions& opt) {
  LossState s;
  const size_t n = static_cast<size_t>(b.samples);
  s.loss = Buffer(n * sizeof(float));
  s.thresholds = Buffer(n * sizeof(float));
  s.sums = Buffer(n * sizeof(spotlight::LossSums));
  s.grad_out = Buffer(n * sizeof(double));
  const std::vector<double> ones(n, 1.0);
  BENCH_CHECK(cudaMemcpy(s.grad_out.as<double>(), ones.data(), n * sizeof(double), cudaMemcpyHostToDevice));
  s.fbytes = scu::loss_forward_workspace_bytes<float>(b.samples, b.voxels, opt.bins, true);
  s.bbytes = scu::loss_backward_workspace_bytes<float>(b.samples, opt.reduction);
  s.fwork = Buffer(s.fbytes);
  s.bwork = Buffer(s.bbytes);
  BENCH_CHECK(scu::loss_forward(b.pred.as<float>(), b.target.as<float>(), b.samples, b.voxels,
                                static_cast<const float*>(nullptr), opt, s.loss.as<float>(), s.thresholds.as<float>(),
                                s.sums.as<spotlight::LossSums>(), s.fwork.as<void>(), s.fbytes, nullptr));
  BENCH_CHECK(cudaDeviceSynchronize());
  return s;
}

cudaError_t backward(const Batch& b, const LossState& s, const LossOptions& opt, cudaStream_t stream) {
  return scu::loss_backward(s.grad_out.as<double>(), index_t{1}, b.pred.as<float>(), b.target.as<float>(), b.samples,
                            b.voxels, s.thresholds.as<float>(), s.sums.as<spotlight::LossSums>(), opt,
                            b.grad.as<float>(), static_cast<float*>(nullptr), s.bwork.as<void>(), s.bbytes, stream);
}

void bench_shape(Bench& bench, const Batch& b) {
  const size_t bytes = b.elements() * sizeof(float);
  bench.time("memcpy", b, 2, [&](cudaStream_t s) {
    return cudaMemcpyAsync(b.out.as<float>(), b.target.as<float>(), bytes, cudaMemcpyDeviceToDevice, s);
  });
  for (const int bins : {256, 20000}) {
    const size_t ws = scu::otsu_thresholds_workspace_bytes<float>(b.samples, b.voxels, bins);
    Buffer work(ws), thresholds(static_cast<size_t>(b.samples) * sizeof(float));
    bench.time("otsu bins=" + std::to_string(bins), b, 1, [&](cudaStream_t s) {
      return scu::otsu_thresholds(b.target.as<float>(), b.samples, b.voxels, bins, thresholds.as<float>(),
                                  work.as<void>(), ws, s);
    });
  }
  const LossOptions opt;
  const LossState st = loss_state(b, opt);
  Buffer given(static_cast<size_t>(b.samples) * sizeof(float));
  BENCH_CHECK(cudaMemcpy(given.as<float>(), st.thresholds.as<float>(), static_cast<size_t>(b.samples) * sizeof(float),
                         cudaMemcpyDeviceToDevice));
  const auto forward = [&](cudaStream_t s, const float* thresholds_in) {
    return scu::loss_forward(b.pred.as<float>(), b.target.as<float>(), b.samples, b.voxels, thresholds_in, opt,
                             st.loss.as<float>(), st.thresholds.as<float>(), st.sums.as<spotlight::LossSums>(),
                             st.fwork.as<void>(), st.fbytes, s);
  };
  bench.time("loss forward, Otsu", b, 2, [&](cudaStream_t s) { return forward(s, nullptr); });
  bench.time("loss forward, given T", b, 2, [&](cudaStream_t s) { return forward(s, given.as<float>()); });
  bench.time("loss backward", b, 3, [&](cudaStream_t s) { return backward(b, st, opt, s); });
  bench.time("loss forward+backward, given T", b, 5, [&](cudaStream_t s) {
    SPOTLIGHT_CUDA_TRY(forward(s, given.as<float>()));
    return backward(b, st, opt, s);
  });
  bench.time("loss forward+backward, Otsu", b, 5, [&](cudaStream_t s) {
    SPOTLIGHT_CUDA_TRY(forward(s, nullptr));
    return backward(b, st, opt, s);
  });
  const size_t sws = scu::otsu_standardize_workspace_bytes<float>(b.samples, b.voxels, kBins);
  Buffer swork(sws);
  bench.time("otsu_standardize", b, 2, [&](cudaStream_t s) {
    return scu::otsu_standardize(b.target.as<float>(), b.samples, b.voxels, kBins, b.out.as<float>(), swork.as<void>(),
                                 sws, s);
  });
  bench.time("tunable_sigmoid", b, 2, [&](cudaStream_t s) {
    return scu::tunable_sigmoid(b.pred.as<float>(), static_cast<index_t>(b.elements()), kK, b.out.as<float>(), s);
  });
}

// Backward at reduction batch and mean on many samples: the cost of
// re-pooling the batch's sums in every block.
void bench_pooling(Bench& bench, index_t samples) {
  const std::string name = std::to_string(samples) + "x64^3";
  const spotlight_bench::Shape shape{name.c_str(), samples, 64 * 64 * 64};
  const Batch b = make_batch(shape);
  for (const Reduction red : {Reduction::kBatch, Reduction::kMean}) {
    LossOptions opt;
    opt.reduction = red;
    const LossState st = loss_state(b, opt);
    bench.time(std::string("loss backward, reduction ") + std::string(spotlight::option_name(red)), b, 3,
               [&](cudaStream_t s) { return backward(b, st, opt, s); });
  }
}

void write_markdown(const Bench& bench, const char* path) {
  FILE* f = std::fopen(path, "w");
  if (f == nullptr) {
    std::fprintf(stderr, "cannot write %s\n", path);
    std::exit(2);
  }
  cudaDeviceProp prop{};
  int device = 0;
  BENCH_CHECK(cudaGetDevice(&device));
  BENCH_CHECK(cudaGetDeviceProperties(&prop, device));
  int runtime = 0, driver = 0;
  cudaRuntimeGetVersion(&runtime);
  cudaDriverGetVersion(&driver);
  std::fprintf(f, "## CUDA header kernels (`spotlight_bench_cuda`)\n\n");
  std::fprintf(f, "- GPU: %s, %d SMs, %.0f MB L2; CUDA runtime %d, driver %d\n", prop.name, prop.multiProcessorCount,
               prop.l2CacheSize / 1e6, runtime, driver);
  std::fprintf(f, "- float32; medians and minima of %d launches, each timed alone by CUDA events\n\n", bench.repeats);
  std::fprintf(f, "| case | shape | median us | min us | GB/s (median) |\n|---|---|---:|---:|---:|\n");
  for (const Row& r : bench.rows)
    std::fprintf(f, "| %s | %s | %.1f | %.1f | %.1f |\n", r.name.c_str(), r.shape.c_str(), r.median_us, r.min_us,
                 r.gb_per_s);
  std::fclose(f);
}

}  // namespace

int main(int argc, char** argv) {
  Bench bench;
  const char* output = nullptr;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--repeats" && i + 1 < argc) {
      bench.repeats = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--filter" && i + 1 < argc) {
      bench.filter = argv[++i];
    } else if (a == "--output" && i + 1 < argc) {
      output = argv[++i];
    } else {
      std::fprintf(stderr, "usage: %s [--repeats N] [--filter TEXT] [--output FILE.md]\n", argv[0]);
      return a == "--help" ? 0 : 1;
    }
  }
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::fprintf(stderr, "spotlight_bench_cuda: no usable CUDA device\n");
    return 3;
  }
  BENCH_CHECK(cudaStreamCreateWithFlags(&bench.stream, cudaStreamNonBlocking));
  BENCH_CHECK(cudaEventCreate(&bench.start));
  BENCH_CHECK(cudaEventCreate(&bench.stop));
  for (const auto& shape : spotlight_bench::kShapes) bench_shape(bench, make_batch(shape));
  {
    const Batch skewed = make_batch(spotlight_bench::kShapes[0], true);
    for (const int bins : {256, 20000}) {
      const size_t ws = scu::otsu_thresholds_workspace_bytes<float>(skewed.samples, skewed.voxels, bins);
      Buffer work(ws), thresholds(static_cast<size_t>(skewed.samples) * sizeof(float));
      bench.time("otsu bins=" + std::to_string(bins), skewed, 1, [&](cudaStream_t s) {
        return scu::otsu_thresholds(skewed.target.as<float>(), skewed.samples, skewed.voxels, bins,
                                    thresholds.as<float>(), work.as<void>(), ws, s);
      });
    }
  }
  for (const index_t samples : {index_t{1024}, index_t{1025}}) bench_pooling(bench, samples);
  if (output != nullptr) write_markdown(bench, output);
  return 0;
}
