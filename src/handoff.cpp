// SPDX-License-Identifier: GPL-3.0-or-later
// The hand-off: picks the consumer's stdin, has the run's guard start the
// consumer, sets the payload flowing and hands the rest to the supervisor
// (src/supervisor.cpp). See docs/design/handoff.md.
#include "safespool/handoff.hpp"

#include <signal.h>
#include <spdlog/spdlog.h>

#include <mutex>

#include "consumer_stdin.hpp"
#include "safespool/error.hpp"
#include "safespool/guard.hpp"
#include "safespool/relay.hpp"
#include "stderr_tail.hpp"
#include "supervisor.hpp"

namespace safespool {
namespace {

/// A consumer gets default SIGPIPE; we must not die of it when the
/// consumer quits early, so EPIPE comes back from write().
void ignore_sigpipe() {
  static std::once_flag once;
  std::call_once(once, [] { ::signal(SIGPIPE, SIG_IGN); });
}

}  // namespace

std::string HandoffResult::describe() const {
  switch (kind) {
    case Kind::Exited:
      return ExitStatus{false, status}.describe();
    case Kind::Signaled:
      return ExitStatus{true, status}.describe();
    default:
      return message;
  }
}

ConsumerRun start_consumer(Launcher& launcher, const ConsumerSpec& consumer, PayloadSource payload,
                           const HandoffOptions& opts) {
  ignore_sigpipe();
  ConsumerStdin in = choose_stdin(payload, opts);
  SpawnSpec spec;
  spec.argv = consumer.argv;
  spec.env = consumer.env;
  spec.stdin_fd = in.fd;
  spec.stdout_fd = consumer.stdout_fd;
  auto tail = std::make_unique<StderrTail>(consumer.stderr_fd, opts.keep_stderr_tail);
  spec.stderr_fd = tail->consumer_fd();
  // With a pipe, the guard holds its copy of the write end before the
  // consumer exists.
  Consumer c = launcher.start(std::move(spec), payload.stream ? in.pipe.write.get() : -1);
  in.pipe.read.reset();  // only the consumer may hold the read end
  tail->started();
  spdlog::debug("{}: started consumer {} ({}) under guard {}", opts.job_name, c.pid,
                consumer.argv[0], launcher.guard_pid());
  try {
    Supervised what{launcher,        std::move(c),   nullptr,        std::move(payload.file),
                    in.start_offset, payload.stream, std::move(tail)};
    if (payload.stream)
      what.relay = std::make_unique<Relay>(*payload.stream, std::move(in.pipe.write), opts.tick);
    return supervise(std::move(what), opts);
  } catch (...) {
    // Nobody watches the consumer: its tree goes now, not when the pass
    // ends (the guard's copy of the write end kept its EOF away).
    try {
      launcher.kill_tree(in.pipe.write.get());
    } catch (const std::exception& e) {
      spdlog::error("{}: cannot kill the consumer's tree: {}", opts.job_name, e.what());
    }
    throw;
  }
}

HandoffResult run_consumer(Launcher& launcher, const ConsumerSpec& consumer, PayloadSource payload,
                           const HandoffOptions& opts) {
  return start_consumer(launcher, consumer, std::move(payload), opts).wait();
}

HandoffResult run_consumer(const ConsumerSpec& consumer, PayloadSource payload,
                           const HandoffOptions& opts) {
  Launcher own;
  return run_consumer(own, consumer, std::move(payload), opts);
}

}  // namespace safespool
