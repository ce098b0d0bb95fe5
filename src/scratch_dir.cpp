// SPDX-License-Identifier: GPL-3.0-or-later
#include "scratch_dir.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <string_view>
#include <vector>

#include "safespool/error.hpp"

namespace safespool {
namespace {

/// Whether the directory `dir` is ours, and untouched for `min_age`.
bool ours_and_old(int dir, std::chrono::seconds min_age) {
  struct stat st {};
  if (::fstat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != ::geteuid()) return false;
  // No age asked: no clock compared either. A file's times may come from
  // the kernel's fine clock, a second ahead of time() at a second's edge.
  if (min_age.count() == 0) return true;
  const time_t newest = std::max(st.st_mtime, st.st_ctime);
  return newest + static_cast<time_t>(min_age.count()) <= std::time(nullptr);
}

/// Removes `path` if no live process holds its lock (and, for a directory
/// not named yet, it is older than `min_age`); true when it did.
bool reclaim_one(const std::string& path, std::chrono::seconds min_age) {
  Fd dir(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir || ::flock(dir.get(), LOCK_EX | LOCK_NB) != 0) return false;  // its owner lives
  if (!ours_and_old(dir.get(), min_age)) return false;
  std::error_code ec;
  std::filesystem::remove_all(path, ec);  // symlinks and FIFOs: nothing is followed
  return !ec;
}

}  // namespace

std::string temp_base() {
  const char* base = std::getenv("TMPDIR");
  return base && *base ? base : "/tmp";
}

ScratchDir::ScratchDir(const std::string& prefix) {
  const std::string base = temp_base() + "/";
  for (;;) {
    std::string pending = base + prefix + ".new-XXXXXX";
    if (!::mkdtemp(pending.data())) throw_errno("cannot create a directory in " + base);
    lock_.reset(::open(pending.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!lock_ || ::flock(lock_.get(), LOCK_EX) != 0) {
      int err = errno;
      ::rmdir(pending.c_str());
      throw SysError("cannot lock " + pending, err);
    }
    path_ = base + prefix + pending.substr(pending.size() - 7);  // "-XXXXXX"
    if (::renameat2(AT_FDCWD, pending.c_str(), AT_FDCWD, path_.c_str(), RENAME_NOREPLACE) == 0)
      return;
    int err = errno;
    ::rmdir(pending.c_str());
    if (err != EEXIST) throw SysError("cannot rename " + pending, err);
  }
}

ScratchDir::~ScratchDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

int ScratchDir::reclaim(const std::string& prefix, std::chrono::seconds min_age) {
  const std::string base = temp_base();
  DIR* d = ::opendir(base.c_str());
  if (!d) return 0;
  std::vector<std::pair<std::string, std::chrono::seconds>> candidates;
  const std::string named = prefix + "-", pending = prefix + ".new-";
  while (dirent* e = ::readdir(d)) {
    std::string_view name = e->d_name;
    if (name.size() == named.size() + 6 && name.starts_with(named))
      candidates.emplace_back(base + "/" + e->d_name, std::chrono::seconds(0));
    else if (name.size() == pending.size() + 6 && name.starts_with(pending))
      candidates.emplace_back(base + "/" + e->d_name, min_age);
  }
  ::closedir(d);
  int removed = 0;
  for (const auto& [path, age] : candidates) removed += reclaim_one(path, age);
  if (removed) spdlog::debug("removed {} directories of dead processes in {}", removed, base);
  return removed;
}

}  // namespace safespool
