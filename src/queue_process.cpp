// SPDX-License-Identifier: GPL-3.0-or-later
// The queue-process loop: lock, scan, run in order, advance, delete.
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <set>

#include "safespool/error.hpp"
#include "safespool/file_replace.hpp"
#include "safespool/ordering.hpp"
#include "safespool/processor.hpp"
#include "safespool/seqfile.hpp"
#include "safespool/signals.hpp"
#include "safespool/status.hpp"

namespace safespool {
namespace {

Fd open_output(const Queue& q, const std::string& filename) {
  std::string path = q.job_path(filename) + ".out";
  Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0666));
  if (!fd) throw_errno("cannot create " + path);
  return fd;
}

// The header index described a job file wrongly (it was changed in place
// without a new inode): the pass starts over from a scan without it.
struct IndexDoubt {
  std::string why;
};

// Opens the job again (it may have changed since the scan) and runs it:
// what runs is what this read finds, never what the scan or index said.
// With `seq` (by sequence), the next seqfile is written while it runs.
HandoffResult run_entry(const Queue& q, const JobEntry& entry, const ProcessOptions& opts,
                        SeqFile* seq) {
  std::string shown = "jobs/" + entry.filename;
  Decoded dec = open_decoded(q.open_job(entry.filename), shown, opts.decode);
  Meta meta = read_header(*dec.reader, shown);
  if (meta.seq != entry.meta.seq) {
    std::string why =
        shown + " has seq " + std::to_string(meta.seq) + ", not " + std::to_string(entry.meta.seq);
    if (entry.from_index) throw IndexDoubt{why};
    throw Error(shown + " changed during the run (seq " + std::to_string(meta.seq) + ", was " +
                    std::to_string(entry.meta.seq) + ")",
                kExitDataErr);
  }
  JobOptions job = opts.job;
  if (job.spool_dir.empty()) job.spool_dir = q.jobs_dir();
  job.handoff.job_name = "seq " + std::to_string(meta.seq) + " (" + entry.filename + ")";
  if (seq) job.handoff.while_running = [seq] { seq->prepare(seq->next() + 1); };
  JobOrigin origin{&entry.filename, &q.dir()};
  if (opts.output_to == OutputTo::SaveBoth) {
    Fd out = open_output(q, entry.filename);
    return run_job(meta, dec, job, origin, out.get(), out.get());
  }
  return run_job(meta, dec, job, origin);
}

std::string reason(const HandoffResult& r) {
  return r.kind == HandoffResult::Kind::Exited && !r.message.empty() ? r.message : r.describe();
}

enum class Verdict { Continue, Stop };

// Applies --on-error and records progress. Returns whether to go on.
Verdict settle(const Queue& q, const JobEntry& e, const HandoffResult& r, SeqFile* seq,
               CompletionRecord& done, const ProcessOptions& opts) {
  if (r.kind == HandoffResult::Kind::Interrupted) return Verdict::Stop;
  bool ok = r.success();
  if (!ok)
    spdlog::error("job {} ({}) failed: {}{}", e.meta.seq, e.filename, reason(r),
                  opts.on_error == OnError::Retry ? "; it stays in the queue" : "");
  if (!ok && opts.on_error == OnError::Retry) return Verdict::Stop;
  bool keep = opts.never_delete || (!ok && opts.on_error == OnError::Leave);
  if (!keep && seq) done.note(e.meta.seq, e.filename);
  if (seq) seq->increment();
  if (!keep) remove_job_file(q, e.filename);
  return Verdict::Continue;
}

int exit_for(const HandoffResult& r) {
  using K = HandoffResult::Kind;
  if (r.kind == K::Interrupted) {
    spdlog::warn("interrupted by signal {}; the job stays in the queue", r.signal_received);
    return kExitInterrupted;
  }
  if (r.kind == K::DecodeFailed) return kExitDataErr;
  return kExitJobFailed;
}

