#include "json.h"

#include <cstdlib>
#include <stdexcept>

namespace rnnfast::capi {

const Json* Json::find(const std::string& key) const {
  for (const auto& kv : object)
    if (kv.first == key) return &kv.second;
  return nullptr;
}

namespace {

constexpr int kMaxDepth = 32;  // a model header nests 3 deep; deeper input is refused, not recursed into

class Parser {
 public:
  Parser(const char* p, size_t n) : p_(p), n_(n) {}

  Json document() {
    Json v = value(0);
    skip_space();
    if (i_ != n_) fail("unexpected text after the JSON value");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error("bad JSON header at byte " + std::to_string(i_) + ": " + what);
  }
  void skip_space() {
    while (i_ < n_ && (p_[i_] == ' ' || p_[i_] == '\t' || p_[i_] == '\n' || p_[i_] == '\r')) ++i_;
  }
  char peek() {
    skip_space();
    if (i_ >= n_) fail("unexpected end");
    return p_[i_];
  }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++i_;
  }
  bool literal(const char* word) {
    size_t k = 0;
    while (word[k] && i_ + k < n_ && p_[i_ + k] == word[k]) ++k;
    if (word[k]) return false;
    i_ += k;
    return true;
  }

  Json value(int depth) {
    if (depth > kMaxDepth) fail("nested too deeply");
    Json v;
    const char c = peek();
    if (c == '{') {
      v.type = Json::Type::object;
      ++i_;
      if (peek() == '}') return ++i_, v;
      for (;;) {
        if (peek() != '"') fail("expected a string key");
        std::string key = string();
        expect(':');
        v.object.emplace_back(std::move(key), value(depth + 1));
        if (peek() == ',') { ++i_; continue; }
        expect('}');
        return v;
      }
    }
    if (c == '[') {
      v.type = Json::Type::array;
      ++i_;
      if (peek() == ']') return ++i_, v;
      for (;;) {
        v.array.push_back(value(depth + 1));
        if (peek() == ',') { ++i_; continue; }
        expect(']');
        return v;
      }
    }
    if (c == '"') {
      v.type = Json::Type::string;
      v.string = string();
      return v;
    }
    if (literal("true")) { v.type = Json::Type::boolean; v.boolean = true; return v; }
    if (literal("false")) { v.type = Json::Type::boolean; return v; }
    if (literal("null")) return v;
    if (c == '-' || (c >= '0' && c <= '9')) {
      size_t j = i_;
      while (j < n_ && (std::string("+-.eE0123456789").find(p_[j]) != std::string::npos)) ++j;
      const std::string digits(p_ + i_, j - i_);
      char* end = nullptr;
      v.type = Json::Type::number;
      v.number = std::strtod(digits.c_str(), &end);
      if (end != digits.c_str() + digits.size()) fail("bad number '" + digits + "'");
      i_ = j;
      return v;
    }
    fail(std::string("unexpected character '") + c + "'");
  }

  std::string string() {
    ++i_;  // the opening quote
    std::string out;
    while (i_ < n_ && p_[i_] != '"') {
      char c = p_[i_++];
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in a string");
      if (c != '\\') { out += c; continue; }
      if (i_ >= n_) fail("unexpected end in a string");
      c = p_[i_++];
      switch (c) {
        case '"': case '\\': case '/': out += c; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': out += utf8(hex4()); break;
        default: fail("bad escape in a string");
      }
    }
    if (i_ >= n_) fail("unterminated string");
    ++i_;
    return out;
  }
  unsigned hex4() {
    if (i_ + 4 > n_) fail("short \\u escape");
    unsigned v = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = p_[i_++];
      v = v * 16 + (c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                                 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : (fail("bad \\u escape"), 0));
    }
    return v;
  }
  std::string utf8(unsigned cp) {
    if (cp >= 0xD800 && cp < 0xDC00) {  // a surrogate pair
      if (!literal("\\u")) fail("lone surrogate");
      const unsigned lo = hex4();
      if (lo < 0xDC00 || lo >= 0xE000) fail("bad surrogate pair");
      cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    std::string s;
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else if (cp < 0x800) {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      s += static_cast<char>(0xE0 | (cp >> 12));
      s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      s += static_cast<char>(0xF0 | (cp >> 18));
      s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
    return s;
  }

  const char* p_;
  size_t n_, i_ = 0;
};

}  // namespace

Json parse_json(const char* text, size_t size) { return Parser(text, size).document(); }

}  // namespace rnnfast::capi
