// SPDX-License-Identifier: GPL-3.0-or-later
// SHA-256 of packet files: what tells one packet from another.
//
// A sequence number, a file name or a cached header say what a packet
// claims to be; its hash says which bytes it is. The processed ledger,
// receipts and `--supersedes-hash` name packets by the SHA-256 of the job
// file as it sits in jobs/ (all its bytes, encoded as they arrived), so a
// sender can compute the same value with `sha256sum` on its copy.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

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

/// The SHA-256 of a file, fed by whoever reads it in order from its start
/// (the decode stage at the bottom of a job's stack: the bytes are in hand
/// anyway), and completed by reading what nobody read (the payload of a
/// plain packet, which its consumer reads from the file itself). So a job
/// file is hashed as it is read, not read again after the job. Thread-safe:
/// the decode stage may run on a worker thread.
///
/// Past its first MiB, what is fed is copied and hashed on a thread of its
/// own, so that hashing a large packet (about 1.9 GB/s here) does not slow
/// the decoding and the hand-off that feed it; at most 512 KiB waits there,
/// and a feeder that finds it full waits. A small packet starts no thread.
class FileDigest {
 public:
  FileDigest() = default;
  ~FileDigest();
  FileDigest(const FileDigest&) = delete;
  FileDigest& operator=(const FileDigest&) = delete;

  /// Takes the bytes read at `offset`, when they continue what was hashed
  /// (anything else, and anything after finish(), is ignored).
  void feed(uint64_t offset, std::span<const std::byte> data);
  /// The digest of the whole file open at `fd` (named `what` in errors):
  /// what was fed, then the rest read with pread. Once. Throws SysError.
  std::string finish(int fd, const std::string& what);

 private:
  void hash_queued();
  void stop_worker();

  std::mutex mu_;
  std::condition_variable changed_;
  Sha256 sha_;  ///< the worker's alone while it runs
  uint64_t at_ = 0;
  bool done_ = false;
  std::thread worker_;
  bool no_worker_ = false;  ///< it could not be started: hash in feed()
  bool stopping_ = false;
  std::deque<std::vector<std::byte>> queue_;   ///< copies waiting for the worker
  std::vector<std::vector<std::byte>> spare_;  ///< hashed copies, to reuse
  size_t queued_ = 0;
  std::exception_ptr failed_;
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
