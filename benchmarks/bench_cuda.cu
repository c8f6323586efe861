// Google Benchmark programs for the CUDA header kernels (include/spotlight/cuda),
// float32, on the shapes of bench_cpu.cpp, timed by CUDA events around each
// iteration (manual time: launch to completion on the stream, no host
// overhead beyond the launches). bytes/s counts bytes read + written once per
// call, as in bench_cpu.cpp; a device-to-device cudaMemcpyAsync of one N*V
// float buffer is the bandwidth floor.
//
// Without a usable GPU every benchmark reports "no CUDA device" and skips.
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "bench_data.hpp"
#include "spotlight/cuda.cuh"

namespace scu = spotlight::cuda;
using spotlight::index_t;

namespace {

using spotlight_bench::kShapes;
using spotlight_bench::Shape;

bool check(benchmark::State& state, cudaError_t e) {
  if (e == cudaSuccess) return true;
  state.SkipWithError(cudaGetErrorString(e));
  return false;
}

// Device memory that frees itself.
struct DeviceDeleter {
  void operator()(void* p) const { cudaFree(p); }
};
template <class T>
using DevicePtr = std::unique_ptr<T, DeviceDeleter>;
template <class T>
DevicePtr<T> device_alloc(size_t count) {
  void* p = nullptr;
  if (cudaMalloc(&p, count * sizeof(T) + 1) != cudaSuccess) return nullptr;
  return DevicePtr<T>(static_cast<T*>(p));
}

// The data of bench_cpu.cpp (same generator), on the device.
struct Data {
  DevicePtr<float> pred, target, grad, out;
};

Data* data_for(benchmark::State& state, const Shape& shape) {
  static std::vector<std::unique_ptr<Data>> cache(std::size(kShapes));
  auto& d = cache[static_cast<size_t>(&shape - kShapes)];
  if (d) return d.get();
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    state.SkipWithError("no CUDA device");
    return nullptr;
  }
  std::vector<float> pred, target;
  spotlight_bench::make_data(shape, pred, target);
  const size_t n = target.size();
  auto nd = std::make_unique<Data>();
  nd->pred = device_alloc<float>(n);
  nd->target = device_alloc<float>(n);
  nd->grad = device_alloc<float>(n);
  nd->out = device_alloc<float>(n);
  if (!nd->pred || !nd->target || !nd->grad || !nd->out ||
      !check(state, cudaMemcpy(nd->pred.get(), pred.data(), n * sizeof(float), cudaMemcpyHostToDevice)) ||
      !check(state, cudaMemcpy(nd->target.get(), target.data(), n * sizeof(float), cudaMemcpyHostToDevice))) {
    if (!state.error_occurred()) state.SkipWithError("cudaMalloc failed");
    return nullptr;
  }
  d = std::move(nd);
  return d.get();
}

const Shape& shape_of(const benchmark::State& state) { return kShapes[state.range(0)]; }

void set_bytes(benchmark::State& state, const Shape& shape, int arrays) {
  state.SetBytesProcessed(state.iterations() * shape.samples * shape.voxels * arrays *
                          static_cast<std::int64_t>(sizeof(float)));
}

