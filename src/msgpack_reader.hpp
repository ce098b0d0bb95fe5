// SPDX-License-Identifier: GPL-3.0-or-later
// A bounded MessagePack reader for packet metadata (internal).
//
// Hand-written rather than a general decoder so that hostile input can
// neither recurse deeply nor make us allocate what it claims: every length
// is checked against the bytes actually left before anything is reserved.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace safespool::msgpack {

/// The kind of the next value.
enum class Type { Nil, Bool, Uint, Int, Str, Bin, Array, Map, Float, Ext, Invalid };

/// A cursor over MessagePack bytes. Throws FormatError on malformed input.
class Cursor {
 public:
  explicit Cursor(std::span<const std::byte> data) : data_(data) {}

  Type peek() const;
  bool at_end() const { return pos_ == data_.size(); }

  uint64_t read_uint();    ///< a non-negative integer of any width
  int64_t read_int();      ///< any integer that fits in i64
  std::string read_str();  ///< str (UTF-8 not required)
  /// A byte string: an array of integers 0..255 (rmp-serde's Vec<u8>), or bin.
  std::string read_bytes();
  uint32_t read_array_header();  ///< element count, bounded by bytes left
  uint32_t read_map_header();    ///< pair count, bounded by bytes left
  void skip(int depth = 0);      ///< skips one value (depth-limited)

 private:
  uint8_t byte();
  uint64_t be(size_t n);
  size_t checked_len(uint64_t n, size_t min_each);
  std::span<const std::byte> data_;
  size_t pos_ = 0;
};

}  // namespace safespool::msgpack
