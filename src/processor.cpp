// SPDX-License-Identifier: GPL-3.0-or-later
#include "safespool/processor.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <map>

#include "safespool/error.hpp"
#include "safespool/seqfile.hpp"
#include "safespool/signals.hpp"
#include "safespool/verify.hpp"

extern char** environ;

namespace safespool {
namespace {

void check_passable(const std::string& what, const std::string& s, bool is_name) {
  if (s.find('\0') != std::string::npos) throw FormatError(what + " contains a NUL byte");
  if (is_name && s.find('=') != std::string::npos) throw FormatError(what + " contains '='");
}

// The inherited environment with the job's variables laid over it.
std::vector<std::string> consumer_env(const Meta& meta, JobOrigin origin) {
  auto vars = job_env(meta, origin.filename, origin.queuedir);
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    std::string_view kv(*e);
    std::string_view key = kv.substr(0, kv.find('='));
    bool overridden =
        std::any_of(vars.begin(), vars.end(), [&](auto& v) { return v.first == key; });
    if (!overridden) env.emplace_back(kv);
  }
  for (auto& [k, v] : vars) {
    check_passable("environment variable " + k, k, true);
    check_passable("value of " + k, v, false);
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

PayloadSource payload_of(Decoded& decoded, bool ignore) {
  PayloadSource src;
  if (ignore) return src;
  if (decoded.plain) {
    src.file = Fd(::fcntl(decoded.plain_fd, F_DUPFD_CLOEXEC, 3));
    if (!src.file) throw_errno("cannot duplicate job file descriptor");
  } else {
    src.stream = decoded.reader.get();
  }
  return src;
}

HandoffResult fixed_result(bool ok, const char* what) {
  HandoffResult r;
  r.status = ok ? 0 : 1;
  r.message = what;
  return r;
}

HandoffResult rejected(const std::string& why) {
  HandoffResult r;
  r.kind = HandoffResult::Kind::DecodeFailed;
  r.message = why;
  return r;
}

// What must hold before anything acts on the packet: under a policy, a
// packet that runs no consumer is verified whole first; --verify-first
// moves the whole verified payload into a temporary file.
void verify_before_start(const Meta& meta, Decoded& dec, const JobOptions& opts) {
  bool policy = opts.policy && !opts.policy->empty();
  if (policy) {
    std::string name = dec.reader->source();
    dec.reader = make_policy_reader(std::move(dec.reader), *opts.policy, name);
    dec.plain = false;
  }
  bool consumer_reads = meta.kind == JobKind::Command && !opts.ignore_payload;
  if (policy && !consumer_reads) return drain_and_verify(*dec.reader);
  if (opts.verify_first && consumer_reads && !dec.plain) {
    Fd spooled = spool_verified(*dec.reader, opts.spool_dir);
    int raw = spooled.get();
    dec.reader = make_fd_reader(std::move(spooled), "verified payload");
    dec.plain = true;
    dec.plain_fd = raw;
  }
}

}  // namespace

HandoffResult run_job(const Meta& meta, Decoded& decoded, const JobOptions& opts, JobOrigin origin,
                      int stdout_fd, int stderr_fd) {
  try {
    verify_before_start(meta, decoded, opts);
  } catch (const FormatError& e) {
    return rejected(e.what());
  }
  if (meta.kind == JobKind::Nop) return fixed_result(true, "NOP packet");
  if (meta.kind == JobKind::Fail) return fixed_result(false, "Fail packet");
  ConsumerSpec spec{consumer_argv(meta, opts), consumer_env(meta, origin), stdout_fd, stderr_fd};
  try {
    return run_consumer(spec, payload_of(decoded, opts.ignore_payload), opts.handoff);
  } catch (const SysError& e) {
    throw Error(e.what(), kExitUnavailable);
  }
}

}  // namespace safespool
