// SPDX-License-Identifier: GPL-3.0-or-later
// File descriptors as owned objects.
//
// Every descriptor SafeSpool opens is born O_CLOEXEC and lives in an `Fd`,
// which closes it in its destructor. Nothing leaks into a consumer: the
// spawner hands a child exactly fds 0-2.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <utility>

namespace safespool {

/// Move-only owner of one file descriptor (-1 = none).
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) reset(std::exchange(o.fd_, -1));
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  /// Gives up ownership without closing.
  int release() { return std::exchange(fd_, -1); }
  /// Closes the current fd (if any) and adopts `fd`.
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

/// The two ends of a pipe2(O_CLOEXEC) pipe.
struct Pipe {
  Fd read;
  Fd write;
};

/// Creates a close-on-exec pipe; throws SysError.
Pipe make_pipe();

/// Opens `path` for reading when it is a regular file (not following a
/// symlink, never blocking on a FIFO), blocking reads after that. Throws
/// SysError when it cannot be opened, Error (exit 65) "PATH: not a
/// regular file" otherwise: files that arrive from elsewhere (a stick, a
/// receipts directory) are read only through it.
Fd open_regular_file(const std::string& path);

/// Reads until `buf` is full or EOF; retries EINTR. Returns bytes read.
/// With `at`, reads from that offset with pread() and leaves the file
/// offset where it was. Throws SysError naming `what` on failure.
size_t read_full(int fd, std::span<std::byte> buf, const std::string& what,
                 std::optional<uint64_t> at = std::nullopt);

/// Writes all of `buf` to a blocking fd; retries EINTR. Throws SysError.
void write_all(int fd, std::span<const std::byte> buf, const std::string& what);

/// Convenience overload for text.
void write_all(int fd, const std::string& s, const std::string& what);

}  // namespace safespool
