// The consumer's guard: a tiny process (safespool-guard) that leads the
// consumer's process group and kills it if the processor dies.
//
// Why: when the processor is SIGKILLed while relaying, the kernel closes
// its write end of the consumer's pipe and the consumer would read a clean
// EOF after a truncated payload. The guard holds a second copy of that write
// end, so EOF needs both copies closed; it watches a "lifeline" pipe whose
// write end only the processor holds, and on its EOF (the processor died) it
// does kill(0, SIGKILL), which puts SIGKILL on the consumer before the
// guard's copy of the write end closes. It also keeps a consumer from
// outliving a dead processor when its stdin is a file or /dev/null.
//
// Protocol: 'e' once our write end is closed after a complete payload (the
// guard closes its copy, the consumer sees EOF, the guard keeps watching);
// 'r' and closing the lifeline to release the guard when the consumer has
// ended (it exits 0). Otherwise the guard kills the group and dies with it.
// Cost: one small extra process per job. See docs/design/handoff.md,
// "The guard".
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "safespool/fd.hpp"
#include "safespool/spawn.hpp"

namespace safespool {

/// Where safespool-guard is looked for, in order: $SAFESPOOL_GUARD (when
/// set, nothing else); next to /proc/self/exe; the build tree's guard, for
/// binaries running from the build tree; the installed one
/// (LIBEXECDIR/safespool/safespool-guard).
std::vector<std::string> guard_candidates();

/// The first executable file among `candidates`. Throws Error (exit code
/// 69) naming every place tried: a missing guard is an installation problem,
/// and a consumer is never run without one.
std::string find_guard(const std::vector<std::string>& candidates);

/// A running guard and the lifeline to it. Move-only.
class Guard {
 public:
  /// Spawns the guard as the leader of a new process group, holding a copy
  /// of `write_end` (the consumer pipe's write end) as its fd 1, or of
  /// /dev/null when `write_end` is -1. Throws Error / SysError.
  static Guard start(int write_end);

  Guard() = default;
  Guard(Guard&&) noexcept = default;
  Guard& operator=(Guard&&) noexcept = default;
  /// A guard never reaped is SIGKILLed with its whole group and reaped.
  ~Guard() = default;

  /// The consumer's process group: spawn the consumer with this pgroup.
  pid_t pgid() const { return child_.pid(); }
  /// The payload is complete and our write end closed: the guard closes
  /// its copy, so the consumer sees EOF, and goes on watching us.
  /// Idempotent; a no-op after release().
  void deliver_eof();
  /// Lets the guard exit 0: 'r' on the lifeline, then closes it.
  /// Idempotent. Call only once the consumer has ended or may see EOF.
  void release();
  /// Reaps the guard (after release(), or after its group was SIGKILLed):
  /// waits up to `bound_ms`, then SIGKILLs the guard alone and waits.
  ExitStatus reap(int bound_ms = 2000);

 private:
  Guard(Child child, Fd lifeline) : lifeline_(std::move(lifeline)), child_(std::move(child)) {}
  /// Writes one protocol byte; a failure (EPIPE: the guard is already
  /// dead; the caller ignores SIGPIPE) is nothing to act on.
  void send(char c);
  Fd lifeline_;  ///< our write end; no other process holds it
  bool eof_sent_ = false;
  /// Destroyed before lifeline_: an unreaped guard's group is SIGKILLed and
  /// reaped by us, rather than the guard being told the processor died.
  Child child_;
};

}  // namespace safespool
