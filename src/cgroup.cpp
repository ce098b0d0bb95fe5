// SPDX-License-Identifier: GPL-3.0-or-later
#include "safespool/cgroup.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <vector>

#include "safespool/error.hpp"

namespace safespool {
namespace {

constexpr std::string_view kPrefix = "safespool-";

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  for (size_t start = 0;;) {
    size_t end = s.find(sep, start);
    out.push_back(s.substr(start, end - start));
    if (end == std::string_view::npos) return out;
    start = end + 1;
  }
}

/// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      out += static_cast<char>(std::strtol(std::string(s.substr(i + 1, 3)).c_str(), nullptr, 8));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

/// The root and mount point of the first cgroup2 mount in mountinfo.
std::optional<std::pair<std::string, std::string>> cgroup2_mount(std::string_view mountinfo) {
  for (std::string_view line : split(mountinfo, '\n')) {
    size_t dash = line.find(" - ");
    if (dash == std::string_view::npos) continue;
    auto after = split(line.substr(dash + 3), ' ');
    auto before = split(line.substr(0, dash), ' ');
    if (after.empty() || after[0] != "cgroup2" || before.size() < 5) continue;
    return std::pair(unescape(before[3]), unescape(before[4]));
  }
  return std::nullopt;
}

std::string slurp_file(const char* path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

/// Whether the processor whose pid a job cgroup's name carries still runs.
bool owner_alive(std::string_view name) {
  std::string_view rest = name.substr(kPrefix.size());
  pid_t pid = static_cast<pid_t>(std::atol(std::string(rest.substr(0, rest.find('-'))).c_str()));
  return pid <= 0 || ::kill(pid, 0) == 0 || errno != ESRCH;
}

}  // namespace

std::optional<std::string> cgroup2_dir(std::string_view mountinfo, std::string_view proc_cgroup,
                                       std::string& why) {
  auto mount = cgroup2_mount(mountinfo);
  if (!mount) {
    why = "no cgroup2 file system is mounted";
    return std::nullopt;
  }
  std::optional<std::string> path;
  for (std::string_view line : split(proc_cgroup, '\n')) {
    if (line.starts_with("0::")) path = std::string(line.substr(3));
  }
  if (!path) {
    why = "this process has no cgroup v2 path";
    return std::nullopt;
  }
  const auto& [root, point] = *mount;
  if (root != "/" &&
      !(path->starts_with(root) && (path->size() == root.size() || (*path)[root.size()] == '/'))) {
    why = "our cgroup " + *path + " is outside the cgroup2 mount at " + point;
    return std::nullopt;
  }
  std::string rel = root == "/" ? *path : path->substr(root.size());
  while (!rel.empty() && rel.back() == '/') rel.pop_back();
  return point + rel;
}

bool JobCgroup::kill() const {
  if (!dir_) return false;
  Fd k(::openat(dir_.get(), "cgroup.kill", O_WRONLY | O_CLOEXEC));
  return k && ::write(k.get(), "1", 1) == 1;
}

namespace {

constexpr const char* kReuseFiles[] = {"cgroup.events", "cgroup.stat", "cgroup.subtree_control",
                                       "cgroup.controllers"};

/// The text of a small cgroup file through `fd`, opened from `dir` as
/// `name` when not yet; nullopt when it cannot be read.
std::optional<std::string> read_cgroup_file(int dir, const char* name, Fd& fd) {
  if (!fd) fd.reset(::openat(dir, name, O_RDONLY | O_CLOEXEC));
  char buf[4096];  // cgroup.stat grows with every controller the kernel has
  ssize_t n = fd ? ::pread(fd.get(), buf, sizeof buf, 0) : -1;
  if (n < 0 || n == static_cast<ssize_t>(sizeof buf)) return std::nullopt;
  return std::string(buf, static_cast<size_t>(n));
}

bool has_line(const std::string& text, std::string_view line) {
  for (std::string_view l : split(text, '\n'))
    if (l == line) return true;
  return false;
}

}  // namespace

bool JobCgroup::reusable() const {
  if (!dir_) return false;
  std::optional<std::string> text[4];
  for (int i = 0; i < 4; ++i) {
    text[i] = read_cgroup_file(dir_.get(), kReuseFiles[i], files_[i]);
    if (!text[i]) return false;
  }
  auto blank = [](const std::string& s) { return s.find_first_not_of(" \n") == std::string::npos; };
  return has_line(*text[0], "populated 0") && has_line(*text[0], "frozen 0") &&
         has_line(*text[1], "nr_descendants 0") && blank(*text[2]) && blank(*text[3]);
}

bool JobCgroup::remove() {
  if (!dir_) return true;
  for (Fd& f : files_) f.reset();
  if (::rmdir(path_.c_str()) != 0 && errno != ENOENT) return false;
  dir_.reset();
  return true;
}

std::optional<CgroupDir> CgroupDir::find(std::string& why) {
  auto dir = cgroup2_dir(slurp_file("/proc/self/mountinfo"), slurp_file("/proc/self/cgroup"), why);
  if (!dir) return std::nullopt;
  CgroupDir cg(*dir);
  try {
    JobCgroup probe = cg.make_job();
    struct stat st {};
    if (::fstatat(probe.fd(), "cgroup.kill", &st, 0) != 0) {
      why = "cgroups in " + *dir + " have no cgroup.kill (Linux before 5.14)";
      return std::nullopt;
    }
  } catch (const SysError& e) {
    why = e.what();
    return std::nullopt;
  }
  return cg;
}

JobCgroup CgroupDir::make_job() {
  static std::atomic<unsigned> counter{0};  // per process: several launchers may run
  std::string path = path_ + "/" + std::string(kPrefix) + std::to_string(::getpid()) + "-" +
                     std::to_string(++counter);
  if (::mkdir(path.c_str(), 0755) != 0) throw_errno("cannot make cgroup " + path);
  Fd dir(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) {
    int err = errno;
    ::rmdir(path.c_str());
    throw SysError("cannot open cgroup " + path, err);
  }
  return JobCgroup(std::move(path), std::move(dir));
}

void CgroupDir::reclaim() const {
  DIR* d = ::opendir(path_.c_str());
  if (!d) return;
  while (dirent* e = ::readdir(d)) {
    std::string_view name = e->d_name;
    if (!name.starts_with(kPrefix) || owner_alive(name)) continue;
    ::rmdir((path_ + "/" + std::string(name)).c_str());  // fails (EBUSY) unless empty
  }
  ::closedir(d);
}

}  // namespace safespool
