// Finding, starting, releasing and reaping the consumer's guard
// (src/guard/main.cpp). See include/safespool/guard.hpp and
// docs/design/handoff.md, "The guard".
#include "safespool/guard.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "safespool/error.hpp"

#ifndef SAFESPOOL_GUARD_INSTALL_PATH
#define SAFESPOOL_GUARD_INSTALL_PATH "/usr/local/libexec/safespool/safespool-guard"
#endif

namespace safespool {
namespace {

constexpr const char* kGuardName = "safespool-guard";
// The guard's protocol: see src/guard/main.cpp.
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
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
         ::access(path.c_str(), X_OK) == 0;
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
  if (!exe.empty()) out.push_back(dir_of(exe) + "/" + kGuardName);
#ifdef SAFESPOOL_GUARD_BUILD_PATH
  // Only for binaries inside the build tree (unit_tests, test tools): an
  // installed binary must not pick up some developer's build.
  std::string build_dir = dir_of(SAFESPOOL_GUARD_BUILD_PATH) + "/";
  if (exe.compare(0, build_dir.size(), build_dir) == 0)
    out.push_back(SAFESPOOL_GUARD_BUILD_PATH);
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

Guard Guard::start(int write_end) {
  SpawnSpec spec;
  spec.argv = {find_guard(guard_candidates())};
  spec.env = std::vector<std::string>{};
  Pipe lifeline = make_pipe();
  Fd dev_null;
  if (write_end < 0) dev_null = open_dev_null_for_writing();
  spec.stdin_fd = lifeline.read.get();
  spec.stdout_fd = write_end >= 0 ? write_end : dev_null.get();
  spec.stderr_fd = 2;
  // Blocked from before exec until the guard ignores them: a SIGTERM to the
  // group in its first milliseconds must not end it.
  spec.blocked_signals = {SIGTERM, SIGINT, SIGHUP, SIGPIPE};
  Child child = spawn(spec);
  // lifeline.read closes here: the guard holds the only read end, we the
  // only write end (O_CLOEXEC, and spawn closes fds >= 3 in every child).
  return Guard(std::move(child), std::move(lifeline.write));
}

void Guard::send(char c) {
  ssize_t n;
  do {
    n = ::write(lifeline_.get(), &c, 1);
  } while (n < 0 && errno == EINTR);
}

void Guard::deliver_eof() {
  if (!lifeline_ || eof_sent_) return;
  send(kEof);
  eof_sent_ = true;
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

}  // namespace safespool
