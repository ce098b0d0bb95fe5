// SPDX-License-Identifier: GPL-3.0-or-later
#include "stderr_tail.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "safespool/error.hpp"

namespace safespool {
namespace {

/// Whether `fd` is a regular file other than our own stderr.
bool own_file(int fd) {
  struct stat st {
  }, ours{};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return false;
  return ::fstat(2, &ours) != 0 || st.st_dev != ours.st_dev || st.st_ino != ours.st_ino;
}

/// Writes what it can; a destination that fails is given up, the reading
/// goes on (the consumer must never block on our account).
void forward(int& out, const char* p, size_t n) {
  while (out >= 0 && n > 0) {
    ssize_t w = ::write(out, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      out = -1;
      return;
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

}  // namespace

/// The forwarding thread's state, shared so that the thread may outlive
/// the StderrTail (a leftover process still writing).
struct StderrTail::Tee {
  Fd in;   ///< the pipe's read end
  Fd out;  ///< where the consumer's stderr goes (a copy)
  std::mutex mu;
  std::condition_variable cv;
  std::string tail;  ///< the last bytes, at most 2 * kTailBytes
  bool ended = false;
  std::thread thread;

  void run() {
    char buf[65536];
    int out_fd = out.get();
    for (;;) {
      ssize_t n = ::read(in.get(), buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      forward(out_fd, buf, static_cast<size_t>(n));
      std::lock_guard lock(mu);
      tail.append(buf, static_cast<size_t>(n));
      if (tail.size() > 2 * kTailBytes) tail.erase(0, tail.size() - kTailBytes);
    }
    std::lock_guard lock(mu);
    ended = true;
    cv.notify_all();
  }
};

std::string last_lines(std::string_view text, size_t lines, size_t bytes) {
  if (text.size() > bytes) text = text.substr(text.size() - bytes);
  if (!text.empty() && text.back() == '\n') text.remove_suffix(1);
  size_t start = text.size();
  for (size_t seen = 0; start > 0; --start) {
    if (text[start - 1] == '\n' && ++seen == lines) break;
  }
  std::string out(text.substr(start));
  std::replace(out.begin(), out.end(), '\0', '?');
  return out;
}

StderrTail::StderrTail(int dest, bool tee) {
  dest_ = dest;
  if (own_file(dest)) {
    // Opened anew for reading: the consumer's descriptor may be write-only.
    std::string self = "/proc/self/fd/" + std::to_string(dest);
    file_.reset(::open(self.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
    struct stat st {};
    if (file_ && ::fstat(file_.get(), &st) == 0) {
      file_start_ = static_cast<uint64_t>(st.st_size);
      return;
    }
    file_.reset();
  }
  if (!tee || ::isatty(dest)) return;  // passed through: no tail
  Pipe p = make_pipe();
  tee_ = std::make_shared<Tee>();
  tee_->in = std::move(p.read);
  tee_->out.reset(::fcntl(dest, F_DUPFD_CLOEXEC, 3));
  write_end_ = std::move(p.write);
  tee_->thread = std::thread([tee = tee_] { tee->run(); });
}

StderrTail::~StderrTail() {
  write_end_.reset();
  if (!tee_) return;
  std::unique_lock lock(tee_->mu);
  bool ended = tee_->ended;
  lock.unlock();
  // A writer left behind keeps the thread forwarding; it owns what it uses.
  if (ended)
    tee_->thread.join();
  else
    tee_->thread.detach();
}

int StderrTail::consumer_fd() const { return tee_ ? write_end_.get() : dest_; }

void StderrTail::started() { write_end_.reset(); }

std::string StderrTail::take(std::chrono::milliseconds wait) {
  if (!tee_) {
    struct stat st {};
    if (!file_ || ::fstat(file_.get(), &st) != 0) return "";
    uint64_t end = static_cast<uint64_t>(st.st_size);
    uint64_t from = std::max(file_start_, end > kTailBytes ? end - kTailBytes : 0);
    std::string text(end > from ? end - from : 0, '\0');
    text.resize(read_full(file_.get(), std::as_writable_bytes(std::span(text)), "stderr", from));
    return last_lines(text);
  }
  write_end_.reset();
  std::unique_lock lock(tee_->mu);
  tee_->cv.wait_for(lock, wait, [&] { return tee_->ended; });
  return last_lines(tee_->tail);
}

}  // namespace safespool
