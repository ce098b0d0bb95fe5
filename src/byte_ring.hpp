// SPDX-License-Identifier: GPL-3.0-or-later
// Internal to src/decode_gpg.cpp: the fixed-capacity buffer between gpg's
// output callback and read(), the OpenPGP stage's memory bound.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <span>
#include <vector>

namespace safespool {

/// A fixed-capacity byte FIFO.
class ByteRing {
 public:
  explicit ByteRing(size_t cap) : buf_(cap) {}
  bool empty() const { return count_ == 0; }
  size_t space() const { return buf_.size() - count_; }

  size_t push(const std::byte* p, size_t n) {
    n = std::min(n, space());
    for (size_t done = 0; done < n;) {
      size_t tail = (head_ + count_) % buf_.size();
      size_t k = std::min(n - done, buf_.size() - tail);
      std::memcpy(buf_.data() + tail, p + done, k);
      done += k;
      count_ += k;
    }
    return n;
  }

  size_t pop(std::span<std::byte> out) {
    size_t n = std::min(out.size(), count_);
    for (size_t done = 0; done < n;) {
      size_t k = std::min(n - done, buf_.size() - head_);
      std::memcpy(out.data() + done, buf_.data() + head_, k);
      done += k;
      head_ = (head_ + k) % buf_.size();
      count_ -= k;
    }
    return n;
  }

 private:
  std::vector<std::byte> buf_;
  size_t head_ = 0;
  size_t count_ = 0;
};

}  // namespace safespool
