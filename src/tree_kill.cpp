// SPDX-License-Identifier: GPL-3.0-or-later
#include "tree_kill.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "safespool/fd.hpp"

namespace safespool {
namespace {

/// The numeric entries of directory `path` (pids, fds).
std::vector<std::string> numeric_entries(const std::string& path) {
  std::vector<std::string> out;
  DIR* d = ::opendir(path.c_str());
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] >= '0' && e->d_name[0] <= '9') out.emplace_back(e->d_name);
  }
  ::closedir(d);
  return out;
}

/// An open file, as the kernel knows it.
struct OpenFile {
  dev_t dev;
  ino_t ino;
  bool stdin_only;  ///< a job file: only a holder's fd 0 counts
};

/// Whether process `pid` holds `f` (through /proc/PID/fd, which stat()
/// follows to the open file itself: a pipe or a regular file alike).
bool holds(const std::string& pid, const OpenFile& f) {
  const std::string dir = "/proc/" + pid + "/fd/";
  const std::vector<std::string> fds =
      f.stdin_only ? std::vector<std::string>{"0"} : numeric_entries(dir);
  for (const auto& fd : fds) {
    struct stat st {};
    if (::stat((dir + fd).c_str(), &st) == 0 && st.st_dev == f.dev && st.st_ino == f.ino)
      return true;
  }
  return false;
}

/// SIGKILL through a pidfd, once the process is confirmed to hold `f`.
void kill_holder(const std::string& pid, const OpenFile& f) {
  Fd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, std::atoi(pid.c_str()), 0)));
  if (pidfd && holds(pid, f)) ::syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0);
}

/// The state letter of `pid` ('Z': a zombie; 0: gone).
char state_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), {});
  auto p = stat.rfind(')');
  return p == std::string::npos || p + 2 >= stat.size() ? 0 : stat[p + 2];
}

}  // namespace

void kill_holders(int fd) {
  struct stat st {};
  if (fd < 0 || ::fstat(fd, &st) != 0 || !(S_ISFIFO(st.st_mode) || S_ISREG(st.st_mode))) return;
  const OpenFile f{st.st_dev, st.st_ino, S_ISREG(st.st_mode)};
  const std::string self = std::to_string(::getpid());
  for (const auto& pid : numeric_entries("/proc")) {
    if (pid != self && holds(pid, f)) kill_holder(pid, f);
  }
}

void kill_children_of(pid_t parent, int rounds) {
  const std::string path =
      "/proc/" + std::to_string(parent) + "/task/" + std::to_string(parent) + "/children";
  for (int round = 0; round < rounds; ++round) {
    std::ifstream in(path);
    bool alive = false;
    for (pid_t child; in >> child;) {
      if (state_of(child) == 'Z' || state_of(child) == 0) continue;
      ::kill(child, SIGKILL);
      alive = true;
    }
    if (!alive) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace safespool
