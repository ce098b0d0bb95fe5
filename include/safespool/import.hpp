// SPDX-License-Identifier: GPL-3.0-or-later
// queue-import: bringing packets in from a transfer directory.
//
// A USB stick or a synced folder is not the queue's filesystem, and a
// packet on it may already have been imported, or processed, or be a
// second copy. Import copies each packet to a temporary name inside jobs/,
// fsyncs it, renames it to a job name and fsyncs jobs/, so a job-named file
// is always whole; it skips packets already present (same seq, same bytes)
// and packets below nextseq (already processed). With move semantics (the
// default) the source is removed only after its copy is durable.
#pragma once

#include <string>
#include <vector>

#include "safespool/decode.hpp"
#include "safespool/queue.hpp"

namespace safespool {

struct ImportOptions {
  bool copy = false;     ///< keep the source files
  DecodeOptions decode;  ///< to read each packet's header
};

/// What happened to each file considered.
struct ImportReport {
  std::vector<std::string> imported, duplicates, processed;
  std::vector<SkippedFile> failed;  ///< unreadable or not a packet: left where it was
};

/// Imports every fspl-*.fspl file in each directory of `sources` (a source
/// that is a file is imported whatever its name).
ImportReport import_packets(const Queue& q, const std::vector<std::string>& sources,
                            const ImportOptions& opts);

}  // namespace safespool
