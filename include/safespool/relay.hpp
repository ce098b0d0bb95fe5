// SPDX-License-Identifier: GPL-3.0-or-later
// The relay: the thread that moves decoded payload bytes into the
// consumer's pipe.
//
// Decoding is a blocking pull (Reader::read may take seconds inside GPGME or
// an external decoder), so it runs on its own thread; the hand-off's event
// loop stays free to notice the consumer's exit, timeouts and interrupts.
// Past a payload's first MiB the decoder gets a second thread and runs up
// to a megabyte ahead of the writes, so decoding no longer waits for each
// pipe write in turn (the pipe's page copies are a fifth of a large zstd
// payload's cost).
// The thread never sleeps inside a pipe write: the write end is O_NONBLOCK
// and a full pipe is waited for with poll(POLLOUT) for at most one tick, so
// a wake-up lost by the kernel (Linux bug 212295, triggered when the reader
// resizes the pipe while we wait) costs one tick instead of a deadlock.
//
// EOF is a promise: the write end is closed cleanly only after
// Reader::finish() returned and nobody asked the relay to stop. On any other
// ending the descriptor stays open until the supervisor has killed the
// consumer's process group and calls close_write().
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "safespool/decode.hpp"
#include "safespool/fd.hpp"

namespace safespool {

/// Gives the pipe `fd` a capacity of `target` bytes (before any byte is in
/// it). When the kernel refuses (EPERM over pipe-max-size or the per-user
/// limit, EBUSY, ENOMEM, EINVAL) it tries smaller powers of two down to the
/// default 64 KiB, quietly. Returns the capacity in effect (F_GETPIPE_SZ).
size_t size_pipe(int fd, size_t target);

/// A fresh consumer pipe (O_CLOEXEC both ends), grown to
/// target_pipe_size(`requested`) before any byte can enter it, write end
/// O_NONBLOCK. Logs (for `job_name`) a warning when it got less.
Pipe make_relay_pipe(size_t requested, const std::string& job_name);

/// One line about a process for stall diagnoses: "process 42 state S
/// (sleeping) in pipe_read", or what part of that /proc would tell.
std::string describe_process(pid_t pid);

/// Feeds a Reader into a non-blocking pipe write end on its own thread.
class Relay {
 public:
  enum class Phase { Idle, Reading, Writing, Finishing, Done };
  enum class Outcome {
    Running,       ///< not finished yet
    Eof,           ///< all bytes written, finish() passed, write end closed
    ConsumerGone,  ///< EPIPE: the consumer closed its stdin; reader cancelled
    Failed,        ///< read/finish/write threw; see error(); fd still open
    Stopped,       ///< stop() was called; fd still open
  };

  /// Takes the write end (must be O_NONBLOCK); `reader` must outlive this.
  Relay(Reader& reader, Fd write_end, std::chrono::milliseconds tick);
  /// Stops and joins the thread, then closes the write end if still open:
  /// destroy only after the consumer was killed or reaped.
  ~Relay();
  Relay(const Relay&) = delete;
  Relay& operator=(const Relay&) = delete;

  /// Starts the thread; `on_done` runs on it as its very last action.
  void start(std::function<void()> on_done);
  /// Thread-safe. After this the relay never closes the pipe cleanly; it
  /// cancels the reader and returns within about one tick.
  void stop();
  /// Waits for the thread (no-op when not started or already joined).
  void join();
  /// Closes the write end. For the abort path: after the consumer's group
  /// was killed, so it can never mistake this for the end of the payload.
  void close_write();
  /// True when the write end is still open and no process holds the read
  /// end any more (the consumer and all it forked closed it or ended).
  /// Nobody can then read on, nor see our close as the end of a payload
  /// that was cut short: closing is harmless. Thread-safe.
  bool reader_gone() const;

  /// The write end while it is open (-1 after close), to find who else
  /// holds the pipe. Thread-safe.
  int write_fd() const {
    std::lock_guard lock(mu_);
    return write_.get();
  }

  uint64_t bytes() const { return bytes_.load(); }
  /// When a payload byte last entered the pipe (or when started).
  std::chrono::steady_clock::time_point last_progress() const;
  Phase phase() const { return phase_.load(); }
  Outcome outcome() const { return outcome_.load(); }
  bool finished() const { return outcome() != Outcome::Running; }
  /// The failure message when outcome() is Failed (read after join()).
  const std::string& error() const { return error_; }
  /// "1048576 bytes waiting in a pipe of 1048576 bytes; relay waiting for
  /// the consumer to read": thread-safe snapshot for stall diagnoses.
  std::string describe_pipe() const;

 private:
  void run();
  void pump();
  bool write_bounded(const std::byte* data, size_t size);
  void wait_writable();
  void deliver_eof();

  Reader& reader_;
  Fd write_;
  mutable std::mutex mu_;  ///< guards closing write_ and the stop decision
  std::chrono::milliseconds tick_;
  std::thread thread_;
  std::function<void()> on_done_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> bytes_{0};
  std::atomic<int64_t> last_progress_ns_{0};
  std::atomic<Phase> phase_{Phase::Idle};
  std::atomic<Outcome> outcome_{Outcome::Running};
  std::string error_;
};

}  // namespace safespool
