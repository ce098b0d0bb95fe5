// SPDX-License-Identifier: GPL-3.0-or-later
// Receipts: what a receiver tells the sender about the packets it ran.
//
// On sneakernet the sender never sees the receiver, so it cannot know
// which packets arrived, which ran and which failed: media and outboxes
// grow for ever and a lost packet is noticed weeks late. With
// `queue-process --receipts-dir DIR` the receiver writes, after each job
// that ended (success, failure, skipped, rejected, superseded), a small
// receipt packet into DIR, and one when the queue has waited long for a
// missing packet. Receipts travel back by any transport; the sender's
// `outbox-status` matches them with the packets it kept (outbox.hpp).
//
// A receipt is itself a Filespooler packet (docs/design/receipts.md): its
// header carries the job's seq, cmd_type "Fail" (put in a queue by
// mistake it runs nothing) and the "safespool" entry {"receipt": 1}; its
// payload is one JSON document. It is compressed, signed and encrypted
// like any packet (--sign-with, --encrypt-to), so the sender can require
// that receipts come from the receiver's key.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "safespool/decode.hpp"
#include "safespool/encode.hpp"
#include "safespool/policy.hpp"
#include "safespool/queue.hpp"

namespace safespool {

/// The version of the receipt document written here.
inline constexpr int kReceiptVersion = 1;
/// Longest stderr tail and note a receipt carries.
inline constexpr size_t kReceiptTextMax = 4096;

/// One receipt.
struct Receipt {
  std::string queue;  ///< the receiver's queue directory
  std::string host;   ///< the receiver's host name
  uint64_t seq = 0;   ///< the job's seq (waiting: the seq waited for)
  /// SHA-256 of the packet (a job file's bytes; a split job's whole
  /// stream), as the ledger records it. "" for a waiting receipt.
  std::string sha256;
  /// "success", "failure", "skipped", "rejected", "superseded", "waiting".
  std::string result;
  std::optional<int> exit_status;
  int64_t time = 0;                      ///< when the job ended, or the receipt was written
  std::string reason;                    ///< why it did not succeed, one line
  std::string stderr_tail;               ///< the consumer's last stderr bytes, when known
  std::string note;                      ///< what the consumer wrote to $SAFESPOOL_RECEIPT_NOTE
  std::string superseded_by;             ///< superseded: SHA-256 of the replacement
  std::optional<int64_t> waiting_since;  ///< waiting: since when
};

/// The JSON document a receipt packet carries.
std::string receipt_json(const Receipt& r);
/// Parses it. Throws FormatError for another version or a bad document.
Receipt parse_receipt(std::string_view json);

/// What queue-process needs to write receipts.
struct ReceiptOptions {
  std::string dir;       ///< --receipts-dir ("": no receipts)
  EncodeOptions encode;  ///< --sign-with, --encrypt-to, --gnupg-home
  /// --receipt-wait-after: how long the queue waits for a missing packet,
  /// with later ones present, before a waiting receipt is written.
  int64_t wait_after_seconds = 24 * 3600;
  bool enabled() const { return !dir.empty(); }
};

/// Writes `r` as a receipt packet into `dir` (temporary name, sync,
/// rename to fspl-receipt-SEQ-RESULT-UUID.fspl). Returns its path.
/// Throws Error/SysError.
std::string write_receipt(const std::string& dir, const Receipt& r, const EncodeOptions& enc);

/// A receipt as the sender reads it.
struct ReceiptFile {
  std::string filename;  ///< within the receipts directory
  Receipt receipt;
};

/// Reads every fspl-*.fspl file in `dir` as a receipt (decoded with
/// `decode`). Under `policy`, a receipt counts only when its whole stream
/// verified and a trusted signer signed it. Files that are not receipts,
/// do not decode or are not trusted go to `bad` with the reason.
std::vector<ReceiptFile> read_receipts(const std::string& dir, const DecodeOptions& decode,
                                       const SignerPolicy& policy, std::vector<SkippedFile>& bad);

}  // namespace safespool
