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
// finish() confirmed the stream; on any failure the consumer's whole tree
// is killed first, so a transactional consumer discards the partial
// stream. Our own death keeps the promise too: every consumer is started
// by a guard (guard.hpp), its parent and a child subreaper, which holds a
// second copy of the pipe's write end and kills the whole tree if this
// process dies. A run of jobs shares one guard through a Launcher.
//
// start_consumer() returns once the consumer runs and its payload flows;
// the caller does what it has to do meanwhile (the queue prepares the next
// seqfile) and then calls ConsumerRun::wait(), which supervises the
// consumer to its end. The hand-off never calls back into its caller.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "safespool/decode.hpp"
#include "safespool/fd.hpp"
#include "safespool/guard.hpp"

namespace safespool {

struct Supervised;  // internal: src/supervisor.hpp

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
  /// stderr is a terminal: a progress line there, rewritten every second.
  /// Otherwise a progress log line this often, for jobs that last as long.
  bool progress = false;
  std::chrono::milliseconds log_progress_every{60000};
  std::string job_name;  ///< for log lines, e.g. "seq 42 (fspl-x.fspl)"
  /// Keep the end of the consumer's stderr (HandoffResult::stderr_tail)
  /// when it is not a file of its own: the consumer's stderr then goes
  /// through a pipe of ours (src/stderr_tail.hpp). Off, or when our
  /// stderr is a terminal, the consumer gets our stderr untouched.
  bool keep_stderr_tail = false;
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
    GuardLost,     ///< the consumer's guard died or stopped mid-job; tree killed
  };
  Kind kind = Kind::Exited;
  int status = 0;       ///< exit status or signal number
  std::string message;  ///< human reason for anything but a clean exit
  uint64_t bytes = 0;   ///< payload bytes delivered to the consumer
  double seconds = 0;
  int signal_received = 0;  ///< for Interrupted: which signal
  /// The end of what the consumer wrote to its stderr: its last 20 lines,
  /// at most 4 KiB, without the final newline, NUL bytes as '?'; ""
  /// when it wrote nothing, ran no consumer, or the tail was not kept
  /// (HandoffOptions::keep_stderr_tail). Its stderr still went where
  /// it goes (for --output-to saveboth, a file holding stdout too, which is
  /// where the tail is read from).
  std::string stderr_tail;
  bool success() const { return kind == Kind::Exited && status == 0; }
  std::string describe() const;
};

/// A started consumer, its payload on the way (or a job that ended
/// without one). Move-only. Timeouts count from the start; events that
/// arrive before wait() are handled by wait(). Destroyed without wait()
/// (an exception in the caller), it kills the consumer's group and reaps
/// it, never letting it see EOF.
class ConsumerRun {
 public:
  /// A run that started nothing and ended with `result` (a NOP or Fail
  /// packet, a policy rejection): wait() returns it.
  static ConsumerRun finished(HandoffResult result);

  ConsumerRun(ConsumerRun&&) noexcept;
  ConsumerRun& operator=(ConsumerRun&&) noexcept;
  ~ConsumerRun();

  /// Supervises the consumer to its end and returns how it ended. The
  /// consumer is reaped before this returns, and so is the guard unless
  /// the job ended cleanly (it then waits for the launcher's next
  /// consumer). Call once.
  HandoffResult wait();

  /// Internal (src/supervisor.cpp): the event loop of one consumer.
  class Supervisor;

 private:
  friend ConsumerRun supervise(struct Supervised what, const HandoffOptions& opts);
  explicit ConsumerRun(std::unique_ptr<Supervisor> sup);
  std::unique_ptr<Supervisor> sup_;
  std::optional<HandoffResult> result_;
};

/// Starts the consumer in the group of `launcher`'s guard and sets its
/// payload flowing; `launcher`, and the payload's stream, must outlive the
/// run. Throws SysError when the consumer cannot be started (command not
/// found, not executable): that is not a job failure; Error (exit code 69)
/// when safespool-guard cannot be found. Ignores SIGPIPE process-wide.
ConsumerRun start_consumer(Launcher& launcher, const ConsumerSpec& consumer, PayloadSource payload,
                           const HandoffOptions& opts);

/// start_consumer(launcher, ...).wait().
HandoffResult run_consumer(Launcher& launcher, const ConsumerSpec& consumer, PayloadSource payload,
                           const HandoffOptions& opts);

/// run_consumer() with a guard for this consumer alone, reaped before it
/// returns.
HandoffResult run_consumer(const ConsumerSpec& consumer, PayloadSource payload,
                           const HandoffOptions& opts);

/// The pipe size a fresh consumer pipe is given: `requested`, or
/// /proc/sys/fs/pipe-max-size when 0.
size_t target_pipe_size(size_t requested);

}  // namespace safespool
