// SPDX-License-Identifier: GPL-3.0-or-later
// Internal: a private directory under $TMPDIR that a later process can
// reclaim once its owner is dead, and never before.
//
// The OpenPGP batch (decode_gpg_batch.cpp) keeps FIFOs and links in
// $TMPDIR/safespool-gpg-XXXXXX. A processor killed during a scan cannot
// remove its directory. So each directory is locked (flock on the
// directory itself) by its owner for its whole life — the kernel drops
// the lock when the owner dies, whatever kills it — and the first batch of
// a later process removes every such directory of ours whose lock it can
// take. A directory gets its name only once it is locked: it is made as
// PREFIX.new-XXXXXX, locked, then renamed. One left under that first name
// (its maker killed in between) is removed once it is a minute old, when
// no live process can be about to lock it.
#pragma once

#include <chrono>
#include <string>

#include "safespool/fd.hpp"

namespace safespool {

/// $TMPDIR/PREFIX-XXXXXX, made 0700 and locked; removed with its contents
/// by the destructor.
class ScratchDir {
 public:
  /// Throws SysError when it cannot be made.
  explicit ScratchDir(const std::string& prefix);
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  ~ScratchDir();

  const std::string& path() const { return path_; }

  /// Removes the $TMPDIR/PREFIX-XXXXXX directories owned by us whose lock
  /// is free, and the PREFIX.new-XXXXXX ones older than `min_age` whose
  /// lock is free; returns how many.
  static int reclaim(const std::string& prefix,
                     std::chrono::seconds min_age = std::chrono::seconds(60));

 private:
  std::string path_;
  Fd lock_;  ///< the directory, flock()ed while we live
};

/// $TMPDIR, or /tmp when it is unset or empty.
std::string temp_base();

}  // namespace safespool
