// SPDX-License-Identifier: GPL-3.0-or-later
// safespool-guard: makes consumers, and everything they start, die with
// the processor that feeds them.
//
// When the processor is killed (SIGKILL, OOM killer, crash), the kernel
// closes its end of the consumer's stdin pipe, and the consumer — or any
// process it started that holds the pipe — would read a clean EOF after a
// truncated payload, and may "succeed" on it. So the processor starts this
// guard (in a process group of its own) and has it start every consumer of
// its run: the guard is their parent and a child subreaper, so every
// descendant of a consumer is its descendant, and every orphan among them
// becomes its child. For each consumer fed through a pipe the guard holds a
// second copy of the pipe's write end, so no reader can see EOF while the
// guard lives; and it watches the processor through a "lifeline" socket
// whose other end only the processor holds:
//
//   fd 0  our end of the lifeline, an AF_UNIX SOCK_SEQPACKET socket
//   fd 1  /dev/null
//   fd 2  the processor's stderr
//
// Orders on fd 0, one message each, the first byte saying which:
//
// 'c' + flags, with descriptors (SCM_RIGHTS): the request (a file naming
//   the program, argv and environment: consumer.cpp), the consumer's
//   stdin, stdout and stderr, then — flag 'h' — a copy of its pipe's write
//   end to hold, then — flag 'g' — its cgroup v2 directory. Only when no
//   consumer is current. We start it (its own process group, fds
//   0-2, default signals, empty mask, in the cgroup) and answer 's' + pid
//   with a pidfd of it, or 'f' + stage + errno (then we hold nothing of it).
//   A descriptor in flight stays open, so the processor's death right after
//   sending is not an EOF either: we receive it before we can see the
//   lifeline's EOF.
// 'e': the payload is complete and the processor closed its write end:
//   close our copy (the consumer now sees EOF).
// 'd': the processor is done with the consumer, which ended (we said 'x')
//   cleanly: reap it, close what we hold for it. What it left behind stays
//   our child, reaped when it ends, killed should the processor die.
// 'k': kill the whole tree (the job's cgroup, the consumer's group, every
//   child of ours, recursively), reap it, then exit 2. The processor waits
//   for our exit before it closes its write end.
// 'r': released at the end of the run: exit 0. Only when no consumer is
//   current and nothing is held.
// EOF or a read error on fd 0: the processor died: kill the whole tree,
//   then exit. Every descendant has SIGKILL pending, and is reaped, before
//   our copy of the write end closes: no reader returns to user space to
//   observe the EOF.
// Anything else (an unknown order, descriptors that do not match the
//   flags, an order out of turn): the same as EOF (fail closed).
//
// Answers: besides 's' and 'f', 'x' + signaled + value once the current
// consumer has ended; it stays unreaped (its process group id stays
// pinned, so the processor's SIGTERM to the group never hits a stranger)
// until 'd' or 'k'.
//
// It ignores SIGTERM/SIGINT/SIGHUP/SIGPIPE: a graceful SIGTERM must not
// release a write end early. SIGCHLD is read from a signalfd.
//
// `safespool-guard --tether PPID FILE ARG...` is a second mode, for the
// processor's own helpers (gpg --decrypt-files in a queue scan): it asks to
// be SIGKILLed when its parent dies (PR_SET_PDEATHSIG), checks that its
// parent is still PPID, and execs FILE.
//
// See docs/design/handoff.md, "The guard".
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "../fd_passing.hpp"
#include "guard.hpp"

