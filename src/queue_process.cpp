// SPDX-License-Identifier: GPL-3.0-or-later
// One queue-process pass: lock, then for each job the cursor hands out:
// record that it starts, run it, record how it ended, move the queue past
// it or stop, tell the hooks; then write down what the pass saw.
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include "cursor.hpp"
#include "receipt_log.hpp"
#include "safespool/error.hpp"
#include "safespool/file_replace.hpp"
#include "safespool/hooks.hpp"
#include "safespool/ordering.hpp"
#include "safespool/processor.hpp"
#include "safespool/seqfile.hpp"
#include "safespool/signals.hpp"
#include "safespool/status.hpp"
#include "safespool/verify.hpp"

namespace safespool {
namespace {

using Kind = HandoffResult::Kind;

Fd open_output(const Queue& q, const std::string& filename) {
  std::string path = q.job_path(filename) + ".out";
  Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0666));
  if (!fd) throw_errno("cannot create " + path);
  return fd;
}

std::optional<int> exit_status_of(const HandoffResult& r) {
  if (r.kind == Kind::Exited) return r.status;
  if (r.kind == Kind::Signaled) return 128 + r.status;
  return std::nullopt;
}

class Pass {
 public:
  Pass(const Queue& q, const ProcessOptions& opts, const SignerPolicy& policy, const Hooks& hooks)
      : q_(q),
        opts_(opts),
        policy_(policy),
        hooks_(hooks),
        ledger_(q.dir()),
        receipts_(q, opts.receipts),
        record_(read_run_record(q)) {
    record_.jobs_ok = record_.jobs_failed = record_.bytes = 0;
  }
  int run();

 private:
  int run_jobs(JobCursor& cursor);
  JobOutcome run_one(Step& step, bool by_seq);
  std::optional<int> settle(Step& step, const JobOutcome& o, bool by_seq);
  void advance(const Step& step, bool keep, bool by_seq);
  void retire_replaced(const Step& step);
  void write_ledger(Step& step, LedgerResult result, const JobOutcome* o, bool kept = false);
  void ended(Step& step, LedgerResult result, const JobOutcome& o, bool kept = false);
  void notify(HookEvent::Kind kind, Step& step, const JobOutcome& o) const;
  void note(const Step& step, const JobOutcome& o);
  int stop_blocked(const Blocked& b);
  void finish(int rc);

  const Queue& q_;
  const ProcessOptions& opts_;
  const SignerPolicy& policy_;
  const Hooks& hooks_;
  Ledger ledger_;
  ReceiptLog receipts_;
  RunRecord record_;
  std::optional<SeqFile> seq_;
  Launcher launcher_;  ///< one guard for the pass's consumers
  std::set<std::string> key_ids_;
  uint64_t done_ = 0;
  std::optional<Blocked> blocked_;
};

int Pass::run() {
  q_.check_exists();
  seq_ = SeqFile::open_waiting(q_.seqfile_path(), false, opts_.lock_wait_seconds);
  if (!seq_) throw QueueBusy(q_.dir());
  if (!policy_.empty()) key_ids_ = signer_key_ids(policy_, opts_.decode.gnupg_home);
  DecisionRules rules{policy_, key_ids_, true, opts_.never_delete,
                      opts_.on_error == OnError::Delete};
  CursorContext ctx{q_, opts_, rules, ledger_};
  auto cursor =
      opts_.order_by == OrderBy::Sequence ? make_seq_cursor(ctx, *seq_) : make_time_cursor(ctx);
  int rc = kExitSoftware;
  try {
    rc = run_jobs(*cursor);
  } catch (const Error& e) {
    finish(e.exit_code());
    throw;
  }
  finish(rc);
  return rc;
}

int Pass::run_jobs(JobCursor& cursor) {
  for (;;) {
    if (take_interrupt() || interrupted()) return kExitInterrupted;
    if (opts_.maxjobs && done_ >= *opts_.maxjobs) {
      spdlog::debug("stopping: --maxjobs {} reached", *opts_.maxjobs);
      return kExitOk;
    }
    Step step = cursor.next();
    if (!step.job) return step.blocked ? stop_blocked(*step.blocked) : step.exit_code;
    ++done_;
    JobOutcome o = run_one(step, cursor.by_seq());
    note(step, o);
    if (auto rc = settle(step, o, cursor.by_seq())) return *rc;
  }
}

