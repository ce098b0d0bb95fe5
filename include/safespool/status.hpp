// SPDX-License-Identifier: GPL-3.0-or-later
// What state a queue is in, for people (queue-status), for scripts
// (--json) and for monitoring (a Prometheus textfile).
//
// The processor leaves a small record of its last run in
// queuedir/.safespool-status (JSON: last run, last success, the failing
// job if any), so queue-status can tell "waiting for a packet that has not
// arrived" from "blocked by a job that keeps failing". The record is a
// convenience: deleting it loses only history.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "safespool/policy.hpp"
#include "safespool/queue.hpp"

namespace safespool {

/// The last run as the processor recorded it.
struct RunRecord {
  int64_t last_run = 0;      ///< unix time of the end of the last run (0: never)
  int64_t last_success = 0;  ///< end of the last run that failed no job
  uint64_t jobs_ok = 0, jobs_failed = 0, bytes = 0;  ///< of the last run
  std::optional<uint64_t> failed_seq;                ///< job that stopped the last run
  std::string failed_file, failed_reason;
};

/// Reads queuedir/.safespool-status (missing or unreadable: empty record).
RunRecord read_run_record(const Queue& q);
/// Replaces it atomically (temp + rename).
void write_run_record(const Queue& q, const RunRecord& r);

/// The state of a queue at one moment.
struct QueueStatus {
  enum class State { Healthy, Waiting, Blocked };
  std::string queuedir;
  std::optional<uint64_t> next_seq;  ///< nullopt: append-only queue
  JobList pending;                   ///< seq >= next, sorted by seq
  JobList stale;                     ///< seq < next
  std::vector<SkippedFile> unreadable;
  std::vector<std::pair<uint64_t, uint64_t>> gaps;  ///< missing ranges [a, b]
  std::optional<int64_t> oldest_age_seconds;        ///< by ctime of pending jobs
  pid_t lock_holder = 0;                            ///< pid holding nextseq.lock, 0: none
  RunRecord record;
  State state = State::Healthy;
};

/// Scans the queue (without taking its lock) and classifies it.
QueueStatus queue_status(const Queue& q, const DecodeOptions& decode);

/// Classification from already-scanned jobs (used by the processor too).
QueueStatus classify(const Queue& q, ScanResult scan, std::optional<uint64_t> next);

/// The pid holding an flock on `path` per /proc/locks, 0 when none.
pid_t flock_holder(const std::string& path);

/// "healthy", "waiting", "blocked".
const char* state_name(QueueStatus::State s);

/// Human report, several lines.
std::string format_status(const QueueStatus& s);
/// One JSON document (docs/json.md).
std::string status_json(const QueueStatus& s);
/// Prometheus text exposition (docs/json.md lists the metrics).
std::string status_metrics(const QueueStatus& s);

/// queue-info/stdin-info --json: one packet's header and the environment
/// its consumer gets. Bytes that are not UTF-8 are replaced by U+FFFD.
/// Under a signer policy, `verdict` adds "signer": {fingerprint, trusted, reason}.
std::string job_json(const Meta& meta, const std::string* filename, const std::string* queuedir,
                     const Verdict* verdict = nullptr);

/// queue-ls --json: the jobs (sorted by seq) and the skipped files.
std::string jobs_json(const std::string& queuedir, const JobList& jobs,
                      const std::vector<SkippedFile>& skipped,
                      const std::vector<std::optional<Verdict>>& verdicts = {});

}  // namespace safespool
