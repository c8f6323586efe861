// The passes of the fused loss one at a time, for an instruction count per
// voxel under callgrind (which counts the same on a loaded machine; see
// docs/benchmarks.md):
//
//   valgrind --tool=callgrind --callgrind-out-file=cg.out build/<dir>/benchmarks/spotlight_pass_instructions
//   callgrind_annotate --inclusive=yes cg.out | grep pass_
//
// Each pass_* function runs once over the training batch 24x1x32x64x64
// (float32, one thread, the AVX2 path where the CPU has it; the data of
// bench_data.hpp): divide its inclusive count by 24 * 32 * 64 * 64 = 3145728.
// pass_read2_write1 is the floor of a pass that reads pred and target and
// writes one value per voxel (g = p - y), compiled as the kernels are.
//
// With `--time N`, it also times each pass: the fastest of N calls (after one
// untimed call), in ms, and the Otsu path's forward+backward over the given
// threshold's; the fastest call is the one least disturbed by other jobs.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "bench_data.hpp"
#include "spotlight/core/loss_terms.hpp"
#include "spotlight/cpu/isa.hpp"
#include "spotlight/cpu/loss.hpp"
#include "spotlight/cpu/otsu.hpp"

namespace sc = spotlight::cpu;
using spotlight::index_t;

namespace {

constexpr index_t kSamples = 24, kVoxels = 32 * 64 * 64;

[[gnu::noinline]] void pass_loss_sums(const float* p, const float* y, const float* t, spotlight::LossSums* s) {
  sc::loss_sums(p, y, kSamples, kVoxels, t, spotlight::LossOptions{}, s, sc::SerialExecutor{});
}

[[gnu::noinline]] void pass_backward(const float* p, const float* y, const float* t,
                                     const spotlight::GradCoefficients* c, float* g) {
  sc::loss_backward_apply(p, y, kSamples, kVoxels, t, c, spotlight::LossOptions{}, g, static_cast<float*>(nullptr),
                          sc::SerialExecutor{});
}

[[gnu::noinline]] void pass_otsu_range(const float* y, sc::SampleRange<float>* r) {
  sc::sample_ranges(y, kSamples, kVoxels, r, sc::SerialExecutor{});
}

[[gnu::noinline]] void pass_otsu_histogram(const float* y, const sc::SampleRange<float>* r, std::int64_t* h) {
  sc::sample_histograms(y, kSamples, kVoxels, spotlight::defaults::kBins, r, h, sc::SerialExecutor{});
}

// The whole forward with Otsu thresholds (range, histogram and sums of each
// sample; the histogram of sample s + 1 counted during the sums of sample s).
[[gnu::noinline]] void pass_forward_otsu(const float* p, const float* y, float* loss) {
  sc::loss_forward(p, y, kSamples, kVoxels, static_cast<const float*>(nullptr), spotlight::LossOptions{}, loss,
                   sc::SerialExecutor{});
}

[[gnu::noinline]] void pass_read2_write1(const float* p, const float* y, float* g) {
  sc::with_best_isa([&] {
    for (index_t i = 0; i < kSamples * kVoxels; ++i) g[i] = p[i] - y[i];
  });
}

// The fastest of `calls` calls of f, in ms.
template <class F>
double fastest_ms(int calls, const F& f) {
  f();
  double best = 1e300;
  for (int c = 0; c < calls; ++c) {
    const auto start = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<float> pred, target;
  spotlight_bench::make_data({"train", kSamples, kVoxels}, pred, target);
  std::vector<float> grad(pred.size()), t(kSamples);
  std::vector<sc::SampleRange<float>> ranges(kSamples);
  std::vector<std::int64_t> hist(static_cast<size_t>(kSamples) * spotlight::defaults::kBins);
  pass_otsu_range(target.data(), ranges.data());
  pass_otsu_histogram(target.data(), ranges.data(), hist.data());
  for (index_t s = 0; s < kSamples; ++s)
    t[s] = sc::threshold_from_histogram(ranges[s], hist.data() + s * spotlight::defaults::kBins,
                                        spotlight::defaults::kBins);
  std::vector<spotlight::LossSums> sums(kSamples);
  pass_loss_sums(pred.data(), target.data(), t.data(), sums.data());
  std::vector<spotlight::GradCoefficients> coef(kSamples);
  const double one = 1.0;
  spotlight::gradient_coefficients(sums.data(), kSamples, kVoxels, spotlight::LossOptions{}, &one, coef.data());
  pass_backward(pred.data(), target.data(), t.data(), coef.data(), grad.data());
  pass_read2_write1(pred.data(), target.data(), grad.data());
  float loss = 0;
  pass_forward_otsu(pred.data(), target.data(), &loss);
  std::printf("voxels per pass: %lld (grad[0] %g, loss %g)\n", static_cast<long long>(kSamples * kVoxels),
              static_cast<double>(grad[0]), static_cast<double>(loss));
  if (argc == 3 && std::strcmp(argv[1], "--time") == 0) {
    const int calls = std::max(1, std::atoi(argv[2]));
    const double range = fastest_ms(calls, [&] { pass_otsu_range(target.data(), ranges.data()); });
    const double histogram = fastest_ms(calls, [&] { pass_otsu_histogram(target.data(), ranges.data(), hist.data()); });
    const double sums_ms =
        fastest_ms(calls, [&] { pass_loss_sums(pred.data(), target.data(), t.data(), sums.data()); });
    const double otsu = fastest_ms(calls, [&] { pass_forward_otsu(pred.data(), target.data(), &loss); });
    const double backward =
        fastest_ms(calls, [&] { pass_backward(pred.data(), target.data(), t.data(), coef.data(), grad.data()); });
    const double floor = fastest_ms(calls, [&] { pass_read2_write1(pred.data(), target.data(), grad.data()); });
    std::printf("fastest of %d calls, ms: range %.3f, histogram %.3f, sums %.3f, forward with Otsu %.3f, "
                "backward %.3f, read 2 write 1 %.3f\n",
                calls, range, histogram, sums_ms, otsu, backward, floor);
    std::printf("forward+backward: given T %.3f, Otsu %.3f (%.2fx)\n", sums_ms + backward, otsu + backward,
                (otsu + backward) / (sums_ms + backward));
  }
  return 0;
}
