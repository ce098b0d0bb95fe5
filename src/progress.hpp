// SPDX-License-Identifier: GPL-3.0-or-later
// Internal: what the supervisor says about a running job's payload.
//
// On a terminal, a line on stderr rewritten once a second, once the
// payload passes 4 MiB. Without one — cron, a systemd unit, where stderr
// goes to a mail or the journal — one log line per minute for a job that
// runs that long, so that a long transfer shows in the journal as moving
// (or not). Both say how many bytes went and how fast, and, when it is
// known how far the job is, a percentage and an estimate of the time
// left. "How far" is the consumer's position in the job file for a plain
// packet, and for an encoded one how far decoding has read the job file:
// the decoded size is not known ahead, and the encoded file is read at a
// fairly even pace against it (a fair measure, not an exact one).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "safespool/decode.hpp"

namespace safespool {

/// How far a job's payload has gone.
struct PayloadProgress {
  uint64_t bytes = 0;                ///< bytes the consumer got (plain: read)
  std::optional<SourcePosition> of;  ///< of what: offset and size, when known
};

/// "1.5 KiB"
std::string human_bytes(double bytes);

/// "45 s", "12 min", "2 h 05 min"
std::string duration_text(double seconds);

/// "1.2 GiB (45.3 MiB/s), 37%, about 2 min left" after `seconds`; the
/// percentage and the estimate only with a position.
std::string progress_text(const PayloadProgress& p, double seconds);

/// The progress output of one job: call tick() often (every supervisor
/// tick), done() at its end.
class ProgressReport {
 public:
  /// `terminal`: stderr is a terminal (the rewritten line); otherwise a
  /// log line every `log_every` (a minute, usually).
  ProgressReport(std::string job_name, bool terminal, std::chrono::milliseconds log_every);
  void tick(const PayloadProgress& p);
  void done();

 private:
  using Clock = std::chrono::steady_clock;
  std::string job_name_;
  bool terminal_;
  std::chrono::milliseconds log_every_;
  Clock::time_point start_ = Clock::now();
  Clock::time_point last_ = start_;
  bool line_shown_ = false;
};

}  // namespace safespool
