// SPDX-License-Identifier: GPL-3.0-or-later
#include "safespool/queue.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <memory>

#include "safespool/error.hpp"
#include "safespool/file_replace.hpp"
#include "safespool/seqfile.hpp"

namespace safespool {

bool is_job_name(std::string_view name) {
  return name.size() >= 10 && name.starts_with("fspl-") && name.ends_with(".fspl");
}

std::string gen_uuid() {
  unsigned char b[16];
  size_t got = 0;
  while (got < sizeof b) {
    ssize_t n = ::getrandom(b + got, sizeof b - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("cannot get random bytes");
    }
    got += static_cast<size_t>(n);
  }
  b[6] = (b[6] & 0x0f) | 0x40;  // version 4
  b[8] = (b[8] & 0x3f) | 0x80;  // RFC 4122 variant
  char out[37];
  snprintf(out, sizeof out, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
           b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
           b[14], b[15]);
  return out;
}

std::string gen_job_filename() { return "fspl-" + gen_uuid() + ".fspl"; }

void ScanResult::warn_skipped(const std::string& queuedir) const {
  if (skipped.empty()) return;
  // Each reason already names its file.
  for (const auto& s : skipped) spdlog::debug("skipped: {}", s.reason);
  spdlog::warn("{} file(s) in {}/jobs are not readable packets and were skipped; first: {}",
               skipped.size(), queuedir, skipped.front().reason);
}

void Queue::init(const std::string& dir, bool append_only) {
  if (::mkdir(dir.c_str(), 0777) != 0) throw_errno("cannot create queue directory " + dir);
  std::string jobs = dir + "/jobs";
  if (::mkdir(jobs.c_str(), 0777) != 0) throw_errno("cannot create " + jobs);
  if (!append_only) {
    auto sf = SeqFile::try_open(dir + "/nextseq", true);
    if (!sf) throw Error("queue " + dir + " is locked by another process", kExitTempFail);
  }
  fsync_dir(dir);
  fsync_dir(dir_of(dir));
}

void Queue::check_exists() const {
  struct stat st;
  if (::stat(jobs_dir().c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    throw Error("queue " + dir_ + " does not exist (no jobs/ directory)", kExitNoInput);
}

Fd Queue::open_job(const std::string& filename) const {
  std::string path = job_path(filename);
  // O_NONBLOCK: opening a FIFO must not wait for a writer.
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY));
  if (!fd) {
    if (errno == ELOOP) throw Error("cannot open " + path + ": is a symbolic link", kExitDataErr);
    throw_errno("cannot open " + path);
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) throw_errno("cannot stat " + path);
  if (!S_ISREG(st.st_mode))
    throw Error("cannot read " + path + ": not a regular file", kExitDataErr);
  int flags = ::fcntl(fd.get(), F_GETFL);
  ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK);
  return fd;
}

void sort_by_seq(JobList& jobs) {
  std::vector<std::pair<uint64_t, size_t>> order(jobs.size());
  for (size_t i = 0; i < jobs.size(); ++i) order[i] = {jobs[i].meta.seq, i};
  std::sort(order.begin(), order.end());
  // Position k takes the entry at order[k].second: follow each cycle once.
  std::vector<bool> placed(jobs.size());
  for (size_t k = 0; k < jobs.size(); ++k) {
    if (placed[k] || order[k].second == k) continue;
    JobEntry held = std::move(jobs[k]);
    size_t at = k;
    for (size_t from = order[at].second; from != k; from = order[at].second) {
      jobs[at] = std::move(jobs[from]);
      placed[at] = true;
      at = from;
    }
    jobs[at] = std::move(held);
    placed[at] = true;
  }
}

namespace {

constexpr std::string_view kTempPrefix = "tmp-";
constexpr std::string_view kTempSuffix = ".tmp";

}  // namespace

bool is_temp_name(std::string_view name) {
  return name.size() > kTempPrefix.size() + kTempSuffix.size() && name.starts_with(kTempPrefix) &&
         name.ends_with(kTempSuffix) && name.find('/') == std::string_view::npos;
}

std::string Queue::write(int in_fd, const std::string& what) const {
  check_exists();
  std::string name = gen_job_filename();
  ReplaceOptions how{Durability::Durable, 0644,
                     job_path(std::string(kTempPrefix) + name + std::string(kTempSuffix))};
  FileReplacement out(job_path(name), how);
  // Held while we write: a temporary file nobody holds locked was left by
  // a writer that died (abandoned_temp_files()).
  if (::flock(out.fd(), LOCK_EX | LOCK_NB) != 0) throw_errno("cannot lock " + out.temp_path());
  std::vector<std::byte> buf(1 << 20);
  while (size_t n = read_full(in_fd, buf, what)) out.write(std::span(buf).first(n));
  out.commit();
  return name;
}

namespace {

/// Whether jobs/NAME (in `jobs`) is a temporary file no writer holds and
/// that was not written to for `min_age_seconds`.
bool abandoned(int jobs, const char* name, int64_t min_age_seconds) {
  Fd fd(::openat(jobs, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
  struct stat st;
  if (!fd || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) return false;
  // A writer keeps it fresh.
  if (::time(nullptr) - st.st_mtim.tv_sec < min_age_seconds) return false;
  return ::flock(fd.get(), LOCK_EX | LOCK_NB) == 0;
}

}  // namespace

std::vector<std::string> Queue::abandoned_temp_files(int64_t min_age_seconds) const {
  std::vector<std::string> out;
  std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(jobs_dir().c_str()), ::closedir);
  if (!d) return out;
  while (dirent* e = ::readdir(d.get())) {
    if (is_temp_name(e->d_name) && abandoned(::dirfd(d.get()), e->d_name, min_age_seconds))
      out.emplace_back(e->d_name);
  }
  return out;
}

void Queue::remove_abandoned_temp_files(const std::vector<std::string>& names) const {
  if (names.empty()) return;
  Fd jobs(::open(jobs_dir().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  // Old enough that the writer had time to lock it after creating it.
  for (const auto& name : names) {
    if (!jobs || !is_temp_name(name) || !abandoned(jobs.get(), name.c_str(), 60)) continue;
    spdlog::info("removing jobs/{}, left by a queue-write or queue-import that died", name);
    if (::unlinkat(jobs.get(), name.c_str(), 0) != 0 && errno != ENOENT)
      spdlog::warn("cannot remove jobs/{}: {}", name, std::strerror(errno));
  }
}

}  // namespace safespool
