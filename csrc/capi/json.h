// A small strict JSON reader for the safetensors header of a model file (objects, arrays, strings,
// numbers, true/false/null). Errors are std::runtime_error naming the byte offset.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace rnnfast::capi {

struct Json {
  enum class Type { null, boolean, number, string, array, object } type = Type::null;
  bool boolean = false;
  double number = 0.0;
  std::string string;
  std::vector<Json> array;
  std::vector<std::pair<std::string, Json>> object;

  const Json* find(const std::string& key) const;  // objects only; null when absent
};

Json parse_json(const char* text, size_t size);

}  // namespace rnnfast::capi
