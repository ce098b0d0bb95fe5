// SPDX-License-Identifier: GPL-3.0-or-later
// The header index: queuedir/.safespool-index, a cache of every job file's
// parsed header, so that a scan re-reads only new or changed files.
//
// It is never required: a missing, unreadable, corrupt or foreign index
// only costs a full rescan, after which it is written again. Each entry is
// keyed by the file's name and whole identity (inode, size, mtime, ctime,
// with nanoseconds); a file whose identity changed is read again. The
// file is written to a temporary name and renamed, not fsynced: a crash
// may leave an old index or garbage, and the checksum turns garbage into
// "no index". Concurrent writers each rename a complete file; the last one
// wins, and any complete index is as good as a stale one, because every
// entry is checked against the directory before use. It is owner-only
// (0600): it holds the decrypted headers of encrypted packets.
//
// "Racy" entries are not trusted. A file changed in place within the same
// clock tick as the scan that read it could keep its ctime. So a scan,
// before it reads its first file, creates its scratch file in the queue
// directory and takes that file's ctime: the file system's own clock, at
// its own granularity. An entry is used later only if its file's ctime is
// strictly older. Any change after the scan read the file is stamped at
// least that time, so it shows as a new ctime. (Git compares with its
// index file's timestamp for the same reason.) A freshly written queue is
// therefore answered from the index by its second scan. When jobs/ is on
// another file system than the queue directory, the wall clock at the
// scan's start less kRacySeconds stands in.
//
// A scan rewrites the whole index only when that pays (IndexUpdate): when
// it read at least 1/64 as many headers from files as the index holds, or
// any encrypted one (a gpg run), or when more of its entries are gone than
// a quarter of the files listed now (and more than 64). A few new plain or
// zstd files are cheaper to read again at the next scan than a 20 MB
// index of 100,000 entries is to write. What a scan reads goes straight to
// scratch files, not memory, and a long scan (encrypted packets) leaves a
// complete index behind several times a second, so a scan killed again and
// again still gets further each time.
//
// The index holds headers only, never a verdict: the processor re-reads
// the header of the job it is about to run and runs nothing else.
#pragma once

#include <sys/stat.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "safespool/decode.hpp"
#include "safespool/fd.hpp"
#include "safespool/huge_pages.hpp"
#include "safespool/packet.hpp"

namespace safespool {

/// What tells one version of a file from another.
struct FileId {
  uint64_t ino = 0;
  uint64_t size = 0;
  int64_t mtime_sec = 0;
  int64_t mtime_nsec = 0;
  int64_t ctime_sec = 0;
  int64_t ctime_nsec = 0;
  bool operator==(const FileId&) const = default;
};

FileId file_id(const struct stat& st);

/// A point in a file system's time, as in st_ctim.
struct FsTime {
  int64_t sec = 0;
  int64_t nsec = 0;
  auto operator<=>(const FsTime&) const = default;
};

/// The times of a directory: any entry added, removed or renamed changes
/// them.
struct DirState {
  FsTime mtime, ctime;
  static DirState of(const struct stat& st) {
    return {{st.st_mtim.tv_sec, st.st_mtim.tv_nsec}, {st.st_ctim.tv_sec, st.st_ctim.tv_nsec}};
  }
  bool known() const { return ctime != FsTime{}; }
  bool operator==(const DirState&) const = default;
};

/// The key under which headers decoded with `decode` are cached, or
/// nullopt when they must not be: an external decoder is an arbitrary
/// program whose output may change without the file changing.
std::optional<std::string> index_key(const DecodeOptions& decode);

class HeaderIndex {
 public:
  static constexpr const char* kFileName = ".safespool-index";
  /// The margin of the wall-clock rule for racy entries (see above).
  static constexpr int64_t kRacySeconds = 2;

