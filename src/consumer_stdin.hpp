// SPDX-License-Identifier: GPL-3.0-or-later
// Choosing the consumer's stdin for the hand-off (internal to
// src/handoff.cpp; kept apart so that file stays small and Asio-only).
// See docs/design/handoff.md, "The invariant".
#pragma once

#include <cstdint>

#include "safespool/fd.hpp"
#include "safespool/handoff.hpp"

namespace safespool {

/// The consumer's stdin, and what must stay open while it is being set up.
struct ConsumerStdin {
  Pipe pipe;                  ///< stream: both ends of the fresh consumer pipe
  Fd dev_null;                ///< no payload
  int fd = -1;                ///< becomes the consumer's fd 0
  uint64_t start_offset = 0;  ///< plain file: where the payload starts
};

/// A fresh sized pipe (stream), the job file itself (plain) or /dev/null.
ConsumerStdin choose_stdin(const PayloadSource& payload, const HandoffOptions& opts);

}  // namespace safespool
