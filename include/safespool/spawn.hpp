// SPDX-License-Identifier: GPL-3.0-or-later
// Spawning children precisely.
//
// The processor's children (the consumers' guard, an external decoder, a
// scan's batch gpg) are started with posix_spawn, never fork+exec by hand
// and never through Boost.Process (see docs/design/spawning.md for the
// defects that ruled it out); consumers are started by their guard, which
// must be their parent (src/guard/consumer.cpp). A child gets exactly fds
// 0-2 (addclosefrom_np(3)), a process group of its own (a new one it leads,
// or one named in the spec), default signal dispositions and an empty
// signal mask (unless the spec asks for blocked signals). Exec failure
// comes back as an exception carrying errno, never as a fake exit status
// 127, and leaves no zombie. Each child is watched through a pidfd so it
// can be awaited on an event loop.
//
// A command name is searched in PATH as execvp does. CommandPaths does that
// search once per name for a run of consumers: posix_spawnp would search in
// the child, one failed execve per PATH entry before the right one, for
// every job.
#pragma once

#include <sys/types.h>

#include <cerrno>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "safespool/error.hpp"
#include "safespool/fd.hpp"

namespace safespool {

/// How a child ended. Never a combined wait status.
struct ExitStatus {
  bool signaled = false;  ///< true: killed by signal `value`; false: exit(value)
  int value = 0;
  bool success() const { return !signaled && value == 0; }
  /// "exit status 3" or "killed by signal 9 (Killed)".
  std::string describe() const;
  static ExitStatus from_wait_status(int status);
};

/// What to start.
struct SpawnSpec {
  std::vector<std::string> argv;  ///< argv[0]: the name the child sees
  /// The file to execute. Empty: argv[0], searched in PATH as execvp does.
  std::string path;
  std::optional<std::vector<std::string>> env;  ///< "K=V" strings; nullopt = inherit
  int stdin_fd = 0;                             ///< becomes the child's fd 0
  int stdout_fd = 1;                            ///< becomes the child's fd 1
  int stderr_fd = 2;                            ///< becomes the child's fd 2
  /// 0: a new process group led by the child. Otherwise the child joins
  /// this existing group (same session) before exec.
  pid_t pgroup = 0;
  /// Signals blocked in the child from its first instruction through exec
  /// (default: none). The guard is started so, to survive a SIGTERM sent
  /// to its group before it had time to ignore SIGTERM.
  std::vector<int> blocked_signals;
};

/// A running (or exited, not yet reaped) child and the process group it
/// was put in. Move-only. The destructor of a child never waited for
/// SIGKILLs its group and reaps it, so no zombie and no orphan outlives its
/// owner. Group signals are safe while the group's leader is unreaped
/// (its pid, hence the group id, cannot be reused): a child that joined
/// another's group must be reaped before that group's leader.
class Child {
 public:
  Child() = default;
  /// `pgid` 0: the child leads its own group.
  Child(pid_t pid, Fd pidfd, pid_t pgid = 0)
      : pid_(pid), pgid_(pgid > 0 ? pgid : pid), pidfd_(std::move(pidfd)) {}
  Child(Child&& o) noexcept;
  Child& operator=(Child&& o) noexcept;
  ~Child();

  pid_t pid() const { return pid_; }
  /// The process group the child was put in (its own pid when it leads it).
  pid_t pgid() const { return pgid_; }
  /// A pidfd (O_CLOEXEC) that becomes readable when the child exits.
  int pidfd() const { return pidfd_.get(); }
  bool running() const { return pid_ > 0 && !status_; }

  /// Sends `sig` to the child's whole process group (ignores ESRCH).
  void kill_group(int sig) const;
  /// Blocks until the child exits and reaps it.
  ExitStatus wait();
  /// Reaps the child if it has exited.
  std::optional<ExitStatus> try_wait();
  /// SIGTERM to the group, up to `grace_ms` for it to exit, then SIGKILL; reaps.
  ExitStatus terminate(int grace_ms);

 private:
  pid_t pid_ = -1;
  pid_t pgid_ = -1;
  Fd pidfd_;
  std::optional<ExitStatus> status_;
};

/// Starts a child. Throws SysError("cannot run 'argv0'", errno) when the
/// command cannot be executed (not found, not executable).
Child spawn(const SpawnSpec& spec);

/// The file execvp would run for `name`: `name` itself when it contains a
/// '/'; otherwise the first regular file we may execute, in $PATH order
/// ("/bin:/usr/bin" when PATH is unset; an empty entry is the current
/// directory). Throws SysError("cannot run 'name'", err) when there is
/// none: EACCES when only files we may not execute were found, else ENOENT
/// — what execvp would have failed with.
std::string search_path(const std::string& name);

/// Where the commands of a run were found in PATH, searched once per name
/// (like a shell's hash table, for the life of this object). Not
/// thread-safe.
class CommandPaths {
 public:
  /// spawn() with spec.path set to where argv[0] was found. When a
  /// remembered file fails with ENOENT or EACCES (moved or uninstalled since),
  /// argv[0] is searched for again, once. Throws as spawn() does.
  Child spawn(SpawnSpec spec) {
    return run(std::move(spec), [](const SpawnSpec& s) { return safespool::spawn(s); });
  }

  /// The same for any way of starting `spec` (the guard starts consumers):
  /// `start(spec)` with spec.path set, again once after a SysError with
  /// ENOENT or EACCES for a remembered file.
  template <class Start>
  auto run(SpawnSpec spec, Start&& start) -> decltype(start(spec)) {
    if (spec.argv.empty()) throw UsageError("no command given");
    bool remembered = found_.count(spec.argv[0]) > 0;
    spec.path = find(spec.argv[0]);
    try {
      return start(spec);
    } catch (const SysError& e) {
      if (!remembered || (e.err() != ENOENT && e.err() != EACCES)) throw;
      // Moved or uninstalled since we looked: look again, once.
      found_.erase(spec.argv[0]);
      spec.path = find(spec.argv[0]);
      return start(spec);
    }
  }

 private:
  /// Where `name` was found, searching PATH the first time.
  const std::string& find(const std::string& name);
  std::map<std::string, std::string> found_;  ///< name -> file
};

}  // namespace safespool
