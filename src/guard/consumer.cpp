// SPDX-License-Identifier: GPL-3.0-or-later
// safespool-guard: starting a consumer.
//
// The processor sends what to run as a file (a memfd; an environment can
// be larger than a socket message):
//
//   u32 argc, u32 envc (native byte order), then argc + envc + 1
//   NUL-terminated strings: the file to execute, argv[0..argc), env[0..envc)
//
// The guard forks; the child leads a new process group, joins the job's
// cgroup when there is one, takes fds 0-2, closes every other fd but the
// error pipe, resets every signal to its default with an empty mask, and
// execs. A failure before or at exec comes back through a close-on-exec
// pipe as a stage and an errno (the skalibs way): never as a fake exit
// status. Only async-signal-safe calls happen between fork and exec; the
// guard is single-threaded anyway.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "guard.hpp"

namespace guard {
namespace {

/// Largest request read: far above what exec accepts (ARG_MAX and the
/// per-string limit), so exec, not we, says what is too big.
constexpr off_t kMaxRequest = 64 << 20;

/// A parsed request; the strings point into `text`.
struct Request {
  char* text = nullptr;
  const char* path = nullptr;
  char** argv = nullptr;
  char** envp = nullptr;
  ~Request() {
    std::free(text);
    std::free(argv);
    std::free(envp);
  }
};

/// Fills `out` with `count` strings from [p, end) and a null; advances p.
bool take_strings(char*& p, char* end, uint32_t count, char**& out) {
  out = static_cast<char**>(std::calloc(size_t{count} + 1, sizeof(char*)));
  if (!out) return false;
  for (uint32_t i = 0; i < count; ++i) {
    char* nul = static_cast<char*>(std::memchr(p, '\0', static_cast<size_t>(end - p)));
    if (!nul) return false;
    out[i] = p;
    p = nul + 1;
  }
  return true;
}

/// Reads and checks the request file; false (errno set) when malformed.
bool read_request(int fd, Request& r) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return false;
  if (st.st_size < 8 || st.st_size > kMaxRequest) return errno = EINVAL, false;
  size_t size = static_cast<size_t>(st.st_size);
  r.text = static_cast<char*>(std::malloc(size));
  if (!r.text) return false;
  for (size_t got = 0; got < size;) {
    ssize_t n = ::pread(fd, r.text + got, size - got, static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return errno = n < 0 ? errno : EINVAL, false;
    got += static_cast<size_t>(n);
  }
  uint32_t argc, envc;
  std::memcpy(&argc, r.text, 4);
  std::memcpy(&envc, r.text + 4, 4);
  char* p = r.text + 8;
  char* end = r.text + size;
  char* nul = static_cast<char*>(std::memchr(p, '\0', size - 8));
  if (!nul || argc == 0 || argc > size || envc > size) return errno = EINVAL, false;
  r.path = p;
  p = nul + 1;
  if (!take_strings(p, end, argc, r.argv) || !take_strings(p, end, envc, r.envp) || p != end)
    return errno = EINVAL, false;
  return true;
}

/// In the child: says why it failed and exits.
[[noreturn]] void child_failed(int report, char stage) {
  char msg[1 + sizeof(int)];
  int err = errno;
  msg[0] = stage;
  std::memcpy(msg + 1, &err, sizeof err);
  ssize_t rc = ::write(report, msg, sizeof msg);
  (void)rc;
  ::_exit(127);
}

/// In the child, after fork: becomes the consumer.
[[noreturn]] void become_consumer(const Request& r, int fds[3], int cgroup_procs, int report) {
  if (::setpgid(0, 0) != 0) child_failed(report, kStageExec);
  if (cgroup_procs >= 0 && ::write(cgroup_procs, "0", 1) != 1) child_failed(report, kStageCgroup);
  for (int i = 0; i < 3; ++i) {
    if (::dup2(fds[i], i) < 0) child_failed(report, kStageExec);
  }
  // Every fd but 0-2 and the report pipe (close-on-exec) goes.
  if (report > 3) ::close_range(3, static_cast<unsigned>(report) - 1, 0);
  ::close_range(static_cast<unsigned>(report) + 1, ~0U, 0);
  for (int sig = 1; sig < NSIG; ++sig) ::signal(sig, SIG_DFL);  // some refuse: harmless
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::execve(r.path, r.argv, r.envp);
  child_failed(report, kStageExec);
}

/// Waits for the child's exec (the report pipe closes) or its failure.
Started await_exec(pid_t pid, int report) {
  char msg[1 + sizeof(int)];
  ssize_t n;
  do {
    n = ::read(report, msg, sizeof msg);
  } while (n < 0 && errno == EINTR);
  Started s;
  if (n == 0) {
    s.pid = pid;
    return s;
  }
  s.stage = n == static_cast<ssize_t>(sizeof msg) ? msg[0] : kStageExec;
  if (n == static_cast<ssize_t>(sizeof msg))
    std::memcpy(&s.err, msg + 1, sizeof s.err);
  else
    s.err = n < 0 ? errno : EIO;
  int st;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  return s;
}

Started failed(char stage) {
  Started s;
  s.stage = stage;
  s.err = errno;
  return s;
}

}  // namespace

Started start_consumer(int request, int in, int out, int err, int cgroup) {
  Request r;
  if (!read_request(request, r)) return failed(kStageRequest);
  int cgroup_procs = -1;
  if (cgroup >= 0) {
    cgroup_procs = ::openat(cgroup, "cgroup.procs", O_WRONLY | O_CLOEXEC);
    if (cgroup_procs < 0) return failed(kStageCgroup);
  }
  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0) {
    Started s = failed(kStageExec);
    if (cgroup_procs >= 0) ::close(cgroup_procs);
    return s;
  }
  int fds[3] = {in, out, err};
  pid_t pid = ::fork();
  if (pid == 0) become_consumer(r, fds, cgroup_procs, report[1]);
  Started s = pid < 0 ? failed(kStageExec) : Started{};
  ::close(report[1]);
  if (cgroup_procs >= 0) ::close(cgroup_procs);
  if (pid > 0) s = await_exec(pid, report[0]);
  ::close(report[0]);
  if (s.pid > 0) {
    s.pidfd = static_cast<int>(::syscall(SYS_pidfd_open, s.pid, 0));
    if (s.pidfd < 0) {
      Started f = failed(kStageWatch);
      ::kill(-s.pid, SIGKILL);
      int st;
      while (::waitpid(s.pid, &st, 0) < 0 && errno == EINTR) {
      }
      return f;
    }
  }
  return s;
}

}  // namespace guard
