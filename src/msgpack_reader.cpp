// SPDX-License-Identifier: GPL-3.0-or-later
#include "msgpack_reader.hpp"

#include "safespool/error.hpp"

namespace safespool::msgpack {
namespace {
constexpr int kMaxSkipDepth = 16;

[[noreturn]] void bad(const std::string& why) { throw FormatError("malformed metadata: " + why); }
}  // namespace

uint8_t Cursor::byte() {
  if (pos_ >= data_.size()) bad("truncated MessagePack");
  return static_cast<uint8_t>(data_[pos_++]);
}

uint64_t Cursor::be(size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) v = (v << 8) | byte();
  return v;
}

// A container or string claiming more elements than bytes remain is bogus:
// refuse it before anyone reserves memory for it.
size_t Cursor::checked_len(uint64_t n, size_t min_each) {
  size_t left = data_.size() - pos_;
  if (min_each && n > left / min_each) bad("length " + std::to_string(n) + " exceeds the data");
  return static_cast<size_t>(n);
}

Type Cursor::peek() const {
  if (pos_ >= data_.size()) return Type::Invalid;
  uint8_t b = static_cast<uint8_t>(data_[pos_]);
  if (b <= 0x7f || b == 0xcc || b == 0xcd || b == 0xce || b == 0xcf) return Type::Uint;
  if (b >= 0xe0 || (b >= 0xd0 && b <= 0xd3)) return Type::Int;
  if ((b & 0xf0) == 0x80 || b == 0xde || b == 0xdf) return Type::Map;
  if ((b & 0xf0) == 0x90 || b == 0xdc || b == 0xdd) return Type::Array;
  if ((b & 0xe0) == 0xa0 || (b >= 0xd9 && b <= 0xdb)) return Type::Str;
  if (b >= 0xc4 && b <= 0xc6) return Type::Bin;
  if (b == 0xc0) return Type::Nil;
  if (b == 0xc2 || b == 0xc3) return Type::Bool;
  if (b == 0xca || b == 0xcb) return Type::Float;
  if ((b >= 0xc7 && b <= 0xc9) || (b >= 0xd4 && b <= 0xd8)) return Type::Ext;
  return Type::Invalid;
}

uint64_t Cursor::read_uint() {
  uint8_t b = byte();
  if (b <= 0x7f) return b;
  switch (b) {
    case 0xcc:
      return be(1);
    case 0xcd:
      return be(2);
    case 0xce:
      return be(4);
    case 0xcf:
      return be(8);
  }
  bad("expected an unsigned integer");
}

int64_t Cursor::read_int() {
  if (peek() == Type::Uint) {
    uint64_t v = read_uint();
    if (v > static_cast<uint64_t>(INT64_MAX)) bad("integer out of range");
    return static_cast<int64_t>(v);
  }
  uint8_t b = byte();
  if (b >= 0xe0) return static_cast<int8_t>(b);
  switch (b) {
    case 0xd0:
      return static_cast<int8_t>(be(1));
    case 0xd1:
      return static_cast<int16_t>(be(2));
    case 0xd2:
      return static_cast<int32_t>(be(4));
    case 0xd3:
      return static_cast<int64_t>(be(8));
  }
  bad("expected an integer");
}

std::string Cursor::read_str() {
  uint8_t b = byte();
  uint64_t n;
  if ((b & 0xe0) == 0xa0)
    n = b & 0x1f;
  else if (b == 0xd9)
    n = be(1);
  else if (b == 0xda)
    n = be(2);
  else if (b == 0xdb)
    n = be(4);
  else
    bad("expected a string");
  size_t len = checked_len(n, 1);
  std::string s(reinterpret_cast<const char*>(data_.data() + pos_), len);
  pos_ += len;
  return s;
}

std::string Cursor::read_bytes() {
  if (peek() == Type::Bin) {
    uint8_t b = byte();
    size_t len = checked_len(be(size_t{1} << (b - 0xc4)), 1);
    std::string s(reinterpret_cast<const char*>(data_.data() + pos_), len);
    pos_ += len;
    return s;
  }
  if (peek() != Type::Array) bad("expected a byte string");
  uint32_t n = read_array_header();
  std::string s;
  s.reserve(n);
  for (uint32_t i = 0; i < n; ++i) {
    uint64_t v = read_uint();
    if (v > 255) bad("byte value " + std::to_string(v) + " out of range");
    s.push_back(static_cast<char>(v));
  }
  return s;
}

uint32_t Cursor::read_array_header() {
  uint8_t b = byte();
  uint64_t n;
  if ((b & 0xf0) == 0x90)
    n = b & 0x0f;
  else if (b == 0xdc)
    n = be(2);
  else if (b == 0xdd)
    n = be(4);
  else
    bad("expected an array");
  return static_cast<uint32_t>(checked_len(n, 1));
}

uint32_t Cursor::read_map_header() {
  uint8_t b = byte();
  uint64_t n;
  if ((b & 0xf0) == 0x80)
    n = b & 0x0f;
  else if (b == 0xde)
    n = be(2);
  else if (b == 0xdf)
    n = be(4);
  else
    bad("expected a map");
  return static_cast<uint32_t>(checked_len(n, 2));
}

void Cursor::skip(int depth) {
  if (depth > kMaxSkipDepth) bad("nested too deeply");
  uint8_t b = static_cast<uint8_t>(data_.size() > pos_ ? data_[pos_] : std::byte{0});
  switch (peek()) {
    case Type::Uint:
      read_uint();
      return;
    case Type::Int:
      read_int();
      return;
    case Type::Str:
      read_str();
      return;
    case Type::Bin:
      read_bytes();
      return;
    case Type::Nil:
    case Type::Bool:
      byte();
      return;
    case Type::Float:
      byte();
      checked_len(b == 0xca ? 4 : 8, 1);
      pos_ += (b == 0xca ? 4 : 8);
      return;
    case Type::Array:
      for (uint32_t n = read_array_header(); n > 0; --n) skip(depth + 1);
      return;
    case Type::Map:
      for (uint32_t n = read_map_header(); n > 0; --n) {
        skip(depth + 1);
        skip(depth + 1);
      }
      return;
    default:
      bad("unsupported MessagePack type");
  }
}

}  // namespace safespool::msgpack