  /// One indexed file: views into the loaded index (entry()), or into the
  /// caller's strings for an entry about to be saved.
  struct Entry {
    std::string_view name;
    FileId id;
    uint64_t seq = 0;
    int64_t ctime_secs = 0;
    uint32_t ctime_nanos = 0;
    /// Prefix + metadata, as in a packet. Empty in a loaded entry: ask
    /// header(), which reads the headers part of the file when first asked.
    std::string_view header;
    uint64_t header_offset = 0;  ///< loaded entries: where in that part
    uint32_t header_size = 0;
  };

  /// Loads DIR/.safespool-index if it was written for this jobs/ directory
  /// (`jobs_st`: its device and inode) and this `key`. Anything else gives
  /// an empty index; the reason is logged at debug level.
  static HeaderIndex load(const std::string& queuedir, const std::string& key,
                          const struct stat& jobs_st);

  static constexpr size_t npos = SIZE_MAX;
  /// The position of the entry for `name`, or npos; `hit` receives it.
  /// Cheapest when names are asked for in the order the index was written
  /// (readdir() order, which an unchanged directory repeats). Whether the
  /// entry may be used is settled() and a comparison of identities.
  size_t find(std::string_view name, Entry& hit) const;
  /// False for a racy entry: its file changed too close to the scan that
  /// read it, and must be read again.
  bool settled(const Entry& e) const {
    return FsTime{e.id.ctime_sec, e.id.ctime_nsec} < trusted_before_;
  }
  /// True when jobs/ (`jobs_st`, stat()ed now) has not changed since a
  /// scan listed it and wrote this index with exactly its job files: the
  /// index's names are then the directory's, and readdir() has nothing to
  /// add. (Files changed in place are still found by their identity.)
  bool lists(const struct stat& jobs_st) const {
    return listed_.known() && listed_ == DirState::of(jobs_st) && listed_.ctime < trusted_before_;
  }
  /// The entry at a position below size(), decoded from the loaded bytes.
  Entry entry(size_t pos) const;
  size_t size() const { return records_.size(); }

  /// The header bytes of a loaded entry. Throws FormatError when they
  /// cannot be read or are out of bounds.
  std::string_view header(const Entry& e) const;
  /// The header of a loaded entry, parsed and checked (its CRCs, and its
  /// seq against the entry's). Throws FormatError.
  Meta meta(const Entry& e) const;

  /// Writes an index of `entries` (in their order, each with its `header`)
  /// for `jobs_st` and `key`, whose entries are settled when their ctime
  /// is before `trusted_before`. For tests and tools; scans use
  /// IndexUpdate. Throws SysError.
  static void save(const std::string& queuedir, const std::string& key, const struct stat& jobs_st,
                   FsTime trusted_before, const std::vector<Entry>& entries, DirState listed = {});

  /// Removes DIR/.safespool-index (when in doubt about it). Never throws.
  static void discard(const std::string& queuedir);

 private:
  friend class IndexUpdate;
  friend class IndexFile;

  /// Opens and reads the entries part of the index at `path`. Throws.
  void read_entries(const std::string& path, const std::string& key, const struct stat& jobs_st);
  /// Checks `part` (the entries part) against `crc` and records where each
  /// entry starts; touches no file. Throws FormatError.
  void parse_entries(std::string_view part, uint32_t crc, const std::string& key,
                     const struct stat& jobs_st);
  std::string_view name_at(size_t pos) const;
  /// The bytes of the record at `pos` (name length, name, fields).
  std::string_view record(size_t pos) const;

