// SPDX-License-Identifier: GPL-3.0-or-later
// Internal: the end of what a consumer writes to its stderr — for failure
// hooks, receipts and the job's log line — captured without changing
// where its stderr goes.
//
// When the consumer's stderr is a file of its own (--output-to saveboth),
// the tail is read back from that file at the end. When someone wants the
// tail (a hook, a receipt) and our stderr is not a terminal (the journal,
// a log file, a pipe), the consumer gets a pipe, and a thread of ours
// forwards every byte to where the stderr went and keeps the last few
// KiB: bounded memory, and a consumer that writes megabytes of stderr is
// slowed only by the destination, as it would be without us. A process
// the consumer leaves behind with that stderr keeps writing through us
// until it ends or we exit; after that its writes fail (EPIPE, SIGPIPE by
// default). Otherwise — nobody wants the tail, or a terminal, whose
// programs look at isatty(2) — the consumer gets our stderr as it is.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "safespool/fd.hpp"

namespace safespool {

/// At most this many lines and bytes are kept.
inline constexpr size_t kTailLines = 20;
inline constexpr size_t kTailBytes = 4096;

/// The last `lines` lines of `text` within its last `bytes` bytes, without
/// the final newline; NUL bytes become '?' (the tail goes into
/// environment variables). Pure.
std::string last_lines(std::string_view text, size_t lines = kTailLines, size_t bytes = kTailBytes);

/// The tail of one consumer's stderr.
class StderrTail {
 public:
  /// For a consumer whose stderr goes to `dest` (not owned); `tee`: a
  /// pipe of ours may stand between them (see above).
  StderrTail(int dest, bool tee);
  StderrTail(const StderrTail&) = delete;
  StderrTail& operator=(const StderrTail&) = delete;
  ~StderrTail();

  /// What the consumer gets as its fd 2.
  int consumer_fd() const;
  /// The consumer has started (it holds its own copy): ours goes.
  void started();
  /// The tail so far (last_lines()), after waiting up to `wait` for every
  /// writer to close the pipe.
  std::string take(std::chrono::milliseconds wait = std::chrono::milliseconds(200));

 private:
  struct Tee;
  std::shared_ptr<Tee> tee_;  ///< tee mode: shared with the forwarding thread
  Fd write_end_;              ///< tee mode: the consumer's fd 2, until started()
  int dest_ = -1;             ///< where the consumer's stderr goes (not owned)
  Fd file_;                   ///< file mode: the same file, open for reading
  uint64_t file_start_ = 0;   ///< file mode: its size before the job
};

}  // namespace safespool
