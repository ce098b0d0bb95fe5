// SPDX-License-Identifier: GPL-3.0-or-later
// Replacing a file through a temporary one (see file_replace.hpp).
#include "safespool/file_replace.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "safespool/error.hpp"
#include "safespool/queue.hpp"

namespace safespool {

std::string dir_of(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

void fsync_dir(int dir_fd, const std::string& dir) {
  if (::fsync(dir_fd) != 0 && errno != EINVAL) throw_errno("cannot fsync directory " + dir);
}

void fsync_dir(const std::string& dir) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) throw_errno("cannot open directory " + dir);
  fsync_dir(fd.get(), dir);
}

FileReplacement::FileReplacement(std::string path, ReplaceOptions opts)
    : path_(std::move(path)), opts_(std::move(opts)) {
  const bool fixed = !opts_.temp_name.empty();
  temp_ = fixed ? opts_.temp_name : path_ + ".tmp-" + gen_uuid();
  // A fixed name may be a file another user left (or the old version an
  // exchange left, made by another user): a new one is made, as a rename
  // would have, rather than one we may not write or should not own.
  struct stat st {};
  if (fixed && ::lstat(temp_.c_str(), &st) == 0 &&
      (st.st_uid != ::geteuid() || !S_ISREG(st.st_mode)))
    ::unlink(temp_.c_str());
  int flags = O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | (fixed ? O_TRUNC : O_EXCL);
  fd_.reset(::open(temp_.c_str(), flags, opts_.mode));
  if (!fd_) throw_errno("cannot create " + temp_);
}

FileReplacement::FileReplacement(FileReplacement&& o) noexcept
    : path_(std::move(o.path_)),
      temp_(std::move(o.temp_)),
      opts_(std::move(o.opts_)),
      fd_(std::move(o.fd_)),
      synced_(o.synced_),
      done_(std::exchange(o.done_, true)),
      exchanged_(o.exchanged_) {}

FileReplacement& FileReplacement::operator=(FileReplacement&& o) noexcept {
  if (this == &o) return *this;
  if (!done_ && !temp_.empty()) ::unlink(temp_.c_str());
  path_ = std::move(o.path_);
  temp_ = std::move(o.temp_);
  opts_ = std::move(o.opts_);
  fd_ = std::move(o.fd_);
  synced_ = o.synced_;
  done_ = std::exchange(o.done_, true);
  exchanged_ = o.exchanged_;
  return *this;
}

FileReplacement::~FileReplacement() {
  if (!done_ && !temp_.empty()) ::unlink(temp_.c_str());
}

void FileReplacement::write(std::string_view data) {
  write_all(fd_.get(), std::as_bytes(std::span(data.data(), data.size())), temp_);
}

void FileReplacement::write(std::span<const std::byte> data) { write_all(fd_.get(), data, temp_); }

void FileReplacement::sync() {
  if (synced_) return;
  if (opts_.durability == Durability::Durable && ::fsync(fd_.get()) != 0)
    throw_errno("cannot fsync " + temp_);
  synced_ = true;
}

void FileReplacement::commit() {
  try {
    sync();
    fd_.reset();
    exchanged_ = opts_.exchange && ::renameat2(AT_FDCWD, temp_.c_str(), AT_FDCWD, path_.c_str(),
                                               RENAME_EXCHANGE) == 0;
    if (!exchanged_ && ::rename(temp_.c_str(), path_.c_str()) != 0)
      throw_errno("cannot rename " + temp_ + " to " + path_);
  } catch (...) {
    ::unlink(temp_.c_str());
    done_ = true;
    throw;
  }
  done_ = true;
  if (opts_.durability != Durability::Durable) return;
  if (opts_.dir_fd >= 0)
    fsync_dir(opts_.dir_fd, dir_of(path_));
  else
    fsync_dir(dir_of(path_));
}

void replace_file(const std::string& path, std::string_view content, ReplaceOptions opts) {
  FileReplacement f(path, std::move(opts));
  f.write(content);
  f.commit();
}

}  // namespace safespool
