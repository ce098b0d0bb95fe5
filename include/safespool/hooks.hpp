// SPDX-License-Identifier: GPL-3.0-or-later
// Hooks: programs queue-process runs when a job succeeds or fails, or when
// the queue becomes blocked, so that an operator hears of it by whatever
// channel they use (healthchecks.io, mail, a pager).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace safespool {

/// What happened, for the SAFESPOOL_* variables of a hook.
struct HookEvent {
  enum class Kind { Success, Failure, Blocked };
  Kind kind = Kind::Success;
  std::string queue;                                         ///< SAFESPOOL_QUEUE
  std::optional<uint64_t> seq;                               ///< SAFESPOOL_SEQ
  std::optional<int> exit_status;                            ///< SAFESPOOL_EXIT_STATUS
  std::string reason;                                        ///< SAFESPOOL_REASON (one line)
  std::string stderr_tail;                                   ///< SAFESPOOL_STDERR_TAIL
  std::vector<std::pair<std::string, std::string>> job_env;  ///< the job's FSPL_* variables
};

/// The programs to run per kind of event.
class Hooks {
 public:
  void add(HookEvent::Kind kind, std::string program);
  void set_timeout(std::chrono::milliseconds t) { timeout_ = t; }
  bool empty() const { return programs_.empty(); }
  bool has(HookEvent::Kind kind) const;
  /// Runs each program registered for e.kind in turn, without a shell, with
  /// the processor's environment plus SAFESPOOL_EVENT and the fields above;
  /// each bounded by the timeout. Never throws; a failing or hanging hook
  /// is logged and changes nothing else.
  void fire(const HookEvent& e) const noexcept;

 private:
  std::vector<std::pair<HookEvent::Kind, std::string>> programs_;
  std::chrono::milliseconds timeout_{60000};
};

}  // namespace safespool
