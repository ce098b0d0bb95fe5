// SPDX-License-Identifier: GPL-3.0-or-later
// Internal: killing what is left of a consumer's tree from the processor,
// when its guard cannot — it died (its orphans went to init, out of our
// reach as children) or it is stopped (it cannot act). The job's cgroup
// and the consumer's process group are killed by the caller; what matters
// then for the EOF promise is every process that could still read the
// consumer's pipe, and those are found by the pipe itself: /proc/PID/fd
// links name it ("pipe:[INODE]").
#pragma once

#include <sys/types.h>

namespace safespool {

/// SIGKILLs every process but us that holds the pipe whose write end is
/// `write_end` (its read end or another write end), through a pidfd
/// opened and then checked against the pipe again, so that a reused pid is
/// never hit. Processes we may not inspect are not seen.
void kill_pipe_holders(int write_end);

/// SIGKILLs the children of `parent` (a stopped guard's: pinned, since it
/// cannot reap them) and again those they hand over to it as they die,
/// until only zombies are left or `rounds` rounds (10 ms apart) passed.
void kill_children_of(pid_t parent, int rounds);

}  // namespace safespool
