#include "model_file.h"

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>

#include "errors.h"
#include "json.h"

namespace rnnfast::capi {

namespace {

constexpr uint64_t kMaxHeader = 100u << 20;  // safetensors' own limit

std::string shape_str(const std::vector<long>& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + (s.size() == 1 ? ",)" : ")");
}

uint64_t whole_number(const Json& v, const std::string& what) {
  if (v.type != Json::Type::number || v.number < 0 || v.number > 9.0e15 || v.number != static_cast<double>(static_cast<uint64_t>(v.number)))
    throw FormatError(what + ": expected a non-negative integer");
  return static_cast<uint64_t>(v.number);
}

}  // namespace

const std::string& ModelFile::field(const std::string& key) const {
  auto it = meta.find(key);
  if (it == meta.end()) throw FormatError("metadata field '" + key + "' is missing");
  return it->second;
}

int ModelFile::int_field(const std::string& key, int minimum) const {
  const std::string& s = field(key);
  char* end = nullptr;
  errno = 0;
  const long v = std::strtol(s.c_str(), &end, 10);
  if (s.empty() || *end || errno || v < minimum || v > (1 << 30))
    throw FormatError("metadata field '" + key + "': expected an integer >= " + std::to_string(minimum) + ", got '" +
                      s + "'");
  return static_cast<int>(v);
}

const std::vector<float>& ModelFile::tensor(const std::string& name, const std::vector<long>& shape) const {
  auto it = tensors.find(name);
  if (it == tensors.end()) throw FormatError("tensor '" + name + "' is missing");
  if (it->second.shape != shape)
    throw FormatError("tensor '" + name + "': expected shape " + shape_str(shape) + ", got " +
                      shape_str(it->second.shape));
  return it->second.data;
}

ModelFile read_model_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError("cannot open '" + path + "': " + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw IoError("cannot read '" + path + "'");
  const std::string bytes = ss.str();
  const std::string where = "'" + path + "': ";

  // safetensors: 8-byte little-endian header size, the JSON header, then the raw arrays.
  if (bytes.size() < 8) throw FormatError(where + "not an rnnfast model file (" + std::to_string(bytes.size()) + " bytes)");
  uint64_t n = 0;
  for (int k = 7; k >= 0; --k) n = (n << 8) | static_cast<unsigned char>(bytes[k]);
  if (n < 2 || n > kMaxHeader || n > bytes.size() - 8 || bytes[8] != '{')
    throw FormatError(where + "not an rnnfast model file (no safetensors header)");
  Json header;
  try {
    header = parse_json(bytes.data() + 8, n);
  } catch (const std::runtime_error& e) {
    throw FormatError(where + e.what());
  }
  if (header.type != Json::Type::object) throw FormatError(where + "the header is not a JSON object");

  ModelFile f;
  const Json* meta = header.find("__metadata__");
  if (meta && meta->type == Json::Type::object)
    for (const auto& kv : meta->object)
      if (kv.second.type == Json::Type::string) f.meta[kv.first] = kv.second.string;
  // The magic and the version come first: a checkpoint or a newer file gets a precise message.
  auto fmt = f.meta.find("format");
  if (fmt == f.meta.end() || fmt->second != "rnnfast.model")
    throw FormatError(where + "not an rnnfast model file (metadata format is '" +
                      (fmt == f.meta.end() ? std::string("missing") : fmt->second) +
                      "', expected 'rnnfast.model'; write it with rnnfast.export)");
  bool known_version = false;
  for (int v = kOldestFormatVersion; v <= kFormatVersion; ++v)
    known_version |= f.meta["format_version"] == std::to_string(v);
  if (!known_version)
    throw FormatError(where + "format_version '" + f.meta["format_version"] + "' is not supported (this library reads " +
                      std::to_string(kOldestFormatVersion) + " to " + std::to_string(kFormatVersion) + ")");
  if (f.meta["precision"] != "float32")
    throw FormatError(where + "precision '" + f.meta["precision"] + "' is not supported (this library reads float32)");

  const uint64_t data_size = bytes.size() - 8 - n;
  const char* data = bytes.data() + 8 + n;
  for (const auto& kv : header.object) {
    if (kv.first == "__metadata__") continue;
    const std::string what = where + "tensor '" + kv.first + "'";
    const Json& t = kv.second;
    const Json *dtype = t.find("dtype"), *shape = t.find("shape"), *offsets = t.find("data_offsets");
    if (t.type != Json::Type::object || !dtype || !shape || !offsets || shape->type != Json::Type::array ||
        offsets->type != Json::Type::array || offsets->array.size() != 2)
      throw FormatError(what + ": malformed entry");
    if (dtype->type != Json::Type::string || dtype->string != "F32")
      throw FormatError(what + ": expected dtype F32, got " + (dtype->type == Json::Type::string ? dtype->string : "?"));
    ModelFile::Tensor out;
    uint64_t count = 1;
    for (const Json& d : shape->array) {
      const uint64_t v = whole_number(d, what + " shape");
      if (v > (1u << 30)) throw FormatError(what + ": dimension too large");
      out.shape.push_back(static_cast<long>(v));
      count *= v;
      if (count > (uint64_t(1) << 34)) throw FormatError(what + ": too large");
    }
    const uint64_t begin = whole_number(offsets->array[0], what + " data_offsets"),
                   end = whole_number(offsets->array[1], what + " data_offsets");
    if (begin > end || end > data_size || end - begin != count * 4)
      throw FormatError(what + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                        "] do not fit the file (truncated?)");
    out.data.resize(count);
    if (count) std::memcpy(out.data.data(), data + begin, count * 4);  // little-endian hosts only (x86, arm)
    f.tensors.emplace(kv.first, std::move(out));
  }
  return f;
}

}  // namespace rnnfast::capi
