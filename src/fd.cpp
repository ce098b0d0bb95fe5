// SPDX-License-Identifier: GPL-3.0-or-later
#include "safespool/fd.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "safespool/error.hpp"

namespace safespool {

void Fd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

Pipe make_pipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw_errno("cannot create pipe");
  return Pipe{Fd(fds[0]), Fd(fds[1])};
}

size_t read_full(int fd, std::span<std::byte> buf, const std::string& what,
                 std::optional<uint64_t> at) {
  size_t got = 0;
  while (got < buf.size()) {
    ssize_t n = at ? ::pread(fd, buf.data() + got, buf.size() - got, static_cast<off_t>(*at + got))
                   : ::read(fd, buf.data() + got, buf.size() - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("cannot read " + what);
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  return got;
}

void write_all(int fd, std::span<const std::byte> buf, const std::string& what) {
  size_t done = 0;
  while (done < buf.size()) {
    ssize_t n = ::write(fd, buf.data() + done, buf.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("cannot write " + what);
    }
    done += static_cast<size_t>(n);
  }
}

void write_all(int fd, const std::string& s, const std::string& what) {
  write_all(fd, std::as_bytes(std::span(s.data(), s.size())), what);
}

Fd open_regular_file(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY));
  if (!fd) throw_errno("cannot open " + path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode))
    throw Error(path + ": not a regular file", kExitDataErr);
  ::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) & ~O_NONBLOCK);
  return fd;
}

}  // namespace safespool