JobOutcome Pass::run_one(Step& step, bool by_seq) {
  Job& job = *step.job;
  JobOptions jo = opts_.job;
  if (jo.spool_dir.empty()) jo.spool_dir = q_.jobs_dir();
  jo.handoff.job_name = "seq " + std::to_string(job.meta().seq) + " (" + step.filename + ")";
  jo.handoff.keep_stderr_tail = hooks_.has(HookEvent::Kind::Success) ||
                                hooks_.has(HookEvent::Kind::Failure) || receipts_.enabled();
  write_ledger(step, LedgerResult::Started, nullptr);
  Fd out;
  if (opts_.output_to == OutputTo::SaveBoth) out = open_output(q_, step.filename);
  JobContext ctx{launcher_,
                 policy_,
                 key_ids_,
                 out ? out.get() : 1,
                 out ? out.get() : 2,
                 receipts_.prepare_note()};
  // While the guard starts the consumer and it runs, the next seqfile is
  // written (not yet renamed).
  const bool ahead = by_seq && seq_->next() < UINT64_MAX;
  if (ahead) launcher_.meanwhile([this] { seq_->prepare(seq_->next() + 1); });
  JobRun run = start_job(job, jo, ctx);
  launcher_.meanwhile(nullptr);  // not taken when no consumer was started
  return run.wait();
}

// What follows a job: the ledger, the hooks, and whether the queue moves
// past it. Returns the exit code when the pass must stop here.
std::optional<int> Pass::settle(Step& step, const JobOutcome& o, bool by_seq) {
  const uint64_t seq = step.job->meta().seq;
  if (o.handoff.kind == Kind::Interrupted) {
    spdlog::warn("interrupted by signal {}; the job stays in the queue", interrupted());
    return kExitInterrupted;
  }
  if (o.success()) {
    retire_replaced(step);
    ended(step, LedgerResult::Success, o, opts_.never_delete);
    notify(HookEvent::Kind::Success, step, o);
    advance(step, opts_.never_delete, by_seq);
    return std::nullopt;
  }
  notify(HookEvent::Kind::Failure, step, o);
  if (o.rejected) {
    spdlog::error("job {} (jobs/{}) rejected: {}", seq, step.filename, o.reason());
    ended(step, LedgerResult::Rejected, o);
    // Refused packets never move the queue: the seq is the signer's.
    if (opts_.on_error == OnError::Delete && !opts_.never_delete) {
      spdlog::info("deleting jobs/{} (--on-error delete); nextseq stays {}", step.filename, seq);
      for (const auto& f : step.job->files()) remove_job_file(q_, f);
      return std::nullopt;
    }
    if (!by_seq) return std::nullopt;
    return stop_blocked({Blocked::Reason::Rejected, o.reason(), {step.filename}});
  }
  if (opts_.on_error == OnError::Retry) {
    ended(step, LedgerResult::Failure, o);
    spdlog::error(
        "job {} (jobs/{}) failed: {}; it stays in the queue and runs again next time; "
        "to skip it: safespool queue-set-next -q {} {}",
        seq, step.filename, o.reason(), q_.dir(), seq + 1);
    return o.handoff.kind == Kind::DecodeFailed ? kExitDataErr : kExitJobFailed;
  }
  bool leave = opts_.on_error == OnError::Leave;
  ended(step, LedgerResult::Skipped, o, opts_.never_delete || leave);
  spdlog::error("job {} (jobs/{}) failed: {}; {} (--on-error {})", seq, step.filename, o.reason(),
                leave ? "leaving the file and going on" : "deleting it and going on",
                leave ? "leave" : "delete");
  advance(step, opts_.never_delete || leave, by_seq);
  return std::nullopt;
}

// nextseq first, durably; then the file. A crash in between leaves a file
// the ledger says completed, which the next pass deletes.
void Pass::advance(const Step& step, bool keep, bool by_seq) {
  if (by_seq) {
    uint64_t seq = step.job->meta().seq;
    if (seq < UINT64_MAX)
      seq_->increment();
    else
      spdlog::warn("sequence number {} was the last there is: the queue has ended", seq);
  }
  if (!keep)
    for (const auto& f : step.job->files()) remove_job_file(q_, f);
}

// The packets a job superseded are done once it succeeded: recorded as
// superseded (before its own success, the last record for the seq), then
// their files go.
void Pass::retire_replaced(const Step& step) {
  for (const auto& r : step.replaces) {
    LedgerRecord rec;
    rec.time = now_ctime().first;
    rec.seq = step.job->meta().seq;
    rec.result = LedgerResult::Superseded;
    rec.sha256 = r.sha256;
    rec.filename = r.files.empty() ? "" : r.files.front();
    rec.kept = opts_.never_delete && !r.files.empty();
    rec.reason = "superseded by " + step.job->name();
    try {
      ledger_.append(rec);
      spdlog::info("seq {}: {} supersedes the packet with SHA-256 {}", rec.seq, step.job->name(),
                   r.sha256);
      if (!opts_.never_delete)
        for (const auto& f : r.files) remove_job_file(q_, f);
    } catch (const Error& e) {
      spdlog::warn("cannot retire the superseded packet {}: {}", r.sha256, e.what());
    }
  }
}

