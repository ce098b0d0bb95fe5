// The queue-process loop: lock, scan, run in order, advance, delete.
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <map>

#include "safespool/error.hpp"
#include "safespool/ordering.hpp"
#include "safespool/processor.hpp"
#include "safespool/seqfile.hpp"
#include "safespool/signals.hpp"

namespace safespool {
namespace {

Fd open_output(const Queue& q, const std::string& filename) {
  std::string path = q.job_path(filename) + ".out";
  Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0666));
  if (!fd) throw_errno("cannot create " + path);
  return fd;
}

// Opens the job again (it may have changed since the scan) and runs it.
HandoffResult run_entry(const Queue& q, const JobEntry& entry, const ProcessOptions& opts) {
  std::string shown = "jobs/" + entry.filename;
  Decoded dec = open_decoded(q.open_job(entry.filename), shown, opts.decode);
  Meta meta = read_header(*dec.reader, shown);
  if (meta.seq != entry.meta.seq)
    throw Error(shown + " changed during the run (seq " + std::to_string(meta.seq) + ", was " +
                    std::to_string(entry.meta.seq) + ")", kExitDataErr);
  JobOptions job = opts.job;
  job.handoff.job_name = "seq " + std::to_string(meta.seq) + " (" + entry.filename + ")";
  JobOrigin origin{&entry.filename, &q.dir()};
  if (opts.output_to == OutputTo::SaveBoth) {
    Fd out = open_output(q, entry.filename);
    return run_job(meta, dec, job, origin, out.get(), out.get());
  }
  return run_job(meta, dec, job, origin);
}

enum class Verdict { Continue, Stop };

// Applies --on-error and records progress. Returns whether to go on.
Verdict settle(const Queue& q, const JobEntry& e, const HandoffResult& r, SeqFile* seq,
               const ProcessOptions& opts) {
  using K = HandoffResult::Kind;
  if (r.kind == K::Interrupted || r.kind == K::DecodeFailed) return Verdict::Stop;
  bool ok = r.success();
  if (!ok) spdlog::error("job {} ({}) failed: {}", e.meta.seq, e.filename, r.describe());
  if (!ok && opts.on_error == OnError::Retry) return Verdict::Stop;
  bool keep = opts.never_delete || (!ok && opts.on_error == OnError::Leave);
  if (!keep && seq) record_completion(q, e.meta.seq, e.filename);
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
  if (r.kind == K::DecodeFailed) {
    spdlog::error("{}; the job stays in the queue", r.message);
    return kExitDataErr;
  }
  return kExitJobFailed;
}

std::vector<JobEntry> by_timestamp(std::vector<JobEntry> jobs) {
  std::stable_sort(jobs.begin(), jobs.end(), [](const JobEntry& a, const JobEntry& b) {
    return std::pair(a.meta.ctime_secs, a.meta.ctime_nanos) <
           std::pair(b.meta.ctime_secs, b.meta.ctime_nanos);
  });
  return jobs;
}

// Finishes a previous run's interrupted delete and handles stale files.
void tidy(const Queue& q, const std::vector<JobEntry>& jobs, uint64_t next, const ProcessOptions& opts) {
  if (!opts.never_delete) finish_recorded_completion(q, next, opts.decode);
  auto stale = stale_jobs(jobs, next);
  if (stale.empty()) return;
  if (opts.delete_stale && !opts.never_delete) {
    for (const auto& j : stale) {
      spdlog::info("removing stale jobs/{} (seq {} < next {})", j.filename, j.meta.seq, next);
      remove_job_file(q, j.filename);
    }
  } else {
    spdlog::debug("{} stale job file(s) below sequence {}, e.g. jobs/{}; --delete-stale removes them",
                  stale.size(), next, stale.front().filename);
  }
}

}  // namespace

int process_queue(const Queue& q, const ProcessOptions& opts) {
  q.check_exists();
  auto seq = SeqFile::open_waiting(q.seqfile_path(), false, opts.lock_wait_seconds);
  if (!seq) throw Error("queue " + q.dir() + " is locked by another process", kExitTempFail);
  ScanResult scan = q.scan(opts.decode);
  scan.warn_skipped(q.dir());
  bool by_seq = opts.order_by == OrderBy::Sequence;
  if (by_seq) tidy(q, scan.jobs, seq->next(), opts);
  auto pending = by_seq ? index_by_seq(q, scan.jobs, seq->next(), opts.never_delete)
                        : std::map<uint64_t, JobEntry>{};
  auto ordered = by_seq ? std::vector<JobEntry>{} : by_timestamp(std::move(scan.jobs));
  uint64_t done = 0;
  for (size_t i = 0;; ++i) {
    if (take_interrupt() || interrupted()) return kExitInterrupted;
    if (opts.maxjobs && done >= *opts.maxjobs) {
      spdlog::debug("stopping: --maxjobs {} reached", *opts.maxjobs);
      return kExitOk;
    }
    const JobEntry* entry = nullptr;
    if (by_seq) {
      auto it = pending.find(seq->next());
      if (it != pending.end()) entry = &it->second;
    } else if (i < ordered.size()) {
      entry = &ordered[i];
    }
    if (!entry) {
      spdlog::debug("stopping: no job with sequence {} in the queue", seq->next());
      return kExitOk;
    }
    ++done;
    HandoffResult r = run_entry(q, *entry, opts);
    if (settle(q, *entry, r, by_seq ? &*seq : nullptr, opts) == Verdict::Stop) return exit_for(r);
  }
}

}  // namespace safespool