// Counts a job's outcome in the run record; a success of the failing job clears it.
void note(RunRecord& rec, const JobEntry& e, const HandoffResult& r) {
  rec.bytes += r.bytes;
  if (r.success()) {
    ++rec.jobs_ok;
    if (rec.failed_seq == e.meta.seq) rec.failed_seq.reset();
    return;
  }
  ++rec.jobs_failed;
  if (r.kind == HandoffResult::Kind::Interrupted) return;
  rec.failed_seq = e.meta.seq;
  rec.failed_file = e.filename;
  rec.failed_reason = reason(r);
}

// Stores the run record and, when asked, the metrics file. Monitoring must
// never turn a good run into a failed one: problems here are logged.
void finish_record(const Queue& q, const ProcessOptions& opts, RunRecord& rec, int rc) {
  rec.last_run = now_ctime().first;
  if (rc == kExitOk && rec.jobs_failed == 0) rec.last_success = rec.last_run;
  rec.total_success += rec.jobs_ok;
  rec.total_failure += rec.jobs_failed;
  rec.total_bytes += rec.bytes;
  try {
    write_run_record(q, rec);
    if (!opts.metrics_file.empty()) {
      QueueStatus st = queue_status(q, opts.decode);
      replace_file(opts.metrics_file, status_metrics(st));
    }
  } catch (const std::exception& e) {
    spdlog::warn("cannot record the run's status: {}", e.what());
  }
}

JobList by_timestamp(JobList jobs) {
  std::stable_sort(jobs.begin(), jobs.end(), [](const JobEntry& a, const JobEntry& b) {
    return std::pair(a.meta.ctime_secs, a.meta.ctime_nanos) <
           std::pair(b.meta.ctime_secs, b.meta.ctime_nanos);
  });
  return jobs;
}

// Whether the job file still has the header the scan found (read again).
bool still_has_seq(const Queue& q, const JobEntry& j, const DecodeOptions& decode) {
  try {
    Decoded dec = open_decoded(q.open_job(j.filename), "jobs/" + j.filename, decode);
    return read_header(*dec.reader, "jobs/" + j.filename).seq == j.meta.seq;
  } catch (const Error& e) {
    spdlog::debug("{}", e.what());
    return false;
  }
}

// Finishes a previous run's interrupted delete and handles stale files.
void tidy(const Queue& q, const JobList& jobs, uint64_t next, const ProcessOptions& opts) {
  if (!opts.never_delete) finish_recorded_completion(q, next, opts.decode);
  auto stale = stale_jobs(jobs, next);
  if (stale.empty()) return;
  if (opts.delete_stale && !opts.never_delete) {
    for (const auto& j : stale) {
      // Nothing is deleted on the index's word alone.
      if (j.from_index && !still_has_seq(q, j, opts.decode)) continue;
      spdlog::info("removing stale jobs/{} (seq {} < next {})", j.filename, j.meta.seq, next);
      remove_job_file(q, j.filename);
    }
  } else {
    spdlog::debug(
        "{} stale job file(s) below sequence {}, e.g. jobs/{}; --delete-stale removes them",
        stale.size(), next, stale.front().filename);
  }
}

// How many sequence numbers ahead of nextseq one scan lists: a queue of
// 100,000 packets need not be sorted to run the next one.
constexpr uint64_t kSeqWindow = 4096;

// The jobs of one scan, in the order they run.
struct Plan {
  JobList by_seq;                   ///< --order-by sequence (sorted)
  JobList by_time;                  ///< --order-by timestamp
  uint64_t seq_below = UINT64_MAX;  ///< by_seq holds the jobs below this
  size_t beyond = 0;                ///< jobs at or above it, not listed
};

