// SPDX-License-Identifier: GPL-3.0-or-later
// Internal: killing what is left of a consumer's tree from the processor,
// when its guard cannot — it died (its orphans went to init, out of our
// reach as children) or it is stopped (it cannot act). The job's cgroup
// and the consumer's process group are killed by the caller; what matters
// then for the EOF promise is every process that could still read the
// consumer's pipe, and those are found by the pipe itself through
// /proc/PID/fd; a consumer that reads the job file itself is found the
// same way, by the file as its standard input.
#pragma once

#include <sys/types.h>

namespace safespool {

/// SIGKILLs every process but us that holds the open file of `fd`: for a
/// pipe (the write end of a consumer's), any descriptor of it; for a
/// regular file (a job file a consumer reads itself), only as standard
/// input — a reader of the job file with it elsewhere is left alone.
/// Through a pidfd opened and then checked against the file again, so that
/// a reused pid is never hit. Processes we may not inspect are not seen;
/// anything else (a terminal, /dev/null) kills nobody.
void kill_holders(int fd);

/// SIGKILLs the children of `parent` (a stopped guard's: pinned, since it
/// cannot reap them) and again those they hand over to it as they die,
/// until only zombies are left or `rounds` rounds (10 ms apart) passed.
void kill_children_of(pid_t parent, int rounds);

}  // namespace safespool
