// SPDX-License-Identifier: GPL-3.0-or-later
// Queue::scan: the header of every job file, from the header index where
// the file is unchanged (index.hpp), else read from the file.
//
// A scan is one pass over readdir(); the Scan class below owns its state
// and names its steps:
//   1. open jobs/ and load the index for these decoding options;
//   2. for each job name: take the header from the index (take_indexed),
//      or open the file and queue it for reading (queue_for_reading);
//   3. read a plain packet's header at once (read_plain: open, fstat, one
//      pread, close), and the others in batches (read_batch): small
//      encrypted packets are decrypted by one gpg per batch (DecodeBatch)
//      instead of one gpg each, which is otherwise most of a scan's cost;
//      a stop request is honoured between files, and a long scan leaves a
//      complete index behind several times a second (IndexUpdate::checkpoint);
//   4. leave the index behind when its own rule says that pays
//      (IndexUpdate::save).
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <memory>
#include <optional>

#include "safespool/error.hpp"
#include "safespool/queue.hpp"
#include "safespool/signals.hpp"

namespace safespool {
namespace {

// The header an index entry holds: all of it for a full listing; for
// summaries and the processor only what orders the jobs (the processor
// reads the rest from the file).
Meta indexed_meta(const HeaderIndex& idx, const HeaderIndex::Entry& hit, ScanFor purpose) {
  if (purpose == ScanFor::Listing) return idx.meta(hit);  // all of the header
  // A part of a split job says so in its header, and summaries name the
  // parts a job misses: a header long enough to be a part's is read whole.
  if (purpose == ScanFor::Summary && hit.header_size >= kMinPartHeaderSize) return idx.meta(hit);
  Meta m;
  m.seq = hit.seq;
  m.ctime_secs = hit.ctime_secs;
  m.ctime_nanos = hit.ctime_nanos;
  return m;
}

// A plain packet's head, read with one pread(), then the file itself.
class HeadReader : public Reader {
 public:
  HeadReader(int fd, std::span<const std::byte> head, std::string name)
      : fd_(fd), head_(head), name_(std::move(name)) {}
  size_t read(std::span<std::byte> buf) override {
    if (at_ < head_.size()) {
      size_t n = std::min(buf.size(), head_.size() - at_);
      std::memcpy(buf.data(), head_.data() + at_, n);
      at_ += n;
      return n;
    }
    for (;;) {
      ssize_t n = ::pread(fd_, buf.data(), buf.size(), static_cast<off_t>(at_));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw_errno("cannot read " + name_);
      at_ += static_cast<size_t>(n);
      return static_cast<size_t>(n);
    }
  }
  void finish() override {}
  std::string describe() const override { return name_; }

 private:
  int fd_;
  std::span<const std::byte> head_;
  std::string name_;
  size_t at_ = 0;
};

class Scan {
 public:
  Scan(const Queue& q, const DecodeOptions& decode, ScanFor purpose, uint64_t seq_below,
       const JobSink& sink)
      : q_(q), decode_(decode), purpose_(purpose), seq_below_(seq_below), sink_(sink) {}

  ScanResult run() {
    open_listing();
    if (seq_below_ == UINT64_MAX && !sink_) out_.jobs.reserve(idx_.size());
    list();
    read_batch();
    save_index();
    return std::move(out_);
  }

 private:
  /// Files read per batch (one gpg run for the encrypted ones among them):
  /// the first batches are small, so that a scan killed early has already
  /// left a checkpoint of the index behind.
  static constexpr size_t kFirstBatch = 16, kReadBatch = 128;

  void open_listing();
  void list();
  void list_from_index();
  void take(std::string_view name, uint64_t ino);
  bool take_indexed(std::string_view name, uint64_t ino);
  bool usable(std::string_view name, uint64_t ino, const HeaderIndex::Entry& hit) const;
  void queue_for_reading(const std::string& name);
  Fd open_job(const std::string& name, struct stat& st) const;
  bool read_plain(int fd, const std::string& name, const struct stat& st);
  void learnt(const std::string& name, Meta meta, const struct stat& st, const std::string& raw);
  void read_batch();
  void read_one(DecodeBatch& opened, size_t k);
  /// At or above seq_below_ (UINT64_MAX: no bound, the last seq included).
  bool beyond(uint64_t seq) const { return seq >= seq_below_ && seq_below_ != UINT64_MAX; }
  void found(std::string_view name, Meta meta, const FileId& id, bool from_index);
  void unreadable(const std::string& name, const Error& err);
  void save_index();

