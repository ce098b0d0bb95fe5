// SPDX-License-Identifier: GPL-3.0-or-later
// safespool-guard: reaping children and killing the whole tree.
//
// As a child subreaper the guard receives every orphan of its consumers'
// trees. Killing the tree is therefore a loop: SIGKILL every child (each is
// ours and unreaped, so its pid cannot have been reused), reap one, and
// look again, for a killed process's children are handed to us as it
// dies. It ends when no child is left (ECHILD). A process with SIGKILL
// pending cannot fork any more, so the loop converges. The job's cgroup,
// when there is one, is killed first: cgroup.kill reaches the whole
// cgroup at once, however deep.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "guard.hpp"

namespace guard {
namespace {

/// Most children listed at once; more are found on the next round.
constexpr int kMaxListed = 4096;

/// Reads a small file whole into `buf` (NUL-terminated); false on error.
bool read_small(const char* path, char* buf, size_t size) {
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  size_t got = 0;
  for (ssize_t n; got + 1 < size && (n = ::read(fd, buf + got, size - 1 - got)) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  buf[got] = '\0';
  return true;
}

/// The parent of `pid` from /proc/PID/stat; -1 when unknown.
pid_t parent_of(const char* pid) {
  char path[300], stat[512];
  std::snprintf(path, sizeof path, "/proc/%s/stat", pid);
  if (!read_small(path, stat, sizeof stat)) return -1;
  const char* close = std::strrchr(stat, ')');  // the name may hold anything
  char state = 0;
  int ppid = -1;
  if (!close || std::sscanf(close + 1, " %c %d", &state, &ppid) != 2) return -1;
  return ppid;
}

/// Our children by a walk of /proc, for kernels without
/// /proc/PID/task/TID/children (CONFIG_PROC_CHILDREN).
int scan_children(pid_t* out, int max) {
  DIR* d = ::opendir("/proc");
  if (!d) return 0;
  const pid_t self = ::getpid();
  int n = 0;
  while (dirent* e = ::readdir(d)) {
    if (n == max) break;
    if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
    if (parent_of(e->d_name) == self) out[n++] = static_cast<pid_t>(std::atoi(e->d_name));
  }
  ::closedir(d);
  return n;
}

/// Our children (alive or not yet reaped), at most `max` of them.
int list_children(pid_t* out, int max) {
  static char text[kMaxListed * 12];
  char path[64];
  const pid_t self = ::getpid();
  std::snprintf(path, sizeof path, "/proc/%d/task/%d/children", self, self);
  if (!read_small(path, text, sizeof text)) return scan_children(out, max);
  int n = 0;
  for (char* p = text; n < max;) {
    char* end = nullptr;
    long pid = std::strtol(p, &end, 10);
    if (end == p) break;
    out[n++] = static_cast<pid_t>(pid);
    p = end;
  }
  return n;
}

void kill_cgroup(int cgroup) {
  if (cgroup < 0) return;
  int fd = ::openat(cgroup, "cgroup.kill", O_WRONLY | O_CLOEXEC);
  if (fd < 0) return;  // the children's SIGKILLs below still reach the tree
  ssize_t rc = ::write(fd, "1", 1);
  (void)rc;
  ::close(fd);
}

}  // namespace

void reap_others(pid_t keep) {
  static pid_t kids[kMaxListed];
  int n = list_children(kids, kMaxListed);
  for (int i = 0; i < n; ++i) {
    if (kids[i] == keep) continue;
    int st;
    while (::waitpid(kids[i], &st, WNOHANG) < 0 && errno == EINTR) {
    }
  }
}

void kill_everything(Job& job) {
  static pid_t kids[kMaxListed];
  kill_cgroup(job.cgroup);
  // Its group is pinned: the consumer, its leader, is our child, unreaped.
  if (job.consumer > 0) ::kill(-job.consumer, SIGKILL);
  for (;;) {
    int n = list_children(kids, kMaxListed);
    for (int i = 0; i < n; ++i) ::kill(kids[i], SIGKILL);
    int st = 0;
    pid_t pid = ::waitpid(-1, &st, 0);
    if (pid < 0 && errno == EINTR) continue;
    if (pid < 0) break;  // ECHILD: nobody is left
    if (pid == job.consumer) {
      if (!job.reported)
        report_exit(WIFSIGNALED(st), WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
      job.consumer = 0;
      job.reported = false;
    }
  }
}

}  // namespace guard
