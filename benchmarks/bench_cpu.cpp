// Google Benchmark programs for the CPU header kernels (include/spotlight/cpu),
// float32, on the shapes of docs/benchmarks.md, with 1 thread and with every
// hardware thread.
//
// bytes/s is (bytes read + bytes written) / time, counting each array once
// per kernel call, whatever the number of passes the kernel makes over it:
//   otsu           N*V*4        (reads x)
//   loss_fwd_*     2*N*V*4      (reads pred, target)
//   loss_bwd       3*N*V*4      (reads pred, target, writes grad)
//   loss_fwd_bwd   5*N*V*4      (forward, then backward; also LossVariant)
//   standardize    2*N*V*4      (reads x, writes out)
//   memcpy         2*N*V*4      (reads one buffer, writes another)
// memcpy of one N*V float buffer, split over the same executor, is the
// bandwidth floor every other line is to be read against.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "bench_data.hpp"
#include "spotlight/cpu/executor.hpp"
#include "spotlight/cpu/loss.hpp"
#include "spotlight/cpu/otsu.hpp"
#include "spotlight/cpu/partition.hpp"
#include "spotlight/cpu/standardize.hpp"
#include "spotlight/core/options.hpp"

namespace sc = spotlight::cpu;
using spotlight::defaults::kBins;
using spotlight::index_t;