  Fd file_;                     ///< the loaded file (never changed in place)
  uint64_t headers_at_ = 0;     ///< where its headers part starts
  uint64_t headers_size_ = 0;   ///< and how long it is
  HugeBuffer data_;             ///< its entries part, checked when loaded
  size_t data_size_ = 0;        ///< bytes of data_ in use
  mutable HugeBuffer headers_;  ///< its headers part, read when first needed
  /// Where each entry's record starts in data_, in the order written: 4
  /// bytes per entry rather than a decoded Entry (~120 bytes) each, most
  /// of which a scan never asks for.
  std::vector<uint32_t> records_;
  FsTime trusted_before_;      ///< see settled()
  DirState listed_;            ///< see lists()
  mutable size_t cursor_ = 0;  ///< where the next name is expected
  /// (hash of the name, position), sorted; built on the first miss
  mutable std::vector<std::pair<size_t, uint32_t>, HugePageAllocator<std::pair<size_t, uint32_t>>>
      by_name_;
};

class IndexScratch;
class IndexFile;

/// The index a scan leaves behind, gathered in directory order while the
/// scan goes: entries of the loaded index that are still true (by
/// position: most scans keep the index as it is) and headers read now,
/// which go straight to scratch files in the queue directory. It owns the
/// rule that decides whether writing the index pays, and writes a
/// complete index several times a second of a long scan (checkpoint()).
class IndexUpdate {
 public:
  /// `source` must outlive the update.
  IndexUpdate(const HeaderIndex& source, std::string queuedir, std::string key,
              const struct stat& jobs_st);
  ~IndexUpdate();

  /// Call before reading the first file whose header will be learnt: it
  /// fixes the time that decides which entries are racy. Returns false
  /// (and nothing will be saved) when no scratch file can be made, e.g. in
  /// a queue directory the user may not write to.
  bool start_reading();
  /// jobs/ as it was, stat()ed after start_reading() and before it was
  /// listed; complete_listing() says whether the index will hold all of
  /// its job files.
  void listing_directory(const struct stat& jobs_now) { listing_ = DirState::of(jobs_now); }
  void complete_listing(bool complete) { complete_ = complete; }
  /// The loaded entry at `pos`, whose header is `header_size` bytes,
  /// still describes its file.
  void keep(size_t pos, uint32_t header_size);
  /// The loaded entry at `pos` was found but no longer describes its file.
  void drop(size_t pos);
  /// A header read now from file `name` (identity `id`); `header` is its
  /// prefix + metadata bytes. Needs start_reading(). Throws SysError.
  void learn(std::string_view name, const FileId& id, const Meta& meta, std::string_view header);
  /// `n` of the headers learnt were decrypted (a gpg run each time).
  void note_encrypted(size_t n) { encrypted_ += n; }

  size_t kept() const { return kept_; }
  size_t learnt() const { return learnt_; }
  /// Entries of the loaded index that no file matched.
  size_t gone() const { return source_.size() > kept_ ? source_.size() - kept_ : 0; }

  /// The rewrite rule (see the top of this file).
  bool worth_saving() const;
  /// Writes a complete index of what is known so far when the scan has
  /// been reading for a while since the last one, so that a scan killed
  /// again and again gets further each time. Never throws.
  void checkpoint();
  /// Writes the index (when worth_saving(), or after a checkpoint). Throws
  /// SysError.
  void save();

 private:
  FsTime racy_bound() const;
  DirState listed(size_t count) const;
  void write_records(IndexFile& f, const std::vector<uint64_t>& slots, bool compact);
  void write(bool partial);

  const HeaderIndex& source_;
  std::string queuedir_, key_;
  struct stat jobs_st_;
  /// Positions in source_, or kLearnt | k for the k-th header learnt.
  std::vector<uint64_t> order_;
  std::vector<bool> claimed_;  ///< source_ positions kept or dropped
  std::unique_ptr<IndexScratch> scratch_;
  bool no_scratch_ = false;
  int64_t started_ = 0;  ///< wall-clock second reading started
  size_t kept_ = 0, learnt_ = 0, encrypted_ = 0;
  uint64_t kept_header_bytes_ = 0;
  size_t learnt_at_checkpoint_ = 0;
  std::chrono::steady_clock::time_point next_checkpoint_;
  bool checkpointed_ = false;
  DirState listing_;
  bool complete_ = false;
};

}  // namespace safespool