// Times `launch(stream)` per iteration with CUDA events.
template <class Launch>
void time_launches(benchmark::State& state, Launch launch) {
  cudaStream_t stream = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr;
  if (!check(state, cudaStreamCreate(&stream)) || !check(state, cudaEventCreate(&start)) ||
      !check(state, cudaEventCreate(&stop)))
    return;
  if (check(state, launch(stream)) && check(state, cudaStreamSynchronize(stream))) {  // warm-up
    for (auto _ : state) {
      cudaEventRecord(start, stream);
      const cudaError_t e = launch(stream);
      cudaEventRecord(stop, stream);
      if (!check(state, e) || !check(state, cudaEventSynchronize(stop))) break;
      float ms = 0;
      cudaEventElapsedTime(&ms, start, stop);
      state.SetIterationTime(ms / 1e3);
    }
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaStreamDestroy(stream);
}

void BM_CudaMemcpy(benchmark::State& state) {
  const Shape& shape = shape_of(state);
  Data* d = data_for(state, shape);
  if (!d) return;
  const size_t bytes = static_cast<size_t>(shape.samples * shape.voxels) * sizeof(float);
  time_launches(state, [&](cudaStream_t s) {
    return cudaMemcpyAsync(d->out.get(), d->target.get(), bytes, cudaMemcpyDeviceToDevice, s);
  });
  set_bytes(state, shape, 2);
}

void BM_CudaOtsu(benchmark::State& state) {
  const Shape& shape = shape_of(state);
  Data* d = data_for(state, shape);
  if (!d) return;
  const size_t ws = scu::otsu_thresholds_workspace_bytes<float>(shape.samples, shape.voxels, 256);
  auto workspace = device_alloc<char>(ws);
  auto thresholds = device_alloc<float>(static_cast<size_t>(shape.samples));
  time_launches(state, [&](cudaStream_t s) {
    return scu::otsu_thresholds(d->target.get(), shape.samples, shape.voxels, 256, thresholds.get(), workspace.get(),
                                ws, s);
  });
  set_bytes(state, shape, 1);
}

// Forward (Otsu or given thresholds), then the backward when `backward`.
void loss_benchmark(benchmark::State& state, bool otsu, bool forward, bool backward, int arrays) {
  const Shape& shape = shape_of(state);
  Data* d = data_for(state, shape);
  if (!d) return;
  const spotlight::LossOptions opt;
  const size_t n = static_cast<size_t>(shape.samples);
  auto loss = device_alloc<float>(n);
  auto thresholds = device_alloc<float>(n);
  auto given = device_alloc<float>(n);
  auto sums = device_alloc<spotlight::LossSums>(n);
  auto grad_out = device_alloc<double>(1);
  const double one = 1.0;
  const size_t fws = scu::loss_forward_workspace_bytes<float>(shape.samples, shape.voxels, opt.bins, true);
  const size_t bws = scu::loss_backward_workspace_bytes<float>(shape.samples, opt.reduction);
  auto fwork = device_alloc<char>(fws);
  auto bwork = device_alloc<char>(bws);
  if (!check(state, cudaMemcpy(grad_out.get(), &one, sizeof one, cudaMemcpyHostToDevice))) return;
  auto run_forward = [&](cudaStream_t s, const float* given_thresholds) {
    return scu::loss_forward(d->pred.get(), d->target.get(), shape.samples, shape.voxels, given_thresholds, opt,
                             loss.get(), thresholds.get(), sums.get(), fwork.get(), fws, s);
  };
  // The thresholds the given-threshold cases take, and the state the backward needs.
  if (!check(state, run_forward(nullptr, nullptr)) ||
      !check(state, cudaMemcpy(given.get(), thresholds.get(), n * sizeof(float), cudaMemcpyDeviceToDevice)))
    return;
  const float* given_thresholds = otsu ? nullptr : given.get();
  time_launches(state, [&](cudaStream_t s) {
    if (forward) {
      const cudaError_t e = run_forward(s, given_thresholds);
      if (e != cudaSuccess) return e;
    }
    if (!backward) return cudaSuccess;
    return scu::loss_backward(grad_out.get(), index_t{1}, d->pred.get(), d->target.get(), shape.samples,
                              shape.voxels, thresholds.get(), sums.get(), opt, d->grad.get(),
                              static_cast<float*>(nullptr), bwork.get(), bws, s);
  });
  set_bytes(state, shape, arrays);
}

void BM_CudaLossForwardOtsu(benchmark::State& state) { loss_benchmark(state, true, true, false, 2); }
void BM_CudaLossForwardGiven(benchmark::State& state) { loss_benchmark(state, false, true, false, 2); }
void BM_CudaLossBackward(benchmark::State& state) { loss_benchmark(state, false, false, true, 3); }
void BM_CudaLossForwardBackwardGiven(benchmark::State& state) { loss_benchmark(state, false, true, true, 5); }
void BM_CudaLossForwardBackwardOtsu(benchmark::State& state) { loss_benchmark(state, true, true, true, 5); }

void BM_CudaStandardize(benchmark::State& state) {
  const Shape& shape = shape_of(state);
  Data* d = data_for(state, shape);
  if (!d) return;
  const size_t ws = scu::otsu_standardize_workspace_bytes<float>(shape.samples, shape.voxels, 256);
  auto workspace = device_alloc<char>(ws);
  time_launches(state, [&](cudaStream_t s) {
    return scu::otsu_standardize(d->target.get(), shape.samples, shape.voxels, 256, d->out.get(), workspace.get(), ws,
                                 s);
  });
  set_bytes(state, shape, 2);
}

void shapes(benchmark::internal::Benchmark* b) {
  b->ArgName("shape");
  for (int s = 0; s < static_cast<int>(std::size(kShapes)); ++s) b->Arg(s);
  b->UseManualTime()->Unit(benchmark::kMicrosecond);
}

BENCHMARK(BM_CudaMemcpy)->Apply(shapes);
BENCHMARK(BM_CudaOtsu)->Apply(shapes);
BENCHMARK(BM_CudaLossForwardOtsu)->Apply(shapes);
BENCHMARK(BM_CudaLossForwardGiven)->Apply(shapes);
BENCHMARK(BM_CudaLossBackward)->Apply(shapes);
BENCHMARK(BM_CudaLossForwardBackwardGiven)->Apply(shapes);
BENCHMARK(BM_CudaLossForwardBackwardOtsu)->Apply(shapes);
BENCHMARK(BM_CudaStandardize)->Apply(shapes);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("shapes", "0=24x1x32x64x64, 1=1x1x64x624x924, 2=1x1x60x256x256 (float32)");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
