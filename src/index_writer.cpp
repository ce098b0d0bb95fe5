// SPDX-License-Identifier: GPL-3.0-or-later
// Writing the header index (see include/safespool/index.hpp; the bytes are
// described in src/index_format.hpp).
//
// A scan streams what it learns to two scratch files, made unnamed in the
// queue directory (O_TMPFILE, or unlinked at once) so that a killed scan
// leaves nothing behind: the entries it read, and their headers. Writing
// the index joins, in directory order, the loaded index's entries that
// are still true, then its headers part (copied by the kernel), then the
// scratch headers, under a temporary name that is renamed into place.
#include <dirent.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <memory>

#include "index_format.hpp"
#include "safespool/error.hpp"
#include "safespool/fd.hpp"
#include "safespool/file_replace.hpp"
#include "safespool/queue.hpp"

namespace safespool {

using namespace index_format;

namespace {

constexpr size_t kBufferBytes = size_t{1} << 18;
constexpr uint64_t kLearnt = uint64_t{1} << 63;
const std::string kTempPrefix = std::string(HeaderIndex::kFileName) + ".tmp-";
/// A temporary index file older than this, and not locked, was left by a
/// writer that was killed.
constexpr int64_t kStaleTempSeconds = 10;
/// How often a long scan writes a complete index of what it knows.
constexpr auto kCheckpointEvery = std::chrono::milliseconds(250);

// Copies `len` bytes of `in` from `offset` to the end of `out` (whose file
// offset is at its end), in the kernel where it can.
void copy_range(int in, uint64_t offset, uint64_t len, int out, const std::string& what) {
  auto off = static_cast<off_t>(offset);
  while (len > 0) {
    ssize_t n = ::copy_file_range(in, &off, out, nullptr, len, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // not supported here, or the source is shorter
    len -= static_cast<uint64_t>(n);
  }
  std::string buf;
  while (len > 0) {
    buf.resize(std::min<uint64_t>(len, kBufferBytes));
    ssize_t n = ::pread(in, buf.data(), buf.size(), off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno("cannot read for " + what);
    if (n == 0) throw Error("cannot copy into " + what + ": source too short");
    buf.resize(static_cast<size_t>(n));
    write_all(out, buf, what);
    off += n;
    len -= static_cast<uint64_t>(n);
  }
}

// Removes temporary index files that killed writers left: those no live
// writer holds locked, and old enough not to be one just being created.
void remove_stale_temps(const std::string& queuedir, const std::string& own) {
  std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(queuedir.c_str()), ::closedir);
  if (!d) return;
  const int64_t now = ::time(nullptr);
  while (dirent* e = ::readdir(d.get())) {
    std::string_view name = e->d_name;
    if (!name.starts_with(kTempPrefix) || name == own) continue;
    Fd fd(::openat(::dirfd(d.get()), e->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
    struct stat st;
    if (!fd || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    if (now - st.st_mtim.tv_sec < kStaleTempSeconds) continue;
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) continue;
    if (::unlinkat(::dirfd(d.get()), e->d_name, 0) == 0)
      spdlog::debug("removed {}/{}, left by a killed scan", queuedir, name);
  }
}

}  // namespace

/// An append-only file with a write buffer.
class ScratchSpool {
 public:
  explicit ScratchSpool(Fd fd, std::string what) : fd_(std::move(fd)), what_(std::move(what)) {}
  void append(std::string_view s) {
    buf_.append(s);
    size_ += s.size();
    if (buf_.size() >= kBufferBytes) flush();
  }
  void flush() {
    write_all(fd_.get(), buf_, what_);
    buf_.clear();
  }
  uint64_t size() const { return size_; }
  int fd() const { return fd_.get(); }
  const std::string& what() const { return what_; }

 private:
  Fd fd_;
  std::string what_;
  std::string buf_;
  uint64_t size_ = 0;
};

/// The two unnamed scratch files of a scan: the records of the headers it
/// learnt, and those headers. Their creation time is the scan's racy
/// bound.
class IndexScratch {
 public:
  explicit IndexScratch(const std::string& queuedir)
      : records(make(queuedir), "header index scratch"),
        headers(make(queuedir), "header index scratch") {
    struct stat st;
    if (::fstat(records.fd(), &st) != 0) throw_errno("cannot stat the header index scratch");
    created = {st.st_ctim.tv_sec, st.st_ctim.tv_nsec};
    dev = st.st_dev;
  }
  ScratchSpool records, headers;
  FsTime created;
  dev_t dev = 0;

 private:
  static Fd make(const std::string& dir) {
    Fd fd(::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
    if (fd) return fd;
    // No O_TMPFILE on this file system: a name, unlinked at once.
    std::string path = dir + "/" + kTempPrefix + gen_uuid() + ".scratch";
    fd = Fd(::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd) throw_errno("cannot create " + path);
    ::unlink(path.c_str());
    return fd;
  }
};

/// A new index file: written under a temporary name of its own
/// (FileReplacement, owner-only, not fsynced: it is a cache), locked while
/// it is written, renamed into place by commit().
class IndexFile {
 public:
  explicit IndexFile(const std::string& queuedir)
      : out_(queuedir + "/" + HeaderIndex::kFileName, {Durability::Atomic, 0600, "", -1}) {
    ::flock(out_.fd(), LOCK_EX | LOCK_NB);
    remove_stale_temps(queuedir, out_.temp_path().substr(queuedir.size() + 1));
  }

  /// Bytes of the entries part.
  void put_entries(std::string_view s) {
    crc_ = checksum(crc_, s);
    put_headers(s);
  }
  /// Bytes of the headers part.
  void put_headers(std::string_view s) {
    buf_.append(s);
    size_ += s.size();
    if (buf_.size() >= kBufferBytes) flush();
  }
  void copy_headers(int fd, uint64_t offset, uint64_t len) {
    flush();
    copy_range(fd, offset, len, out_.fd(), out_.temp_path());
    size_ += len;
  }
  /// Ends the entries part (`count` entries).
  void end_entries(uint64_t count) {
    entries_size_ = size_;
    count_ = count;
  }
  void commit() {
    put_headers(trailer(entries_size_, count_, crc_));
    flush();
    out_.commit();
  }

 private:
  void flush() {
    out_.write(buf_);
    buf_.clear();
  }
  FileReplacement out_;
  std::string buf_;
  uint32_t crc_ = 0;
  uint64_t size_ = 0, entries_size_ = 0, count_ = 0;
};

/// Reads back the records a scan spooled, in order.
class ScratchReader {
 public:
  explicit ScratchReader(const ScratchSpool& s) : spool_(s) {}
  /// The next record, its header offset moved by `shift`.
  std::string_view next(uint64_t shift) {
    uint32_t len;
    std::memcpy(&len, take(4).data(), 4);
    rec_.assign(reinterpret_cast<const char*>(&len), 4);
    rec_.append(take(len + kRecordFields));
    uint64_t at;
    char* field = rec_.data() + 4 + len + kHeaderOffsetAt;
    std::memcpy(&at, field, sizeof at);
    at += shift;
    std::memcpy(field, &at, sizeof at);
    return rec_;
  }

 private:
  std::string_view take(size_t n) {
    if (buf_.size() - pos_ < n) {
      buf_.erase(0, pos_);
      pos_ = 0;
      size_t want = std::max(n, kBufferBytes);
      size_t have = buf_.size();
      buf_.resize(have + want);
      ssize_t got = ::pread(spool_.fd(), buf_.data() + have, want, static_cast<off_t>(read_));
      if (got < 0) throw_errno("cannot read " + spool_.what());
      buf_.resize(have + static_cast<size_t>(got));
      read_ += static_cast<uint64_t>(got);
      if (buf_.size() < n) throw Error(spool_.what() + ": truncated");
    }
    std::string_view s(buf_.data() + pos_, n);
    pos_ += n;
    return s;
  }
  const ScratchSpool& spool_;
  std::string buf_, rec_;
  size_t pos_ = 0;
  uint64_t read_ = 0;
};

IndexUpdate::IndexUpdate(const HeaderIndex& source, std::string queuedir, std::string key,
                         const struct stat& jobs_st)
    : source_(source),
      queuedir_(std::move(queuedir)),
      key_(std::move(key)),
      jobs_st_(jobs_st),
      claimed_(source.size()) {
  order_.reserve(source.size());
}

IndexUpdate::~IndexUpdate() = default;

bool IndexUpdate::start_reading() {
  if (scratch_) return true;
  if (no_scratch_) return false;
  try {
    scratch_ = std::make_unique<IndexScratch>(queuedir_);
    started_ = ::time(nullptr);
    next_checkpoint_ = std::chrono::steady_clock::now() + kCheckpointEvery;
  } catch (const Error& e) {
    spdlog::debug("the header index will not be updated: {}", e.what());
    no_scratch_ = true;
  }
  return !no_scratch_;
}

void IndexUpdate::keep(size_t pos, uint32_t header_size) {
  order_.push_back(pos);
  claimed_[pos] = true;
  kept_header_bytes_ += header_size;
  ++kept_;
}

void IndexUpdate::drop(size_t pos) { claimed_[pos] = true; }

void IndexUpdate::learn(std::string_view name, const FileId& id, const Meta& meta,
                        std::string_view header) {
  if (!scratch_) return;
  std::string rec;
  HeaderIndex::Entry e{name, id, meta.seq, meta.ctime_secs, meta.ctime_nanos, header};
  put_record(rec, e, scratch_->headers.size(), static_cast<uint32_t>(header.size()));
  scratch_->records.append(rec);
  scratch_->headers.append(header);
  order_.push_back(kLearnt | learnt_++);
}

bool IndexUpdate::worth_saving() const {
  // Rewriting costs about as much as reading 1/64 of its headers from
  // their files (it is all written again).
  size_t read = learnt(), listed = order_.size();
  bool learnt_enough = encrypted_ > 0 || (read > 0 && read * 64 >= listed);
  return learnt_enough || gone() > std::max<size_t>(64, listed / 4);
}

void IndexUpdate::checkpoint() {
  auto now = std::chrono::steady_clock::now();
  if (!scratch_ || learnt_ == learnt_at_checkpoint_ || now < next_checkpoint_) return;
  try {
    write(true);
    auto took = std::chrono::steady_clock::now() - now;
    // At most a tenth of the scan's time goes to checkpoints.
    next_checkpoint_ =
        now + std::max<std::chrono::steady_clock::duration>(kCheckpointEvery, 10 * took);
    learnt_at_checkpoint_ = learnt_;
    checkpointed_ = true;
  } catch (const Error& e) {
    spdlog::debug("cannot write a checkpoint of the header index: {}", e.what());
  }
}

void IndexUpdate::save() {
  if (no_scratch_ || (!worth_saving() && !checkpointed_)) return;
  write(false);
}

// The state of jobs/ to record with an index of `count` entries: only
// when they are all its job files and it had not changed in the clock
// tick the scan began in (any later change then shows as a newer ctime).
DirState IndexUpdate::listed(size_t count) const {
  bool exact = complete_ && count == order_.size() && scratch_ &&
               scratch_->dev == jobs_st_.st_dev && listing_.ctime < scratch_->created;
  return exact ? listing_ : DirState{};
}

FsTime IndexUpdate::racy_bound() const {
  if (!scratch_) return source_.trusted_before_;  // nothing learnt
  if (scratch_->dev == jobs_st_.st_dev) return scratch_->created;
  return {started_ - HeaderIndex::kRacySeconds, 0};  // another file system's clock
}

// Writes the entries of `slots` (positions in source_, or kLearnt | k) to
// `f`, each header offset as it will be in the headers part: the kept
// ones' first (all of source_'s headers part, or with `compact` only
// theirs, in this order), then the learnt ones'.
void IndexUpdate::write_records(IndexFile& f, const std::vector<uint64_t>& slots, bool compact) {
  f.put_entries(entries_head(jobs_st_, racy_bound(), listed(slots.size()), key_));
  std::optional<ScratchReader> learnt;
  if (scratch_) learnt.emplace(scratch_->records);
  const uint64_t learnt_shift = compact ? kept_header_bytes_ : source_.headers_size_;
  uint64_t kept_at = 0;
  std::string rec;
  for (uint64_t slot : slots) {
    if (slot & kLearnt) {
      f.put_entries(learnt->next(learnt_shift));
    } else if (!compact) {
      f.put_entries(source_.record(slot));
    } else {
      HeaderIndex::Entry e = source_.entry(slot);
      rec.clear();
      put_record(rec, e, kept_at, e.header_size);
      kept_at += e.header_size;
      f.put_entries(rec);
    }
  }
  f.end_entries(slots.size());
}

void IndexUpdate::write(bool partial) {
  if (scratch_) {
    scratch_->records.flush();
    scratch_->headers.flush();
  }
  std::vector<uint64_t> slots = order_;
  // A checkpoint keeps the entries not seen yet: the rest of the scan
  // may still find them true.
  for (size_t pos = 0; partial && pos < claimed_.size(); ++pos)
    if (!claimed_[pos]) slots.push_back(pos);
  // Copy the loaded headers part whole, unless most of it is gone.
  const bool compact =
      !partial && source_.headers_size_ > 2 * kept_header_bytes_ + kBufferBytes * 4;
  IndexFile f(queuedir_);
  write_records(f, slots, compact);
  if (compact) {
    for (uint64_t slot : slots)
      if (!(slot & kLearnt)) f.put_headers(source_.header(source_.entry(slot)));
  } else if (source_.headers_size_ > 0) {
    f.copy_headers(source_.file_.get(), source_.headers_at_, source_.headers_size_);
  }
  if (scratch_) f.copy_headers(scratch_->headers.fd(), 0, scratch_->headers.size());
  f.commit();
}

void HeaderIndex::save(const std::string& queuedir, const std::string& key,
                       const struct stat& jobs_st, FsTime trusted_before,
                       const std::vector<Entry>& entries, DirState listed) {
  IndexFile f(queuedir);
  f.put_entries(entries_head(jobs_st, trusted_before, listed, key));
  uint64_t at = 0;
  std::string rec;
  for (const Entry& e : entries) {
    rec.clear();
    put_record(rec, e, at, static_cast<uint32_t>(e.header.size()));
    at += e.header.size();
    f.put_entries(rec);
  }
  f.end_entries(entries.size());
  for (const Entry& e : entries) f.put_headers(e.header);
  f.commit();
}

}  // namespace safespool
