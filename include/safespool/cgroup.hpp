// SPDX-License-Identifier: GPL-3.0-or-later
// Per-job cgroups (v2), to kill a consumer's whole tree at once.
//
// A process group does not hold a descendant that calls setsid(); a child
// subreaper (the guard) catches it only once its parent has died, one
// generation at a time. A cgroup holds every descendant, whatever it
// does, and writing "1" to its cgroup.kill (Linux 5.14) SIGKILLs all of
// them at once. So where our own cgroup v2 directory is writable — root
// on a machine whose cgroup2 hierarchy is ours, or a systemd unit with
// Delegate=yes — each consumer starts in a child cgroup of it,
// "safespool-PID-N" (PID: the processor's) that holds no other process:
// a new one, or the last job's when that job ended and left it empty. It
// is removed at the end of the run, or once it is empty.
//
// Our directory is found, never assumed: the cgroup2 mount from
// /proc/self/mountinfo (/sys/fs/cgroup on a unified layout,
// /sys/fs/cgroup/unified on a hybrid one) joined with our path from the
// "0::PATH" line of /proc/self/cgroup.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "safespool/fd.hpp"

namespace safespool {

/// Our cgroup v2 directory, from the text of /proc/self/mountinfo and
/// /proc/self/cgroup. Pure. nullopt, with the reason in `why`, when there
/// is no cgroup2 mount, no "0::" line, or our path is outside the mount.
std::optional<std::string> cgroup2_dir(std::string_view mountinfo, std::string_view proc_cgroup,
                                       std::string& why);

/// One job's cgroup, made empty. Move-only; the destructor removes it if
/// it is empty by then (a cgroup with processes in it cannot be removed).
class JobCgroup {
 public:
  JobCgroup(std::string path, Fd dir) : path_(std::move(path)), dir_(std::move(dir)) {}
  JobCgroup(JobCgroup&&) noexcept = default;
  JobCgroup& operator=(JobCgroup&&) noexcept = default;
  ~JobCgroup() { remove(); }

  const std::string& path() const { return path_; }
  /// The directory (O_DIRECTORY, O_CLOEXEC), for the guard.
  int fd() const { return dir_.get(); }
  /// cgroup.kill: SIGKILL to every process in it and below, at once.
  /// False when it could not be written.
  bool kill() const;
  /// Removes it; false while processes are in it (EBUSY). Idempotent.
  bool remove();
  /// Whether it can serve another job as if it were new: no process in
  /// it or below and not frozen (cgroup.events), no cgroup below
  /// (cgroup.stat), no controller enabled for children
  /// (cgroup.subtree_control), and none available to it
  /// (cgroup.controllers), so no limit a job may have set (memory.max, ...)
  /// exists. False when any of that cannot be read.
  bool reusable() const;

 private:
  std::string path_;
  Fd dir_;
  /// Its cgroup.events, .stat, .subtree_control and .controllers, opened
  /// when first asked: a reused cgroup is asked after every job.
  mutable Fd files_[4];
};

/// Where the per-job cgroups of this process are made.
class CgroupDir {
 public:
  /// Ours, when it is cgroup v2, we may make cgroups in it, and they have
  /// cgroup.kill (checked by making one). nullopt with the reason in `why`
  /// otherwise.
  static std::optional<CgroupDir> find(std::string& why);

  explicit CgroupDir(std::string path) : path_(std::move(path)) {}
  const std::string& path() const { return path_; }
  /// A new empty cgroup "safespool-PID-N". Throws SysError.
  JobCgroup make_job();
  /// Removes the job cgroups that processors now gone left behind, when
  /// they are empty (never another live processor's: PID is checked).
  void reclaim() const;

 private:
  std::string path_;
};

}  // namespace safespool
