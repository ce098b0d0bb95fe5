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

#include "safespool/ledger.hpp"
#include "safespool/policy.hpp"
#include "safespool/queue.hpp"

namespace safespool {

/// The processor's record of its runs, in queuedir/.safespool-status.
struct RunRecord {
  std::optional<int64_t> last_run;                   ///< unix time the last run ended
  std::optional<int64_t> last_success;               ///< end of the last run that failed no job
  uint64_t jobs_ok = 0, jobs_failed = 0, bytes = 0;  ///< of the last run
  /// Since the queue was made (monotonic counters for metrics): jobs by
  /// result ("success", "failure", "rejected") and payload bytes delivered.
  uint64_t total_success = 0, total_failure = 0, total_rejected = 0, total_bytes = 0;
  std::optional<uint64_t> failed_seq;  ///< job that stopped the last run
  std::string failed_file, failed_reason;
  /// The blocking reason the last run reported to its hooks ("" when it was
  /// not blocked): a blocked hook fires once per change of it.
  std::string blocked_reported;
};

/// Reads queuedir/.safespool-status (missing or unreadable: empty record).
RunRecord read_run_record(const Queue& q);
/// Replaces it atomically (a temporary file of its own, then rename).
void write_run_record(const Queue& q, const RunRecord& r);

/// Why the queue cannot advance without an operator.
struct Blocked {
  enum class Reason {
    Unreadable,  ///< the next seq is missing and a file in jobs/ cannot be read
    Conflict,    ///< two different packets carry the next seq
    Rejected,    ///< the packet at the next seq fails the signer policy
    Exhausted,   ///< the last sequence number (2^64-1) has run
  };
  Reason reason = Reason::Unreadable;
  /// One line naming the files and why, e.g. "jobs/fspl-x.fspl: OpenPGP: No
  /// secret key (encrypted to 0CAE768FAB833706)".
  std::string summary;
  std::vector<std::string> files;  ///< names within jobs/
};

/// "unreadable", "conflict", "rejected", "exhausted": the `reason` label.
const char* reason_name(Blocked::Reason r);

/// The state of a queue at one moment, from the same decision the
/// processor makes about its next job.
struct QueueStatus {
  enum class State {
    Healthy,  ///< idle or running: nothing needs a person
    Failing,  ///< the next job failed on its last run
    Waiting,  ///< the next seq has not arrived (later ones may have)
    Blocked,  ///< cannot advance without an operator: see `blocked`
  };
  std::string queuedir;
  std::optional<uint64_t> next_seq;  ///< nullopt: append-only queue
  JobList pending;                   ///< seq >= next, sorted by seq
  JobList stale;                     ///< seq < next
  std::vector<SkippedFile> unreadable;
  std::vector<std::pair<uint64_t, uint64_t>> gaps;  ///< missing ranges [a, b]
  /// Split jobs at the next seq that lack parts ("job 7: parts 3, 4 of 4 missing").
  std::vector<std::string> missing_parts;
  /// Since the oldest waiting packet arrived in jobs/ (its file's ctime).
  std::optional<int64_t> oldest_age_seconds;
  pid_t lock_holder = 0;  ///< pid holding nextseq.lock, 0: none
  RunRecord record;
  State state = State::Healthy;
  std::optional<Blocked> blocked;  ///< set exactly when state is Blocked
  /// Temporary files of writers (jobs/tmp-*.tmp) that no live process is
  /// writing: left by a killed queue-write or queue-import.
  std::vector<std::string> abandoned_temp_files;
};

/// Scans the queue (without taking its lock) and classifies it, under
/// `policy` as the processor would (empty: none).
QueueStatus queue_status(const Queue& q, const DecodeOptions& decode,
                         const SignerPolicy& policy = SignerPolicy());

/// The pid holding an flock on `path` per /proc/locks, 0 when none.
pid_t flock_holder(const std::string& path);

/// "healthy", "failing", "waiting", "blocked".
const char* state_name(QueueStatus::State s);

/// Human report, several lines.
std::string format_status(const QueueStatus& s);
/// One JSON document (docs/json.md).
std::string status_json(const QueueStatus& s);
/// Prometheus text exposition (docs/json.md lists the metrics): every
/// sample carries a `queue` label, so one textfile directory serves many
/// queues, one file each.
std::string status_metrics(const QueueStatus& s);

/// queue-status --check's exit statuses: the monitoring plugin API's.
enum CheckCode : int { kCheckOk = 0, kCheckWarning = 1, kCheckCritical = 2, kCheckUnknown = 3 };

/// Limits on the age of the oldest waiting packet (since it arrived in
/// jobs/), in seconds: at or above `warn_age` WARNING, `crit_age` CRITICAL.
struct CheckThresholds {
  std::optional<int64_t> warn_age, crit_age;
};

/// One plugin line, "SAFESPOOL OK|WARNING|CRITICAL|UNKNOWN - summary | perfdata",
/// and its exit status.
struct CheckResult {
  int code = kCheckUnknown;
  std::string line;
};

/// The check of a queue at unix time `now`: blocked and failing are
/// CRITICAL, a waiting packet older than a threshold WARNING or CRITICAL.
CheckResult status_check(const QueueStatus& s, const CheckThresholds& t, int64_t now);
/// UNKNOWN: the queue could not be read (`why` says how).
CheckResult check_unknown(const std::string& queuedir, const std::string& why);

/// "45s", "2h 1m", "3d 4h": a duration for people, two units at most.
std::string age_text(int64_t seconds);

/// queue-info/stdin-info --json: one packet's header and the environment
/// its consumer gets. Bytes that are not UTF-8 are replaced by U+FFFD.
/// Under a signer policy, `verdict` adds "signer": {fingerprint, trusted, reason}.
std::string job_json(const Meta& meta, const JobOrigin* origin, const Verdict* verdict = nullptr);

/// queue-ledger --json: the ledger's records, oldest first.
std::string ledger_json(const std::string& queuedir, const std::vector<LedgerRecord>& records);

/// queue-ls --json: the jobs (sorted by seq; a part of a split job with
/// its "part"), the skipped files, and the split jobs missing parts.
std::string jobs_json(const std::string& queuedir, const JobList& jobs,
                      const std::vector<SkippedFile>& skipped,
                      const std::vector<std::optional<Verdict>>& verdicts = {},
                      const std::vector<std::string>& missing_parts = {});

}  // namespace safespool
