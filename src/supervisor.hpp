// SPDX-License-Identifier: GPL-3.0-or-later
// Internal: the event loop that supervises one started consumer.
//
// start_consumer() (src/handoff.cpp) sets a consumer up; supervise() takes
// what it made and watches it to the end in src/supervisor.cpp, the only
// file that includes Asio (it takes long to compile).
#pragma once

#include <cstdint>
#include <memory>

#include "safespool/fd.hpp"
#include "safespool/guard.hpp"
#include "safespool/handoff.hpp"
#include "safespool/relay.hpp"
#include "stderr_tail.hpp"

namespace safespool {

/// A started consumer and everything that serves it.
struct Supervised {
  Launcher& launcher;
  Consumer consumer;
  std::unique_ptr<Relay> relay;    ///< stream payloads: feeds the consumer's pipe
  Fd file;                         ///< plain payloads: the job file (its offset is the consumer's)
  uint64_t start_offset = 0;       ///< plain payloads: where the payload starts
  const Reader* stream = nullptr;  ///< stream payloads: for how far it has read its file
  std::unique_ptr<StderrTail> tail;  ///< the consumer's stderr, for its tail
};

/// Starts watching `what` — the relay's thread and the timers run from
/// now on — for ConsumerRun::wait() to supervise to the end.
ConsumerRun supervise(Supervised what, const HandoffOptions& opts);

}  // namespace safespool
