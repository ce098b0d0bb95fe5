// SPDX-License-Identifier: GPL-3.0-or-later
// queue-import: bringing packets in from a transfer directory.
//
// A USB stick or a synced folder is not the queue's filesystem, and a
// packet on it may already have been imported, or processed, or be a
// second copy. Import copies each packet to a temporary name inside jobs/,
// fsyncs it, renames it to a job name and fsyncs jobs/, so a job-named
// file is always whole. With move semantics (the default) a source is
// removed only when that loses nothing: its copy is durable in jobs/, a
// byte-identical file is already there, or the ledger holds its hash as
// processed. A packet below nextseq that the ledger does not know stays
// where it is (a sender may have made it from a restored seqfile): it
// never ran, and only an operator can say whether it should.
#pragma once

#include <string>
#include <vector>

#include "safespool/decode.hpp"
#include "safespool/policy.hpp"
#include "safespool/queue.hpp"

namespace safespool {

struct ImportOptions {
  bool copy = false;     ///< keep the source files
  DecodeOptions decode;  ///< to read each packet's header
  /// Under a policy, a packet that announces no trusted signer is not
  /// imported (the processor would refuse it anyway).
  SignerPolicy policy;
};

/// What happened to each file considered.
struct ImportReport {
  std::vector<std::string> imported;    ///< copied into jobs/
  std::vector<std::string> duplicates;  ///< a byte-identical file is in jobs/
  std::vector<std::string> processed;   ///< the ledger says it was processed
  std::vector<SkippedFile> kept;        ///< left on the source, with the reason
  std::vector<SkippedFile> failed;      ///< unreadable or not a packet: left where it was
  std::vector<std::string> ignored;     ///< files in a source directory not named fspl-*.fspl
};

/// Imports every fspl-*.fspl file in each directory of `sources` (a source
/// that is a file is imported whatever its name).
ImportReport import_packets(const Queue& q, const std::vector<std::string>& sources,
                            const ImportOptions& opts);

}  // namespace safespool