namespace guard {
namespace {

constexpr int kExitUsage = 64;  // EX_USAGE
constexpr int kExitKilled = 2;  // the tree was killed on the processor's order
constexpr char kConsume = 'c';
constexpr char kEof = 'e';
constexpr char kDone = 'd';
constexpr char kKill = 'k';
constexpr char kRelease = 'r';
constexpr char kFlagHold = 'h';
constexpr char kFlagCgroup = 'g';
/// Descriptors in one order at most: request, 0, 1, 2, held, cgroup.
constexpr int kMaxFds = 6;

/// Ignored, not just blocked: the processor spawns us with these blocked
/// (so a group SIGTERM before this point stays pending); SIG_IGN discards
/// such a pending signal. SIGCHLD stays blocked, for the signalfd.
int set_up_signals() {
  sigset_t set;
  sigemptyset(&set);
  static const int kIgnored[] = {SIGTERM, SIGINT, SIGHUP, SIGPIPE};
  for (int sig : kIgnored) {
    ::signal(sig, SIG_IGN);
    sigaddset(&set, sig);
  }
  ::sigprocmask(SIG_UNBLOCK, &set, nullptr);
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  ::sigprocmask(SIG_BLOCK, &set, nullptr);
  return ::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

/// Refuses to run where it could hurt: started by hand from a script, or
/// where it cannot watch its children.
bool sane_start(int argc) {
  struct stat st {};
  if (argc != 1) {
    say("usage: safespool-guard (started by safespool only; see safespool(1))\n");
    return false;
  }
  if (::getpgrp() != ::getpid() || ::fstat(0, &st) != 0 || !S_ISSOCK(st.st_mode)) {
    say("safespool-guard: must lead its own process group with a socket on stdin\n");
    return false;
  }
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
    say("safespool-guard: cannot become a child subreaper\n");
    return false;
  }
  return true;
}

/// One order from the processor.
struct Order {
  enum class Kind { Order, Eof, Malformed } kind = Kind::Malformed;
  char byte = 0;
  char flags[4] = {};
  int fds[kMaxFds] = {-1, -1, -1, -1, -1, -1};
  int nfds = 0;
};

/// Descriptors of a malformed order are left open: one may be a
/// consumer's write end, and the tree is about to be killed; they close
/// with us, after that.
Order receive() {
  char bytes[8] = {};
  iovec iov{bytes, sizeof bytes};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = ::recvmsg(0, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  Order o;
  if (n <= 0) {
    o.kind = Order::Kind::Eof;  // or an error: either way the processor is gone
    return o;
  }
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS || o.nfds > 0) return o;
    o.nfds = static_cast<int>((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
    std::memcpy(o.fds, CMSG_DATA(c), sizeof(int) * static_cast<size_t>(o.nfds));
  }
  // MSG_CTRUNC: the kernel dropped descriptors that did not fit.
  if (n > 4 || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) return o;
  o.kind = Order::Kind::Order;
  o.byte = bytes[0];
  std::memcpy(o.flags, bytes + 1, 3);
  return o;
}

bool send_reply(const char* bytes, size_t size, int fd) {
  std::span<const int> fds(&fd, fd >= 0 ? 1 : 0);
  return safespool::send_with_fds(0, std::span(bytes, size), fds);
}

bool has_flag(const Order& o, char flag) { return std::memchr(o.flags, flag, 3) != nullptr; }

enum class Next { Go, Gone, Broken, Killed, Released };

/// Handles 'c': Broken when the order is malformed, Gone when the answer
/// cannot be sent.
Next consume(const Order& o, Job& job) {
  const bool hold = has_flag(o, kFlagHold), cgroup = has_flag(o, kFlagCgroup);
  if (job.consumer > 0 || job.held >= 0 || o.nfds != 4 + hold + cgroup) return Next::Broken;
  job.held = hold ? o.fds[4] : -1;
  job.cgroup = cgroup ? o.fds[4 + hold] : -1;
  Started s = start_consumer(o.fds[0], o.fds[1], o.fds[2], o.fds[3], job.cgroup);
  for (int i = 0; i < 4; ++i) ::close(o.fds[i]);
  char reply[1 + sizeof(int)];
  if (s.pid < 0) {  // no consumer: nothing to hold for it
    if (job.held >= 0) ::close(job.held);
    if (job.cgroup >= 0) ::close(job.cgroup);
    job.held = job.cgroup = -1;
    char failure[2 + sizeof(int)] = {kFailed, s.stage};
    std::memcpy(failure + 2, &s.err, sizeof s.err);
    return send_reply(failure, sizeof failure, -1) ? Next::Go : Next::Gone;
  }
  job.consumer = s.pid;
  reply[0] = kStarted;
  std::memcpy(reply + 1, &s.pid, sizeof s.pid);
  bool sent = send_reply(reply, sizeof reply, s.pidfd);
  ::close(s.pidfd);
  return sent ? Next::Go : Next::Gone;
}

/// Handles 'd': the consumer ended and was reported.
bool done(Job& job) {
  if (job.consumer <= 0 || !job.reported) return false;
  int st;
  while (::waitpid(job.consumer, &st, 0) < 0 && errno == EINTR) {
  }
  if (job.held >= 0) ::close(job.held);
  if (job.cgroup >= 0) ::close(job.cgroup);
  job = Job{};
  return true;
}

/// Carries out one order.
Next obey(const Order& o, Job& job) {
  if (o.kind == Order::Kind::Eof) return Next::Gone;
  if (o.kind == Order::Kind::Malformed) return Next::Broken;
  if (o.byte == kConsume) return consume(o, job);
  if (o.nfds > 0 || o.flags[0] != 0) return Next::Broken;
  switch (o.byte) {
    case kEof:
      if (job.held >= 0) ::close(job.held);  // the consumer may see EOF now
      job.held = -1;
      return Next::Go;
    case kDone:
      return done(job) ? Next::Go : Next::Broken;
    case kKill:
      return Next::Killed;
    case kRelease:
      return job.consumer <= 0 && job.held < 0 ? Next::Released : Next::Broken;
    default:
      return Next::Broken;
  }
}

/// Tells the processor once the current consumer has ended (it stays
/// unreaped), and reaps every other child that has. False when the
/// processor cannot be told.
bool on_children(int sigchld, Job& job) {
  signalfd_siginfo si;
  while (::read(sigchld, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
  }
  // The processor waits for the consumer's end: it is told first.
  bool told = true;
  siginfo_t info{};
  if (job.consumer > 0 && !job.reported &&
      ::waitid(P_PID, static_cast<id_t>(job.consumer), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
      info.si_pid != 0) {
    job.reported = true;
    told = report_exit(info.si_code != CLD_EXITED, info.si_status);
  }
  reap_others(job.consumer);
  return told;
}

/// Follows the processor's orders until it releases us, orders a kill,
/// dies, or breaks the protocol.
Next follow_orders(int sigchld, Job& job) {
  pollfd p[2] = {{0, POLLIN, 0}, {sigchld, POLLIN, 0}};
  for (;;) {
    if (::poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return Next::Gone;  // we cannot wait for it: as good as gone
    }
    if (p[1].revents && !on_children(sigchld, job)) return Next::Gone;
    if (!p[0].revents) continue;
    Next next = obey(receive(), job);
    if (next != Next::Go) return next;
  }
}

/// `safespool-guard --tether PPID FILE ARGV0 ARG...`: runs FILE, to be
/// SIGKILLed when its parent (thread) ends.
int tether(int argc, char** argv) {
  if (argc < 5) {
    say("usage: safespool-guard --tether PPID FILE ARGV0 [ARG...]\n");
    return kExitUsage;
  }
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) return 1;
  // The parent may have died before the tether held: we would run on.
  if (::getppid() != static_cast<pid_t>(std::atol(argv[2]))) return 1;
  ::execv(argv[3], argv + 4);
  say("safespool-guard --tether: cannot run the program\n");
  return 127;
}

}  // namespace

void say(const char* msg) {
  // Best effort: stderr may be gone, and SIGPIPE is ignored.
  ssize_t rc = ::write(2, msg, std::strlen(msg));
  (void)rc;
}

bool report_exit(bool signaled, int value) {
  char reply[2 + sizeof(int)] = {kExited, static_cast<char>(signaled)};
  std::memcpy(reply + 2, &value, sizeof value);
  return send_reply(reply, sizeof reply, -1);
}

}  // namespace guard

int main(int argc, char** argv) {
  using namespace guard;
  if (argc > 1 && std::strcmp(argv[1], "--tether") == 0) return tether(argc, argv);
  if (!sane_start(argc)) return kExitUsage;
  int sigchld = set_up_signals();
  if (sigchld < 0) {
    say("safespool-guard: cannot watch its children\n");
    return 1;
  }
  Job job;
  switch (follow_orders(sigchld, job)) {
    case Next::Released:
      return 0;
    case Next::Killed:
      kill_everything(job);
      return kExitKilled;
    case Next::Gone:
      say("safespool-guard: the processor is gone: killing its consumer\n");
      break;
    default:
      say("safespool-guard: unexpected message from the processor: killing its consumer\n");
      break;
  }
  kill_everything(job);
  return 1;  // held copies close now, after every reader is dead
}
