// SPDX-License-Identifier: GPL-3.0-or-later
// Finding, starting, talking to and reaping the consumers' guard
// (src/guard/main.cpp). The run's Launcher is in src/launcher.cpp. See
// include/safespool/guard.hpp and docs/design/handoff.md, "The guard".
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "fd_passing.hpp"
#include "safespool/error.hpp"
#include "safespool/guard.hpp"

#ifndef SAFESPOOL_GUARD_INSTALL_PATH
#define SAFESPOOL_GUARD_INSTALL_PATH "/usr/local/libexec/safespool/safespool-guard"
#endif

extern char** environ;

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

/// The guard's request file (a memfd): u32 argc, u32 envc, then the
/// file to run, argv and the environment, each NUL-terminated.
Fd consume_request(const SpawnSpec& spec) {
  std::vector<std::string> inherited;
  if (!spec.env)
    for (char** e = environ; *e; ++e) inherited.emplace_back(*e);
  const std::vector<std::string>& env = spec.env ? *spec.env : inherited;
  uint32_t counts[2] = {static_cast<uint32_t>(spec.argv.size()), static_cast<uint32_t>(env.size())};
  std::string text(reinterpret_cast<const char*>(counts), sizeof counts);
  text.append(spec.path).push_back('\0');
  for (const auto* list : {&spec.argv, &env}) {
    for (const auto& s : *list) text.append(s).push_back('\0');
  }
  Fd fd(::memfd_create("safespool-consumer", MFD_CLOEXEC));
  if (!fd) throw_errno("cannot describe the consumer to safespool-guard");
  write_all(fd.get(), text, "the consumer's description");
  return fd;
}

/// What failed, for a start the guard reports as failed at `stage`.
std::string start_failure(const SpawnSpec& spec, char stage) {
  const std::string& name = spec.argv.empty() ? spec.path : spec.argv[0];
  switch (stage) {
    case 'g':
      return "cannot put '" + name + "' into its cgroup";
    case 'r':
      return "cannot hand '" + name + "' to safespool-guard";
    default:
      return "cannot run '" + name + "'";
  }
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
  // Blocked from before exec until the guard ignores them: a SIGTERM in
  // its first milliseconds must not end it.
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

bool Guard::stopped() const {
  if (!child_.running()) return false;
  siginfo_t info{};
  // WNOWAIT: the stop stays reportable while it lasts, and is not taken
  // from anyone else; once continued it is not reported any more.
  int rc = ::waitid(P_PID, static_cast<id_t>(child_.pid()), &info, WSTOPPED | WNOHANG | WNOWAIT);
  return rc == 0 && info.si_pid != 0 &&
         (info.si_code == CLD_STOPPED || info.si_code == CLD_TRAPPED);
}

bool Guard::send(char c, std::vector<int> fds, std::string flags) {
  if (!lifeline_) return false;
  std::string bytes = c + flags;
  // EPIPE when the guard is gone; EAGAIN when it does not read (stopped).
  return send_with_fds(lifeline_.get(), bytes, fds, MSG_DONTWAIT);
}

Guard::Reply Guard::receive() {
  char bytes[16];
  iovec iov{bytes, sizeof bytes};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = ::recvmsg(lifeline_.get(), &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  Reply r;
  if (n == 0 || (n < 0 && errno != EAGAIN)) hung_up_ = true;
  if (n <= 0) return r;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
        c->cmsg_len >= CMSG_LEN(sizeof(int))) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
      r.fd.reset(fd);
    }
  }
  r.kind = bytes[0];
  r.bytes.assign(bytes + 1, bytes + n);
  return r;
}

std::optional<ExitStatus> Guard::exit_of(const Reply& r) {
  if (r.kind != 'x' || r.bytes.size() != 1 + sizeof(int)) return std::nullopt;
  int value;
  std::memcpy(&value, r.bytes.data() + 1, sizeof value);
  return ExitStatus{r.bytes[0] != 0, value};
}

std::optional<ExitStatus> Guard::take_exit() {
  if (exit_) return std::exchange(exit_, std::nullopt);
  while (lifeline_ && !hung_up_) {
    Reply r = receive();
    if (r.kind == 0) return std::nullopt;  // nothing (more) to read
    if (auto st = exit_of(r)) return st;
    spdlog::warn("safespool-guard {} said '{}' out of turn", pid(), r.kind);
  }
  return std::nullopt;
}

Consumer Guard::consume(const ConsumeOrder& order, int bound_ms, bool* cgroup_failed) {
  Fd request = consume_request(order.spec);
  std::vector<int> fds = {request.get(), order.spec.stdin_fd, order.spec.stdout_fd,
                          order.spec.stderr_fd};
  std::string flags;
  if (order.hold >= 0) fds.push_back(order.hold), flags += 'h';
  if (order.cgroup >= 0) fds.push_back(order.cgroup), flags += 'g';
  if (!send('c', fds, flags))
    throw GuardLost("safespool-guard " + std::to_string(pid()) + " did not take the consumer",
                    false);
  if (order.meanwhile && *order.meanwhile) std::exchange(*order.meanwhile, nullptr)();
  Reply r = await_reply(bound_ms);
  if (r.kind == 's' && r.bytes.size() == sizeof(int) && r.fd) {
    Consumer c;
    std::memcpy(&c.pid, r.bytes.data(), sizeof c.pid);
    c.pidfd = std::move(r.fd);
    return c;
  }
  if (r.kind == 'f' && r.bytes.size() == 1 + sizeof(int)) {
    int err;
    std::memcpy(&err, r.bytes.data() + 1, sizeof err);
    if (cgroup_failed) *cgroup_failed = r.bytes[0] == 'g';
    throw SysError(start_failure(order.spec, r.bytes[0]), err);
  }
  throw GuardLost("safespool-guard " + std::to_string(pid()) + " gave no answer about the consumer",
                  true);
}

/// The next reply, waiting up to `bound_ms` while the guard lives and is
/// not stopped; an 'x' met on the way is kept for take_exit().
Guard::Reply Guard::await_reply(int bound_ms) {
  auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(bound_ms);
  while (std::chrono::steady_clock::now() < end && !hung_up_) {
    pollfd p[2] = {{lifeline_.get(), POLLIN, 0}, {child_.pidfd(), POLLIN, 0}};
    if (::poll(p, 2, 250) < 0 && errno != EINTR) break;
    if (p[0].revents) {
      Reply r = receive();
      if (auto st = exit_of(r))
        exit_ = st;
      else if (r.kind != 0)
        return r;
      continue;
    }
    if (p[1].revents || stopped()) break;
  }
  return {};
}

void Guard::release() {
  if (!lifeline_) return;
  send('r');
  lifeline_.reset();
}

void Guard::kill() const {
  if (child_.running()) ::kill(child_.pid(), SIGKILL);
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
    if (rc == 0) kill();
  }
  return child_.wait();
}

}  // namespace safespool
