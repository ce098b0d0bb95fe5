// SPDX-License-Identifier: GPL-3.0-or-later
// The two orders a pass runs jobs in (see src/cursor.hpp).
#include "cursor.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <set>

#include "safespool/error.hpp"
#include "safespool/ordering.hpp"

namespace safespool {
namespace {

/// How many sequence numbers ahead of nextseq one scan lists: a queue of
/// 100,000 packets need not be sorted to run the next one. A pass limited
/// by --maxjobs starts with no more than it may run, and widens to this
/// before it calls nextseq missing.
constexpr uint64_t kSeqWindow = 4096;

Step stop(int exit_code, std::optional<Blocked> blocked = std::nullopt) {
  Step s;
  s.exit_code = exit_code;
  s.blocked = std::move(blocked);
  return s;
}

class SeqCursor : public JobCursor {
 public:
  SeqCursor(const CursorContext& ctx, const SeqFile& seq)
      : ctx_(ctx),
        seq_(seq),
        window_(std::clamp<uint64_t>(ctx.opts.maxjobs.value_or(kSeqWindow), 1, kSeqWindow)) {}
  Step next() override;
  bool by_seq() const override { return true; }

 private:
  void scan(ScanFor purpose);
  std::span<const JobEntry> candidates(uint64_t seq) const;
  Step missing(uint64_t seq, const std::vector<std::string>& parts);

  const CursorContext& ctx_;
  const SeqFile& seq_;
  std::optional<ScanResult> plan_;  ///< sorted by seq, below seq_below_
  uint64_t seq_below_ = UINT64_MAX;
  uint64_t window_;      ///< seqs ahead of nextseq a scan lists
  bool listed_ = false;  ///< the plan compared every file's identity
  int rescans_ = 0;
};

void SeqCursor::scan(ScanFor purpose) {
  uint64_t next = seq_.next();
  seq_below_ = next < UINT64_MAX - window_ ? next + window_ : UINT64_MAX;
  plan_ = ctx_.queue.scan(ctx_.opts.decode, purpose, seq_below_);
  plan_->warn_skipped(ctx_.queue.dir());
  ctx_.queue.remove_abandoned_temp_files(plan_->temp_files);
  sort_by_seq(plan_->jobs);
  listed_ = purpose != ScanFor::Processing;
  StaleRules stale{ctx_.opts.never_delete, ctx_.opts.delete_stale};
  tidy_stale(ctx_.queue, plan_->jobs, next, stale, ctx_.opts.decode, ctx_.ledger);
}

std::span<const JobEntry> SeqCursor::candidates(uint64_t seq) const {
  auto less = [](const JobEntry& j, uint64_t s) { return j.meta.seq < s; };
  auto greater = [](uint64_t s, const JobEntry& j) { return s < j.meta.seq; };
  auto lo = std::lower_bound(plan_->jobs.begin(), plan_->jobs.end(), seq, less);
  auto hi = std::upper_bound(lo, plan_->jobs.end(), seq, greater);
  return {lo, hi};
}

// Nothing can run at `seq`: before saying so, every file is compared with
// the index by its whole identity. The processor's scan did that for the
// files it listed, not for those the index puts beyond its window (a name
// reused with an inode number, or a file rewritten in place, could hide
// there behind an old entry).
Step SeqCursor::missing(uint64_t seq, const std::vector<std::string>& parts) {
  if (!listed_ && plan_->beyond > 0) {
    bool narrow = window_ < kSeqWindow;
    window_ = kSeqWindow;
    scan(narrow ? ScanFor::Processing : ScanFor::Listing);
    return next();
  }
  if (auto b = why_missing(ctx_.queue, seq, plan_->skipped, ctx_.ledger)) {
    spdlog::error("queue {} is blocked: {}", ctx_.queue.dir(), b->summary);
    return stop(kExitBlocked, std::move(b));
  }
  for (const auto& p : parts) spdlog::info("waiting: {}", p);
  spdlog::debug("stopping: no job with sequence {} in the queue", seq);
  return stop(kExitOk);
}

Step SeqCursor::next() {
  uint64_t seq = seq_.next();
  if (!plan_ || (seq >= seq_below_ && plan_->beyond > 0)) scan(ScanFor::Processing);
  Choice c = choose(ctx_.queue, seq, candidates(seq), ctx_.opts.decode, ctx_.rules, ctx_.ledger);
  switch (c.kind) {
    case Choice::Kind::Run: {
      Step s;
      s.job = std::move(c.job);
      s.filename = c.filename;
      s.replaces = std::move(c.replaces);
      return s;
    }
    case Choice::Kind::Blocked:
      spdlog::error("queue {} is blocked: {}", ctx_.queue.dir(), c.blocked->summary);
      return stop(kExitBlocked, std::move(c.blocked));
    case Choice::Kind::Rescan:
      if (++rescans_ > 2)
        throw Error(
            "the files with sequence " + std::to_string(seq) + " kept changing during the run",
            kExitDataErr);
      spdlog::debug("a job file is not what the scan said; reading every job file again");
      HeaderIndex::discard(ctx_.queue.dir());
      scan(ScanFor::Listing);
      return next();
    case Choice::Kind::Missing:
      break;
  }
  return missing(seq, c.missing_parts);
}

class TimeCursor : public JobCursor {
 public:
  explicit TimeCursor(const CursorContext& ctx) : ctx_(ctx) {}
  Step next() override;
  bool by_seq() const override { return false; }

