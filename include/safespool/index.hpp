// SPDX-License-Identifier: GPL-3.0-or-later
// The header index: queuedir/.safespool-index, a cache of every job file's
// parsed header, so that a scan re-reads only new or changed files.
//
// It is never required: a missing, unreadable, corrupt or foreign index
// only costs a full rescan, after which it is written again. Each entry is
// keyed by the file's name and identity (inode, size, mtime, ctime); a
// file whose identity changed is read again. The file is written to a
// temporary name and renamed, not fsynced: a crash may leave an old index
// or garbage, and the checksum over the whole file turns garbage into "no
// index". Concurrent writers each rename a complete file; the last one
// wins, and any complete index is as good as a stale one, because every
// entry is checked against the directory before use.
//
// "Racy" entries are not trusted: a file changed in place within the same
// clock tick as the scan that read it could keep its mtime and ctime. An
// entry whose ctime is not at least kRacySeconds older than the start of
// the scan that wrote the index is read again next time (the rule git uses
// for its index).
//
// A scan rewrites the whole index only when that pays (IndexUpdate): when
// it read at least 1/64 as many headers from files as the index holds, or
// any encrypted one (a gpg run), or when more of its entries are gone than
// a quarter of the files listed now (and more than 64). A few new plain or
// zstd files are cheaper to read again at the next scan than a 20 MB
// index of 100,000 entries is to write.
//
// The index holds headers only, never a verdict: the processor re-reads
// the header of the job it is about to run and runs nothing else.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
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

/// The key under which headers decoded with `decode` are cached, or
/// nullopt when they must not be: an external decoder is an arbitrary
/// program whose output may change without the file changing.
std::optional<std::string> index_key(const DecodeOptions& decode);

class HeaderIndex {
 public:
  static constexpr const char* kFileName = ".safespool-index";
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
  /// The position of the trusted entry for `name`, or npos (racy entries
  /// are not trusted); `hit` receives the entry found. Cheapest when names
  /// are asked for in the order the index was written (readdir() order,
  /// which an unchanged directory repeats).
  size_t find(std::string_view name, Entry& hit) const;
  /// The entry at a position below size(), decoded from the loaded bytes.
  Entry entry(size_t pos) const;
  size_t size() const { return records_.size(); }

  /// The header bytes of a loaded entry. Throws FormatError when they
  /// cannot be read or are out of bounds.
  std::string_view header(const Entry& e) const;
  /// The header of a loaded entry, parsed and checked (its CRCs, and its
  /// seq against the entry's). Throws FormatError.
  Meta meta(const Entry& e) const;

  /// Writes an index of `entries` (in their order) for `jobs_st` and `key`
  /// to DIR/.safespool-index (temporary file, rename); an entry without
  /// `header` takes it from `source`, the index it was loaded from.
  /// `scan_started` is the wall-clock second the scan that read them
  /// began. Throws SysError / FormatError.
  static void save(const std::string& queuedir, const std::string& key, const struct stat& jobs_st,
                   int64_t scan_started, std::span<const Entry> entries,
                   const HeaderIndex* source = nullptr);

  /// Removes DIR/.safespool-index (when in doubt about it). Never throws.
  static void discard(const std::string& queuedir);

 private:
  /// Opens and reads the entries part of the index at `path`. Throws.
  void read_entries(const std::string& path, const std::string& key, const struct stat& jobs_st);
  /// Checks `part` (the entries part, without its CRC) and records where
  /// each entry starts; touches no file. Throws FormatError.
  void parse_entries(std::string_view part, uint32_t stored_crc, const std::string& key,
                     const struct stat& jobs_st);
  std::string_view name_at(size_t pos) const;

  Fd file_;                     ///< the loaded file (never changed in place)
  uint64_t headers_at_ = 0;     ///< where its headers part starts
  HugeBuffer data_;             ///< its entries part, checked when loaded
  mutable HugeBuffer headers_;  ///< its headers part, read when first needed
  mutable size_t headers_size_ = 0;
  /// Where each entry's record starts in data_, in the order written: 4
  /// bytes per entry rather than a decoded Entry (~120 bytes) each, most
  /// of which a scan never asks for.
  std::vector<uint32_t> records_;
  int64_t written_at_ = 0;     ///< scan start of the loaded index
  mutable size_t cursor_ = 0;  ///< where the next name is expected
  /// (hash of the name, position), sorted; built on the first miss
  mutable std::vector<std::pair<size_t, uint32_t>, HugePageAllocator<std::pair<size_t, uint32_t>>>
      by_name_;
};

/// The index a scan leaves behind, gathered in directory order while the
/// scan goes: entries of the loaded index that are still true (by
/// position: most scans keep the index as it is) and headers read now.
/// It owns the rule that decides whether writing it pays.
class IndexUpdate {
 public:
  /// `source` must outlive the update.
  explicit IndexUpdate(const HeaderIndex& source) : source_(source) {
    order_.reserve(source.size());
  }

  /// The loaded entry at `pos` still describes its file.
  void keep(size_t pos) { order_.push_back(pos); }
  /// A header read from file `name` (identity `id`) now; `header` is its
  /// prefix + metadata bytes.
  void learn(std::string name, const FileId& id, const Meta& meta, std::string header);
  /// `n` of the headers learnt were decrypted (a gpg run each time).
  void note_encrypted(size_t n) { encrypted_ += n; }

  size_t kept() const { return order_.size() - learnt_.size(); }
  size_t learnt() const { return learnt_.size(); }
  /// Entries of the loaded index that no file matched.
  size_t gone() const { return source_.size() > kept() ? source_.size() - kept() : 0; }

  /// The rewrite rule (see the top of this file).
  bool worth_saving() const;
  /// HeaderIndex::save() of the gathered entries.
  void save(const std::string& queuedir, const std::string& key, const struct stat& jobs_st,
            int64_t scan_started) const;

 private:
  const HeaderIndex& source_;
  /// Positions in source_, or source_.size() + k for learnt_[k].
  std::vector<size_t> order_;
  std::vector<HeaderIndex::Entry> learnt_;
  std::deque<std::string> strings_;  ///< the names and headers learnt_ views (they stay put)
  size_t encrypted_ = 0;
};

}  // namespace safespool
