// Reads an rnnfast deployment file (python/rnnfast/deploy.py): a safetensors file whose header
// metadata says format "rnnfast.model" and a format_version this library knows.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace rnnfast::capi {

// The newest format version read (1 and 2: version 2 adds the cell variants and direction).
constexpr int kFormatVersion = 2;

struct ModelFile {
  struct Tensor {
    std::vector<long> shape;
    std::vector<float> data;
  };
  std::map<std::string, std::string> meta;
  std::map<std::string, Tensor> tensors;

  const std::string& field(const std::string& key) const;  // FormatError when absent
  int int_field(const std::string& key, int minimum) const;
  // The float32 tensor `name` with this shape (FormatError otherwise).
  const std::vector<float>& tensor(const std::string& name, const std::vector<long>& shape) const;
};

// IoError when the file cannot be read, FormatError when it is not a valid model file.
ModelFile read_model_file(const std::string& path);

}  // namespace rnnfast::capi
