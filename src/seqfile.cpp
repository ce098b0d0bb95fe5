// SPDX-License-Identifier: GPL-3.0-or-later
#include "safespool/seqfile.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <thread>

#include "safespool/error.hpp"

namespace safespool {
namespace {

std::string dir_of(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

Fd open_lock(const std::string& lock_path, bool create) {
  int flags = O_RDWR | O_CLOEXEC | O_NOFOLLOW | (create ? O_CREAT : 0);
  Fd fd(::open(lock_path.c_str(), flags, 0666));
  if (!fd) {
    if (errno == ENOENT)
      throw Error(
          "cannot open lock file " + lock_path + ": missing (an append-only queue has no seqfile)",
          kExitConfig);
    throw_errno("cannot open lock file " + lock_path);
  }
  return fd;
}

Fd open_dir(const std::string& dir) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) throw_errno("cannot open directory " + dir);
  return fd;
}

void fsync_dir_fd(int fd, const std::string& dir) {
  if (::fsync(fd) != 0 && errno != EINVAL) throw_errno("cannot fsync directory " + dir);
}

}  // namespace

uint64_t parse_u64(const std::string& text, const std::string& what) {
  size_t b = text.find_first_not_of(" \t\r\n");
  size_t e = text.find_last_not_of(" \t\r\n");
  std::string t = b == std::string::npos ? "" : text.substr(b, e - b + 1);
  if (t.empty() || t.find_first_not_of("0123456789") != std::string::npos || t.size() > 20)
    throw UsageError(what + ": \"" + text + "\" is not a number");
  errno = 0;
  unsigned long long v = std::strtoull(t.c_str(), nullptr, 10);
  if (errno == ERANGE) throw UsageError(what + ": \"" + text + "\" is out of range");
  return v;
}

void fsync_dir(const std::string& path, bool is_dir) {
  std::string dir = is_dir ? path : dir_of(path);
  fsync_dir_fd(open_dir(dir).get(), dir);
}

namespace {

// The first half of a durable replace: PATH.temp written and fsynced.
void write_temp(const std::string& temp, const std::string& content) {
  Fd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0666));
  if (!fd) throw_errno("cannot create " + temp);
  write_all(fd.get(), content, temp);
  if (::fsync(fd.get()) != 0) throw_errno("cannot fsync " + temp);
}

// The second half: PATH.temp renamed over PATH, and the directory fsynced
// (`dir_fd` when it is open, else opened by name).
void commit_temp(const std::string& temp, const std::string& path, int dir_fd) {
  if (::rename(temp.c_str(), path.c_str()) != 0)
    throw_errno("cannot rename " + temp + " to " + path);
  if (dir_fd >= 0)
    fsync_dir_fd(dir_fd, dir_of(path));
  else
    fsync_dir(path);
}

}  // namespace

void replace_file(const std::string& path, const std::string& content) {
  std::string temp = path + ".temp";
  write_temp(temp, content);
  commit_temp(temp, path, -1);
}

std::optional<SeqFile> SeqFile::try_open(const std::string& path, bool create) {
  Fd lock = open_lock(path + ".lock", create);
  if (::flock(lock.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) return std::nullopt;
    throw_errno("cannot lock " + path + ".lock");
  }
  // Opened once: every set() fsyncs it after its rename.
  SeqFile sf(path, std::move(lock), open_dir(dir_of(path)));
  sf.load(create);
  return sf;
}

std::optional<SeqFile> SeqFile::open_waiting(const std::string& path, bool create,
                                             double wait_seconds) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(wait_seconds);
  for (;;) {
    auto sf = try_open(path, create);
    if (sf || std::chrono::steady_clock::now() >= deadline) return sf;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

void SeqFile::load(bool create) {
  Fd fd(::open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) {
    if (errno == ENOENT && create) return set(1);
    throw_errno("cannot open seqfile " + path_);
  }
  std::string text(64, '\0');
  size_t n = read_full(fd.get(), std::as_writable_bytes(std::span(text)), "seqfile " + path_);
  bool full = n == text.size();
  text.resize(n);
  size_t nl = text.find('\n');
  if (full && nl == std::string::npos)
    throw Error("seqfile " + path_ + " is not a number", kExitDataErr);
  try {
    next_ = parse_u64(text.substr(0, nl), "seqfile " + path_);
  } catch (const UsageError& e) {
    throw Error(e.what(), kExitDataErr);
  }
}

SeqFile::~SeqFile() {
  // Moved-from objects hold no lock and own no temporary file.
  if (prepared_ && lock_) ::unlink((path_ + ".temp").c_str());
}

void SeqFile::prepare(uint64_t value) noexcept {
  prepared_.reset();
  try {
    write_temp(path_ + ".temp", std::to_string(value) + "\n");
    prepared_ = value;
  } catch (const std::exception& e) {
    spdlog::debug("cannot prepare {}: {}", path_, e.what());
  }
}

void SeqFile::set(uint64_t value) {
  std::string temp = path_ + ".temp";
  if (prepared_ != value) write_temp(temp, std::to_string(value) + "\n");
  prepared_.reset();
  commit_temp(temp, path_, dir_.get());
  next_ = value;
}

uint64_t SeqFile::increment() {
  uint64_t prev = next_;
  set(next_ + 1);
  return prev;
}

}  // namespace safespool
