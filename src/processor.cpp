// SPDX-License-Identifier: GPL-3.0-or-later
// Running one job (see include/safespool/processor.hpp): NOP and Fail,
// the signer policy's three moments, --verify-first, and the consumer.
#include "safespool/processor.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "safespool/error.hpp"

extern char** environ;

namespace safespool {
namespace {

using Kind = HandoffResult::Kind;

void check_passable(const std::string& what, const std::string& s, bool is_name) {
  if (s.find('\0') != std::string::npos) throw FormatError(what + " contains a NUL byte");
  if (is_name && s.find('=') != std::string::npos) throw FormatError(what + " contains '='");
}

// The inherited environment with the job's variables (and `extra`) laid over it.
std::vector<std::string> consumer_env(const Job& job, const std::vector<std::string>& extra) {
  auto vars = job_env(job.meta(), job.origin());
  for (const auto& kv : extra)
    vars.emplace_back(kv.substr(0, kv.find('=')), kv.substr(kv.find('=') + 1));
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    std::string_view kv(*e);
    std::string_view key = kv.substr(0, kv.find('='));
    bool overridden =
        std::any_of(vars.begin(), vars.end(), [&](auto& v) { return v.first == key; });
    if (!overridden) env.emplace_back(kv);
  }
  for (auto& [k, v] : vars) {
    check_passable(job.name() + ": environment variable " + k, k, true);
    check_passable(job.name() + ": value of " + k, v, false);
    env.push_back(k + "=" + v);
  }
  return env;
}

std::vector<std::string> consumer_argv(const Meta& meta, const JobOptions& opts) {
  std::vector<std::string> argv = opts.command;
  if (opts.allow_job_params) {
    for (const auto& p : meta.params) {
      check_passable("job parameter", p, false);
      argv.push_back(p);
    }
  } else if (!meta.params.empty()) {
    spdlog::warn("Parameters given in job ignored because --allow-job-params not given");
  }
  return argv;
}

JobOutcome fixed(bool ok, const char* what) {
  JobOutcome o;
  o.handoff.status = ok ? 0 : 1;
  o.handoff.message = what;
  return o;
}

JobOutcome failed(Kind kind, const std::string& why) {
  JobOutcome o;
  o.handoff.kind = kind;
  o.handoff.message = why;
  return o;
}

JobOutcome rejected(const std::string& why) {
  JobOutcome o = failed(Kind::DecodeFailed, why);
  o.rejected = true;
  return o;
}

bool policed(const JobContext& ctx) { return !ctx.policy.empty(); }

// Under a policy, everything that goes wrong before the signature is known
// is judged by the signature: an untrusted packet is rejected (it cannot
// stop the queue); a trusted one fails for the reason given.
JobOutcome judge(Job& job, const JobContext& ctx, const Error& why) {
  if (!policed(ctx)) throw why;
  try {
    job.verify_rest(ctx.policy, ctx.key_ids);
  } catch (const Error& e) {
    if (e.exit_code() == kExitInterrupted) return failed(Kind::Interrupted, e.what());
    return rejected(e.what());
  }
  throw why;
}

// The end of the job under a policy: it succeeds only when the whole
// stream was read and trusted, whatever the consumer's exit status.
JobOutcome settle_trust(Job& job, const JobContext& ctx, JobOutcome out) {
  if (!policed(ctx) || out.handoff.kind == Kind::Interrupted || out.rejected) return out;
  if (!job.verified()) {
    try {
      job.verify_rest(ctx.policy, ctx.key_ids);
    } catch (const Error& e) {
      if (e.exit_code() == kExitInterrupted) return failed(Kind::Interrupted, e.what());
      return rejected(e.what());
    }
  }
  out.signer = job.verdict().signer;
  return out;
}

// What is settled before a consumer starts: the policy's early refusal,
// --verify-first, and jobs that run no consumer. nullopt: start it.
std::optional<JobOutcome> before_consumer(Job& job, const JobOptions& opts, const JobContext& ctx) {
  const Meta& meta = job.meta();
  if (policed(ctx)) {
    try {
      job.require(ctx.policy, ctx.key_ids);
    } catch (const FormatError& e) {
      return rejected(e.what());
    }
  }
  bool consumer_reads = meta.kind == JobKind::Command && !opts.ignore_payload;
  try {
    // Nothing acts on a packet that runs no consumer before it is verified.
    if (policed(ctx) && !consumer_reads) job.verify_rest(ctx.policy, ctx.key_ids);
    // A split job's first part was read for its header, not yet checked.
    if (consumer_reads) job.check_parts();
    if (opts.verify_first && consumer_reads) job.spool(opts.spool_dir, opts.max_payload);
  } catch (const Error& e) {
    if (e.exit_code() == kExitInterrupted) return failed(Kind::Interrupted, e.what());
    if (e.exit_code() != kExitDataErr) throw;
    return policed(ctx) ? rejected(e.what()) : failed(Kind::DecodeFailed, e.what());
  }
  if (meta.kind == JobKind::Nop) return settle_trust(job, ctx, fixed(true, "NOP packet"));
  if (meta.kind == JobKind::Fail) return settle_trust(job, ctx, fixed(false, "Fail packet"));
  return std::nullopt;
}

}  // namespace

std::string JobOutcome::reason() const {
  if (success()) return "";
  if (handoff.kind == Kind::Exited && !handoff.message.empty()) return handoff.message;
  return handoff.describe();
}

JobRun start_job(Job& job, const JobOptions& opts, const JobContext& ctx) {
  JobRun run(job, ctx);
  if (auto early = before_consumer(job, opts, ctx)) {
    run.done_ = std::move(*early);
    return run;
  }
  try {
    ConsumerSpec spec{consumer_argv(job.meta(), opts), consumer_env(job, ctx.extra_env),
                      ctx.stdout_fd, ctx.stderr_fd};
    run.run_.emplace(
        start_consumer(ctx.launcher, spec, job.payload(opts.ignore_payload), opts.handoff));
  } catch (const FormatError& e) {
    run.done_ = judge(job, ctx, e);
  } catch (const SysError& e) {
    // An environment too large for exec is the packet's doing.
    if (e.err() != E2BIG) throw Error(e.what(), kExitUnavailable);
    run.done_ = judge(job, ctx, FormatError(job.name() + ": " + e.what()));
  }
  return run;
}

JobOutcome JobRun::wait() {
  if (waited_) throw Error("job " + std::to_string(job_.meta().seq) + " was already waited for");
  waited_ = true;
  if (!run_) return std::move(done_);
  JobOutcome out;
  try {
    out.handoff = run_->wait();
  } catch (const SysError& e) {
    throw Error(e.what(), kExitUnavailable);
  }
  run_.reset();
  return settle_trust(job_, ctx_, std::move(out));
}

JobOutcome run_job(Job& job, const JobOptions& opts, const JobContext& ctx) {
  return start_job(job, opts, ctx).wait();
}

}  // namespace safespool
