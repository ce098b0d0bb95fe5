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
// cannot do (start it in a cgroup): a child that shares our memory and runs
// on a stack of its own while we wait (CLONE_VM | CLONE_VFORK), so nothing
// of ours is copied, and that hands us its pidfd (CLONE_PIDFD). On x86-64
// it is born in the job's cgroup (clone3 with CLONE_INTO_CGROUP, Linux
// 5.7); elsewhere, or on an older kernel, it writes itself into the
// cgroup's cgroup.procs first. The child leads a new process group, takes
// fds 0-2, closes every other fd, resets every signal to its default with
// an empty mask, and execs. A failure before or at exec comes
// back in our memory as a stage and an errno, never as a fake exit status.
// Between clone and exec the child makes raw system calls only: no libc
// state, and no sanitizer's interceptor, is touched in the memory we share.
// (ThreadSanitizer intercepts glibc's clone() itself and does its fork
// bookkeeping in the child, in that memory: harmless for a guard with a
// single thread, suspended meanwhile; the clone3 path is not intercepted.)
#include <fcntl.h>
#include <linux/sched.h>
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

/// The kernel's sigset: 64 signals, 128 on MIPS (glibc's _NSIG is one
/// more than the kernel's).
constexpr unsigned long kKernelSigsetBytes = (_NSIG - 1) / 8;
/// The kernel's struct sigaction with every field zero, whatever the
/// architecture's layout: SIG_DFL, no flags, an empty mask.
const uint64_t kDefaultAction[8] = {};
const uint64_t kEmptySigset[kKernelSigsetBytes / 8] = {};
static_assert(sizeof kDefaultAction >= 3 * sizeof(void*) + kKernelSigsetBytes);

/// rt_sigaction(sig, SIG_DFL), raw: SPARC's takes the restorer before the
/// sigset's size.
__attribute__((no_sanitize("address", "thread"))) long reset_signal(int sig) {
#if defined(__sparc__)
  return ::syscall(SYS_rt_sigaction, sig, kDefaultAction, nullptr, nullptr, kKernelSigsetBytes);
#else
  return ::syscall(SYS_rt_sigaction, sig, kDefaultAction, nullptr, kKernelSigsetBytes);
#endif
}

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
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP && reset_signal(sig) != 0) child_failed(l, kStageExec);
  }
  if (::syscall(SYS_rt_sigprocmask, SIG_SETMASK, kEmptySigset, nullptr, kKernelSigsetBytes) != 0)
    child_failed(l, kStageExec);
  const Request& r = *l->request;
  ::syscall(SYS_execve, r.path, r.argv, r.envp);
  child_failed(l, kStageExec);
}

#if defined(__x86_64__)
/// clone3 whose child calls fn(arg) on the stack `args` gives it, as
/// glibc's own posix_spawn does and glibc 2.36 does not offer: the child
/// starts on an empty stack, with nothing to return to. Returns the
/// child's pid, or -errno.
__attribute__((no_sanitize("address", "thread"))) long clone3_run(clone_args* args,
                                                                  int (*fn)(void*), void* arg) {
  register long rax asm("rax") = SYS_clone3;
  register clone_args* rdi asm("rdi") = args;
  register size_t rsi asm("rsi") = sizeof *args;
  register int (*r12)(void*) asm("r12") = fn;
  register void* r13 asm("r13") = arg;
  asm volatile(
      "syscall\n\t"
      "test %%rax, %%rax\n\t"
      "jnz 1f\n\t"
      "xor %%ebp, %%ebp\n\t"  // the child: no frame above this one
      "mov %%r13, %%rdi\n\t"
      "call *%%r12\n\t"
      "mov %%eax, %%edi\n\t"
      "mov %[exit], %%eax\n\t"
      "syscall\n\t"
      "hlt\n"
      "1:"
      : "+r"(rax)
      : "r"(rdi), "r"(rsi), "r"(r12), "r"(r13), [exit] "i"(SYS_exit)
      : "rcx", "r11", "memory");
  return rax;
}
#endif

/// Starts the child straight in the job's cgroup (clone3 with
/// CLONE_INTO_CGROUP, Linux 5.7): no migration afterwards, which takes a
/// lock every fork on the machine waits for and cost about a tenth of a
/// plain job. -1 where that cannot be done; the caller then starts it the
/// portable way, and says what is wrong with the cgroup if anything is.
pid_t clone_into_cgroup(Launch& l, char* stack_top, int cgroup, int& pidfd) {
#if defined(__x86_64__)
  static bool unsupported = false;
  if (unsupported) return -1;
  clone_args a{};
  a.flags = CLONE_VM | CLONE_VFORK | CLONE_PIDFD | CLONE_INTO_CGROUP;
  a.pidfd = reinterpret_cast<uintptr_t>(&pidfd);
  a.exit_signal = SIGCHLD;
  a.stack = reinterpret_cast<uintptr_t>(stack_top - kChildStackBytes);
  a.stack_size = kChildStackBytes;
  a.cgroup = static_cast<uint64_t>(cgroup);
  long pid = clone3_run(&a, become_consumer, &l);
  if (pid > 0) return static_cast<pid_t>(pid);
  if (pid == -ENOSYS || pid == -E2BIG || pid == -EINVAL) unsupported = true;  // before 5.7
  return -1;
#else
  (void)l, (void)stack_top, (void)cgroup, (void)pidfd;
  return -1;
#endif
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
  int pidfd = -1;
  pid_t pid = cgroup >= 0 ? clone_into_cgroup(l, stack, cgroup, pidfd) : -1;
  if (pid < 0) {  // the child joins its cgroup itself, when there is one
    if (cgroup >= 0) {
      l.cgroup_procs = ::openat(cgroup, "cgroup.procs", O_WRONLY | O_CLOEXEC);
      if (l.cgroup_procs < 0) return failed(kStageCgroup);
    }
    pid =
        ::clone(become_consumer, stack, CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD, &l, &pidfd);
  }
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