namespace {

using spotlight_bench::kShapes;
using spotlight_bench::Shape;

struct Data {
  std::vector<float> pred, target, grad, out;
};

const Data& data_for(const Shape& shape) {
  static std::vector<Data> cache(std::size(kShapes));
  Data& d = cache[static_cast<size_t>(&shape - kShapes)];
  if (d.target.empty()) {
    spotlight_bench::make_data(shape, d.pred, d.target);
    d.grad.resize(d.target.size());
    d.out.resize(d.target.size());
  }
  return d;
}

unsigned threads_of(const benchmark::State& state) { return static_cast<unsigned>(state.range(1)); }

void set_bytes(benchmark::State& state, const Shape& shape, int arrays) {
  state.SetBytesProcessed(state.iterations() * shape.samples * shape.voxels * arrays *
                          static_cast<std::int64_t>(sizeof(float)));
  state.counters["voxels/s"] = benchmark::Counter(static_cast<double>(state.iterations() * shape.samples *
                                                                      shape.voxels),
                                                  benchmark::Counter::kIsRate);
}

const Shape& shape_of(const benchmark::State& state) { return kShapes[state.range(0)]; }

// Per-sample Otsu thresholds given by the kernels, for the benchmarks that
// take a threshold.
std::vector<float> thresholds_of(const Shape& shape, const Data& d) {
  std::vector<float> t(static_cast<size_t>(shape.samples));
  sc::otsu_thresholds(d.target.data(), shape.samples, shape.voxels, kBins, t.data(), sc::ThreadExecutor());
  return t;
}

void BM_Memcpy(benchmark::State& state) {
  const Shape& shape = shape_of(state);
  Data& d = const_cast<Data&>(data_for(shape));
  const sc::ThreadExecutor exec(threads_of(state));
  const index_t n = shape.samples * shape.voxels;
  const sc::Partition part(1, n);
  for (auto _ : state) {
    exec(part.tasks(), [&](index_t t) {
      std::memcpy(d.out.data() + part.begin(t), d.target.data() + part.begin(t),
                  static_cast<size_t>(part.end(t) - part.begin(t)) * sizeof(float));
    });
    benchmark::ClobberMemory();
  }
  set_bytes(state, shape, 2);
}

void BM_SampleRanges(benchmark::State& state) {
  const Shape& shape = shape_of(state);
  const Data& d = data_for(shape);
  const sc::ThreadExecutor exec(threads_of(state));
  std::vector<sc::SampleRange<float>> r(static_cast<size_t>(shape.samples));
  for (auto _ : state) {
    sc::sample_ranges(d.target.data(), shape.samples, shape.voxels, r.data(), exec);
    benchmark::DoNotOptimize(r.data());
  }
  set_bytes(state, shape, 1);
}

void BM_Histograms(benchmark::State& state) {
  const Shape& shape = shape_of(state);
  const Data& d = data_for(shape);
  const sc::ThreadExecutor exec(threads_of(state));
  std::vector<sc::SampleRange<float>> r(static_cast<size_t>(shape.samples));
  sc::sample_ranges(d.target.data(), shape.samples, shape.voxels, r.data(), exec);
  std::vector<std::int64_t> hist(static_cast<size_t>(shape.samples) * kBins);
  for (auto _ : state) {
    sc::sample_histograms(d.target.data(), shape.samples, shape.voxels, kBins, r.data(), hist.data(), exec);
    benchmark::DoNotOptimize(hist.data());
  }
  set_bytes(state, shape, 1);
}

void BM_Otsu(benchmark::State& state) {
  const Shape& shape = shape_of(state);
  const Data& d = data_for(shape);
  const sc::ThreadExecutor exec(threads_of(state));
  std::vector<float> t(static_cast<size_t>(shape.samples));
  for (auto _ : state) {
    sc::otsu_thresholds(d.target.data(), shape.samples, shape.voxels, kBins, t.data(), exec);
    benchmark::DoNotOptimize(t.data());
  }
  set_bytes(state, shape, 1);
}

void BM_LossForwardOtsu(benchmark::State& state) {
  const Shape& shape = shape_of(state);
  const Data& d = data_for(shape);
  const sc::ThreadExecutor exec(threads_of(state));
  const spotlight::LossOptions opt;
  float loss = 0;
  for (auto _ : state) {
    auto st = sc::loss_forward(d.pred.data(), d.target.data(), shape.samples, shape.voxels,
                               static_cast<const float*>(nullptr), opt, &loss, exec);
    benchmark::DoNotOptimize(loss);
  }
  set_bytes(state, shape, 2);
}

void BM_LossForwardGiven(benchmark::State& state) {
  const Shape& shape = shape_of(state);
  const Data& d = data_for(shape);
  const sc::ThreadExecutor exec(threads_of(state));
  const std::vector<float> t = thresholds_of(shape, d);
  const spotlight::LossOptions opt;
  float loss = 0;
  for (auto _ : state) {
    auto st = sc::loss_forward(d.pred.data(), d.target.data(), shape.samples, shape.voxels, t.data(), opt, &loss,
                               exec);
    benchmark::DoNotOptimize(loss);
  }
  set_bytes(state, shape, 2);
}

void BM_LossBackward(benchmark::State& state) {
  const Shape& shape = shape_of(state);
  Data& d = const_cast<Data&>(data_for(shape));
  const sc::ThreadExecutor exec(threads_of(state));
  const spotlight::LossOptions opt;
  float loss = 0;
  const auto st = sc::loss_forward(d.pred.data(), d.target.data(), shape.samples, shape.voxels,
                                   static_cast<const float*>(nullptr), opt, &loss, exec);
  const double one = 1.0;
  for (auto _ : state) {
    sc::loss_backward(d.pred.data(), d.target.data(), shape.samples, shape.voxels, st, opt, &one, d.grad.data(),
                      static_cast<float*>(nullptr), exec);
    benchmark::ClobberMemory();
  }
  set_bytes(state, shape, 3);
}

// Forward with a given threshold, then backward: one training step's loss.
void BM_LossForwardBackwardGiven(benchmark::State& state) {
  const Shape& shape = shape_of(state);
  Data& d = const_cast<Data&>(data_for(shape));
  const sc::ThreadExecutor exec(threads_of(state));
  const std::vector<float> t = thresholds_of(shape, d);
  const spotlight::LossOptions opt;
  const double one = 1.0;
  float loss = 0;
  for (auto _ : state) {
    const auto st =
        sc::loss_forward(d.pred.data(), d.target.data(), shape.samples, shape.voxels, t.data(), opt, &loss, exec);
    sc::loss_backward(d.pred.data(), d.target.data(), shape.samples, shape.voxels, st, opt, &one, d.grad.data(),
                      static_cast<float*>(nullptr), exec);
    benchmark::ClobberMemory();
  }
  set_bytes(state, shape, 5);
}

// The options of bench_cpu's variant cases: the default, then each option of
// SPEC section 11 alone, then the presets' combinations. Each case runs the
// strips its options select (LossStrip for the default and mse_term "plain",
// VariantLossStrip specialised per option otherwise).
struct Variant {
  const char* name;
  spotlight::LossOptions opt;
  bool given_mask = false;
};

std::vector<Variant> variants() {
  using namespace spotlight;
  std::vector<Variant> v;
  const auto with = [&](const char* name, auto set, bool mask = false) {
    LossOptions o;
    set(o);
    v.push_back({name, o, mask});
  };
  with("default", [](LossOptions&) {});
  with("mse_term=plain", [](LossOptions& o) { o.mse_term = MseTerm::kPlain; });
  with("soft_mask=unclamped", [](LossOptions& o) { o.soft_mask = SoftMask::kUnclamped; });
  with("soft_mask=viscy", [](LossOptions& o) { o.soft_mask = SoftMask::kViscy; });
  with("mask_rule=greater_equal", [](LossOptions& o) { o.mask_rule = MaskRule::kGreaterEqual; });
  with("given mask", [](LossOptions&) {}, true);
  with("dice_denominator=squared", [](LossOptions& o) { o.dice_denominator = DiceDenominator::kSquared; });
  with("empty_pools=viscy", [](LossOptions& o) { o.empty_pools = EmptyPools::kViscy; });
  with("reduction=mean", [](LossOptions& o) { o.reduction = Reduction::kMean; });
  with("authors", [](LossOptions& o) {
    o.soft_mask = SoftMask::kUnclamped;
    o.dice_denominator = DiceDenominator::kSquared;
    o.mse_normalization = MseNormalization::kAll;
  });
  with("viscy", [](LossOptions& o) {
    o.mask_rule = MaskRule::kGreaterEqual;
    o.soft_mask = SoftMask::kViscy;
    o.empty_pools = EmptyPools::kViscy;
    o.reduction = Reduction::kMean;
  });
  return v;
}

// Forward with a given threshold (0, as the presets take), then backward,
// under the options of variants()[state.range(2)].
void BM_LossVariant(benchmark::State& state) {
  const Shape& shape = shape_of(state);
  Data& d = const_cast<Data&>(data_for(shape));
  const sc::ThreadExecutor exec(threads_of(state));
  const Variant var = variants()[static_cast<size_t>(state.range(2))];
  state.SetLabel(var.name);
  spotlight::LossOptions opt = var.opt;
  std::vector<unsigned char> mask;
  if (var.given_mask) {
    mask.resize(d.target.size());
    for (size_t i = 0; i < mask.size(); ++i) mask[i] = d.target[i] > 0.0f;
    opt.mask = reinterpret_cast<const bool*>(mask.data());
  }
  const std::vector<float> t(static_cast<size_t>(shape.samples), 0.0f);
  std::vector<float> loss(static_cast<size_t>(shape.samples));
  for (auto _ : state) {
    const auto st = sc::loss_forward(d.pred.data(), d.target.data(), shape.samples, shape.voxels, t.data(), opt,
                                     loss.data(), exec);
    std::vector<double> g(opt.reduction == spotlight::Reduction::kNone ? static_cast<size_t>(shape.samples) : 1,
                          1.0);
    sc::loss_backward(d.pred.data(), d.target.data(), shape.samples, shape.voxels, st, opt, g.data(),
                      d.grad.data(), static_cast<float*>(nullptr), exec);
    benchmark::ClobberMemory();
  }
  set_bytes(state, shape, 5);
}

// Forward with Otsu thresholds, then backward: the Otsu path's training step.
void BM_LossForwardBackwardOtsu(benchmark::State& state) {
  const Shape& shape = shape_of(state);
  Data& d = const_cast<Data&>(data_for(shape));
  const sc::ThreadExecutor exec(threads_of(state));
  const spotlight::LossOptions opt;
  const double one = 1.0;
  float loss = 0;
  for (auto _ : state) {
    const auto st = sc::loss_forward(d.pred.data(), d.target.data(), shape.samples, shape.voxels,
                                     static_cast<const float*>(nullptr), opt, &loss, exec);
    sc::loss_backward(d.pred.data(), d.target.data(), shape.samples, shape.voxels, st, opt, &one, d.grad.data(),
                      static_cast<float*>(nullptr), exec);
    benchmark::ClobberMemory();
  }
  set_bytes(state, shape, 5);
}

void BM_Standardize(benchmark::State& state) {
  const Shape& shape = shape_of(state);
  Data& d = const_cast<Data&>(data_for(shape));
  const sc::ThreadExecutor exec(threads_of(state));
  for (auto _ : state) {
    sc::otsu_standardize(d.target.data(), shape.samples, shape.voxels, kBins, d.out.data(), exec);
    benchmark::ClobberMemory();
  }
  set_bytes(state, shape, 2);
}

// Every benchmark on every shape, with 1 thread and with all of them.
void shapes_and_threads(benchmark::internal::Benchmark* b) {
  b->ArgNames({"shape", "threads"});
  const int all = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (int s = 0; s < static_cast<int>(std::size(kShapes)); ++s) {
    b->Args({s, 1});
    if (all > 1) b->Args({s, all});
  }
  b->UseRealTime()->Unit(benchmark::kMillisecond);
}

// Every variant on the training batch, with all hardware threads.
void variant_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"shape", "threads", "variant"});
  const int all = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (int v = 0; v < static_cast<int>(variants().size()); ++v) b->Args({0, all, v});
  b->UseRealTime()->Unit(benchmark::kMillisecond);
}

BENCHMARK(BM_Memcpy)->Apply(shapes_and_threads);
BENCHMARK(BM_SampleRanges)->Apply(shapes_and_threads);
BENCHMARK(BM_Histograms)->Apply(shapes_and_threads);
BENCHMARK(BM_Otsu)->Apply(shapes_and_threads);
BENCHMARK(BM_LossForwardOtsu)->Apply(shapes_and_threads);
BENCHMARK(BM_LossForwardGiven)->Apply(shapes_and_threads);
BENCHMARK(BM_LossBackward)->Apply(shapes_and_threads);
BENCHMARK(BM_LossForwardBackwardGiven)->Apply(shapes_and_threads);
BENCHMARK(BM_LossForwardBackwardOtsu)->Apply(shapes_and_threads);
BENCHMARK(BM_LossVariant)->Apply(variant_args);
BENCHMARK(BM_Standardize)->Apply(shapes_and_threads);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("shapes", "0=24x1x32x64x64, 1=1x1x64x624x924, 2=1x1x60x256x256 (float32)");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
