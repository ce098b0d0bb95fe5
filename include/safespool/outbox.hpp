// SPDX-License-Identifier: GPL-3.0-or-later
// The sender's outbox: the packets it sent, matched with the receipts
// that came back (receipt.hpp).
//
// `prepare --outbox DIR` keeps a byte-identical copy of each packet it
// makes. A receipt names a packet by the SHA-256 the receiver's ledger
// records: the packet file's, or for a split job the whole stream's,
// which every part names in its header. So each outbox file is matched by
// its hash (or, for a part, its job's) with the latest receipt about it:
//
//   acked    the receiver ran it (success) or replaced it (superseded)
//   failed   the job failed, was skipped or rejected: someone must look
//   pending  no receipt yet
//
// outbox-prune deletes acked packets only; a pending or failed packet is
// what the sender may still have to resend or replace.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "safespool/decode.hpp"
#include "safespool/policy.hpp"
#include "safespool/queue.hpp"
#include "safespool/receipt.hpp"

namespace safespool {

/// One packet in the outbox and what the receipts say about it.
struct OutboxEntry {
  std::string filename;            ///< within the outbox
  std::optional<uint64_t> seq;     ///< when known (a plain header, the file name, a receipt)
  std::string sha256;              ///< what receipts name it by
  std::optional<PartInfo> part;    ///< a part of a split job
  std::string state;               ///< "acked", "failed", "pending"
  int64_t since = 0;               ///< the receipt's time, or the file's (pending)
  std::optional<Receipt> receipt;  ///< the latest receipt about it
};

/// The outbox as the receipts describe it.
struct OutboxReport {
  std::vector<OutboxEntry> entries;  ///< by seq, then name
  std::vector<Receipt> waiting;      ///< waiting receipts not answered since
  std::vector<SkippedFile> bad;      ///< receipts (and outbox files) that could not be used
};

/// Reads the outbox and the receipts (under `policy`, only trusted ones
/// count). Throws SysError when a directory cannot be listed.
OutboxReport outbox_status(const std::string& outbox, const std::string& receipts,
                           const DecodeOptions& decode, const SignerPolicy& policy);

/// Deletes the acked packets of `report` from `outbox`; returns their names.
std::vector<std::string> outbox_prune(const OutboxReport& report, const std::string& outbox);

/// One line per packet: "acked   seq 7 since 2026-…  fspl-7-….fspl (success, exit 0)".
std::string outbox_text(const OutboxReport& report);
/// One JSON document (docs/json.md).
std::string outbox_json(const OutboxReport& report, const std::vector<std::string>& pruned = {});

}  // namespace safespool
