// safespool-guard: makes a consumer die with the processor that feeds it.
//
// When the processor is killed (SIGKILL, OOM killer, crash), the kernel
// closes its end of the consumer's stdin pipe, and the consumer would read
// a clean EOF after a truncated payload — and may "succeed" on it. The
// processor therefore starts this guard first, as the leader of a new
// process group, and starts the consumer inside that group. The guard
// holds a second copy of the pipe's write end, so the consumer cannot see
// EOF while the guard lives, and it watches the processor through a
// "lifeline" pipe whose write end only the processor holds:
//
//   fd 0  read end of the lifeline
//   fd 1  copy of the consumer pipe's write end (or /dev/null)
//   fd 2  the processor's stderr
//
// byte 'e' on fd 0: the payload is complete and the processor closed its
//   write end: close our copy (the consumer now sees EOF) and keep
//   watching, so a consumer still working after EOF dies with the processor
//   too instead of overlapping with the next run's consumer of the job.
// byte 'r' on fd 0: the processor released us (the consumer ended, or the
//   job ended cleanly): exit 0.
// EOF or a read error on fd 0: the processor died: kill(0, SIGKILL). The
//   kernel makes SIGKILL pending on every member of the group, consumer
//   included, before our own fds close, so the consumer never returns to
//   user space to observe the EOF. Any other byte: the same (fail closed).
//
// It ignores SIGTERM/SIGINT/SIGHUP/SIGPIPE: a graceful SIGTERM to the
// group (timeout, interrupt) must not release the write end early; the
// processor escalates to SIGKILL, which ends us with the rest.
//
// Plain libc only: it must start fast and have nothing to go wrong.
// See docs/design/handoff.md, "The guard".
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace {

constexpr char kEof = 'e';
constexpr char kRelease = 'r';
constexpr int kExitUsage = 64;  // EX_USAGE

void say(const char* msg) {
  // Best effort: stderr may be gone, and SIGPIPE is ignored.
  ssize_t rc = ::write(2, msg, std::strlen(msg));
  (void)rc;
}

/// Ignored, not just blocked: the processor may spawn us with these blocked
/// (so a group SIGTERM before this point stays pending); setting SIG_IGN
/// discards such a pending signal.
void ignore_signals() {
  sigset_t set;
  sigemptyset(&set);
  static const int kIgnored[] = {SIGTERM, SIGINT, SIGHUP, SIGPIPE};
  for (int sig : kIgnored) {
    ::signal(sig, SIG_IGN);
    sigaddset(&set, sig);
  }
  sigprocmask(SIG_UNBLOCK, &set, nullptr);
}

/// Refuses to run where kill(0, SIGKILL) would hit anyone but a consumer
/// group we lead: e.g. started by hand from a script without job control.
bool sane_start(int argc) {
  struct stat st {};
  if (argc != 1) {
    say("usage: safespool-guard (started by safespool only; see safespool(1))\n");
    return false;
  }
  if (::getpgrp() != ::getpid() || ::fstat(0, &st) != 0 || !S_ISFIFO(st.st_mode)) {
    say("safespool-guard: must lead its own process group with a pipe on stdin\n");
    return false;
  }
  return true;
}

/// Follows the processor's orders until it releases us (true) or dies.
bool released() {
  for (;;) {
    char c = 0;
    ssize_t n = ::read(0, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n != 1) return false;  // EOF or error: the processor is gone
    if (c == kRelease) return true;
    if (c != kEof) return false;  // fail closed
    ::close(1);                   // the consumer may see EOF now
  }
}

}  // namespace

int main(int argc, char**) {
  if (!sane_start(argc)) return kExitUsage;
  ignore_signals();
  if (released()) return 0;
  say("safespool-guard: the processor is gone: killing its consumer\n");
  ::kill(0, SIGKILL);  // the whole group, ourselves included
  return 1;            // not reached
}
