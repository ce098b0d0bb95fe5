// SPDX-License-Identifier: GPL-3.0-or-later
// Running jobs: one packet (stdin-process) or a whole queue (queue-process).
//
// queue-process holds the queue lock for the whole run, scans jobs/, and
// runs the job whose seq equals nextseq, then the next, strictly in order,
// stopping at the first gap. After a job succeeds (or fails under
// --on-error delete/leave) nextseq is advanced durably *before* the job
// file is deleted: a crash in between leaves a stale file below nextseq,
// never a job run twice after success was recorded, and never a skipped
// one. A job whose payload fails to decode (or to verify) is a failed job:
// under the default --on-error retry the packet is kept and nextseq is not
// advanced.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "safespool/decode.hpp"
#include "safespool/handoff.hpp"
#include "safespool/packet.hpp"
#include "safespool/policy.hpp"
#include "safespool/queue.hpp"

namespace safespool {

enum class OnError { Retry, Delete, Leave };
enum class OrderBy { Sequence, Timestamp };
enum class OutputTo { PassBoth, SaveBoth };

/// Options shared by stdin-process and queue-process.
struct JobOptions {
  std::vector<std::string> command;  ///< COMMAND followed by its -- PARAMS
  bool allow_job_params = false;
  bool ignore_payload = false;
  HandoffOptions handoff;
  /// Signer policy (not owned); null or empty: none. With a policy, a job
  /// runs only as far as its signature allows: NOP/Fail packets are fully
  /// verified before they count, and a consumer never sees EOF of an
  /// unverified stream.
  const SignerPolicy* policy = nullptr;
  /// Decode and verify the whole payload into an unlinked temporary file
  /// in `spool_dir` before starting the consumer on it.
  bool verify_first = false;
  std::string spool_dir;
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
};

/// Where a job came from, for the FSPL_JOB_* variables.
struct JobOrigin {
  const std::string* filename = nullptr;  ///< name within jobs/
  const std::string* queuedir = nullptr;  ///< as given with -q
};

/// Runs one job whose header was already read from `decoded`. NOP succeeds
/// and Fail fails without running anything. A payload that fails to decode
/// or to satisfy the signer policy is a failed job (Kind::DecodeFailed).
/// Throws Error (exit 69) when the command cannot be started, FormatError
/// for params/env that cannot be passed to a process (NUL bytes, '=' in a
/// name).
HandoffResult run_job(const Meta& meta, Decoded& decoded, const JobOptions& opts, JobOrigin origin,
                      int stdout_fd = 1, int stderr_fd = 2);

/// One queue-process pass: lock, scan, run jobs in order until none is
/// ready. Returns the exit code (0: done or nothing to do, 1: a job failed
/// under --on-error retry, 65: a payload failed to decode, 130:
/// interrupted); throws Error for everything else (lock busy: exit 75).
/// Records the run in queuedir/.safespool-status and the metrics file.
int process_one_pass(const Queue& queue, const ProcessOptions& opts);

/// queue-process: one pass, or with opts.watch, passes whenever jobs/
/// changes (inotify) and every rescan_seconds, until SIGTERM/SIGINT/SIGHUP.
/// In watch mode failures are logged and waited out, not fatal.
int process_queue(const Queue& queue, const ProcessOptions& opts);

}  // namespace safespool
