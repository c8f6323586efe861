// The loss options between the op schemas and the kernels, in one form: the
// list of core/options.hpp (spotlight::for_each_option) writes the schema
// text of every op that takes the options by name, reads them from a boxed
// call by name, and packs them into the one `float[] options` argument the
// private ops (_loss_forward, _loss_backward) and the autograd node carry.
// Nothing here names an option: adding one is a line of that list.
#pragma once

#include <ATen/core/function_schema.h>
#include <ATen/core/ivalue.h>
#include <ATen/core/stack.h>
#include <c10/util/ArrayRef.h>

#include <charconv>
#include <optional>
#include <string_view>
#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

#include "ops/common.h"
#include "spotlight/core/options.hpp"

namespace spotlight_ops {

// A default as schema text: the shortest decimal that reads back as the same
// double, an integer, True/False, or an enum's quoted name.
inline std::string schema_value(double v) {
  char buf[32];
  return {buf, std::to_chars(buf, buf + sizeof buf, v).ptr};
}
inline std::string schema_value(int v) { return std::to_string(v); }
inline std::string schema_value(bool v) { return v ? "True" : "False"; }
template <class E>
  requires std::is_enum_v<E>
std::string schema_value(E v) {
  std::string out(1, '"');
  out += spotlight::option_name(v);
  out += '"';
  return out;
}

template <class V>
const char* schema_type() {
  if constexpr (std::is_same_v<V, double>) return "float";
  if constexpr (std::is_same_v<V, int>) return "int";
  if constexpr (std::is_same_v<V, bool>) return "bool";
  return "str";  // an enum, by name
}

// The options' part of a schema, with their defaults: "float lam=0.5, ...,
// *, Tensor? mask=None, str soft_mask=\"clamped\", ...". The given mask
// (a tensor) leads the keyword-only options.
inline std::string options_schema() {
  const spotlight::LossOptions defaults;
  std::string out;
  bool keywords = false;
  spotlight::for_each_option([&](const auto& o) {
    using V = std::remove_cvref_t<decltype(defaults.*o.field)>;
    if (o.keyword_only && !keywords) {
      out += "*, Tensor? mask=None, ";
      keywords = true;
    }
    out += std::string(schema_type<V>()) + " " + std::string(o.name) + "=" + schema_value(defaults.*o.field) + ", ";
  });
  out.resize(out.size() - 2);  // the last ", "
  return out;
}

namespace detail {

inline double boxed_double(const c10::IValue& v) {
  if (v.isSymFloat()) return v.toSymFloat().guard_float(__FILE__, __LINE__);
  return v.isInt() ? static_cast<double>(v.toInt()) : v.toDouble();
}
inline int64_t boxed_int(const c10::IValue& v) {
  return v.isSymInt() ? v.toSymInt().guard_int(__FILE__, __LINE__) : v.toInt();
}

}  // namespace detail

// The options of a boxed call of an op whose schema names them (see
// options_schema); the call's arguments start at stack[base]. Validated:
// a bad value is a ValueError naming the option.
inline spotlight::LossOptions options_from_stack(const c10::FunctionSchema& schema, const torch::jit::Stack& stack,
                                                 size_t base) {
  spotlight::LossOptions opt;
  translate_errors([&] {
    spotlight::for_each_option([&](const auto& o) {
      using V = std::remove_cvref_t<decltype(opt.*o.field)>;
      const auto index = schema.argumentIndexWithName(o.name);
      TORCH_INTERNAL_ASSERT(index.has_value(), "spotlight: ", schema.name(), " lacks option ", o.name);
      const c10::IValue& v = stack[base + *index];
      if constexpr (std::is_same_v<V, double>) {
        opt.*o.field = detail::boxed_double(v);
      } else if constexpr (std::is_same_v<V, int>) {
        const int64_t i = detail::boxed_int(v);
        o.check(i, {});  // before narrowing
        opt.*o.field = static_cast<int>(i);
      } else if constexpr (std::is_same_v<V, bool>) {
        opt.*o.field = v.toBool();
      } else {
        opt.*o.field = spotlight::parse_option<V>(v.toStringRef());
      }
    });
    opt.validate();
    return 0;
  });
  return opt;
}

// The arguments of a boxed call of an op whose schema takes the options by
// name (loss, _loss_and_sums), in its order: how C++ callers call it from
// LossOptions without spelling the option list.
inline torch::jit::Stack loss_call_stack(const c10::FunctionSchema& schema, const Tensor& pred, const Tensor& target,
                                         const std::optional<Tensor>& threshold, const std::optional<Tensor>& mask,
                                         const spotlight::LossOptions& opt) {
  torch::jit::Stack stack(schema.arguments().size());
  const auto set = [&](std::string_view name, c10::IValue v) {
    const auto index = schema.argumentIndexWithName(name);
    TORCH_INTERNAL_ASSERT(index.has_value(), "spotlight: ", schema.name(), " lacks argument ", name);
    stack[*index] = std::move(v);
  };
  set("pred", pred);
  set("target", target);
  set("threshold", threshold.has_value() ? c10::IValue(*threshold) : c10::IValue());
  set("mask", mask.has_value() ? c10::IValue(*mask) : c10::IValue());
  spotlight::for_each_option([&](const auto& o) {
    using V = std::remove_cvref_t<decltype(opt.*o.field)>;
    if constexpr (std::is_enum_v<V>)
      set(o.name, std::string(spotlight::option_name(opt.*o.field)));
    else if constexpr (std::is_same_v<V, int>)
      set(o.name, static_cast<int64_t>(opt.*o.field));
    else
      set(o.name, opt.*o.field);
  });
  return stack;
}

// The one packed argument: every option as a double, in the list's order
// (enums as their values, bins and flags exactly), then count_above (which
// only _loss_and_sums sets).
inline std::vector<double> pack_options(const spotlight::LossOptions& opt) {
  std::vector<double> out;
  spotlight::for_each_option([&](const auto& o) { out.push_back(static_cast<double>(opt.*o.field)); });
  out.push_back(opt.count_above ? 1.0 : 0.0);
  return out;
}

inline size_t option_count() { return pack_options({}).size(); }

// The inverse of pack_options, validated (a hand-made list is checked like
// any call).
inline spotlight::LossOptions unpack_options(c10::ArrayRef<double> packed) {
  TORCH_CHECK_VALUE(packed.size() == option_count(), "spotlight: options must hold ", option_count(),
                    " values (spotlight::for_each_option), got ", packed.size());
  spotlight::LossOptions opt;
  size_t at = 0;
  translate_errors([&] {
    spotlight::for_each_option([&](const auto& o) {
      using V = std::remove_cvref_t<decltype(opt.*o.field)>;
      const double v = packed[at++];
      if constexpr (std::is_same_v<V, int>) {
        o.check(std::abs(v) < 1e18 ? static_cast<long long>(v) : -1, {});  // before narrowing
        spotlight::check(static_cast<double>(static_cast<long long>(v)) == v, o.name, " must be an integer, got ", v);
      } else if constexpr (std::is_enum_v<V>) {
        bool known = false;
        for (const auto& named : spotlight::OptionNames<V>::values) known |= static_cast<double>(named.value) == v;
        spotlight::check(known, o.name, " must be one of the values of ", spotlight::allowed_names<V>(), ", got ", v);
      }
      opt.*o.field = static_cast<V>(v);
    });
    opt.count_above = packed[at] != 0.0;
    opt.validate();
    return 0;
  });
  return opt;
}

}  // namespace spotlight_ops
