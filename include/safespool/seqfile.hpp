// SPDX-License-Identifier: GPL-3.0-or-later
// The sequence file and its lock.
//
// A seqfile holds one decimal line: the next sequence number (on the
// sender, the seq the next `prepare` stamps; in a queue, the seq
// `queue-process` runs next). Beside it, PATH.lock is held with
// flock(LOCK_EX|LOCK_NB) while the number is read or changed — the same
// lock fspl takes, so the two tools exclude each other on one queue.
//
// Updates are durable: write PATH.temp, fsync, rename over PATH, fsync the
// directory. A crash leaves either the old or the new number, never a torn
// one. Where the file system can, the rename is an exchange
// (RENAME_EXCHANGE): PATH.temp then holds the old number until the next
// update rewrites it, so no inode is created and freed per update. The
// processor writes and fsyncs PATH.temp while a job runs (prepare), so
// that only the rename and the directory fsync wait for it to end; it
// starts that while the consumer is being started.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "safespool/fd.hpp"
#include "safespool/file_replace.hpp"

namespace safespool {

/// An open, locked seqfile. Move-only; the lock is released on destruction.
class SeqFile {
 public:
  /// Locks PATH.lock and reads PATH. With `create`, a missing lock file
  /// and a missing PATH are created (PATH starts at 1), as `prepare` and
  /// `queue-init` need. Returns nullopt when another process holds the
  /// lock; throws Error naming the file on any other problem (missing lock
  /// file without `create`, unreadable or non-numeric PATH).
  static std::optional<SeqFile> try_open(const std::string& path, bool create);

  /// Like try_open, but waits up to `wait_seconds` for the lock (polling).
  static std::optional<SeqFile> open_waiting(const std::string& path, bool create,
                                             double wait_seconds);

  uint64_t next() const { return next_; }
  /// Durably stores `value` as the next number.
  void set(uint64_t value);
  /// Durably stores next()+1; returns the previous value.
  uint64_t increment();
  /// Writes and fsyncs PATH.temp holding `value` ahead of time, so that a
  /// later set(value) only renames it and fsyncs the directory. Nothing
  /// changes PATH until then; a failure here only logs (set() does all
  /// the work again), and an unused PATH.temp is removed with the lock.
  void prepare(uint64_t value) noexcept;

  SeqFile(SeqFile&&) = default;
  SeqFile& operator=(SeqFile&&) = default;

  const std::string& path() const { return path_; }

 private:
  SeqFile(std::string path, Fd lock, Fd dir)
      : path_(std::move(path)), lock_(std::move(lock)), dir_(std::move(dir)) {}
  void load(bool create);
  FileReplacement write_temp(uint64_t value);

  /// A file to remove when the SeqFile goes, unless taken over first.
  struct LeftFile {
    std::string path;
    LeftFile() = default;
    LeftFile(LeftFile&& o) noexcept : path(std::exchange(o.path, {})) {}
    LeftFile& operator=(LeftFile&& o) noexcept {
      std::swap(path, o.path);
      return *this;
    }
    ~LeftFile() {
      if (!path.empty()) ::unlink(path.c_str());
    }
  };

  std::string path_;
  Fd lock_;
  Fd dir_;  ///< the directory holding path_, fsynced after each rename
  uint64_t next_ = 1;
  /// PATH.temp, written and fsynced ahead of time, and the value it holds.
  /// Removed, if never committed, when the SeqFile goes (before the lock).
  std::optional<FileReplacement> prepared_;
  uint64_t prepared_value_ = 0;
  /// PATH.temp holding the previous number after a set() that exchanged
  /// the files: its inode is the next prepare()'s (no inode is allocated
  /// and freed per job: on ext4 without a journal, allocating one scans
  /// every recently deleted inode), and it is removed with the lock.
  LeftFile left_temp_;
};

}  // namespace safespool
