// SPDX-License-Identifier: GPL-3.0-or-later
// Running jobs: one packet (stdin-process) or a whole queue (queue-process).
//
// queue-process holds the queue lock for a pass, decides which packet is
// the job with nextseq (decision.hpp), runs it, records how it ended in
// the ledger, and goes on strictly in order until nothing can run. After
// a job succeeds (or fails under --on-error delete/leave) nextseq is
// advanced durably *before* the job file is deleted: a crash in between
// leaves a file below nextseq that the ledger says completed, deleted by
// the next pass; never a job run twice after its success was recorded
// (unless a crash came first), and never a skipped one. A job whose payload
// fails to decode is a failed job: under the default --on-error retry the
// packet is kept and nextseq is not advanced.
//
// Under a signer policy a job counts as done only when its whole stream
// was read and trusted (verify.hpp); a refused packet is *rejected*: it
// never advances nextseq, whatever --on-error says, and it never outranks,
// blocks or deletes a packet that passes.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "safespool/decode.hpp"
#include "safespool/guard.hpp"
#include "safespool/handoff.hpp"
#include "safespool/job.hpp"
#include "safespool/packet.hpp"
#include "safespool/policy.hpp"
#include "safespool/queue.hpp"
#include "safespool/receipt.hpp"

namespace safespool {

class Hooks;

enum class OnError { Retry, Delete, Leave };
enum class OrderBy { Sequence, Timestamp };
enum class OutputTo { PassBoth, SaveBoth };

/// Options shared by stdin-process and queue-process.
struct JobOptions {
  std::vector<std::string> command;  ///< COMMAND followed by its -- PARAMS
  bool allow_job_params = false;
  bool ignore_payload = false;
  HandoffOptions handoff;
  /// Decode and verify the whole payload into an unlinked temporary file
  /// in `spool_dir` before starting the consumer on it.
  bool verify_first = false;
  std::string spool_dir;
  /// --max-payload: the most --verify-first spools (it also never fills
  /// the filesystem: verify.hpp).
  std::optional<uint64_t> max_payload;
};

/// Options of queue-process.
struct ProcessOptions {
  JobOptions job;
  DecodeOptions decode;
  std::optional<uint64_t> maxjobs;
  bool never_delete = false;
  bool delete_stale = false;  ///< remove packets whose seq is below nextseq
  OrderBy order_by = OrderBy::Sequence;
  OnError on_error = OnError::Retry;
  OutputTo output_to = OutputTo::PassBoth;
  double lock_wait_seconds = 0;
  std::string metrics_file;  ///< Prometheus textfile written after each pass
  bool watch = false;        ///< keep running, processing jobs as they land
  int rescan_seconds = 300;  ///< --watch: rescan this often even without events
  ReceiptOptions receipts;   ///< --receipts-dir and its options (receipt.hpp)
};

/// How one job ended.
struct JobOutcome {
  HandoffResult handoff;  ///< the consumer's ending, or a fixed one (NOP, Fail)
  /// The signer policy refused the packet (`handoff.message` says why).
  bool rejected = false;
  std::string signer;  ///< the trusted signer's fingerprint, under a policy
  bool success() const { return !rejected && handoff.success(); }
  /// One line: why it did not succeed ("" when it did).
  std::string reason() const;
};

/// What run_job works with besides its options.
struct JobContext {
  Launcher& launcher;          ///< the run's consumers' guard and PATH search
  const SignerPolicy& policy;  ///< empty: none
  /// The policy's (sub)key ids for early refusals (signer_key_ids()).
  const std::set<std::string>& key_ids;
  int stdout_fd = 1;
  int stderr_fd = 2;
  /// "K=V" variables the consumer gets besides the job's (the receipt note).
  std::vector<std::string> extra_env = {};
};

/// A job under way: its consumer started and its payload flowing, or its
/// outcome already known (NOP, Fail, a refusal, a payload that did not
/// decode before anything started). The caller sequences the steps:
/// start_job(), whatever it does while the consumer runs, wait(). The
/// job and the context must outlive it.
class JobRun {
 public:
  /// A consumer runs; wait() waits for it.
  bool running() const { return run_.has_value(); }
  /// How the job ended; once (a second call throws Error). Throws Error
  /// (exit 69) when the hand-off itself fails.
  JobOutcome wait();

 private:
  friend JobRun start_job(Job&, const JobOptions&, const JobContext&);
  JobRun(Job& job, const JobContext& ctx) : job_(job), ctx_(ctx) {}
  Job& job_;
  const JobContext& ctx_;
  std::optional<ConsumerRun> run_;
  JobOutcome done_;
  bool waited_ = false;
};

/// Starts one opened job: NOP succeeds and Fail fails without running
/// anything; a command starts with the payload as its stdin. A payload that
/// fails to decode is a failed job; under a policy, a packet that does not
/// prove a trusted signer is rejected (an outcome, never an exception).
/// Throws Error (exit 69) when the command cannot be started, FormatError
/// for params/env of a trusted (or unpoliced) packet that cannot be passed
/// to a process.
JobRun start_job(Job& job, const JobOptions& opts, const JobContext& ctx);

/// start_job(...).wait().
JobOutcome run_job(Job& job, const JobOptions& opts, const JobContext& ctx);

/// One queue-process pass: lock, decide, run jobs in order until none can
/// run. Returns and throws as process_queue() does.
int process_one_pass(const Queue& queue, const ProcessOptions& opts, const SignerPolicy& policy,
                     const Hooks& hooks);

/// queue-process: one pass, or with opts.watch, passes whenever jobs/ changes and every
/// rescan_seconds, until SIGTERM/SIGINT/SIGHUP. Returns the exit code: 0
/// done or nothing to do, 1 a job failed under --on-error retry, 3 the
/// queue is blocked (it needs an operator), 65 a payload failed to decode,
/// 130 interrupted; throws Error for everything else (lock busy: exit 75).
/// Records each pass in queuedir/.safespool-status and the metrics file,
/// and tells `hooks`.
int process_queue(const Queue& queue, const ProcessOptions& opts, const SignerPolicy& policy,
                  const Hooks& hooks);

/// process_queue() with opts.watch (watch.cpp): a pass whenever jobs/
/// changes and every rescan_seconds, until a signal.
int watch_queue(const Queue& queue, const ProcessOptions& opts, const SignerPolicy& policy,
                const Hooks& hooks);

}  // namespace safespool
