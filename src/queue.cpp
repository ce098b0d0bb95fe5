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
#include <deque>
#include <memory>

#include "safespool/error.hpp"
#include "safespool/file_replace.hpp"
#include "safespool/seqfile.hpp"
#include "safespool/signals.hpp"

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

// The position of the indexed header of `e`, if the file is still the one
// it was read from; else HeaderIndex::npos. `hit` receives the entry.
size_t unchanged(const HeaderIndex& idx, int dir_fd, const dirent& e, ScanFor purpose,
                 HeaderIndex::Entry& hit) {
  size_t pos = idx.find(e.d_name, hit);
  if (pos == HeaderIndex::npos) return pos;
  if (purpose == ScanFor::Processing) return e.d_ino == hit.id.ino ? pos : HeaderIndex::npos;
  struct stat st;
  if (::fstatat(dir_fd, e.d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
    return HeaderIndex::npos;
  return file_id(st) == hit.id ? pos : HeaderIndex::npos;
}

// The header an index entry holds: all of it for a full listing; for
// summaries and the processor only what orders the jobs (the processor
// reads the rest from the file).
Meta indexed_meta(const HeaderIndex& idx, const HeaderIndex::Entry& hit, ScanFor purpose) {
  if (purpose == ScanFor::Listing) return idx.meta(hit);  // all of the header
  Meta m;
  m.seq = hit.seq;
  m.ctime_secs = hit.ctime_secs;
  m.ctime_nanos = hit.ctime_nanos;
  return m;
}

}  // namespace

ScanResult Queue::scan(const DecodeOptions& decode, ScanFor purpose, uint64_t seq_below) const {
  int64_t started = ::time(nullptr);
  std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(jobs_dir().c_str()), ::closedir);
  if (!d) throw_errno("cannot list " + jobs_dir());
  struct stat dir_st;
  if (::fstat(::dirfd(d.get()), &dir_st) != 0) throw_errno("cannot stat " + jobs_dir());
  std::optional<std::string> key = index_key(decode);
  HeaderIndex idx = key ? HeaderIndex::load(dir_, *key, dir_st) : HeaderIndex();
  ScanResult out;
  // The next index, in directory order: positions in the loaded index,
  // or idx.size() + k for learnt[k], a file read now. Positions, not
  // copies: most scans keep the index as it is.
  std::vector<size_t> next_index;
  std::vector<HeaderIndex::Entry> learnt;
  std::deque<std::string> fresh;  // the names and headers `learnt` views (they stay put)
  if (key) next_index.reserve(idx.size());
  if (seq_below == UINT64_MAX) out.jobs.reserve(idx.size());
  // Files the index does not know are opened and read in batches: small
  // encrypted ones are decrypted by one gpg per batch (DecodeBatch)
  // instead of one gpg each, which is otherwise most of a scan's cost.
  constexpr size_t kReadBatch = 128;
  std::vector<BatchFile> batch;
  std::vector<std::pair<std::string, struct stat>> batch_files;  // name, its stat
  size_t learnt_encrypted = 0;
  // A file that vanished since readdir is simply gone; any other failure
  // is listed as skipped, with its reason.
  auto unreadable = [&](const std::string& name, const Error& err) {
    const auto* sys = dynamic_cast<const SysError*>(&err);
    if (sys && sys->err() == ENOENT) {
      spdlog::debug("{} vanished during the scan", name);
    } else {
      out.skipped.push_back({name, err.what(), {}});
    }
  };
  auto read_batch = [&] {
    DecodeBatch opened(std::move(batch), decode);
    batch.clear();
    learnt_encrypted += opened.encrypted();
    for (size_t k = 0; k < opened.size(); ++k) {
      // A scan of many encrypted packets takes a while: honour a stop request.
      if (take_interrupt() || interrupted())
        throw Error("interrupted during the scan of " + jobs_dir(), kExitInterrupted);
      const auto& [name, st] = batch_files[k];
      try {
        Decoded dec = opened.open(k);
        std::string raw;
        Meta meta = read_header(*dec.reader, "jobs/" + name, key ? &raw : nullptr);
        if (key) {
          const std::string& n = fresh.emplace_back(name);
          const std::string& h = fresh.emplace_back(std::move(raw));
          next_index.push_back(idx.size() + learnt.size());
          learnt.push_back({n, file_id(st), meta.seq, meta.ctime_secs, meta.ctime_nanos, h});
        }
        if (meta.seq >= seq_below && seq_below != UINT64_MAX) {
          ++out.beyond;
        } else {
          out.jobs.push_back({name, std::move(meta), file_id(st), false});
        }
      } catch (const Error& err) {
        unreadable(name, err);
      }
    }
    batch_files.clear();
  };
  for (;;) {
    // Only readdir's own failure may leave errno set when it returns null:
    // a file that vanished (ENOENT from open) is not a listing error.
    errno = 0;
    dirent* e = ::readdir(d.get());
    if (!e) break;
    std::string_view name = e->d_name;
    if (!is_job_name(name)) continue;
    HeaderIndex::Entry hit;
    if (size_t pos = unchanged(idx, ::dirfd(d.get()), *e, purpose, hit); pos != HeaderIndex::npos) {
      try {
        if (hit.seq >= seq_below && seq_below != UINT64_MAX) {
          ++out.beyond;
        } else {
          out.jobs.push_back({std::string(name), indexed_meta(idx, hit, purpose), hit.id, true});
        }
        next_index.push_back(pos);
        continue;
      } catch (const Error& err) {
        spdlog::debug("header index entry for {}: {}; reading the file", name, err.what());
      }
    }
    // Opened now, read in read_batch (which honours a stop request).
    try {
      Fd fd = open_job(std::string(name));
      struct stat st;
      if (::fstat(fd.get(), &st) != 0) throw_errno("cannot stat " + job_path(std::string(name)));
      batch.push_back({std::move(fd), "jobs/" + std::string(name)});
      batch_files.emplace_back(std::string(name), st);
    } catch (const Error& err) {
      unreadable(std::string(name), err);
    }
    if (batch.size() == kReadBatch) read_batch();
  }
  if (errno != 0) throw_errno("cannot list " + jobs_dir());
  read_batch();
  // Rewriting the index costs about as much as reading 1/64 of its
  // headers from their files (it is all written again): rewrite it when it
  // learnt at least that many, or any encrypted one (a gpg run each time),
  // or when more of its entries are gone than a quarter of the files
  // listed now (and more than 64). Otherwise the few new files are read
  // again by the next scan, and a stale entry costs nothing. So one
  // packet arriving in a queue of 100,000 does not rewrite 20 MB.
  size_t read = learnt.size(), kept = next_index.size() - read;
  spdlog::debug("scan of {}: {} header(s) from the index, {} read, {} unreadable", jobs_dir(), kept,
                read, out.skipped.size());
  size_t gone = idx.size() > kept ? idx.size() - kept : 0;
  bool worth_it = learnt_encrypted > 0 || (read > 0 && read * 64 >= next_index.size());
  if (key && (worth_it || gone > std::max<size_t>(64, next_index.size() / 4))) {
    try {
      std::vector<HeaderIndex::Entry> entries;
      entries.reserve(next_index.size());
      for (size_t pos : next_index)
        entries.push_back(pos < idx.size() ? idx.entry(pos) : learnt[pos - idx.size()]);
      HeaderIndex::save(dir_, *key, dir_st, started, entries, &idx);
    } catch (const Error& err) {
      spdlog::debug("cannot update the header index: {}", err.what());
    }
  }
  return out;
}

