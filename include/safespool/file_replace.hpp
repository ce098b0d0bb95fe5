// SPDX-License-Identifier: GPL-3.0-or-later
// Replacing a file: write a temporary file beside it, then rename it over.
//
// Readers see the old content or the new, never a mix, and a writer that
// dies leaves at most a temporary file. Files differ in what a crash may
// cost, so durability is a parameter, not a second helper:
//
//   Atomic   temp, rename. A power failure may lose the new content (the
//            old one, or an empty file on some filesystems, may be seen).
//            For caches and reports rebuilt from facts (index, status,
//            metrics).
//   Durable  temp, fsync, rename, fsync of the directory. The new content
//            survives a power failure once commit() returned. For what is
//            a fact itself (nextseq, a job file).
//
// The temporary name is the file's own name with ".tmp-<random>" added, so
// concurrent writers never share one (the last rename wins, each complete),
// unless the caller names it: nextseq uses "nextseq.temp" under its lock,
// as fspl does, and queue-write "tmp-NAME.tmp" in jobs/.
//
// The temporary file is created with the final mode, so a file meant to be
// private (the header index) is never readable by others, even briefly.
#pragma once

#include <sys/types.h>

#include <span>
#include <string>
#include <string_view>

#include "safespool/fd.hpp"

namespace safespool {

enum class Durability { Atomic, Durable };

struct ReplaceOptions {
  Durability durability = Durability::Atomic;
  mode_t mode = 0644;     ///< of the new file (before the umask, as open(2))
  std::string temp_name;  ///< "": PATH.tmp-<random>; else this path
  /// An open descriptor of the directory, fsynced after the rename
  /// (Durable); -1: opened by name. Not owned.
  int dir_fd = -1;
  /// commit() swaps the two files (renameat2 RENAME_EXCHANGE) where the
  /// file system can: the old version stays under the (fixed) temporary
  /// name, for the caller to reuse or remove, instead of being freed while
  /// the next replacement allocates a new inode. Elsewhere a rename.
  bool exchange = false;
};

/// A new version of a file, being written under a temporary name. Move-only.
/// The destructor removes the temporary file unless commit() renamed it.
class FileReplacement {
 public:
  /// Creates the temporary file (exclusively, unless `opts.temp_name` names
  /// a fixed one, which is truncated). Throws SysError naming it.
  FileReplacement(std::string path, ReplaceOptions opts);
  FileReplacement(FileReplacement&&) noexcept;
  FileReplacement& operator=(FileReplacement&&) noexcept;
  ~FileReplacement();

  int fd() const { return fd_.get(); }
  const std::string& temp_path() const { return temp_; }
  /// Appends `data`. Throws SysError naming the temporary file.
  void write(std::string_view data);
  void write(std::span<const std::byte> data);
  /// Flushes what Durable asks for; after this only commit() remains.
  void sync();
  /// sync() if not done, then renames over the file (and fsyncs the
  /// directory when Durable). Throws SysError; the temporary file is
  /// removed on failure.
  void commit();
  /// After commit(): the old version is left under the temporary name.
  bool exchanged() const { return exchanged_; }

 private:
  std::string path_, temp_;
  ReplaceOptions opts_;
  Fd fd_;
  bool synced_ = false;
  bool done_ = false;
  bool exchanged_ = false;
};

/// Replaces `path` with `content` in one call.
void replace_file(const std::string& path, std::string_view content, ReplaceOptions opts = {});

/// fsync()s the directory `dir`. Filesystems that cannot (EINVAL) are fine.
void fsync_dir(const std::string& dir);
/// fsync()s an open directory, naming it `dir` in errors.
void fsync_dir(int dir_fd, const std::string& dir);

/// The directory part of `path` ("." for a bare name, "/" for "/x").
std::string dir_of(const std::string& path);

}  // namespace safespool
