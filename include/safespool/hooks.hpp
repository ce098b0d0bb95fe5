// SPDX-License-Identifier: GPL-3.0-or-later
// Hooks: programs queue-process runs when a job succeeds, when it fails,
// and when a pass stops blocked, so that an operator hears of a stall
// without watching the queue (a healthchecks.io ping, a mail, a page).
//
// A hook is a notifier, never part of the job: it runs after the job's
// outcome is settled and recorded, without a shell (the option names a
// program), with the processor's environment plus SAFESPOOL_* variables
// describing the event and the job's FSPL_* variables, its stdin on
// /dev/null and its output on the processor's stderr (the journal, a cron
// mail). Each run is bounded by a timeout, after which its whole process
// group is killed; so is a running hook when SIGINT, SIGTERM or SIGHUP
// asks the processor to stop (no hook starts after that): a notifier never
// delays a stop. A hook that fails, hangs or cannot be started is logged
// and changes nothing else: not the job's result, not the exit status, not
// the next hook.
//
// A blocked hook fires once per change of blocking reason, not on every
// pass; the processor keeps what it reported (RunRecord::blocked_reported).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace safespool {

/// What happened, as a hook's environment tells it.
struct HookEvent {
  enum class Kind { Success, Failure, Blocked };
  Kind kind = Kind::Success;
  std::string queue;               ///< SAFESPOOL_QUEUE: the queue directory as given
  std::optional<uint64_t> seq;     ///< SAFESPOOL_SEQ: the job's sequence number
  std::optional<int> exit_status;  ///< SAFESPOOL_EXIT_STATUS: the consumer's, if it exited
  std::string reason;              ///< SAFESPOOL_REASON (made one line)
  std::string stderr_tail;         ///< SAFESPOOL_STDERR_TAIL: last lines of the consumer's stderr
  std::vector<std::pair<std::string, std::string>> job_env;  ///< the job's FSPL_* variables
};

/// "success", "failure", "blocked": SAFESPOOL_EVENT.
const char* hook_kind_name(HookEvent::Kind kind);

/// The hook programs of a run, by event kind. A value: copy it freely.
class Hooks {
 public:
  /// 30 s: long enough for a ping over a slow link, short enough that a
  /// hung mail server does not hold the queue lock for long.
  static constexpr std::chrono::milliseconds kDefaultTimeout{30'000};

  /// Registers `program` (a path, or a name searched in PATH; no shell)
  /// for `kind`. Repeatable: programs run in the order they were added.
  void add(HookEvent::Kind kind, std::string program);
  /// How long one hook may run before its process group is killed.
  void set_timeout(std::chrono::milliseconds t);
  std::chrono::milliseconds timeout() const { return timeout_; }
  bool empty() const;
  bool has(HookEvent::Kind kind) const;

  /// Runs each program registered for e.kind in turn, without a shell, with
  /// the processor's environment plus SAFESPOOL_EVENT (success|failure|blocked)
  /// and the fields above; each bounded by the timeout (then its process
  /// group is killed). Never throws; a failing or hanging hook is logged and
  /// changes nothing else.
  void fire(const HookEvent& e) const noexcept;

  /// The environment a hook gets for `e` ("K=V" strings): `base` (the
  /// processor's, as `environ` lists it), then the job's FSPL_* variables,
  /// then the SAFESPOOL_* ones; a later value replaces an earlier one.
  static std::vector<std::string> environment(const HookEvent& e,
                                              const std::vector<std::string>& base);

 private:
  std::vector<std::pair<HookEvent::Kind, std::string>> programs_;
  std::chrono::milliseconds timeout_ = kDefaultTimeout;
};

}  // namespace safespool
