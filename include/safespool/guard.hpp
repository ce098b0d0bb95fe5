// SPDX-License-Identifier: GPL-3.0-or-later
// The consumers' guard: a tiny process (safespool-guard) that starts the
// consumers of a run and kills every process they started if the
// processor dies, or when the processor orders it.
//
// Why: when the processor is SIGKILLed while relaying, the kernel closes
// its write end of the consumer's pipe, and the consumer — or anything it
// forked that holds the pipe — would read a clean EOF after a truncated
// payload. The guard holds a second copy of that write end, so EOF needs
// both copies closed; it watches a "lifeline" socket whose other end only
// the processor holds, and on its EOF (the processor died) it kills the
// whole tree before its copy closes.
//
// "The whole tree", not only a process group: a descendant that calls
// setsid() leaves the consumer's group. So the guard is the consumers'
// parent and a child subreaper (orphans of their trees become its
// children, and it kills until none is left), and where our cgroup v2 is
// writable each job also runs in a cgroup of its own, killed at once with
// cgroup.kill (Containment).
//
// One guard serves a whole run of consumers (Launcher), so a job costs one
// fork in the guard. Protocol: src/guard/main.cpp. An aborted job's tree
// is killed by the guard, which then exits; the next consumer gets a new
// guard. The processor watches its guard for the whole job (its pidfd for
// its death, waitid(WSTOPPED) for a stop): a guard lost mid-job is a job
// failure, and the processor kills the tree itself before our write end
// closes. See docs/design/handoff.md, "The guard".
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "safespool/cgroup.hpp"
#include "safespool/error.hpp"
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

/// A consumer the guard started. We are not its parent: its end is
/// reported by the guard, which keeps it unreaped (so its process group id,
/// its pid, stays pinned) until we are done with it.
struct Consumer {
  pid_t pid = -1;  ///< also its process group: it leads one
  Fd pidfd;        ///< the guard's pidfd of it (O_CLOEXEC)
};

/// What the guard should start: spec.path (the file, already searched),
/// spec.argv, spec.env (nullopt: ours), spec.stdin_fd/stdout_fd/stderr_fd.
/// `hold`: a pipe write end the guard keeps a copy of (-1: none).
/// `cgroup`: the job's cgroup directory (-1: none).
struct ConsumeOrder {
  const SpawnSpec& spec;
  int hold = -1;
  int cgroup = -1;
  /// Run (and cleared) once the order is sent, while the guard starts
  /// the consumer.
  std::function<void()>* meanwhile = nullptr;
};

/// One running guard and the lifeline to it. Move-only. Sends never block
/// and never raise SIGPIPE: a guard that does not take a message is treated
/// as gone.
class Guard {
 public:
  /// Spawns the guard, in a new process group. Throws Error (exit 69) when
  /// it cannot be found, SysError.
  static Guard start();

  Guard() = default;
  Guard(Guard&&) noexcept = default;
  Guard& operator=(Guard&&) noexcept = default;
  /// A guard never reaped is SIGKILLed (alone: its tree is the caller's
  /// to kill first) and reaped.
  ~Guard() = default;

  pid_t pid() const { return child_.pid(); }
  /// Readable when the guard has exited.
  int pidfd() const { return child_.pidfd(); }
  /// Our end of the lifeline: readable when the guard has said something
  /// (take_exit()) or is gone.
  int lifeline() const { return lifeline_.get(); }
  /// True once the guard has exited (its pidfd is readable), or was
  /// released.
  bool gone() const;
  /// True while the guard is stopped (SIGSTOP, a debugger): it can
  /// neither start nor kill anything then.
  bool stopped() const;
  /// 'c': starts a consumer and returns it, after the guard took `order`'s
  /// hold. Throws SysError (errno of the failed step, `cgroup_failed` set
  /// when joining the cgroup failed) when it could not be started: then
  /// nothing runs and the guard holds nothing of it; GuardLost when the
  /// guard did not answer within `bound_ms` or died.
  Consumer consume(const ConsumeOrder& order, int bound_ms, bool* cgroup_failed = nullptr);
  /// 'e': the payload is complete and our write end closed: the guard
  /// closes its copy, so the consumer sees EOF. False when it did not take it.
  bool drop() { return send('e'); }
  /// 'd': the consumer ended cleanly: the guard reaps it and stays.
  bool done() { return send('d'); }
  /// 'k': the guard kills the whole tree and exits.
  bool kill_tree() { return send('k'); }
  /// Lets the guard exit 0 ('r'), then closes the lifeline. Idempotent.
  void release();
  /// The consumer's end when the guard has reported it ('x'); reads the
  /// lifeline without blocking. nullopt: not yet (or the guard is gone).
  std::optional<ExitStatus> take_exit();
  /// SIGKILL to the guard alone.
  void kill() const;
  /// The guard closed its end of the lifeline: it is ending.
  bool hung_up() const { return hung_up_; }
  /// Reaps the guard: waits up to `bound_ms` for its exit, then SIGKILLs
  /// it alone and waits.
  ExitStatus reap(int bound_ms = 2000);

 private:
  /// One message from the guard (kind 0: none).
  struct Reply {
    char kind = 0;
    std::string bytes;  ///< after the kind
    Fd fd;              ///< a descriptor that came with it
  };
  Guard(Child child, Fd lifeline) : lifeline_(std::move(lifeline)), child_(std::move(child)) {}
  bool send(char c, std::vector<int> fds = {}, std::string flags = {});
  Reply receive();
  Reply await_reply(int bound_ms);
  static std::optional<ExitStatus> exit_of(const Reply& r);