// How a job ended, for the ledger and the sender.
void Pass::ended(Step& step, LedgerResult result, const JobOutcome& o, bool kept) {
  write_ledger(step, result, &o, kept);
  receipts_.job_ended(*step.job, result, o,
                      result == LedgerResult::Success ? step.replaces : std::vector<Replaced>{});
}

void Pass::write_ledger(Step& step, LedgerResult result, const JobOutcome* o, bool kept) {
  LedgerRecord r;
  r.time = now_ctime().first;
  r.seq = step.job->meta().seq;
  r.result = result;
  r.filename = step.filename;
  r.kept = kept;
  try {
    if (o) {
      r.sha256 = step.job->sha256();
      r.exit_status = exit_status_of(o->handoff);
      r.signer = o->signer;
      r.reason = o->reason();
    }
    ledger_.append(r);
  } catch (const Error& e) {
    // Without the record a file is only kept longer, never deleted early.
    spdlog::warn("cannot record jobs/{} in the ledger: {}", step.filename, e.what());
  }
}

void Pass::notify(HookEvent::Kind kind, Step& step, const JobOutcome& o) const {
  if (!hooks_.has(kind)) return;
  HookEvent e;
  e.kind = kind;
  e.queue = q_.dir();
  e.seq = step.job->meta().seq;
  e.exit_status = exit_status_of(o.handoff);
  e.reason = o.reason();
  e.stderr_tail = o.handoff.stderr_tail;
  e.job_env = job_env(step.job->meta(), step.job->origin());
  hooks_.fire(e);
}

void Pass::note(const Step& step, const JobOutcome& o) {
  record_.bytes += o.handoff.bytes;
  record_.total_bytes += o.handoff.bytes;
  if (o.success()) {
    ++record_.jobs_ok;
    ++record_.total_success;
    if (record_.failed_seq == step.job->meta().seq) record_.failed_seq.reset();
    return;
  }
  if (o.handoff.kind == Kind::Interrupted) return;
  ++record_.jobs_failed;
  ++(o.rejected ? record_.total_rejected : record_.total_failure);
  record_.failed_seq = step.job->meta().seq;
  record_.failed_file = step.filename;
  record_.failed_reason = o.reason();
}

// A blocked pass tells its hooks once per change of reason.
int Pass::stop_blocked(const Blocked& b) {
  blocked_ = b;
  std::string key = std::string(reason_name(b.reason)) + ": " + b.summary;
  if (record_.blocked_reported != key && hooks_.has(HookEvent::Kind::Blocked)) {
    HookEvent e;
    e.kind = HookEvent::Kind::Blocked;
    e.queue = q_.dir();
    e.seq = seq_->next();
    e.reason = key;
    hooks_.fire(e);
  }
  record_.blocked_reported = key;
  return kExitBlocked;
}

// Under the lock still: the run record and the metrics describe this pass.
void Pass::finish(int rc) {
  if (rc == kExitTempFail) return;
  if (!blocked_) record_.blocked_reported.clear();
  record_.last_run = now_ctime().first;
  if (rc == kExitOk && record_.jobs_failed == 0) record_.last_success = record_.last_run;
  try {
    write_run_record(q_, record_);
    if (!opts_.metrics_file.empty() || (receipts_.enabled() && rc == kExitOk)) {
      QueueStatus s = queue_status(q_, opts_.decode, policy_);
      if (rc == kExitOk) receipts_.check_waiting(s);
      if (!opts_.metrics_file.empty()) replace_file(opts_.metrics_file, status_metrics(s));
    }
  } catch (const std::exception& e) {
    spdlog::warn("cannot record the run's status: {}", e.what());
  }
}

}  // namespace

int process_one_pass(const Queue& q, const ProcessOptions& opts, const SignerPolicy& policy,
                     const Hooks& hooks) {
  return Pass(q, opts, policy, hooks).run();
}

int process_queue(const Queue& q, const ProcessOptions& opts, const SignerPolicy& policy,
                  const Hooks& hooks) {
  if (opts.watch) return watch_queue(q, opts, policy, hooks);
  return Pass(q, opts, policy, hooks).run();
}

}  // namespace safespool
