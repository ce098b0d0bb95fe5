// SPDX-License-Identifier: GPL-3.0-or-later
// The processed ledger: what ran, on which bytes, and how it ended.
//
// queuedir/.safespool-ledger is the queue's own memory of the jobs it
// ran, one line per event, appended under the queue lock:
//
//   1 <tab> unix time <tab> seq <tab> result <tab> sha256 <tab> exit status
//     <tab> signer <tab> job file name <tab> kept <tab> reason <newline>
//
// ("-" for an empty field; the reason is one line, tabs and newlines made
// spaces). Results: `started` (a consumer is about to see the packet),
// `success`, `failure` (the job failed and stays), `skipped` (it failed and
// the queue moved past it: --on-error delete or leave), `rejected` (the
// signer policy refused it; the queue never moves past a rejection) and
// `superseded` (a superseding packet took its place).
//
// It answers "was this packet processed?" wherever a decision needs it,
// always for one exact packet, named by the SHA-256 of its file: a job
// file found below nextseq is deleted as done only if the last record for
// its seq is a `success` with its hash (a later `started`, a rerun, voids
// it, and so does `kept`: --never-delete or --on-error leave kept the file
// on purpose); queue-import removes a source only if its hash was
// processed.
//
// Crash safety: each record is one write() to a file opened O_APPEND, so
// records never interleave; a line torn by a crash fails to parse and is
// ignored, and the next writer starts on a fresh line. Records are written
// before nextseq moves and are not fsynced by themselves (on ext4 the
// nextseq fsync commits them too); a record lost to a power failure only
// ever keeps a file that could have been deleted. Bounded: past 4 MiB the
// file becomes .safespool-ledger.1 (replacing the older one) and a new one
// starts, so at most ~8 MiB and the last ~40,000 jobs are kept.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "safespool/fd.hpp"
#include "safespool/queue.hpp"

namespace safespool {

enum class LedgerResult { Started, Success, Failure, Skipped, Rejected, Superseded };

/// "started", "success", ...
const char* result_name(LedgerResult r);

/// One event in the ledger.
struct LedgerRecord {
  int64_t time = 0;
  uint64_t seq = 0;
  LedgerResult result = LedgerResult::Started;
  std::string sha256;              ///< of the job file; "" when not known
  std::optional<int> exit_status;  ///< the consumer's, when it exited
  std::string signer;              ///< primary fingerprint of the trusted signer
  std::string filename;            ///< within jobs/
  bool kept = false;               ///< the file was kept on purpose (--never-delete, leave)
  std::string reason;              ///< one line
};

/// The line a record is stored as (with its newline).
std::string format_record(const LedgerRecord& r);
/// Parses one line (without its newline); nullopt for a torn or foreign one.
std::optional<LedgerRecord> parse_record(std::string_view line);

/// The records of a ledger, oldest first, and the questions asked of them.
class LedgerView {
 public:
  explicit LedgerView(std::vector<LedgerRecord> records) : records_(std::move(records)) {}
  const std::vector<LedgerRecord>& records() const { return records_; }
  /// The last record about `seq`, or null.
  const LedgerRecord* last_for_seq(uint64_t seq) const;
  /// The last record about the packet with this hash, or null.
  const LedgerRecord* last_for_hash(std::string_view sha256) const;
  /// True when the last record for `seq` is a success of exactly this
  /// packet whose file was not kept on purpose: the one test for deleting
  /// a job file as done.
  bool completed(uint64_t seq, std::string_view sha256) const;
  /// True when this packet's last record says the queue is past it
  /// (success, skipped or superseded): the test queue-import uses.
  bool processed(std::string_view sha256) const;

 private:
  std::vector<LedgerRecord> records_;
};

/// A queue's ledger. Appending needs the queue lock; reading does not.
class Ledger {
 public:
  static constexpr const char* kFileName = ".safespool-ledger";
  static constexpr uint64_t kRotateBytes = 4 << 20;

  explicit Ledger(std::string queuedir);

  /// Appends one record (opening, and rotating, the file on first use).
  /// Throws SysError naming the file.
  void append(const LedgerRecord& r);
  /// Reads both generations. A missing ledger is empty; unparsable lines
  /// are skipped. Throws SysError when a file exists but cannot be read.
  LedgerView read() const;

 private:
  void open_for_append();

  std::string path_;
  Fd fd_;
};

}  // namespace safespool