  Fd lifeline_;                     ///< our end of the socket pair; no other process holds it
  bool hung_up_ = false;            ///< the guard closed its end (it is ending)
  std::optional<ExitStatus> exit_;  ///< an 'x' read while waiting for something else
  Child child_;
};

/// The guard did not answer, or died, while a consumer was being started.
struct GuardLost : Error {
  GuardLost(const std::string& what, bool delivered) : Error(what), delivered(delivered) {}
  /// The start order had been sent: the consumer may run.
  bool delivered;
};

/// How the processes of a consumer's tree are found when it must die,
/// beyond its process group.
enum class Containment {
  Auto,       ///< per-job cgroups where our cgroup v2 allows, else the subreaper
  Subreaper,  ///< the guard, as child subreaper, kills what it inherits
  Cgroup,     ///< per-job cgroups, or Error when they cannot be made (tests)
};

/// Starts the consumers of one run as children of the run's guard. The
/// guard is started with the first consumer and kept for the next ones; a
/// new one replaces it when it is gone (an aborted job's guard exits after
/// killing the tree, or someone killed it). Also remembers where the
/// consumers' commands were found in PATH, and makes the per-job cgroups.
/// One consumer at a time; not thread-safe. The destructor releases the
/// guard and reaps it.
class Launcher {
 public:
  /// With Auto, $SAFESPOOL_CGROUP=off means Subreaper. Logs the mode in
  /// effect at debug level. Throws Error for Cgroup when there is none.
  explicit Launcher(Containment mode = Containment::Auto);
  Launcher(const Launcher&) = delete;
  Launcher& operator=(const Launcher&) = delete;
  ~Launcher();

  /// Starts `spec` under the guard, in a process group of its own (and
  /// the job's cgroup). With `write_end` >= 0, the consumer pipe's write
  /// end, the guard holds a copy first. Throws Error (exit 69) when no
  /// guard can be found or started, or one was lost after it took the
  /// order (what could be found of the consumer was killed); SysError when
  /// the command cannot be started (no consumer ran; the guard holds
  /// nothing).
  Consumer start(SpawnSpec spec, int write_end);
  /// Work for the next start() to do while the guard starts the consumer
  /// (it must not throw): then our waiting for the guard and the guard's
  /// work overlap. Dropped when that start fails before the guard has the
  /// order.
  void meanwhile(std::function<void()> work) { meanwhile_ = std::move(work); }
  /// The current guard's lifeline and pidfd, for the supervisor's loop.
  int guard_lifeline() const { return guard_ ? guard_->lifeline() : -1; }
  int guard_pidfd() const { return guard_ ? guard_->pidfd() : -1; }
  /// The current guard closed its end of the lifeline (it is ending).
  bool guard_hung_up() const { return !guard_ || guard_->hung_up(); }
  /// The consumer's end, once the guard reported it. Non-blocking.
  std::optional<ExitStatus> take_exit() { return guard_ ? guard_->take_exit() : std::nullopt; }
  /// Why the current guard cannot protect the consumer any more ("" while
  /// it can): it died, or it is stopped.
  std::string guard_trouble() const;
  /// Our write end was closed after a complete payload: the guard closes
  /// its copy, so the consumer sees EOF. Idempotent.
  void payload_complete();
  /// Kills the current consumer's whole tree and returns once every
  /// process of it has SIGKILL pending, so that our write end of the
  /// consumer's pipe (`write_end`, -1: none) can close: 'k' to the guard,
  /// waiting (bounded) for it to end; when the guard is lost or does not
  /// end, from here (cgroup.kill, the group, the guard's children, every
  /// process holding the pipe's read end), then the guard itself. The
  /// guard is reaped; the consumer's end, when known, is in the result.
  std::optional<ExitStatus> kill_tree(int write_end);
  /// The consumer was reported ended. `clean`: the guard reaps it and
  /// stays for the next consumer. Otherwise kill_tree() has run.
  void consumer_ended(bool clean);
  /// Lets the guard exit and reaps it; the next start() starts a new one.
  /// Called by the destructor. After a consumer that never ended through
  /// consumer_ended() (an exception), its tree is killed instead.
  void release();
  /// The current guard's pid; 0 when none runs.
  pid_t guard_pid() const { return guard_ ? guard_->pid() : 0; }
  /// What contains the consumers' trees in this run.
  Containment mode() const { return cgroups_ ? Containment::Cgroup : Containment::Subreaper; }

 private:
  Guard& ready_guard();
  Consumer start_once(const SpawnSpec& spec, int write_end);
  void forget(bool expected, int bound_ms, const char* why);
  /// True when it is the last job's, reused.
  bool make_job_cgroup();
  void drop_cgroup();

  std::optional<Guard> guard_;
  std::optional<CgroupDir> cgroups_;  ///< set: per-job cgroups
  std::optional<JobCgroup> job_cgroup_;
  std::vector<JobCgroup> lingering_;  ///< not empty when their job ended
  std::optional<JobCgroup> spare_;    ///< empty after a clean job: the next one's
  std::function<void()> meanwhile_;   ///< for the next start()
  pid_t consumer_ = 0;                ///< the current consumer's pid (its group), 0: none
  bool in_job_ = false;               ///< a consumer was started and has not ended yet
  CommandPaths paths_;
};

}  // namespace safespool
