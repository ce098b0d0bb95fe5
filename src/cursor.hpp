// SPDX-License-Identifier: GPL-3.0-or-later
// The jobs of one queue-process pass, in the order they run (internal to
// src/queue_process.cpp and src/cursor.cpp).
//
// By sequence (the default) the next job is the decision at nextseq
// (decision.hpp), taken again after every job; by timestamp (fspl's
// --order-by timestamp) it is every job file, oldest first, each once,
// nextseq left alone. The pass drives either through this one interface.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "safespool/decision.hpp"
#include "safespool/job.hpp"
#include "safespool/ledger.hpp"
#include "safespool/processor.hpp"
#include "safespool/queue.hpp"
#include "safespool/seqfile.hpp"
#include "safespool/status.hpp"

namespace safespool {

/// A job to run next, or where the pass stops.
struct Step {
  std::optional<Job> job;          ///< the job to run; none: stop
  std::string filename;            ///< its name within jobs/ (a split job's first part)
  std::vector<Replaced> replaces;  ///< the packets the job supersedes
  int exit_code = 0;               ///< when stopping
  std::optional<Blocked> blocked;
};

class JobCursor {
 public:
  virtual ~JobCursor() = default;
  /// The next job, opened and its header read now; or why the pass stops.
  virtual Step next() = 0;
  /// True when nextseq moves as jobs end (by sequence).
  virtual bool by_seq() const = 0;
};

/// What both cursors read from.
struct CursorContext {
  const Queue& queue;
  const ProcessOptions& opts;
  const DecisionRules& rules;
  Ledger& ledger;
};

/// By sequence: the decision at `seq.next()`, from a scan of the next
/// few thousand seqs; before calling a job missing, the queue is scanned
/// again comparing every file's whole identity with the index.
std::unique_ptr<JobCursor> make_seq_cursor(const CursorContext& ctx, const SeqFile& seq);
/// By timestamp: every job file, oldest ctime first, each once per pass.
std::unique_ptr<JobCursor> make_time_cursor(const CursorContext& ctx);

}  // namespace safespool
