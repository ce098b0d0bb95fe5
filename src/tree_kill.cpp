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

/// Whether process `pid` has a descriptor whose link reads `link`.
bool holds(const std::string& pid, const std::string& link) {
  const std::string dir = "/proc/" + pid + "/fd/";
  char buf[64];
  for (const auto& fd : numeric_entries(dir)) {
    ssize_t n = ::readlink((dir + fd).c_str(), buf, sizeof buf);
    if (n == static_cast<ssize_t>(link.size()) && link.compare(0, link.size(), buf, n) == 0)
      return true;
  }
  return false;
}

/// SIGKILL through a pidfd, once the process is confirmed to hold `link`.
void kill_holder(const std::string& pid, const std::string& link) {
  Fd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, std::atoi(pid.c_str()), 0)));
  if (pidfd && holds(pid, link)) ::syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0);
}

/// The state letter of `pid` ('Z': a zombie; 0: gone).
char state_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), {});
  auto p = stat.rfind(')');
  return p == std::string::npos || p + 2 >= stat.size() ? 0 : stat[p + 2];
}

}  // namespace

void kill_pipe_holders(int write_end) {
  struct stat st {};
  if (write_end < 0 || ::fstat(write_end, &st) != 0 || !S_ISFIFO(st.st_mode)) return;
  const std::string link = "pipe:[" + std::to_string(st.st_ino) + "]";
  const std::string self = std::to_string(::getpid());
  for (const auto& pid : numeric_entries("/proc")) {
    if (pid != self && holds(pid, link)) kill_holder(pid, link);
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
