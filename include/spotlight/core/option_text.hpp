// LossOptions from text: "name=value" items, as a configuration file or a
// language binding writes them. One parser for every option (the list of
// core/options.hpp), and the checks of LossOptions::validate: a value that
// does not parse gets the message of a value out of range, showing the text,
// e.g. "bins must be an integer in [2, 65536], got 2.5".
#pragma once

#include <charconv>
#include <limits>
#include <string_view>
#include <type_traits>

#include "spotlight/core/error.hpp"
#include "spotlight/core/options.hpp"

namespace spotlight {

namespace detail {

// The whole of `text` as a V (double or long long), or `otherwise` when it is not one.
template <class V>
V parse_number(std::string_view text, V otherwise, bool& ok) {
  V out{};
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, out);
  ok = ec == std::errc() && ptr == end && !text.empty();
  return ok ? out : otherwise;
}

template <class V>
void set_from_text(LossOptions& opt, const OptionField<V>& o, std::string_view text) {
  bool ok = false;
  if constexpr (std::is_same_v<V, double>) {
    // Text that is no number reads as NaN, which fails every check of a double option.
    const double v = parse_number(text, std::numeric_limits<double>::quiet_NaN(), ok);
    o.check(v, ok ? std::string_view() : text);
    opt.*o.field = v;
  } else if constexpr (std::is_same_v<V, int>) {
    const long long v = parse_number(text, std::numeric_limits<long long>::min(), ok);  // fails every int check
    o.check(v, ok ? std::string_view() : text);
    opt.*o.field = static_cast<int>(v);
  } else if constexpr (std::is_same_v<V, bool>) {
    check(text == "True" || text == "False", o.name, " must be True or False, got ", text);
    opt.*o.field = text == "True";
  } else {
    opt.*o.field = parse_option<V>(text);
  }
}

}  // namespace detail

// Sets option `name` of `opt` from `text` (a number as Python's repr or C's
// printf writes it; True or False; an enum's name). Throws spotlight::Error
// naming the option (an unknown name too).
inline void set_option(LossOptions& opt, std::string_view name, std::string_view text) {
  bool found = false;
  for_each_option([&](const auto& o) {
    if (o.name != name) return;
    found = true;
    detail::set_from_text(opt, o, text);
  });
  check(found, "unknown loss option '", name, "'");
}

// LossOptions from "name=value" items (defaults for the options not named),
// validated.
template <class Items>
LossOptions options_from_text(const Items& items) {
  LossOptions opt;
  for (std::string_view item : items) {
    const size_t eq = item.find('=');
    check(eq != std::string_view::npos, "a loss option must be written name=value, got '", item, "'");
    set_option(opt, item.substr(0, eq), item.substr(eq + 1));
  }
  opt.validate();
  return opt;
}

}  // namespace spotlight
