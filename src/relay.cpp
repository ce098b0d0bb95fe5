// SPDX-License-Identifier: GPL-3.0-or-later
#include "safespool/relay.hpp"

#include <fcntl.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <climits>
#include <condition_variable>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <system_error>
#include <vector>

#include "safespool/error.hpp"
#include "safespool/handoff.hpp"

namespace safespool {
namespace {

using Clock = std::chrono::steady_clock;

/// Big enough that one write usually fills a whole max-size pipe.
constexpr size_t kBufferSize = 1 << 20;
/// The kernel's default pipe capacity; no point falling back below it.
constexpr size_t kDefaultPipeSize = 1 << 16;
/// Past this many payload bytes the decoder gets a thread of its own.
constexpr uint64_t kAheadAfterBytes = kBufferSize;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

bool refused_size(int err) {
  return err == EPERM || err == EBUSY || err == ENOMEM || err == EINVAL;
}

size_t floor_pow2(size_t n) {
  size_t p = 1;
  while (p <= n / 2) p *= 2;
  return p;
}

const char* phase_name(Relay::Phase p) {
  switch (p) {
    case Relay::Phase::Idle:
      return "not started";
    case Relay::Phase::Reading:
      return "waiting for the decoder";
    case Relay::Phase::Writing:
      return "waiting for the consumer to read";
    case Relay::Phase::Finishing:
      return "waiting for the decoder to confirm the end";
    case Relay::Phase::Done:
      return "done";
  }
  return "?";
}

std::string first_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

/// Decodes on a thread of its own, into the relay's buffer cut in kSlots
/// blocks, while the relay thread writes filled blocks to the pipe. A pipe
/// write costs the writer a page allocation and a copy per 4 KiB (a fifth
/// of the relay thread's time on a large zstd payload): done in turn, the
/// decoder waited for it; with two blocks instead of four it still waited,
/// for the writer's wake-ups. Blocks come out in the order they were read;
/// the end or an error only after the last one.
class DecodeAhead {
 public:
  static constexpr size_t kSlots = 4;
  /// Starts the thread (throws std::system_error when it cannot). `buf`
  /// and `stop` (the relay's stop flag) must outlive this object; the
  /// relay thread checks `stop` at least once per `tick` while it waits.
  DecodeAhead(Reader& reader, std::span<std::byte> buf, const std::atomic<bool>& stop,
              std::chrono::milliseconds tick)
      : reader_(reader), slots_(make_slots(buf)), stop_(stop), tick_(tick) {
    thread_ = std::thread([this] { decode(); });  // last: it uses every member
  }

  /// Stops the decoder: a read under way is cancelled (the payload is being
  /// abandoned; at its end the thread is already gone and nothing is).
  ~DecodeAhead() {
    bool reading = false;
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
      reading = reading_;
    }
    changed_.notify_all();
    if (reading) reader_.cancel();
    thread_.join();
  }

  DecodeAhead(const DecodeAhead&) = delete;
  DecodeAhead& operator=(const DecodeAhead&) = delete;

  /// The next block, valid until the next call; empty at the end of the
  /// stream, and after a stop when no block is ready (a stop never ends
  /// the payload cleanly). Rethrows what the decoder threw.
  std::span<const std::byte> next() {
    std::unique_lock lock(mu_);
    released_ = taken_;  // the previous block was written
    changed_.notify_all();
    // Bounded: a stop is seen here within a tick. The decoder's read under
    // way then ends when cancel() reaches it, which it promises to do.
    while (!(taken_ < filled_ || ended_ || stop_)) changed_.wait_for(lock, tick_);
    if (taken_ < filled_) {
      size_t slot = taken_++ % kSlots;
      return slots_[slot].first(sizes_[slot]);
    }
    if (error_) std::rethrow_exception(error_);
    return {};
  }

 private:
  void decode() {
    for (;;) {
      size_t slot = 0;
      {
        std::unique_lock lock(mu_);
        changed_.wait(lock, [&] { return filled_ - released_ < kSlots || stopping_; });
        // No read starts once a stop is seen; one that slipped past this
        // check is reached by the cancel that came with the stop.
        if (stopping_ || stop_) return;
        slot = filled_ % kSlots;
        reading_ = true;
      }
      size_t n = 0;
      std::exception_ptr error;
      try {
        n = reader_.read(slots_[slot]);
      } catch (...) {
        error = std::current_exception();
      }
      std::lock_guard lock(mu_);
      reading_ = false;
      sizes_[slot] = n;
      if (n > 0 && !error) ++filled_;
      ended_ = n == 0 || error;
      error_ = error;
      changed_.notify_all();
      if (ended_) return;
    }
  }

