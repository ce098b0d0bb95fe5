// SPDX-License-Identifier: GPL-3.0-or-later
// safespool-guard: starting a consumer.
//
// The processor sends what to run as a file (a memfd; an environment can
// be larger than a socket message):
//
//   u32 argc, u32 envc (native byte order), then argc + envc + 1
//   NUL-terminated strings: the file to execute, argv[0..argc), env[0..envc)
//
// The guard starts it the way posix_spawn does, plus what posix_spawn
// cannot do (join a cgroup): a child that shares our memory and runs on a
// stack of its own while we wait (clone with CLONE_VM | CLONE_VFORK), so
// nothing of ours is copied, and that hands us its pidfd (CLONE_PIDFD).
// The child leads a new process group, joins the job's cgroup when there is
// one, takes fds 0-2, closes every other fd, resets every signal to its
// default with an empty mask, and execs. A failure before or at exec comes
// back in our memory as a stage and an errno, never as a fake exit status.
// Between clone and exec the child makes raw system calls only: no libc
// state, and no sanitizer's interceptor, is touched in the memory we share.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
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

/// What the child needs, and where it says why it failed: our memory,
/// which it shares until it execs or exits.
struct Launch {
  const Request* request;
  int fds[3];
  int cgroup_procs;
  volatile char stage = 0;
  volatile int err = 0;
};

/// The kernel's struct sigaction with every field zero: SIG_DFL, no flags,
/// an empty mask, whatever the architecture's layout. Sigsets are 64 bits
/// for the kernel on every architecture but MIPS.
constexpr unsigned long kKernelSigsetBytes = 8;
const uint64_t kDefaultAction[4] = {};

// The child's stack: while it runs we are suspended, so one serves every
// start. Its lowest page stays inaccessible, so an overflow faults.
constexpr size_t kChildStackBytes = 64 << 10;
constexpr size_t kStackGuardBytes = 4096;

char* child_stack_top() {
  static char* top = nullptr;
  if (top) return top;
  void* base = ::mmap(nullptr, kChildStackBytes, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (base == MAP_FAILED) return nullptr;
  ::mprotect(base, kStackGuardBytes, PROT_NONE);
  top = static_cast<char*>(base) + kChildStackBytes;
  return top;
}

/// In the child: says why it failed and exits.
__attribute__((no_sanitize("address", "thread"))) [[noreturn]] void child_failed(Launch* l,
                                                                                 char stage) {
  l->err = errno;
  l->stage = stage;
  for (;;) ::syscall(SYS_exit, 127);
}

/// In the child, in our memory: becomes the consumer.
__attribute__((no_sanitize("address", "thread"))) int become_consumer(void* arg) {
  Launch* l = static_cast<Launch*>(arg);
  if (::syscall(SYS_setpgid, 0, 0) != 0) child_failed(l, kStageExec);
  if (l->cgroup_procs >= 0 && ::syscall(SYS_write, l->cgroup_procs, "0", 1) != 1)
    child_failed(l, kStageCgroup);
  for (int i = 0; i < 3; ++i) {
    // Ours are 3 and up (0-2 are the guard's own), so dup3 never sees i, i.
    if (::syscall(SYS_dup3, l->fds[i], i, 0) < 0) child_failed(l, kStageExec);
  }
  ::syscall(SYS_close_range, 3U, ~0U, 0U);
  for (int sig = 1; sig < NSIG; ++sig)  // SIGKILL and SIGSTOP refuse: harmless
    ::syscall(SYS_rt_sigaction, sig, kDefaultAction, nullptr, kKernelSigsetBytes);
  const uint64_t none = 0;
  ::syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, nullptr, kKernelSigsetBytes);
  const Request& r = *l->request;
  ::syscall(SYS_execve, r.path, r.argv, r.envp);
  child_failed(l, kStageExec);
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
  char* stack = child_stack_top();
  if (!stack) return failed(kStageExec);
  Launch l{&r, {in, out, err}, -1};
  if (cgroup >= 0) {
    l.cgroup_procs = ::openat(cgroup, "cgroup.procs", O_WRONLY | O_CLOEXEC);
    if (l.cgroup_procs < 0) return failed(kStageCgroup);
  }
  int pidfd = -1;
  pid_t pid =
      ::clone(become_consumer, stack, CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD, &l, &pidfd);
  Started s = pid < 0 ? failed(kStageExec) : Started{};
  if (l.cgroup_procs >= 0) ::close(l.cgroup_procs);
  if (pid < 0) return s;
  if (l.stage == 0) {  // it has exec'd: we run again only after its exec or exit
    s.pid = pid;
    s.pidfd = pidfd;
    return s;
  }
  s.stage = l.stage;
  s.err = l.err;
  ::close(pidfd);
  int st;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  return s;
}

}  // namespace guard
