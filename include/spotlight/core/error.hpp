// The one exception type of the C++ API. Every check runs before any work
// and names the offending argument, so a message reads like
// "spotlight: k must lie in the open interval (-1, 1), got 1".
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace spotlight {

class Error : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

namespace detail {
template <class... Parts>
[[noreturn]] inline void fail(const Parts&... parts) {
  std::ostringstream out;
  out << "spotlight: ";
  (out << ... << parts);
  throw Error(out.str());
}
}  // namespace detail

// Throws spotlight::Error with the concatenated message when `ok` is false.
template <class... Parts>
inline void check(bool ok, const Parts&... parts) {
  if (!ok) detail::fail(parts...);
}

}  // namespace spotlight