  static std::array<std::span<std::byte>, kSlots> make_slots(std::span<std::byte> buf) {
    std::array<std::span<std::byte>, kSlots> slots;
    const size_t size = buf.size() / kSlots;
    for (size_t i = 0; i < kSlots; ++i) slots[i] = buf.subspan(i * size, size);
    return slots;
  }

  Reader& reader_;
  std::array<std::span<std::byte>, kSlots> slots_;
  const std::atomic<bool>& stop_;
  const std::chrono::milliseconds tick_;
  std::array<size_t, kSlots> sizes_{};
  std::mutex mu_;
  std::condition_variable changed_;
  uint64_t filled_ = 0;    ///< blocks read
  uint64_t taken_ = 0;     ///< blocks handed to the writer
  uint64_t released_ = 0;  ///< blocks written, their slots free again
  bool reading_ = false;
  bool ended_ = false;
  bool stopping_ = false;
  std::exception_ptr error_;
  std::thread thread_;
};

/// A DecodeAhead, or none when no thread can be started: then the relay
/// decodes and writes in turn, as it does for a small payload.
std::unique_ptr<DecodeAhead> start_decode_ahead(Reader& reader, std::span<std::byte> buf,
                                                const std::atomic<bool>& stop,
                                                std::chrono::milliseconds tick) {
  try {
    return std::make_unique<DecodeAhead>(reader, buf, stop, tick);
  } catch (const std::system_error& e) {
    spdlog::debug("no decoder thread ({}): decoding and writing in turn", e.what());
    return nullptr;
  }
}

}  // namespace

size_t size_pipe(int fd, size_t target) {
  size_t want = target;
  while (want >= kDefaultPipeSize) {
    if (want <= INT_MAX && ::fcntl(fd, F_SETPIPE_SZ, static_cast<int>(want)) >= 0) break;
    if (want <= INT_MAX && !refused_size(errno)) break;
    // Not allowed (unprivileged, over pipe-max-size or pipe-user-pages-soft):
    // a smaller pipe still works, it only gives a resizing consumer work.
    want = floor_pow2(want) == want ? want / 2 : floor_pow2(want);
  }
  int got = ::fcntl(fd, F_GETPIPE_SZ);
  return got > 0 ? static_cast<size_t>(got) : 0;
}

size_t target_pipe_size(size_t requested) {
  if (requested > 0) return requested;
  // Read afresh for every pipe (an administrator may raise it mid-run), but
  // through one descriptor kept open: a pread instead of a path lookup in
  // /proc, an open and a close per job.
  static const Fd sysctl(::open("/proc/sys/fs/pipe-max-size", O_RDONLY | O_CLOEXEC));
  char text[32];
  ssize_t n = sysctl ? ::pread(sysctl.get(), text, sizeof text - 1, 0) : -1;
  if (n > 0) {
    text[n] = '\0';
    char* end = nullptr;
    unsigned long long max = std::strtoull(text, &end, 10);
    if (end != text && max > 0) return static_cast<size_t>(max);
  }
  return 1 << 20;  // the kernel's default pipe-max-size
}

Pipe make_relay_pipe(size_t requested, const std::string& job_name) {
  Pipe p = make_pipe();
  size_t want = target_pipe_size(requested);
  size_t got = size_pipe(p.write.get(), want);
  if (got < want)
    spdlog::warn("{}: consumer pipe is {} bytes, wanted {}", job_name, got, want);
  else
    spdlog::debug("{}: consumer pipe sized to {} bytes", job_name, got);
  int fl = ::fcntl(p.write.get(), F_GETFL);
  if (fl < 0 || ::fcntl(p.write.get(), F_SETFL, fl | O_NONBLOCK) < 0)
    throw_errno("cannot make the consumer pipe non-blocking");
  return p;
}

std::string describe_process(pid_t pid) {
  std::string base = "/proc/" + std::to_string(pid);
  std::string stat = first_line(base + "/stat");
  auto paren = stat.rfind(')');
  if (paren == std::string::npos || paren + 2 >= stat.size())
    return "process " + std::to_string(pid) + " (no /proc entry)";
  std::string out = "process " + std::to_string(pid) + " state " + stat.substr(paren + 2, 1);
  std::string wchan = first_line(base + "/wchan");
  if (!wchan.empty() && wchan != "0") out += " in " + wchan;
  return out;
}

