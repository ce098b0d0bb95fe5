// SPDX-License-Identifier: GPL-3.0-or-later
#include "safespool/relay.hpp"

#include <fcntl.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <fstream>
#include <memory>
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
  while (!stop_) {
    phase_ = Phase::Reading;
    size_t n = reader_.read(std::span(buf.get(), kBufferSize));
    if (n == 0) return;
    if (!write_bounded(buf.get(), n)) return;
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
