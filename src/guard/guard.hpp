// SPDX-License-Identifier: GPL-3.0-or-later
// Internal to safespool-guard: the parts of the guard that main.cpp puts
// together. Plain libc, no exceptions, no project library: the guard must
// start fast and have nothing to go wrong.
//
// The guard is the parent of every consumer of a run and a child
// subreaper (PR_SET_CHILD_SUBREAPER): whatever a consumer forks and
// abandons — a child that called setsid(), a daemon — is handed to the
// guard when its parent dies, so the guard can find and kill the whole
// tree, not only the consumer's process group. See main.cpp for the
// protocol and docs/design/handoff.md, "The guard".
#pragma once

#include <sys/types.h>

namespace guard {

/// Replies on the lifeline (fd 0); see main.cpp.
constexpr char kStarted = 's';  ///< + pid (4 bytes), with the consumer's pidfd
constexpr char kFailed = 'f';   ///< + stage (1 byte) + errno (4 bytes)
constexpr char kExited = 'x';   ///< + signaled (1 byte) + status or signal (4 bytes)

/// Where a start failed, in a kFailed reply.
constexpr char kStageRequest = 'r';  ///< the request could not be read
constexpr char kStageCgroup = 'g';   ///< joining the job's cgroup failed
constexpr char kStageExec = 'x';     ///< execve failed (or clone)

/// The consumer being run, and what the guard holds for it.
struct Job {
  pid_t consumer = 0;     ///< started and not reaped yet; 0: none
  bool reported = false;  ///< its end was sent (kExited); it waits unreaped
  int held = -1;          ///< a copy of its pipe's write end
  int cgroup = -1;        ///< its cgroup v2 directory (cgroup.kill)
};

/// Best effort to stderr (it may be gone).
void say(const char* msg);

/// A started consumer, or why it did not start.
struct Started {
  pid_t pid = -1;
  int pidfd = -1;
  char stage = 0;  ///< kStage* when pid < 0
  int err = 0;
};

/// Starts (clone, exec) the consumer described by `request` (a file: see
/// consumer.cpp) with `in`, `out`, `err` as its fds 0-2, in a new process
/// group it leads, in the cgroup `cgroup` (-1: ours). Closes none of the
/// given fds.
Started start_consumer(int request, int in, int out, int err, int cgroup);

/// Reaps every exited child except `keep` (the consumer, whose exit the
/// processor has to hear of first).
void reap_others(pid_t keep);

/// Kills the whole tree: the job's cgroup, the consumer's group, and every
/// child, including each orphan handed to us as its parent dies, until no
/// child is left. Reports the consumer's end on the lifeline if it was not
/// reported yet. Returns with every descendant reaped; `job.held` is
/// still open then (closing it is the caller's last act).
void kill_everything(Job& job);

/// Sends the consumer's end (kExited): killed by signal `value`, or
/// exit(value).
bool report_exit(bool signaled, int value);

}  // namespace guard
