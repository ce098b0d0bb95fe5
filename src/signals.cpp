// SPDX-License-Identifier: GPL-3.0-or-later
#include "safespool/signals.hpp"

#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "safespool/error.hpp"

namespace safespool {
namespace {
int g_fd = -1;
int g_first = 0;
}  // namespace

void install_interrupt_fd() {
  if (g_fd >= 0) return;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  if (pthread_sigmask(SIG_BLOCK, &set, nullptr) != 0) throw Error("cannot block signals");
  g_fd = ::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  if (g_fd < 0) throw_errno("cannot create signalfd");
}

int interrupt_fd() { return g_fd; }

int take_interrupt() {
  if (g_fd < 0) return 0;
  signalfd_siginfo si;
  if (::read(g_fd, &si, sizeof si) != static_cast<ssize_t>(sizeof si)) return 0;
  int sig = static_cast<int>(si.ssi_signo);
  if (!g_first) g_first = sig;
  return sig;
}

int interrupted() { return g_first; }

}  // namespace safespool
