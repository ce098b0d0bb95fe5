// SPDX-License-Identifier: GPL-3.0-or-later
// Finding, starting, talking to and reaping the consumers' guard
// (src/guard/main.cpp), and keeping one for a run of consumers. See
// include/safespool/guard.hpp and docs/design/handoff.md, "The guard".
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "safespool/error.hpp"
#include "safespool/guard.hpp"

#ifndef SAFESPOOL_GUARD_INSTALL_PATH
#define SAFESPOOL_GUARD_INSTALL_PATH "/usr/local/libexec/safespool/safespool-guard"
#endif

namespace safespool {
namespace {

constexpr const char* kGuardName = "safespool-guard";
// The guard's protocol: see src/guard/main.cpp.
constexpr char kHold = 'h';
constexpr char kEof = 'e';
constexpr char kRelease = 'r';

std::string dir_of(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

std::string self_exe() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

bool executable_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

Fd open_dev_null_for_writing() {
  int fd = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (fd < 0) throw_errno("cannot open /dev/null");
  return Fd(fd);
}

}  // namespace

std::vector<std::string> guard_candidates() {
  const char* env = std::getenv("SAFESPOOL_GUARD");
  if (env && *env) return {env};  // an explicit choice is never second-guessed
  std::vector<std::string> out;
  std::string exe = self_exe();
  if (!exe.empty()) {
    out.push_back(dir_of(exe) + "/" + kGuardName);
    // An installed tree, wherever it was unpacked (bin/ next to libexec/).
    out.push_back(dir_of(exe) + "/../libexec/safespool/" + kGuardName);
  }
#ifdef SAFESPOOL_GUARD_BUILD_PATH
  // Only for binaries inside the build tree (unit_tests, test tools): an
  // installed binary must not pick up some developer's build.
  std::string build_dir = dir_of(SAFESPOOL_GUARD_BUILD_PATH) + "/";
  if (exe.compare(0, build_dir.size(), build_dir) == 0) out.push_back(SAFESPOOL_GUARD_BUILD_PATH);
#endif
  out.push_back(SAFESPOOL_GUARD_INSTALL_PATH);
  return out;
}

std::string find_guard(const std::vector<std::string>& candidates) {
  std::string tried;
  for (const auto& c : candidates) {
    if (executable_file(c)) return c;
    tried += (tried.empty() ? "" : ", ") + c;
  }
  throw Error("cannot find safespool-guard, which every consumer needs (tried " + tried +
                  "; set SAFESPOOL_GUARD or reinstall)",
              kExitUnavailable);
}

Guard Guard::start() {
  SpawnSpec spec;
  spec.argv = {find_guard(guard_candidates())};
  spec.path = spec.argv[0];
  spec.env = std::vector<std::string>{};
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0)
    throw_errno("cannot create the guard's lifeline");
  Fd ours(pair[0]), theirs(pair[1]);
  Fd dev_null = open_dev_null_for_writing();
  spec.stdin_fd = theirs.get();
  spec.stdout_fd = dev_null.get();
  spec.stderr_fd = 2;
  // Blocked from before exec until the guard ignores them: a SIGTERM to the
  // group in its first milliseconds must not end it.
  spec.blocked_signals = {SIGTERM, SIGINT, SIGHUP, SIGPIPE};
  Child child = spawn(spec);
  // `theirs` closes here: the guard holds the only copy of its end, we the
  // only one of ours (O_CLOEXEC, and spawn closes fds >= 3 in every child),
  // so our death is its EOF and its death makes our sends fail.
  return Guard(std::move(child), std::move(ours));
}

bool Guard::gone() const {
  if (!lifeline_ || !child_.running()) return true;
  pollfd p{child_.pidfd(), POLLIN, 0};
  return ::poll(&p, 1, 0) != 0;  // readable once it has exited; an error counts too
}

bool Guard::send(char c, int fd) {
  if (!lifeline_) return false;
  iovec iov{&c, 1};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  if (fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(cm), &fd, sizeof fd);
  }
  ssize_t n;
  do {
    // EPIPE when the guard is gone; EAGAIN when it does not read (stopped).
    n = ::sendmsg(lifeline_.get(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  return n == 1;
}

bool Guard::hold(int write_end) {
  holding_ = send(kHold, write_end);
  return holding_;
}

bool Guard::drop() {
  if (!holding_) return true;
  if (!send(kEof)) return false;
  holding_ = false;
  return true;
}

void Guard::release() {
  if (!lifeline_) return;
  send(kRelease);
  lifeline_.reset();
}

ExitStatus Guard::reap(int bound_ms) {
  if (child_.pid() <= 0) return {};
  if (child_.running()) {
    // Bounded: a guard stopped by someone else must not hang the processor.
    pollfd p{child_.pidfd(), POLLIN, 0};
    int rc;
    do {
      rc = ::poll(&p, 1, bound_ms);
    } while (rc < 0 && errno == EINTR);
    if (rc == 0) ::kill(child_.pid(), SIGKILL);  // the guard alone
  }
  return child_.wait();
}

Launcher::~Launcher() {
  try {
    release();
  } catch (const std::exception& e) {
    spdlog::warn("cannot let the consumers' guard go: {}", e.what());
  }
}

Child Launcher::start(SpawnSpec spec, int write_end) {
  // A consumer started before never ended through consumer_ended() (an
  // exception): its guard may hold a copy of a cut payload's pipe.
  if (in_job_) kill_and_forget();
  for (int attempt = 1;; ++attempt) {
    Guard& guard = ready_guard(write_end);
    spec.pgroup = guard.pgid();
    try {
      Child child = paths_.spawn(spec);
      in_job_ = true;
      return child;
    } catch (const SysError&) {
      // The consumer may have failed to join the group of a guard that
      // died meanwhile: that is worth one more try with a new guard.
      if (attempt == 1 && guard.gone()) {
        forget(false, 0, "was gone when the consumer was started");
        continue;
      }
      // No consumer exists: the copy the guard holds can go.
      if (!guard.drop()) forget(false, 0, "did not take 'e'");
      throw;
    }
  }
}

Guard& Launcher::ready_guard(int write_end) {
  for (;;) {
    if (guard_ && guard_->gone()) forget(false, 0, "was gone; starting a new one");
    bool fresh = !guard_;
    if (fresh) {
      guard_ = Guard::start();
      spdlog::debug("started guard {}", guard_->pgid());
    }
    if (write_end < 0 || guard_->hold(write_end)) return *guard_;
    int err = errno;
    forget(false, 0, "did not take the consumer's pipe");
    if (fresh) throw SysError("cannot hand the consumer's pipe to safespool-guard", err);
  }
}

void Launcher::payload_complete() {
  // A guard that does not take it is dealt with in consumer_ended().
  if (guard_) guard_->drop();
}

void Launcher::consumer_ended(bool clean) {
  in_job_ = false;
  if (!guard_) return;
  if (clean && guard_->drop()) return;  // ready for the next consumer
  if (clean) return forget(false, 0, "did not take 'e'");
  // Its group, guard included, was SIGKILLed: it is dying.
  forget(true, 2000, "was killed with its group");
}

void Launcher::release() {
  if (!guard_) return;
  if (in_job_) return kill_and_forget();
  guard_->release();
  ExitStatus st = guard_->reap();
  spdlog::debug("released guard {}: {}", guard_->pgid(), st.describe());
  guard_.reset();
}

void Launcher::kill_and_forget() {
  if (guard_) guard_->kill_group();
  forget(true, 2000, "was killed with the group of a consumer that did not end cleanly");
}

void Launcher::forget(bool expected, int bound_ms, const char* why) {
  in_job_ = false;
  if (!guard_) return;
  pid_t pid = guard_->pgid();
  ExitStatus st = guard_->reap(bound_ms);
  if (expected)
    spdlog::debug("guard {} {}: {}", pid, why, st.describe());
  else
    spdlog::warn("safespool-guard {} {} ({})", pid, why, st.describe());
  guard_.reset();
}

}  // namespace safespool
