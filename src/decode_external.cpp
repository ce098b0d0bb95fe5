// SPDX-License-Identifier: GPL-3.0-or-later
// The external stage: `-d/--decoder CMD`, run as `$SHELL -c CMD` (as fspl
// does) with the job file as stdin and a fresh pipe as stdout.
//
// The pipe is ours alone: this process is its only reader, and it is never
// resized once the decoder runs (resizing a pipe a writer sleeps on is what
// loses wake-ups, Linux bug 212295). The decoder runs in its own process
// group, so cancel() and the destructor kill it together with anything it
// started, and the destructor always reaps it: no zombie.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <mutex>

#include "safespool/decode.hpp"
#include "safespool/error.hpp"
#include "safespool/spawn.hpp"

namespace safespool {
namespace {

std::string shell() {
  const char* s = std::getenv("SHELL");
  return s && *s ? s : "/bin/sh";
}

class ExternalReader : public Reader {
 public:
  ExternalReader(Fd input, const std::string& command, std::string name)
      : command_(command), name_(std::move(name)) {
    Pipe p = make_pipe();
    SpawnSpec spec;
    spec.argv = {shell(), "-c", command};
    spec.stdin_fd = input.get();
    spec.stdout_fd = p.write.get();
    child_ = spawn(spec);
    // Our copies go now: the pipe reaches EOF when the decoder exits, and
    // the job file stays open only in the decoder.
    p.write.reset();
    input.reset();
    out_ = std::move(p.read);
  }

  // No destructor body: Child's destructor SIGKILLs the group and reaps it
  // when it is still running.

  size_t read(std::span<std::byte> buf) override {
    if (buf.empty() || eof_) return 0;
    for (;;) {
      ssize_t n = ::read(out_.get(), buf.data(), buf.size());
      if (cancelled_) throw Error(name_ + ": decoder '" + command_ + "' was cancelled");
      if (n > 0) return static_cast<size_t>(n);
      if (n == 0) {
        eof_ = true;
        return 0;
      }
      if (errno != EINTR) throw_errno("cannot read the output of decoder '" + command_ + "'");
    }
  }

  void finish() override {
    // A decoder still writing would block for ever on a pipe nobody
    // drains: closing our end turns that into EPIPE / SIGPIPE.
    const bool complete = eof_;
    if (!complete) out_.reset();
    ExitStatus st = wait_child();
    if (!st.success()) {
      throw Error(name_ + ": decoder '" + command_ + "' failed: " + st.describe(), kExitDataErr);
    }
    if (!complete) throw Error(name_ + ": finish() before the end of the decoder's output");
  }

  void cancel() override {
    cancelled_ = true;
    std::lock_guard lock(mu_);
    // Only while the pid is ours: after reaping it may belong to anyone.
    if (child_.running()) child_.kill_group(SIGKILL);
  }

  std::string describe() const override { return "decoder '" + command_ + "' < " + name_; }
  std::string source() const override { return name_; }

 private:
  /// Waits without holding the lock (cancel() must stay prompt), then reaps
  /// under it, so cancel() never signals a pid that was already reaped.
  ExitStatus wait_child() {
    siginfo_t info{};
    while (::waitid(P_PID, static_cast<id_t>(child_.pid()), &info, WEXITED | WNOWAIT) < 0) {
      if (errno != EINTR) break;  // already reaped (ECHILD): wait() returns the status
    }
    std::lock_guard lock(mu_);
    return child_.wait();
  }

  std::string command_;
  std::string name_;
  Fd out_;
  Child child_;
  std::mutex mu_;
  std::atomic<bool> cancelled_{false};
  bool eof_ = false;
};

}  // namespace

std::unique_ptr<Reader> make_external_reader(Fd input, const std::string& command,
                                             std::string name) {
  return std::make_unique<ExternalReader>(std::move(input), command, std::move(name));
}

}  // namespace safespool
