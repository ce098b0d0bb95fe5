// SPDX-License-Identifier: GPL-3.0-or-later
// Internal: bytes taken from the front of a stream, served again before the
// rest of it.
//
// Every stage that must look before it leaps does this: auto-detection
// peeks the first bytes of each layer, the OpenPGP stage sniffs whether a
// message is encrypted before it picks a GPGME operation, and a batched
// head (decode_gpg_batch.cpp) is served before the rest of its message.
// One class for all three, so that "what was peeked is read again, once,
// in order" is written once.
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "safespool/decode.hpp"

namespace safespool {

/// Serves `prefix`, then whatever peek() took from `inner`, then the rest
/// of `inner`. Everything else is `inner`'s: finish(), cancel() (still
/// thread-safe), describe(), source(), signatures(), announcement().
class PrefixReader : public ReaderLayer {
 public:
  explicit PrefixReader(std::unique_ptr<Reader> inner, std::vector<std::byte> prefix = {})
      : ReaderLayer(std::move(inner)), prefix_(std::move(prefix)) {}

  /// Reads ahead from the inner stream until at least `n` bytes wait in
  /// front (fewer only at its end) and returns all that wait. Only before
  /// the first read(); throws what the inner read() throws.
  std::span<const std::byte> peek(size_t n);

  size_t read(std::span<std::byte> buf) override;

 private:
  std::vector<std::byte> prefix_;
  size_t pos_ = 0;  ///< bytes of prefix_ already served
};

}  // namespace safespool