namespace {

constexpr std::string_view kTempPrefix = "tmp-";
constexpr std::string_view kTempSuffix = ".tmp";

bool is_temp_name(std::string_view name) {
  return name.size() > kTempPrefix.size() + kTempSuffix.size() && name.starts_with(kTempPrefix) &&
         name.ends_with(kTempSuffix);
}

}  // namespace

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

std::vector<std::string> Queue::abandoned_temp_files(int64_t min_age_seconds) const {
  std::vector<std::string> out;
  std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(jobs_dir().c_str()), ::closedir);
  if (!d) return out;
  int64_t now = ::time(nullptr);
  while (dirent* e = ::readdir(d.get())) {
    if (!is_temp_name(e->d_name)) continue;
    Fd fd(::openat(::dirfd(d.get()), e->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
    struct stat st;
    if (!fd || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    if (now - st.st_mtim.tv_sec < min_age_seconds) continue;  // a writer keeps it fresh
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) == 0) out.emplace_back(e->d_name);
  }
  return out;
}

void Queue::remove_abandoned_temp_files() const {
  // Old enough that the writer had time to lock it after creating it.
  for (const auto& name : abandoned_temp_files(60)) {
    spdlog::info("removing jobs/{}, left by a queue-write or queue-import that died", name);
    if (::unlink(job_path(name).c_str()) != 0 && errno != ENOENT)
      spdlog::warn("cannot remove jobs/{}: {}", name, std::strerror(errno));
  }
}

}  // namespace safespool
