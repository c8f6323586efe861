// Shared glue of the op library: argument checks that name the argument,
// conversion of spotlight::Error into c10 errors, and the executor that runs
// the header kernels on ATen's thread pool.
#pragma once

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <c10/util/Exception.h>

#include <string>
#include <utility>

#include "spotlight/core/error.hpp"
#include "spotlight/core/options.hpp"

namespace spotlight_ops {

using at::Tensor;

// Runs header tasks on ATen's intra-op pool (honours torch.set_num_threads).
struct AtenExecutor {
  // The task split follows torch's thread setting (torch.set_num_threads), not the hardware's.
  unsigned threads() const { return static_cast<unsigned>(at::get_num_threads()); }

  template <class F>
  void operator()(int64_t tasks, F&& f) const {
    at::parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) f(t);
    });
  }
};

// Runs `f`, turning spotlight::Error into the ValueError PyTorch users expect.
template <class F>
decltype(auto) translate_errors(F&& f) {
  try {
    return f();
  } catch (const spotlight::Error& e) {
    TORCH_CHECK_VALUE(false, e.what());
  }
}

inline void check_floating(const Tensor& t, const char* name) {
  TORCH_CHECK(t.defined(), "spotlight: ", name, " must be a tensor, got None");
  TORCH_CHECK_TYPE(at::isFloatingType(t.scalar_type()) && t.scalar_type() != at::kFloat8_e4m3fn &&
                       t.scalar_type() != at::kFloat8_e5m2 && t.scalar_type() != at::kFloat8_e4m3fnuz &&
                       t.scalar_type() != at::kFloat8_e5m2fnuz,
                   "spotlight: ", name, " must be float32, float64, float16 or bfloat16, got ", t.scalar_type());
  TORCH_CHECK(t.layout() == at::kStrided, "spotlight: ", name, " must be a dense (strided) tensor, got layout ",
              t.layout());
}

// Samples are the indices of dim 0; voxels the rest (SPEC preamble). Sizes
// may be symbolic (the meta kernels under torch.compile and torch.export).
inline std::pair<c10::SymInt, c10::SymInt> sym_samples_and_voxels(const Tensor& t, const char* name) {
  TORCH_CHECK_VALUE(t.dim() >= 1, "spotlight: ", name,
                    " must have a batch dimension (at least 1 dim), got a 0-dim tensor");
  const c10::SymInt samples = t.sym_size(0);
  TORCH_CHECK_VALUE(samples > 0 && t.sym_numel() > 0, "spotlight: ", name,
                    " must hold at least one sample of at least one voxel, got shape ", t.sym_sizes());
  return {samples, t.sym_numel() / samples};
}

inline std::pair<int64_t, int64_t> samples_and_voxels(const Tensor& t, const char* name) {
  const auto [samples, voxels] = sym_samples_and_voxels(t, name);
  return {samples.expect_int(), voxels.expect_int()};
}

inline void check_same(const Tensor& a, const char* a_name, const Tensor& b, const char* b_name) {
  TORCH_CHECK_VALUE(a.sym_sizes() == b.sym_sizes(), "spotlight: ", b_name, " must have the shape of ", a_name, " ",
                    a.sym_sizes(), ", got ", b.sym_sizes());
  TORCH_CHECK_TYPE(a.scalar_type() == b.scalar_type(), "spotlight: ", b_name, " must have the dtype of ", a_name,
                   " (", a.scalar_type(), "), got ", b.scalar_type());
  TORCH_CHECK(a.device() == b.device(), "spotlight: ", b_name, " must be on the device of ", a_name, " (",
              a.device(), "), got ", b.device());
}

inline void check_mask(const Tensor& mask, const Tensor& like, const char* like_name) {
  TORCH_CHECK(mask.defined(), "spotlight: mask must be a tensor, got None");
  TORCH_CHECK_TYPE(mask.scalar_type() == at::kBool, "spotlight: mask must be a bool tensor, got ",
                   mask.scalar_type());
  TORCH_CHECK_VALUE(mask.sym_sizes() == like.sym_sizes(), "spotlight: mask must have the shape of ", like_name, " ",
                    like.sym_sizes(), ", got ", mask.sym_sizes());
  TORCH_CHECK(mask.device() == like.device(), "spotlight: mask must be on the device of ", like_name, " (",
              like.device(), "), got ", mask.device());
}

// An op's string option, parsed by the header's parser
// (spotlight/core/options.hpp); a bad name is a ValueError naming the argument.
template <class E>
E parse(c10::string_view name) {
  return translate_errors([&] { return spotlight::parse_option<E>(std::string_view(name.data(), name.size())); });
}

inline void check_eps(double eps) {
  translate_errors([&] { spotlight::check_eps(eps); });
}

// The accumulation dtype of a tensor dtype: float64 for float64, else float32.
inline at::ScalarType acc_dtype(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

}  // namespace spotlight_ops
