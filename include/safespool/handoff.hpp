// SPDX-License-Identifier: GPL-3.0-or-later
// The hand-off: starting a consumer and moving payload bytes into it.
//
// The consumer's stdin is exactly one of (see docs/design/handoff.md):
//  1. the job file itself, positioned at the first payload byte (plain
//     packets): no pipe, no copy;
//  2. a fresh pipe made for this consumer alone, enlarged with F_SETPIPE_SZ
//     to pipe-max-size before any byte enters it, empty when the consumer is
//     exec'd, fed only payload bytes by this process with O_NONBLOCK writes
//     and waits of at most 250 ms, so a lost wake-up (Linux bug 212295,
//     which deadlocked `zfs receive` under fspl) costs one tick, never a
//     hang;
//  3. /dev/null (--ignore-payload, or no payload stream).
// EOF is a promise: the pipe is closed cleanly only after the decoder's
// finish() confirmed the stream; on any failure the consumer's process
// group is killed first, so a transactional consumer discards the partial
// stream. Our own death keeps the promise too: every consumer runs in a
// process group led by a guard (guard.hpp), which holds a second copy of
// the pipe's write end and kills the group if this process dies. A run of
// jobs shares one guard through a Launcher.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "safespool/decode.hpp"
#include "safespool/fd.hpp"
#include "safespool/guard.hpp"

namespace safespool {

/// The consumer: argv (no shell), full environment, where its output goes.
struct ConsumerSpec {
  std::vector<std::string> argv;
  std::vector<std::string> env;  ///< complete environment, "K=V"
  int stdout_fd = 1;
  int stderr_fd = 2;
};

/// Where the payload comes from. Exactly one of `file` / `stream`, or
/// neither (the consumer gets /dev/null).
struct PayloadSource {
  Fd file;                   ///< plain packet, offset at the first payload byte
  Reader* stream = nullptr;  ///< decoded stream, positioned after the header
};

struct HandoffOptions {
  std::optional<std::chrono::milliseconds> timeout;        ///< --timeout
  std::optional<std::chrono::milliseconds> stall_timeout;  ///< --stall-timeout
  std::chrono::milliseconds grace{5000};                   ///< SIGTERM -> SIGKILL grace
  std::chrono::milliseconds tick{250};                     ///< longest single wait on the pipe
  size_t pipe_size = 0;                                    ///< 0: /proc/sys/fs/pipe-max-size
  bool progress = false;  ///< one-line progress display on stderr (a tty)
  std::string job_name;   ///< for log lines, e.g. "seq 42 (fspl-x.fspl)"
  /// The run's launcher (not owned): its guard and PATH search serve every
  /// consumer of the run. Null: a guard for this consumer alone.
  Launcher* launcher = nullptr;
  /// Called once on the supervising thread just after the consumer has
  /// started (and the payload with it), while it runs: work the caller
  /// would otherwise do after it, such as preparing the next seqfile. It
  /// delays noticing the consumer's exit by as long as it takes; it must
  /// not throw.
  std::function<void()> while_running;
};

/// How one consumer run ended. An outcome, not an exception.
struct HandoffResult {
  enum class Kind {
    Exited,        ///< consumer exited (status in `status`)
    Signaled,      ///< consumer killed by a signal it did not get from us
    TimedOut,      ///< --timeout: group terminated
    Stalled,       ///< --stall-timeout: no byte moved; group terminated
    DecodeFailed,  ///< the payload stream failed; group killed before EOF
    Interrupted,   ///< we got SIGTERM/SIGINT/SIGHUP; group terminated
  };
  Kind kind = Kind::Exited;
  int status = 0;       ///< exit status or signal number
  std::string message;  ///< human reason for anything but a clean exit
  uint64_t bytes = 0;   ///< payload bytes delivered to the consumer
  double seconds = 0;
  int signal_received = 0;  ///< for Interrupted: which signal
  bool success() const { return kind == Kind::Exited && status == 0; }
  std::string describe() const;
};

/// Starts the consumer in its guard's group and delivers the payload.
/// Throws SysError when the consumer cannot be started (command not found,
/// not executable): that is not a job failure; Error (exit code 69) when
/// safespool-guard cannot be found. Ignores SIGPIPE process-wide. The
/// consumer is reaped before this returns, and so is the guard unless it
/// belongs to opts.launcher and the job ended cleanly (it then waits for
/// the run's next consumer).
HandoffResult run_consumer(const ConsumerSpec& consumer, PayloadSource payload,
                           const HandoffOptions& opts);

/// The pipe size a fresh consumer pipe is given: `requested`, or
/// /proc/sys/fs/pipe-max-size when 0.
size_t target_pipe_size(size_t requested);

}  // namespace safespool
