// SPDX-License-Identifier: GPL-3.0-or-later
// The consumers' guard: a tiny process (safespool-guard) that leads the
// consumers' process group and kills it if the processor dies.
//
// Why: when the processor is SIGKILLed while relaying, the kernel closes
// its write end of the consumer's pipe and the consumer would read a clean
// EOF after a truncated payload. The guard holds a second copy of that write
// end, so EOF needs both copies closed; it watches a "lifeline" socket whose
// other end only the processor holds, and on its EOF (the processor died)
// it does kill(0, SIGKILL), which puts SIGKILL on the consumer before the
// guard's copy of the write end closes. It also keeps a consumer from
// outliving a dead processor when its stdin is a file or /dev/null.
//
// One guard serves a whole run of consumers (Launcher), so a job costs one
// process, its consumer. Protocol, one byte per SOCK_SEQPACKET message:
// 'h' with the consumer pipe's write end (SCM_RIGHTS) before that consumer
// is started: hold a copy; 'e' once our write end is closed after a
// complete payload: close the copy (the consumer sees EOF; the guard keeps
// watching); 'r' and closing the lifeline at the end of the run: exit 0.
// Otherwise the guard kills the group and dies with it. An aborted job's
// group is SIGKILLed, guard included; the next consumer gets a new guard.
// See docs/design/handoff.md, "The guard".
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "safespool/fd.hpp"
#include "safespool/spawn.hpp"

namespace safespool {

/// Where safespool-guard is looked for, in order: $SAFESPOOL_GUARD (when
/// set, nothing else); next to /proc/self/exe; ../libexec/safespool/ from
/// there (an installed tree wherever it was unpacked); the build tree's guard, for
/// binaries running from the build tree; the installed one
/// (LIBEXECDIR/safespool/safespool-guard).
std::vector<std::string> guard_candidates();

/// The first executable file among `candidates`. Throws Error (exit code
/// 69) naming every place tried: a missing guard is an installation problem,
/// and a consumer is never run without one.
std::string find_guard(const std::vector<std::string>& candidates);

/// One running guard and the lifeline to it. Move-only. Sends never block
/// and never raise SIGPIPE: a guard that does not take a message is treated
/// as gone.
class Guard {
 public:
  /// Spawns the guard, holding nothing, as the leader of a new process
  /// group. Throws Error (exit 69) when it cannot be found, SysError.
  static Guard start();

  Guard() = default;
  Guard(Guard&&) noexcept = default;
  Guard& operator=(Guard&&) noexcept = default;
  /// A guard never reaped is SIGKILLed with its whole group and reaped.
  ~Guard() = default;

  /// The consumers' process group: spawn a consumer with this pgroup.
  pid_t pgid() const { return child_.pid(); }
  /// True once the guard has exited (its pidfd is readable), or was
  /// released. Its group must not be joined then: it protects nobody.
  bool gone() const;
  bool holding() const { return holding_; }
  /// Hands the guard a copy of `write_end` to hold ('h'). False when the
  /// guard did not take it (gone): then nobody holds the copy. Call only
  /// when not holding().
  bool hold(int write_end);
  /// The payload is complete and our write end closed: the guard closes its
  /// copy ('e'), so the consumer sees EOF. False when the guard did not
  /// take the message. A no-op (true) when nothing is held.
  bool drop();
  /// Lets the guard exit 0: 'r' on the lifeline, then closes it.
  /// Idempotent. Call only when not holding().
  void release();
  /// SIGKILL to the guard's whole group: for a guard that must not be
  /// trusted to drop a copy (its consumer may have seen a cut payload).
  void kill_group() const { child_.kill_group(SIGKILL); }
  /// Reaps the guard (after release(), or after its group was SIGKILLed):
  /// waits up to `bound_ms`, then SIGKILLs the guard alone and waits.
  ExitStatus reap(int bound_ms = 2000);

 private:
  Guard(Child child, Fd lifeline) : lifeline_(std::move(lifeline)), child_(std::move(child)) {}
  bool send(char c, int fd = -1);
  Fd lifeline_;  ///< our end of the socket pair; no other process holds it
  bool holding_ = false;
  /// Destroyed before lifeline_: an unreaped guard's group is SIGKILLed and
  /// reaped by us, rather than the guard being told the processor died.
  Child child_;
};

/// Starts the consumers of one run, each in the process group of the run's
/// guard. The guard is started with the first consumer and kept for the
/// next ones; a new one replaces it when it is gone (an aborted job's group
/// was SIGKILLed, guard included, or someone killed it). Also remembers
/// where the consumers' commands were found in PATH. One consumer at a
/// time; not thread-safe. The destructor releases the guard and reaps it.
class Launcher {
 public:
  Launcher() = default;
  Launcher(const Launcher&) = delete;
  Launcher& operator=(const Launcher&) = delete;
  ~Launcher();

  /// Spawns `spec` (its pgroup is set here) into the guard's group. With
  /// `write_end` >= 0, the consumer pipe's write end, the guard holds a
  /// copy of it first. Throws Error (exit 69) when no guard can be found or
  /// started, SysError when the command cannot be started (no consumer ran;
  /// the guard holds nothing).
  Child start(SpawnSpec spec, int write_end);
  /// Our write end was closed after a complete payload: the guard closes
  /// its copy, so the consumer sees EOF. Idempotent.
  void payload_complete();
  /// The consumer was reaped. `clean`: the guard stays for the next
  /// consumer. Otherwise the consumer's group has been SIGKILLed, guard
  /// included, before our write end was closed: the guard is reaped here,
  /// and the next consumer gets a new one.
  void consumer_ended(bool clean);
  /// Lets the guard exit and reaps it; the next start() starts a new one.
  /// Called by the destructor. After a consumer that never ended through
  /// consumer_ended() (an exception), its group is SIGKILLed instead.
  void release();
  /// The current guard's pid (its group id); 0 when none runs.
  pid_t guard_pid() const { return guard_ ? guard_->pgid() : 0; }

 private:
  /// A live guard (the current one, or a new one), holding `write_end`
  /// when it is >= 0.
  Guard& ready_guard(int write_end);
  /// SIGKILLs the guard's group and forgets the guard.
  void kill_and_forget();
  /// Reaps the guard (waiting up to `bound_ms` before SIGKILLing it
  /// alone), says why at debug level when `expected`, else as a warning,
  /// and forgets it.
  void forget(bool expected, int bound_ms, const char* why);

  std::optional<Guard> guard_;
  bool in_job_ = false;  ///< a consumer was started and has not ended yet
  CommandPaths paths_;
};

}  // namespace safespool
