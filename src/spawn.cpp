// SPDX-License-Identifier: GPL-3.0-or-later
#include "safespool/spawn.hpp"

#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string_view>

#include "safespool/error.hpp"

extern char** environ;

namespace safespool {

std::string ExitStatus::describe() const {
  if (!signaled) return "exit status " + std::to_string(value);
  return "killed by signal " + std::to_string(value) + " (" + strsignal(value) + ")";
}

ExitStatus ExitStatus::from_wait_status(int status) {
  if (WIFSIGNALED(status)) return {true, WTERMSIG(status)};
  return {false, WEXITSTATUS(status)};
}

Child::Child(Child&& o) noexcept
    : pid_(std::exchange(o.pid_, -1)),
      pgid_(std::exchange(o.pgid_, -1)),
      pidfd_(std::move(o.pidfd_)),
      status_(o.status_) {}

Child& Child::operator=(Child&& o) noexcept {
  if (this != &o) {
    if (running()) terminate(0);
    pid_ = std::exchange(o.pid_, -1);
    pgid_ = std::exchange(o.pgid_, -1);
    pidfd_ = std::move(o.pidfd_);
    status_ = o.status_;
  }
  return *this;
}

Child::~Child() {
  if (running()) terminate(0);
}

void Child::kill_group(int sig) const {
  if (pgid_ > 0) ::kill(-pgid_, sig);
}

ExitStatus Child::wait() {
  if (status_) return *status_;
  int st = 0;
  while (::waitpid(pid_, &st, 0) < 0) {
    if (errno != EINTR) throw_errno("cannot wait for process " + std::to_string(pid_));
  }
  status_ = ExitStatus::from_wait_status(st);
  return *status_;
}

std::optional<ExitStatus> Child::try_wait() {
  if (status_ || pid_ <= 0) return status_;
  int st = 0;
  pid_t r = ::waitpid(pid_, &st, WNOHANG);
  if (r == pid_) status_ = ExitStatus::from_wait_status(st);
  return status_;
}

ExitStatus Child::terminate(int grace_ms) {
  if (!running()) return status_ ? *status_ : ExitStatus{};
  if (grace_ms > 0) {
    kill_group(SIGTERM);
    pollfd p{pidfd_.get(), POLLIN, 0};
    while (::poll(&p, 1, grace_ms) < 0 && errno == EINTR) {
    }
  }
  // SIGKILL the whole group while the leader is still unreaped (alive or a
  // zombie): its pid, hence the group id, cannot have been reused yet, and
  // grandchildren go too.
  kill_group(SIGKILL);
  return wait();
}

namespace {

struct FileActions {
  posix_spawn_file_actions_t fa;
  FileActions() { posix_spawn_file_actions_init(&fa); }
  ~FileActions() { posix_spawn_file_actions_destroy(&fa); }
};

struct Attr {
  posix_spawnattr_t a;
  Attr() { posix_spawnattr_init(&a); }
  ~Attr() { posix_spawnattr_destroy(&a); }
};

std::vector<char*> c_strings(const std::vector<std::string>& v) {
  std::vector<char*> out;
  out.reserve(v.size() + 1);
  for (const auto& s : v) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

void set_attributes(Attr& attr, const SpawnSpec& spec) {
  sigset_t all, mask;
  // Every bit, not sigfillset(): glibc's sigfillset leaves out its internal
  // signals 32 and 33, and posix_spawn then sets those to SIG_IGN in the
  // child, which exec keeps (SigIgn 0000000180000000 in the consumer).
  std::memset(&all, 0xff, sizeof all);
  sigemptyset(&mask);
  for (int sig : spec.blocked_signals) sigaddset(&mask, sig);
  posix_spawnattr_setsigdefault(&attr.a, &all);
  posix_spawnattr_setsigmask(&attr.a, &mask);
  // glibc calls setpgid() before the file actions, so a child joining a
  // group is in it while it still holds its copies of our fds.
  posix_spawnattr_setpgroup(&attr.a, spec.pgroup);
  posix_spawnattr_setflags(&attr.a,
                           POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
}

}  // namespace

Child spawn(const SpawnSpec& spec) {
  if (spec.argv.empty()) throw UsageError("no command given");
  FileActions fa;
  // dup2 onto itself is a no-op that would keep CLOEXEC; glibc's adddup2
  // with equal fds clears FD_CLOEXEC, which is what we want.
  posix_spawn_file_actions_adddup2(&fa.fa, spec.stdin_fd, 0);
  posix_spawn_file_actions_adddup2(&fa.fa, spec.stdout_fd, 1);
  posix_spawn_file_actions_adddup2(&fa.fa, spec.stderr_fd, 2);
  posix_spawn_file_actions_addclosefrom_np(&fa.fa, 3);

  Attr attr;
  set_attributes(attr, spec);

  auto argv = c_strings(spec.argv);
  std::vector<char*> envp;
  if (spec.env) envp = c_strings(*spec.env);
  char** env = spec.env ? envp.data() : environ;
  pid_t pid = -1;
  int rc = spec.path.empty()
               ? ::posix_spawnp(&pid, argv[0], &fa.fa, &attr.a, argv.data(), env)
               : ::posix_spawn(&pid, spec.path.c_str(), &fa.fa, &attr.a, argv.data(), env);
  if (rc != 0) throw SysError("cannot run '" + spec.argv[0] + "'", rc);
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) {
    int err = errno;
    // Only the child itself: a joined group holds others (its guard).
    ::kill(spec.pgroup > 0 ? pid : -pid, SIGKILL);
    int st;
    ::waitpid(pid, &st, 0);
    throw SysError("cannot watch process " + std::to_string(pid) + " (pidfd_open)", err);
  }
  // pidfd_open sets O_CLOEXEC by default.
  return Child(pid, Fd(pidfd), spec.pgroup);
}

std::string search_path(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  int err = ENOENT;
  if (!name.empty()) {
    const char* env = std::getenv("PATH");
    std::string_view dirs = env ? env : "/bin:/usr/bin";  // glibc's default
    for (size_t start = 0; start <= dirs.size();) {
      size_t end = std::min(dirs.find(':', start), dirs.size());
      std::string_view dir = dirs.substr(start, end - start);
      std::string file = (dir.empty() ? std::string(".") : std::string(dir)) + "/" + name;
      struct stat st {};
      // The test execve makes in effect: a directory or a file without x
      // permission for us is EACCES, and execvp goes on looking.
      if (::stat(file.c_str(), &st) == 0) {
        if (S_ISREG(st.st_mode) && ::access(file.c_str(), X_OK) == 0) return file;
        err = EACCES;
      }
      start = end + 1;
    }
  }
  throw SysError("cannot run '" + name + "'", err);
}

const std::string& CommandPaths::find(const std::string& name) {
  auto it = found_.find(name);
  if (it == found_.end()) it = found_.emplace(name, search_path(name)).first;
  return it->second;
}

}  // namespace safespool
