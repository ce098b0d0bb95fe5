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
#include "safespool/units.hpp"

namespace safespool {
namespace {

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

}  // namespace

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

// PATH.temp is the name fspl uses too; both write it only under the lock.
FileReplacement SeqFile::write_temp(uint64_t value) {
  FileReplacement f(path_, {Durability::Durable, 0666, path_ + ".temp", dir_.get(), true});
  left_temp_.path.clear();  // taken over: f removes it unless committed
  f.write(std::to_string(value) + "\n");
  f.sync();
  return f;
}

void SeqFile::prepare(uint64_t value) noexcept {
  prepared_.reset();
  try {
    prepared_.emplace(write_temp(value));
    prepared_value_ = value;
  } catch (const std::exception& e) {
    prepared_.reset();
    spdlog::debug("cannot prepare {}: {}", path_, e.what());
  }
}

void SeqFile::set(uint64_t value) {
  if (!prepared_ || prepared_value_ != value) {
    prepared_.reset();
    prepared_.emplace(write_temp(value));
  }
  std::optional<FileReplacement> temp = std::move(prepared_);
  prepared_.reset();
  temp->commit();
  if (temp->exchanged()) left_temp_.path = path_ + ".temp";
  next_ = value;
}

uint64_t SeqFile::increment() {
  uint64_t prev = next_;
  set(next_ + 1);
  return prev;
}

}  // namespace safespool