Plan plan(const Queue& q, const ProcessOptions& opts, uint64_t next, ScanFor purpose) {
  Plan p;
  if (opts.order_by == OrderBy::Sequence && next < UINT64_MAX - kSeqWindow)
    p.seq_below = next + kSeqWindow;
  ScanResult scan = q.scan(opts.decode, purpose, p.seq_below);
  scan.warn_skipped(q.dir());
  p.beyond = scan.beyond;
  if (opts.order_by == OrderBy::Timestamp) {
    p.by_time = by_timestamp(std::move(scan.jobs));
    return p;
  }
  tidy(q, scan.jobs, next, opts);
  bool indexed =
      std::any_of(scan.jobs.begin(), scan.jobs.end(), [](auto& j) { return j.from_index; });
  try {
    p.by_seq = index_by_seq(q, std::move(scan.jobs), next, opts.never_delete, opts.decode);
  } catch (const Error& e) {
    // A conflict between two files may be the index's mistake: it counts
    // only when every header was read from its file.
    if (!indexed || e.exit_code() != kExitDataErr) throw;
    spdlog::debug("{}; checking again without the header index", e.what());
    HeaderIndex::discard(q.dir());
    return plan(q, opts, next, ScanFor::Listing);
  }
  return p;
}

int run_pass(const Queue& q, const ProcessOptions& opts, RunRecord& record) {
  q.check_exists();
  auto seq = SeqFile::open_waiting(q.seqfile_path(), false, opts.lock_wait_seconds);
  if (!seq) throw QueueBusy(q.dir());
  bool by_seq = opts.order_by == OrderBy::Sequence;
  Plan p = plan(q, opts, seq->next(), ScanFor::Processing);
  bool rescanned = false;
  std::set<std::string> ran;  // by timestamp: a rescan must not run a job twice
  CompletionRecord done_record(q);
  uint64_t done = 0;
  for (size_t i = 0;; ++i) {
    if (take_interrupt() || interrupted()) return kExitInterrupted;
    if (opts.maxjobs && done >= *opts.maxjobs) {
      spdlog::debug("stopping: --maxjobs {} reached", *opts.maxjobs);
      return kExitOk;
    }
    const JobEntry* entry = nullptr;
    if (by_seq) {
      if (seq->next() >= p.seq_below && p.beyond > 0)
        p = plan(q, opts, seq->next(), ScanFor::Processing);
      entry = find_seq(p.by_seq, seq->next());
    } else {
      while (i < p.by_time.size() && ran.count(p.by_time[i].filename)) ++i;
      if (i < p.by_time.size()) entry = &p.by_time[i];
    }
    if (!entry) {
      spdlog::debug("stopping: no job with sequence {} in the queue", seq->next());
      return kExitOk;
    }
    HandoffResult r;
    try {
      r = run_entry(q, *entry, opts, by_seq ? &*seq : nullptr);
    } catch (const IndexDoubt& d) {
      // Once per pass: a second doubt comes from a scan that read every file.
      if (rescanned) throw Error(d.why + ": it changed during the run", kExitDataErr);
      spdlog::warn("{}, as the header index said; reading every job file again", d.why);
      HeaderIndex::discard(q.dir());
      p = plan(q, opts, seq->next(), ScanFor::Listing);
      rescanned = true;
      i = static_cast<size_t>(-1);  // by timestamp: from the start of the new order
      continue;
    }
    ++done;
    if (!by_seq) ran.insert(entry->filename);
    note(record, *entry, r);
    if (settle(q, *entry, r, by_seq ? &*seq : nullptr, done_record, opts) == Verdict::Stop)
      return exit_for(r);
  }
}

}  // namespace

int process_one_pass(const Queue& q, const ProcessOptions& opts) {
  q.check_exists();
  Launcher launcher;  // one guard for the pass's consumers, let go at its end
  ProcessOptions pass = opts;
  pass.job.handoff.launcher = &launcher;
  RunRecord record = read_run_record(q);
  record.jobs_ok = record.jobs_failed = record.bytes = 0;
  int rc = kExitSoftware;
  try {
    rc = run_pass(q, pass, record);
  } catch (const Error& e) {
    if (e.exit_code() != kExitTempFail) finish_record(q, opts, record, e.exit_code());
    throw;
  }
  finish_record(q, opts, record, rc);
  return rc;
}

}  // namespace safespool
