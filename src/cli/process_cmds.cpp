// SPDX-License-Identifier: GPL-3.0-or-later
// queue-process, stdin-process, stdin-info, stdin-payload.
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cmath>

#include "common.hpp"
#include "safespool/encode.hpp"
#include "safespool/error.hpp"
#include "safespool/hooks.hpp"
#include "safespool/job.hpp"
#include "safespool/policy.hpp"
#include "safespool/processor.hpp"
#include "safespool/seqfile.hpp"
#include "safespool/signals.hpp"
#include "safespool/status.hpp"
#include "safespool/units.hpp"
#include "safespool/verify.hpp"

namespace safespool::cli {
namespace {

const Choices<OnError> kOnError = {
    {"Retry", OnError::Retry}, {"Delete", OnError::Delete}, {"Leave", OnError::Leave}};
const Choices<OrderBy> kOrderBy = {{"Sequence", OrderBy::Sequence},
                                   {"Timestamp", OrderBy::Timestamp}};
const Choices<OutputTo> kOutputTo = {{"PassBoth", OutputTo::PassBoth},
                                     {"SaveBoth", OutputTo::SaveBoth}};

struct ProcessArgs {
  std::string queuedir;
  DecodeFlags decode;
  std::string command;
  std::vector<std::string> params;
  bool allow_job_params = false;
  bool ignore_payload = false;
  double timeout = 0, stall_timeout = 0, lock_wait = 0;
  std::string pipe_size;
  std::string maxjobs;
  bool never_delete = false;
  bool delete_stale = false;
  bool watch = false;
  int rescan = 300;
  std::string metrics_file;
  bool json = false;
  PolicyFlags policy_flags;
  bool verify_first = false;
  std::string spool_dir;
  std::string max_payload;
  std::string on_error = "Retry", order_by = "Sequence", output_to = "PassBoth";
  std::vector<std::string> hook_success, hook_failure, hook_blocked;
  std::string hook_timeout;
  std::string receipts_dir, receipt_wait_after, sign_with;  // receipts for the sender
  std::vector<std::string> encrypt_to;
};

// Receipts for the sender (receipt.hpp): where, how long a gap may last
// before one says so, and how they are signed and encrypted.
void add_receipt_flags(CLI::App* sub, ProcessArgs& a) {
  sub->add_option("--receipts-dir", a.receipts_dir,
                  "Write a receipt packet for the sender into DIR after each job");
  sub->add_option("--receipt-wait-after", a.receipt_wait_after,
                  "Write a waiting receipt when a missing packet has held later ones back this "
                  "long (DURATION, default 1d)");
  sub->add_option("--sign-with", a.sign_with, "Sign receipts with this OpenPGP key");
  sub->add_option("--encrypt-to", a.encrypt_to, "Encrypt receipts to this OpenPGP key (repeatable)")
      ->expected(1)
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
}

// Checked before any job runs: a receipt key that cannot be used is a
// configuration error, not a warning after every job.
ReceiptOptions receipt_options(const ProcessArgs& a, const DecodeOptions& d) {
  ReceiptOptions r;
  if (a.receipts_dir.empty()) {
    if (!a.sign_with.empty() || !a.encrypt_to.empty() || !a.receipt_wait_after.empty())
      throw UsageError("--sign-with, --encrypt-to and --receipt-wait-after need --receipts-dir");
    return r;
  }
  r.dir = a.receipts_dir;
  if (!a.receipt_wait_after.empty())
    r.wait_after_seconds =
        static_cast<int64_t>(parse_duration(a.receipt_wait_after, "--receipt-wait-after"));
  r.encode.recipients = a.encrypt_to;
  if (!a.sign_with.empty()) r.encode.signer = a.sign_with;
  r.encode.gnupg_home = d.gnupg_home;
  check_encoding(r.encode);
  return r;
}

std::chrono::milliseconds to_ms(double seconds, const char* option) {
  if (!(seconds > 0) || !std::isfinite(seconds))
    throw UsageError(std::string(option) + " must be a positive number of seconds");
  return std::chrono::milliseconds(static_cast<int64_t>(std::llround(seconds * 1000)));
}

void add_job_flags(CLI::App* sub, ProcessArgs& a) {
  sub->add_flag("--allow-job-params", a.allow_job_params, "Append the job's parameters to COMMAND");
  sub->add_flag("--ignore-payload", a.ignore_payload,
                "Do not pass the payload (stdin is /dev/null)");
  sub->add_option("--timeout", a.timeout, "Terminate the command after SECONDS");
  sub->add_option("--stall-timeout", a.stall_timeout,
                  "Fail the job when no payload byte moves for SECONDS");
  sub->add_option("--pipe-size", a.pipe_size,
                  "Size of the consumer's stdin pipe (default: pipe-max-size)");
  a.policy_flags.add_to(sub);
  sub->add_flag("--verify-first", a.verify_first,
                "Decode and verify the whole payload before starting COMMAND");
  sub->add_option("--spool-dir", a.spool_dir,
                  "Where --verify-first keeps the payload (default: the queue's jobs/)");
  sub->add_option("--max-payload", a.max_payload,
                  "Most bytes --verify-first spools (SIZE, K/M/G/T; default: the free space "
                  "of its filesystem less a reserve)");
  sub->add_option("COMMAND", a.command, "The command to run (no shell)")->required();
  sub->add_option("PARAMS", a.params, "-- PARAMS... given to COMMAND, before any job parameters");
  a.decode.add_to(sub);
}

JobOptions job_options(const ProcessArgs& a) {
  JobOptions o;
  o.command = {a.command};
  o.command.insert(o.command.end(), a.params.begin(), a.params.end());
  o.allow_job_params = a.allow_job_params;
  o.ignore_payload = a.ignore_payload;
  if (a.timeout != 0) o.handoff.timeout = to_ms(a.timeout, "--timeout");
  if (a.stall_timeout != 0) o.handoff.stall_timeout = to_ms(a.stall_timeout, "--stall-timeout");
  if (!a.pipe_size.empty()) o.handoff.pipe_size = parse_u64(a.pipe_size, "--pipe-size");
  o.handoff.progress = ::isatty(2);
  o.verify_first = a.verify_first;
  o.spool_dir = a.spool_dir;
  if (!a.max_payload.empty()) o.max_payload = parse_size(a.max_payload, "--max-payload");
  return o;
}

// Under a policy, OpenPGP packets are decrypted and verified in two steps,
// so that a signer is known before the first payload byte (verify.hpp).
DecodeOptions decode_options(const ProcessArgs& a, const SignerPolicy& policy) {
  DecodeOptions d = a.decode.finish();
  d.unwrap = !policy.empty();
  return d;
}

Hooks hooks(const ProcessArgs& a) {
  Hooks h;
  for (const auto& p : a.hook_success) h.add(HookEvent::Kind::Success, p);
  for (const auto& p : a.hook_failure) h.add(HookEvent::Kind::Failure, p);
  for (const auto& p : a.hook_blocked) h.add(HookEvent::Kind::Blocked, p);
  if (!a.hook_timeout.empty()) {
    uint64_t secs = parse_duration(a.hook_timeout, "--hook-timeout");
    if (secs > 86400) throw UsageError("--hook-timeout: \"" + a.hook_timeout + "\" is over 1d");
    h.set_timeout(std::chrono::seconds(secs));
  }
  return h;
}

void add_hook_flags(CLI::App* sub, ProcessArgs& a) {
  auto repeatable = [&](const char* name, std::vector<std::string>& to, const char* help) {
    sub->add_option(name, to, help)
        ->expected(1)
        ->allow_extra_args(false)
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  };
  repeatable("--hook-success", a.hook_success,
             "Run this program (no shell) after a job succeeds (repeatable)");
  repeatable("--hook-failure", a.hook_failure,
             "Run this program (no shell) after a job fails (repeatable)");
  repeatable("--hook-blocked", a.hook_blocked,
             "Run this program (no shell) when the queue becomes blocked (repeatable)");
  sub->add_option("--hook-timeout", a.hook_timeout,
                  "Kill a hook (its process group) after DUR (default 30s)");
}

// Only the process commands turn SIGINT/SIGTERM/SIGHUP into events (they
// must stop a consumer cleanly); every other command keeps the default
// disposition and simply dies.
int run_queue_process(const ProcessArgs& a) {
  install_interrupt_fd();
  SignerPolicy policy = a.policy_flags.build();
  ProcessOptions o;
  o.job = job_options(a);
  o.decode = decode_options(a, policy);
  if (!a.maxjobs.empty()) o.maxjobs = parse_u64(a.maxjobs, "--maxjobs");
  o.never_delete = a.never_delete;
  o.delete_stale = a.delete_stale;
  o.watch = a.watch;
  o.rescan_seconds = a.rescan;
  o.metrics_file = a.metrics_file;
  o.on_error = parse_choice(kOnError, a.on_error, "--on-error");
  o.order_by = parse_choice(kOrderBy, a.order_by, "--order-by");
  o.output_to = parse_choice(kOutputTo, a.output_to, "--output-to");
  o.lock_wait_seconds = a.lock_wait;
  o.receipts = receipt_options(a, o.decode);
  return process_queue(Queue(a.queuedir), o, policy, hooks(a));
}

int run_stdin_process(const ProcessArgs& a) {
  install_interrupt_fd();
  SignerPolicy policy = a.policy_flags.build();
  JobOptions o = job_options(a);
  if (o.spool_dir.empty()) o.spool_dir = std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp";
  DecodeOptions d = decode_options(a, policy);
  Job job = Job::from_stdin(d);
  o.handoff.job_name = "seq " + std::to_string(job.meta().seq) + " (standard input)";
  std::set<std::string> key_ids;
  if (!policy.empty()) key_ids = signer_key_ids(policy, d.gnupg_home);
  Launcher launcher;
  JobOutcome r = run_job(job, o, JobContext{launcher, policy, key_ids});
  if (r.success()) return kExitOk;
  if (r.handoff.kind == HandoffResult::Kind::Interrupted) return kExitInterrupted;
  if (r.handoff.kind == HandoffResult::Kind::DecodeFailed) throw FormatError(r.reason());
  spdlog::error("job {} failed: {}", job.meta().seq, r.reason());
  return kExitJobFailed;
}

int run_stdin_info(const ProcessArgs& a) {
  SignerPolicy policy = a.policy_flags.build();
  Job job = Job::from_stdin(a.decode.finish());
  std::optional<Verdict> v;
  if (!policy.empty()) v = judge_stream(job.stream(), policy);
  if (a.json) {
    write_all(1, job_json(job.meta(), nullptr, v ? &*v : nullptr), "standard output");
    return kExitOk;
  }
  print_env(job_env(job.meta(), nullptr));
  if (v) print_env(signer_lines(*v));
  return kExitOk;
}

int run_stdin_payload(const ProcessArgs& a) {
  SignerPolicy policy = a.policy_flags.build();
  DecodeOptions d = a.decode.finish();
  Job job = Job::from_stdin(d);
  if (!policy.empty()) job.require(policy, signer_key_ids(policy, d.gnupg_home));
  copy_payload_to_stdout(job.stream());
  return kExitOk;
}

void add_queue_process(CLI::App& app, Action& action, const std::shared_ptr<ProcessArgs>& a) {
  auto* qp = app.add_subcommand("queue-process", "Process a queue");
  qp->add_option("-q,--queuedir", a->queuedir, "Path to the queue directory")->required();
  add_job_flags(qp, *a);
  qp->add_option("-n,--maxjobs", a->maxjobs, "Maximum number of jobs to process");
  qp->add_flag("--never-delete", a->never_delete, "Never delete processed job files");
  qp->add_flag("--delete-stale", a->delete_stale, "Remove packets whose sequence is below nextseq");
  qp->add_option("--on-error", a->on_error, "Retry (default), Delete or Leave");
  qp->add_option("--order-by", a->order_by, "Sequence (default) or Timestamp");
  qp->add_option("--output-to", a->output_to, "PassBoth (default) or SaveBoth");
  qp->add_option("--lock-wait", a->lock_wait, "Wait up to SECONDS for the queue lock");
  qp->add_flag("--watch", a->watch, "Keep running; process jobs as they land (inotify)");
  qp->add_option("--rescan", a->rescan, "With --watch: rescan every SECONDS even without events")
      ->check(CLI::PositiveNumber);
  qp->add_option("--metrics-file", a->metrics_file,
                 "Write Prometheus textfile metrics after each pass");
  add_hook_flags(qp, *a);
  add_receipt_flags(qp, *a);
  qp->callback([&action, a] { action = [a] { return run_queue_process(*a); }; });
}

}  // namespace

void register_process(CLI::App& app, Action& action) {
  auto a = std::make_shared<ProcessArgs>();
  add_queue_process(app, action, a);

  auto* sp =
      app.add_subcommand("stdin-process", "Process a command from a job packet read from stdin");
  add_job_flags(sp, *a);
  sp->callback([&action, a] { action = [a] { return run_stdin_process(*a); }; });

  auto* si = app.add_subcommand("stdin-info",
                                "Get information about a packet piped to filespooler on stdin");
  a->decode.add_to(si);
  si->add_flag("--json", a->json, "Print one JSON document");
  a->policy_flags.add_to(si);
  si->callback([&action, a] { action = [a] { return run_stdin_info(*a); }; });

  auto* pl =
      app.add_subcommand("stdin-payload", "Dumps the payload from the packet on stdin to stdout");
  a->decode.add_to(pl);
  a->policy_flags.add_to(pl);
  pl->callback([&action, a] { action = [a] { return run_stdin_payload(*a); }; });
}

}  // namespace safespool::cli
