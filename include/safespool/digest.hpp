// SPDX-License-Identifier: GPL-3.0-or-later
// SHA-256 of packet files: what tells one packet from another.
//
// A sequence number, a file name or a cached header say what a packet
// claims to be; its hash says which bytes it is. The processed ledger,
// receipts and `--supersedes-hash` name packets by the SHA-256 of the job
// file as it sits in jobs/ (all its bytes, encoded as they arrived), so a
// sender can compute the same value with `sha256sum` on its copy.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace safespool {

/// An incremental SHA-256 (OpenSSL's, with the CPU's SHA instructions
/// where present). Move-only.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;

  void update(std::span<const std::byte> data);
  void update(std::string_view data);
  /// The digest as 64 lower-case hex digits. Once.
  std::string hex();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

/// SHA-256 of the whole file open at `fd` (read with pread, so its offset
/// does not move), as 64 lower-case hex digits. `what` names it in errors.
/// Throws SysError.
std::string sha256_file(int fd, const std::string& what);

/// SHA-256 of `data`, as 64 lower-case hex digits.
std::string sha256_hex(std::string_view data);

/// True for 64 hex digits (either case).
bool is_sha256_hex(std::string_view text);

}  // namespace safespool
