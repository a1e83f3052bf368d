// Reads an rnnfast deployment file (python/rnnfast/deploy.py): a safetensors file whose header
// metadata says format "rnnfast.model" and a format_version this library knows.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace rnnfast::capi {

// Files of version 1 hold no options; version 2 may set the cell variants, the direction and
// `residual`. A writer uses the lowest version that holds its model, so a reader of an older
// version refuses what it would misread.
constexpr int kFormatVersion = 2;  // the newest this library reads
constexpr int kOldestFormatVersion = 1;

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
