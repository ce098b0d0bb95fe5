// SPDX-License-Identifier: GPL-3.0-or-later
// Interrupts (SIGINT, SIGTERM, SIGHUP) as readable events.
//
// main() blocks the three signals and reads them from a signalfd, so the
// hand-off loop can wait on "consumer exited", "pipe writable" and
// "operator asked us to stop" in one place, and the queue loop can check
// between jobs, without async-signal-safety puzzles. Children are spawned
// with an empty signal mask, so they still receive these signals normally.
#pragma once

namespace safespool {

/// Blocks SIGINT/SIGTERM/SIGHUP in this thread (call before starting any
/// thread) and opens a non-blocking signalfd for them. Idempotent.
void install_interrupt_fd();

/// The signalfd, or -1 when install_interrupt_fd() was not called.
int interrupt_fd();

/// Reads one pending interrupt without blocking; returns its signal number
/// or 0. Remembers the first one seen in interrupted().
int take_interrupt();

/// The first interrupt taken so far (0 = none).
int interrupted();

}  // namespace safespool
