// SPDX-License-Identifier: GPL-3.0-or-later
// safespool-guard: makes consumers die with the processor that feeds them.
//
// When the processor is killed (SIGKILL, OOM killer, crash), the kernel
// closes its end of the consumer's stdin pipe, and the consumer would read
// a clean EOF after a truncated payload — and may "succeed" on it. The
// processor therefore starts this guard, as the leader of a new process
// group, and starts every consumer of its run inside that group. For each
// consumer fed through a pipe, the guard holds a second copy of the pipe's
// write end, so the consumer cannot see EOF while the guard lives; and it
// watches the processor through a "lifeline" socket whose other end only
// the processor holds:
//
//   fd 0  our end of the lifeline, an AF_UNIX SOCK_SEQPACKET socket
//   fd 1  /dev/null
//   fd 2  the processor's stderr
//
// Messages on fd 0 are one byte each:
//
// 'h' with one descriptor (SCM_RIGHTS): hold this copy of the next
//   consumer's pipe write end. The processor sends it before it starts
//   that consumer. A descriptor in flight stays open, so the processor's
//   death right after sending is not an EOF either: we receive it before
//   we can see the lifeline's EOF.
// 'e': the payload is complete and the processor closed its write end:
//   close our copy (the consumer now sees EOF) and keep watching, so a
//   consumer still working after EOF dies with the processor too instead
//   of overlapping with the next run's consumer of the job.
// 'r': the processor released us at the end of its run: exit 0.
// EOF or a read error on fd 0: the processor died: kill(0, SIGKILL). The
//   kernel makes SIGKILL pending on every member of the group, consumer
//   included, before our own fds close, so the consumer never returns to
//   user space to observe the EOF.
// Anything else — an unknown byte, 'h' without exactly one descriptor or
//   while we already hold one, a descriptor with 'e' or 'r', 'r' while we
//   hold one: the same as EOF (fail closed).
//
// It ignores SIGTERM/SIGINT/SIGHUP/SIGPIPE: a graceful SIGTERM to the
// group (timeout, interrupt) must not release a write end early; the
// processor escalates to SIGKILL, which ends us with the rest, and starts
// a new guard for its next consumer.
//
// Plain libc only: it must start fast and have nothing to go wrong.
// See docs/design/handoff.md, "The guard".
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace {

constexpr char kHold = 'h';
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
  if (::getpgrp() != ::getpid() || ::fstat(0, &st) != 0 || !S_ISSOCK(st.st_mode)) {
    say("safespool-guard: must lead its own process group with a socket on stdin\n");
    return false;
  }
  return true;
}

/// One message from the processor. Descriptors of a malformed message are
/// left open: one may be a consumer's write end, and the group is about to
/// be killed; they close with us, after that.
struct Message {
  enum class Kind { Order, Eof, Malformed } kind = Kind::Malformed;
  char byte = 0;
  int fd = -1;  ///< the one descriptor that came with it (-1: none)
};

Message receive() {
  char byte = 0;
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = ::recvmsg(0, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  Message m;
  if (n <= 0) {
    m.kind = Message::Kind::Eof;  // or an error: either way the processor is gone
    return m;
  }
  size_t fds = 0;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) return m;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    if (count > 0 && fds == 0) std::memcpy(&m.fd, CMSG_DATA(c), sizeof m.fd);
    fds += count;
  }
  // MSG_CTRUNC: the kernel dropped descriptors that did not fit.
  if (n != 1 || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || fds > 1) return m;
  m.kind = Message::Kind::Order;
  m.byte = byte;
  return m;
}

enum class Ending { Released, ProcessorGone, ProtocolError };

/// Follows the processor's orders until it releases us or dies, or breaks
/// the protocol. The write end we hold stays open until then, so that on
/// any ending but a release it closes only after our group was killed.
Ending follow_orders() {
  int held = -1;
  for (;;) {
    Message m = receive();
    if (m.kind == Message::Kind::Eof) return Ending::ProcessorGone;
    if (m.kind == Message::Kind::Malformed) return Ending::ProtocolError;
    if (m.byte == kHold && m.fd >= 0 && held < 0) {
      held = m.fd;
    } else if (m.fd >= 0) {
      return Ending::ProtocolError;
    } else if (m.byte == kEof) {
      if (held >= 0) ::close(held);  // the consumer may see EOF now
      held = -1;
    } else if (m.byte == kRelease && held < 0) {
      return Ending::Released;
    } else {
      return Ending::ProtocolError;  // unknown, 'h' without a descriptor, 'r' while holding
    }
  }
}

}  // namespace

int main(int argc, char**) {
  if (!sane_start(argc)) return kExitUsage;
  ignore_signals();
  switch (follow_orders()) {
    case Ending::Released:
      return 0;
    case Ending::ProcessorGone:
      say("safespool-guard: the processor is gone: killing its consumer\n");
      break;
    case Ending::ProtocolError:
      say("safespool-guard: unexpected message from the processor: killing its consumer\n");
      break;
  }
  ::kill(0, SIGKILL);  // the whole group, ourselves included
  return 1;            // not reached
}