Relay::Relay(Reader& reader, Fd write_end, std::chrono::milliseconds tick)
    : reader_(reader),
      write_(std::move(write_end)),
      tick_(std::max<std::chrono::milliseconds>(tick, std::chrono::milliseconds(1))) {
  last_progress_ns_ = now_ns();
}

Relay::~Relay() {
  stop();
  join();
  close_write();
}

void Relay::start(std::function<void()> on_done) {
  on_done_ = std::move(on_done);
  last_progress_ns_ = now_ns();
  thread_ = std::thread([this] { run(); });
}

void Relay::stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  // A read blocked in a decoder must come back; a finished one is left alone.
  if (thread_.joinable() && !finished()) reader_.cancel();
}

void Relay::join() {
  if (thread_.joinable()) thread_.join();
}

void Relay::close_write() {
  std::lock_guard lock(mu_);
  write_.reset();
}

bool Relay::reader_gone() const {
  std::lock_guard lock(mu_);
  if (!write_) return false;
  // A pipe's write end polls POLLERR exactly when it has no readers.
  pollfd p{write_.get(), POLLOUT, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & POLLERR);
}

std::chrono::steady_clock::time_point Relay::last_progress() const {
  return Clock::time_point(std::chrono::nanoseconds(last_progress_ns_.load()));
}

std::string Relay::describe_pipe() const {
  std::string out = std::to_string(bytes()) + " bytes delivered; relay " + phase_name(phase());
  std::lock_guard lock(mu_);
  if (!write_) return out + "; pipe closed";
  int waiting = -1;
  int size = ::fcntl(write_.get(), F_GETPIPE_SZ);
  if (::ioctl(write_.get(), FIONREAD, &waiting) != 0) waiting = -1;
  return out + "; " + std::to_string(waiting) + " bytes waiting in a pipe of " +
         std::to_string(size) + " bytes";
}

void Relay::run() {
  try {
    pump();
    if (outcome_ == Outcome::Running && !stop_) deliver_eof();
  } catch (const std::exception& e) {
    error_ = e.what();
    if (!stop_) outcome_ = Outcome::Failed;
  }
  // Whatever did not end by itself was stopped (a cancelled read may also
  // just return 0 or throw; either way it is not the end of the payload).
  Outcome running = Outcome::Running;
  outcome_.compare_exchange_strong(running, Outcome::Stopped);
  phase_ = Phase::Done;
  if (on_done_) on_done_();
}

void Relay::pump() {
  // Not zeroed: a small payload touches one page of it, not 256.
  std::unique_ptr<std::byte[]> buf(new std::byte[kBufferSize]);
  const std::span<std::byte> whole(buf.get(), kBufferSize);
  std::unique_ptr<DecodeAhead> ahead;  // a large payload's decoder
  uint64_t moved = 0;
  while (!stop_) {
    phase_ = Phase::Reading;
    auto block = ahead ? ahead->next() : whole.first(reader_.read(whole));
    if (block.empty()) return;
    if (!write_bounded(block.data(), block.size())) return;
    const bool crossed = moved <= kAheadAfterBytes && moved + block.size() > kAheadAfterBytes;
    moved += block.size();
    if (crossed) ahead = start_decode_ahead(reader_, whole, stop_, tick_);
  }
}

bool Relay::write_bounded(const std::byte* data, size_t size) {
  phase_ = Phase::Writing;
  while (size > 0) {
    if (stop_) return false;
    ssize_t n = ::write(write_.get(), data, size);
    if (n > 0) {
      bytes_ += static_cast<uint64_t>(n);
      last_progress_ns_ = now_ns();
      data += n;
      size -= static_cast<size_t>(n);
    } else if (errno == EAGAIN) {
      wait_writable();
    } else if (errno == EPIPE) {
      spdlog::debug("consumer closed its stdin after {} payload bytes", bytes());
      outcome_ = Outcome::ConsumerGone;
      reader_.cancel();
      return false;
    } else if (errno != EINTR) {
      throw_errno("cannot write to the consumer's pipe");
    }
  }
  return true;
}

void Relay::wait_writable() {
  // Bounded on purpose: a wake-up the kernel loses while the consumer
  // resizes the pipe costs one tick, after which write() simply retries.
  pollfd p{write_.get(), POLLOUT, 0};
  ::poll(&p, 1, static_cast<int>(tick_.count()));
}

void Relay::deliver_eof() {
  phase_ = Phase::Finishing;
  reader_.finish();  // throws when the stream was not complete and intact
  std::lock_guard lock(mu_);
  if (stop_) return;  // an abort is under way: the consumer must not see EOF
  write_.reset();
  outcome_ = Outcome::Eof;
}

}  // namespace safespool
