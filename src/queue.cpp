#include "safespool/queue.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>
#include <algorithm>
#include <memory>

#include "safespool/error.hpp"
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
  snprintf(out, sizeof out,
           "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
           b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
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
  fsync_dir(dir, true);
  fsync_dir(dir);
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
  if (!S_ISREG(st.st_mode)) throw Error("cannot read " + path + ": not a regular file", kExitDataErr);
  int flags = ::fcntl(fd.get(), F_GETFL);
  ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK);
  return fd;
}

namespace {

// The indexed header of `e`, if the file is still the one it was read from.
const HeaderIndex::Entry* unchanged(const HeaderIndex& idx, int dir_fd, const dirent& e, ScanCheck check) {
  const HeaderIndex::Entry* hit = idx.find(e.d_name);
  if (!hit) return nullptr;
  if (check == ScanCheck::Inode) return e.d_ino == hit->id.ino ? hit : nullptr;
  struct stat st;
  if (::fstatat(dir_fd, e.d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) return nullptr;
  return file_id(st) == hit->id ? hit : nullptr;
}

}  // namespace

ScanResult Queue::scan(const DecodeOptions& decode, ScanCheck check) const {
  int64_t started = ::time(nullptr);
  std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(jobs_dir().c_str()), ::closedir);
  if (!d) throw_errno("cannot list " + jobs_dir());
  struct stat dir_st;
  if (::fstat(::dirfd(d.get()), &dir_st) != 0) throw_errno("cannot stat " + jobs_dir());
  std::optional<std::string> key = index_key(decode);
  HeaderIndex idx = key ? HeaderIndex::load(dir_, *key, dir_st) : HeaderIndex();
  ScanResult out;
  size_t read = 0;
  errno = 0;
  while (dirent* e = ::readdir(d.get())) {
    std::string name = e->d_name;
    if (!is_job_name(name)) continue;
    if (const HeaderIndex::Entry* hit = unchanged(idx, ::dirfd(d.get()), *e, check)) {
      out.jobs.push_back({std::move(name), hit->meta, hit->id, true});
      errno = 0;
      continue;
    }
    // A scan of many encrypted packets takes a while: honour a stop request.
    if (take_interrupt() || interrupted()) throw Error("interrupted during the scan of " + jobs_dir(), kExitInterrupted);
    try {
      Fd fd = open_job(name);
      struct stat st;
      if (::fstat(fd.get(), &st) != 0) throw_errno("cannot stat " + job_path(name));
      Decoded dec = open_decoded(std::move(fd), "jobs/" + name, decode);
      out.jobs.push_back({name, read_header(*dec.reader, "jobs/" + name), file_id(st), false});
      ++read;
    } catch (const SysError& err) {
      if (err.err() == ENOENT) {
        spdlog::debug("{} vanished during the scan", name);
        continue;
      }
      out.skipped.push_back({name, err.what()});
    } catch (const Error& err) {
      out.skipped.push_back({name, err.what()});
    }
    errno = 0;
  }
  if (errno != 0) throw_errno("cannot list " + jobs_dir());
  // Rewrite the index when it learnt headers, or when it mostly describes
  // files that are gone; a few stale entries cost nothing.
  size_t gone = idx.size() > out.jobs.size() - read ? idx.size() - (out.jobs.size() - read) : 0;
  if (key && (read > 0 || gone > std::max<size_t>(64, out.jobs.size() / 4))) {
    try {
      HeaderIndex::save(dir_, *key, dir_st, started, out.jobs);
    } catch (const Error& err) {
      spdlog::debug("cannot update the header index: {}", err.what());
    }
  }
  return out;
}

std::string Queue::write(int in_fd) const {
  check_exists();
  std::string name = gen_job_filename();
  std::string temp = job_path("tmp-" + name + ".tmp");
  Fd out(::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0666));
  if (!out) throw_errno("cannot create " + temp);
  try {
    std::vector<std::byte> buf(1 << 20);
    while (size_t n = read_full(in_fd, buf, "standard input"))
      write_all(out.get(), std::span(buf).first(n), temp);
    if (::fsync(out.get()) != 0) throw_errno("cannot fsync " + temp);
    out.reset();
    if (::rename(temp.c_str(), job_path(name).c_str()) != 0) throw_errno("cannot rename " + temp);
  } catch (...) {
    ::unlink(temp.c_str());
    throw;
  }
  fsync_dir(jobs_dir(), true);
  return name;
}

}  // namespace safespool
