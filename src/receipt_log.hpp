// SPDX-License-Identifier: GPL-3.0-or-later
// Internal: the receipts one queue-process pass writes (receipt.hpp).
//
// A receipt never changes how a job ends: a receipt that cannot be
// written (the directory is gone, a key expired) is a warning, and the
// job's outcome, the ledger and nextseq are what they would have been.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "safespool/decision.hpp"
#include "safespool/job.hpp"
#include "safespool/ledger.hpp"
#include "safespool/processor.hpp"
#include "safespool/queue.hpp"
#include "safespool/receipt.hpp"
#include "safespool/status.hpp"

namespace safespool {

class ReceiptLog {
 public:
  ReceiptLog(const Queue& q, const ReceiptOptions& opts);
  bool enabled() const { return opts_.enabled(); }

  /// Before a job: empties the note file and returns the variable that
  /// names it to the consumer ("SAFESPOOL_RECEIPT_NOTE=PATH"); none when
  /// receipts are off.
  std::vector<std::string> prepare_note();
  /// After a job ended with `result`: its receipt, and one `superseded`
  /// receipt for each packet in `replaced`.
  void job_ended(Job& job, LedgerResult result, const JobOutcome& o,
                 const std::vector<Replaced>& replaced);
  /// At the end of a pass: a waiting receipt when the queue waits at its
  /// next seq, with later packets present for longer than the option
  /// says, and DIR holds none for that seq yet.
  void check_waiting(const QueueStatus& s);

 private:
  Receipt base(uint64_t seq) const;
  void write(const Receipt& r);
  std::string take_note();

  std::string queuedir_;
  ReceiptOptions opts_;
  std::string note_path_;
  std::string host_;
};

}  // namespace safespool
