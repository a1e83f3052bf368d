// The C API's error kinds: each exception type maps to one rnnfast_status (capi.cpp).
#pragma once

#include <stdexcept>
#include <string>

namespace rnnfast::capi {

struct IoError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct FormatError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct UnsupportedError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// Bad arguments are std::invalid_argument, as in the core.

}  // namespace rnnfast::capi