  const Queue& q_;
  const DecodeOptions& decode_;
  const ScanFor purpose_;
  const uint64_t seq_below_;
  const JobSink& sink_;
  std::unique_ptr<DIR, int (*)(DIR*)> dir_{nullptr, ::closedir};
  struct stat dir_st_ {};
  std::optional<std::string> key_;  ///< nullopt: headers are not indexed
  bool plain_first_ = false;        ///< packets may be plain: try read_plain()
  HeaderIndex idx_;
  std::optional<IndexUpdate> update_;  ///< with key_
  std::vector<BatchFile> batch_;
  size_t batch_limit_ = kFirstBatch;
  size_t read_since_check_ = 0;  ///< files read since checkpoint() was asked
  std::vector<std::pair<std::string, struct stat>> batch_files_;  ///< name, its stat
  ScanResult out_;
};

void Scan::open_listing() {
  dir_.reset(::opendir(q_.jobs_dir().c_str()));
  if (!dir_) throw_errno("cannot list " + q_.jobs_dir());
  if (::fstat(::dirfd(dir_.get()), &dir_st_) != 0) throw_errno("cannot stat " + q_.jobs_dir());
  plain_first_ =
      !decode_.external && (decode_.mode == DecodeMode::Auto || decode_.mode == DecodeMode::None);
  key_ = index_key(decode_);
  if (!key_) return;
  idx_ = HeaderIndex::load(q_.dir(), *key_, dir_st_);
  update_.emplace(idx_, q_.dir(), *key_, dir_st_);
  // jobs/ as it is from now on, for the next scan (HeaderIndex::lists).
  struct stat now;
  if (update_->start_reading() && ::fstat(::dirfd(dir_.get()), &now) == 0)
    update_->listing_directory(now);
}

void Scan::list() {
  if (idx_.lists(dir_st_)) return list_from_index();
  for (;;) {
    // Only readdir's own failure may leave errno set when it returns null:
    // a file that vanished (ENOENT from open) is not a listing error.
    errno = 0;
    dirent* e = ::readdir(dir_.get());
    if (!e) break;
    if (is_job_name(e->d_name))
      take(e->d_name, e->d_ino);
    else if (is_temp_name(e->d_name) && (e->d_type == DT_REG || e->d_type == DT_UNKNOWN))
      out_.temp_files.emplace_back(e->d_name);  // a writer's; nothing else can be abandoned
  }
  if (errno != 0) throw_errno("cannot list " + q_.jobs_dir());
}

// jobs/ has not changed since the index was written with all its job
// files: their names are the index's, in the order readdir() gave them.
void Scan::list_from_index() {
  spdlog::debug("{} is as the header index lists it", q_.jobs_dir());
  for (size_t pos = 0; pos < idx_.size(); ++pos) {
    HeaderIndex::Entry e = idx_.entry(pos);
    take(e.name, e.id.ino);
  }
}

// The job file `name` (inode number `ino`, as listed): from the index, or
// read.
void Scan::take(std::string_view name, uint64_t ino) {
  if (take_indexed(name, ino)) return;
  queue_for_reading(std::string(name));
  bool batch_read = batch_.size() >= batch_limit_;
  if (batch_read) {
    read_batch();
    batch_limit_ = std::min(2 * batch_limit_, kReadBatch);
  }
  // A checkpoint after each batch (encrypted packets take long) and now
  // and then among plain ones; none at the end, where the index is saved.
  if (update_ && (batch_read || ++read_since_check_ % 64 == 0)) update_->checkpoint();
}

// Whether the indexed header `hit` still describes the file `e`: the
// entry is settled (index.hpp) and the file's whole identity matches. The
// one exception, for the processor: a file the index places at or beyond
// seq_below_ is only counted, and for that its name and inode number
// suffice (see ScanFor::Processing).
bool Scan::usable(std::string_view name, uint64_t ino, const HeaderIndex::Entry& hit) const {
  if (!idx_.settled(hit)) return false;
  if (purpose_ == ScanFor::Processing && beyond(hit.seq)) return ino == hit.id.ino;
  char path[NAME_MAX + 1];  // job names come from readdir() or the index
  if (name.size() > NAME_MAX) return false;
  *std::copy(name.begin(), name.end(), path) = '\0';
  struct stat st;
  if (::fstatat(::dirfd(dir_.get()), path, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
    return false;
  return file_id(st) == hit.id;
}

// Takes the header of `e` from the index when it may; false when the file
// must be read.
bool Scan::take_indexed(std::string_view name, uint64_t ino) {
  HeaderIndex::Entry hit;
  size_t pos = idx_.find(name, hit);
  if (pos == HeaderIndex::npos) return false;
  try {
    if (!usable(name, ino, hit)) throw FormatError("changed since it was indexed");
    Meta meta;  // beyond seq_below_, only counted
    meta.seq = hit.seq;
    if (!beyond(hit.seq)) meta = indexed_meta(idx_, hit, purpose_);
    found(name, std::move(meta), hit.id, true);
    update_->keep(pos, hit.header_size);
    return true;
  } catch (const Error& err) {
    spdlog::trace("header index entry for {}: {}; reading the file", name, err.what());
    update_->drop(pos);
    return false;
  }
}

// Opens `name` and reads its header now if it is a plain packet (and
// nothing is waiting in the batch: the listing keeps directory order);
// else queues it for read_batch().
void Scan::queue_for_reading(const std::string& name) {
  try {
    struct stat st;
    Fd fd = open_job(name, st);
    if (update_) update_->start_reading();  // before the first read
    if (plain_first_ && batch_.empty() && read_plain(fd.get(), name, st)) return;
    batch_.push_back({std::move(fd), "jobs/" + name});
    batch_files_.emplace_back(name, st);
  } catch (const Error& err) {
    unreadable(name, err);
  }
}

// Queue::open_job() with the file's stat() for its caller: read-only,
// refusing symlinks and anything that is not a regular file.
Fd Scan::open_job(const std::string& name, struct stat& st) const {
  // O_NONBLOCK: opening a FIFO must not wait for a writer.
  Fd fd(::openat(::dirfd(dir_.get()), name.c_str(),
                 O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY));
  std::string path = q_.job_path(name);
  if (!fd) {
    if (errno == ELOOP) throw Error("cannot open " + path + ": is a symbolic link", kExitDataErr);
    throw_errno("cannot open " + path);
  }
  if (::fstat(fd.get(), &st) != 0) throw_errno("cannot stat " + path);
  if (!S_ISREG(st.st_mode))
    throw Error("cannot read " + path + ": not a regular file", kExitDataErr);
  return fd;
}

// Reads the header of `fd` if it starts like a plain packet; false if not.
bool Scan::read_plain(int fd, const std::string& name, const struct stat& st) {
  std::array<std::byte, 4096> head;
  ssize_t n;
  do {
    n = ::pread(fd, head.data(), head.size(), 0);
  } while (n < 0 && errno == EINTR);
  if (n < 0) throw_errno("cannot read " + q_.job_path(name));
  auto got = std::span(head).first(static_cast<size_t>(n));
  if (detect_encoding(got) != Encoding::Packet) return false;
  HeadReader in(fd, got, "jobs/" + name);
  std::string raw;
  Meta meta = read_header(in, "jobs/" + name, update_ ? &raw : nullptr);
  learnt(name, std::move(meta), st, raw);
  return true;
}

void Scan::learnt(const std::string& name, Meta meta, const struct stat& st,
                  const std::string& raw) {
  if (update_) update_->learn(name, file_id(st), meta, raw);
  found(name, std::move(meta), file_id(st), false);
}

void Scan::read_batch() {
  DecodeBatch opened(std::move(batch_), decode_);
  batch_.clear();
  if (update_) update_->note_encrypted(opened.encrypted());
  for (size_t k = 0; k < opened.size(); ++k) {
    // A scan of many encrypted packets takes a while: honour a stop request.
    if (take_interrupt() || interrupted())
      throw Error("interrupted during the scan of " + q_.jobs_dir(), kExitInterrupted);
    read_one(opened, k);
  }
  batch_files_.clear();
}

void Scan::read_one(DecodeBatch& opened, size_t k) {
  const auto& [name, st] = batch_files_[k];
  try {
    Decoded dec = opened.open(k);
    std::string raw;
    Meta meta = read_header(*dec.reader, "jobs/" + name, update_ ? &raw : nullptr);
    learnt(name, std::move(meta), st, raw);
  } catch (const Error& err) {
    unreadable(name, err);
  }
}

void Scan::found(std::string_view name, Meta meta, const FileId& id, bool from_index) {
  if (beyond(meta.seq)) {
    ++out_.beyond;
  } else if (sink_) {
    sink_({std::string(name), std::move(meta), id, from_index});
  } else {
    out_.jobs.push_back({std::string(name), std::move(meta), id, from_index});
  }
}

// A file that vanished since readdir is simply gone; any other failure is
// listed as skipped, with its reason.
void Scan::unreadable(const std::string& name, const Error& err) {
  const auto* sys = dynamic_cast<const SysError*>(&err);
  if (sys && sys->err() == ENOENT) {
    spdlog::debug("{} vanished during the scan", name);
  } else {
    out_.skipped.push_back({name, err.what(), {}});
  }
}

void Scan::save_index() {
  if (!update_) return;
  spdlog::debug("scan of {}: {} header(s) from the index, {} read, {} unreadable", q_.jobs_dir(),
                update_->kept(), update_->learnt(), out_.skipped.size());
  // Not while a temporary file is there: the next scan must see it, to
  // remove it once it is abandoned.
  update_->complete_listing(out_.skipped.empty() && out_.temp_files.empty());
  try {
    update_->save();
  } catch (const Error& err) {
    spdlog::debug("cannot update the header index: {}", err.what());
  }
}

}  // namespace

ScanResult Queue::scan(const DecodeOptions& decode, ScanFor purpose, uint64_t seq_below,
                       const JobSink& sink) const {
  return Scan(*this, decode, purpose, seq_below, sink).run();
}

}  // namespace safespool