 private:
  Job open_by_name(const std::string& filename) const;

  const CursorContext& ctx_;
  std::optional<JobList> order_;
  size_t at_ = 0;
  std::set<std::string> ran_;
};

// An envelope of one part (a superseding packet) is its job; a part of a
// larger split job needs the others, which only the order by seq groups.
Job TimeCursor::open_by_name(const std::string& filename) const {
  Job job = Job::open(ctx_.queue, filename, ctx_.opts.decode);
  const auto& part = job.meta().part;
  if (!part) return job;
  if (part->count != 1)
    throw Error("jobs/" + filename + " is part " + std::to_string(part->index) + " of " +
                std::to_string(part->count) + " of a split job, which runs in sequence order only");
  return Job::open_split(ctx_.queue, job.meta().seq, {{filename, *part}}, ctx_.opts.decode);
}

Step TimeCursor::next() {
  if (!order_) {
    ScanResult scan = ctx_.queue.scan(ctx_.opts.decode, ScanFor::Listing);
    ctx_.queue.remove_abandoned_temp_files(scan.temp_files);
    scan.warn_skipped(ctx_.queue.dir());
    order_ = std::move(scan.jobs);
    std::stable_sort(order_->begin(), order_->end(), [](const JobEntry& a, const JobEntry& b) {
      return std::pair(a.meta.ctime_secs, a.meta.ctime_nanos) <
             std::pair(b.meta.ctime_secs, b.meta.ctime_nanos);
    });
  }
  while (at_ < order_->size()) {
    const JobEntry& e = (*order_)[at_++];
    if (!ran_.insert(e.filename).second) continue;
    try {
      Step s;
      s.job = open_by_name(e.filename);
      s.filename = e.filename;
      return s;
    } catch (const Error& err) {
      spdlog::warn("skipping jobs/{}: {}", e.filename, err.what());
    }
  }
  return stop(kExitOk);
}

}  // namespace

std::unique_ptr<JobCursor> make_seq_cursor(const CursorContext& ctx, const SeqFile& seq) {
  return std::make_unique<SeqCursor>(ctx, seq);
}

std::unique_ptr<JobCursor> make_time_cursor(const CursorContext& ctx) {
  return std::make_unique<TimeCursor>(ctx);
}

}  // namespace safespool
