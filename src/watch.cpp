// SPDX-License-Identifier: GPL-3.0-or-later
// queue-process --watch: passes as packets land.
//
// inotify on jobs/ wakes the loop when a file is renamed in or finished;
// a periodic rescan is the safety net for events inotify cannot see
// (network filesystems, an overflowed event queue). The lock is taken per
// pass, so operators can still run queue-set-next between passes. With
// systemd's NOTIFY_SOCKET set, READY=1 is sent once the first pass is done.
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "safespool/error.hpp"
#include "safespool/processor.hpp"
#include "safespool/signals.hpp"

namespace safespool {
namespace {

void notify_systemd(const char* message) {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (!path || (path[0] != '/' && path[0] != '@') ||
      std::strlen(path) >= sizeof(sockaddr_un::sun_path))
    return;
  Fd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) return;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strcpy(addr.sun_path, path);
  socklen_t len = offsetof(sockaddr_un, sun_path) + std::strlen(path);
  if (path[0] == '@') addr.sun_path[0] = '\0';  // abstract namespace
  ::sendto(fd.get(), message, std::strlen(message), MSG_NOSIGNAL,
           reinterpret_cast<sockaddr*>(&addr), len);
}

Fd watch_jobs(const Queue& q) {
  Fd fd(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
  if (!fd) throw_errno("cannot start inotify");
  if (::inotify_add_watch(fd.get(), q.jobs_dir().c_str(),
                          IN_MOVED_TO | IN_CLOSE_WRITE | IN_CREATE) < 0)
    throw_errno("cannot watch " + q.jobs_dir());
  return fd;
}

// Waits for a change in jobs/ or the rescan interval; false on interrupt.
bool wait_for_change(int inotify_fd, int rescan_seconds) {
  pollfd fds[2] = {{inotify_fd, POLLIN, 0}, {interrupt_fd(), POLLIN, 0}};
  int r = ::poll(fds, interrupt_fd() >= 0 ? 2 : 1, rescan_seconds * 1000);
  if (r < 0 && errno != EINTR) throw_errno("cannot wait for queue changes");
  if (take_interrupt() || interrupted()) return false;
  char buf[4096];
  while (::read(inotify_fd, buf, sizeof buf) > 0) {
  }
  // Let a burst of arrivals settle into one pass.
  ::usleep(100 * 1000);
  while (::read(inotify_fd, buf, sizeof buf) > 0) {
  }
  return true;
}

// One pass in watch mode: failures are logged, the watcher carries on.
int watched_pass(const Queue& q, const ProcessOptions& opts, const SignerPolicy& policy,
                 const Hooks& hooks) {
  try {
    return process_one_pass(q, opts, policy, hooks);
  } catch (const Error& e) {
    if (e.exit_code() == kExitTempFail)
      spdlog::debug("{}; trying again later", e.what());
    else
      spdlog::error("{}", e.what());
    return e.exit_code();
  }
}

}  // namespace

int watch_queue(const Queue& q, const ProcessOptions& opts, const SignerPolicy& policy,
                const Hooks& hooks) {
  q.check_exists();
  Fd inotify = watch_jobs(q);
  bool ready = false;
  for (;;) {
    if (watched_pass(q, opts, policy, hooks) == kExitInterrupted) return kExitInterrupted;
    if (!ready) notify_systemd("READY=1");
    ready = true;
    if (!wait_for_change(inotify.get(), opts.rescan_seconds)) {
      spdlog::info("stopping on signal {}", interrupted());
      notify_systemd("STOPPING=1");
      return kExitOk;
    }
  }
}

}  // namespace safespool
