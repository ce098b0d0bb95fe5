// SPDX-License-Identifier: GPL-3.0-or-later
// The run's Launcher: one guard for a run of consumers, the per-job
// cgroups, and killing a consumer's whole tree — by the guard when it can,
// from here when it cannot. See include/safespool/guard.hpp and
// docs/design/handoff.md, "The guard".
#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "safespool/error.hpp"
#include "safespool/guard.hpp"
#include "tree_kill.hpp"

namespace safespool {
namespace {

/// How long the guard may take to answer a start (it forks and execs).
constexpr int kStartBoundMs = 30000;
/// How long the guard may take to kill and reap a tree before we do it.
constexpr int kKillBoundMs = 5000;
/// Rounds of kill_children_of() for a stopped guard's children.
constexpr int kStoppedGuardRounds = 100;

/// The containment asked for, after $SAFESPOOL_CGROUP.
Containment asked(Containment mode, std::string& why) {
  const char* env = std::getenv("SAFESPOOL_CGROUP");
  if (mode == Containment::Auto && env && std::strcmp(env, "off") == 0) {
    why = "SAFESPOOL_CGROUP=off";
    return Containment::Subreaper;
  }
  return mode;
}

/// Waits up to `bound_ms` for the guard to exit, taking what it reports.
bool await_exit(Guard& g, int bound_ms, std::optional<ExitStatus>& status) {
  auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(bound_ms);
  for (;;) {
    if (auto st = g.take_exit()) status = st;
    if (g.gone()) break;
    if (std::chrono::steady_clock::now() >= end) return false;
    pollfd p[2] = {{g.pidfd(), POLLIN, 0}, {g.lifeline(), POLLIN, 0}};
    ::poll(p, g.hung_up() ? 1 : 2, 50);
  }
  if (auto st = g.take_exit()) status = st;
  return true;
}

}  // namespace

Launcher::Launcher(Containment mode) {
  std::string why;
  mode = asked(mode, why);
  if (mode != Containment::Subreaper) cgroups_ = CgroupDir::find(why);
  if (!cgroups_ && mode == Containment::Cgroup)
    throw Error("per-job cgroups are not available: " + why, kExitUnavailable);
  if (cgroups_) {
    spdlog::debug(
        "consumers run in per-job cgroups under {} (cgroup.kill), their guard a subreaper",
        cgroups_->path());
    cgroups_->reclaim();
  } else {
    spdlog::debug(
        "consumers are contained by their guard as child subreaper (no per-job cgroups: {})", why);
  }
}

Launcher::~Launcher() {
  try {
    release();
  } catch (const std::exception& e) {
    spdlog::warn("cannot let the consumers' guard go: {}", e.what());
  }
}

Consumer Launcher::start(SpawnSpec spec, int write_end) {
  // A consumer started before never ended through consumer_ended() (an
  // exception): its tree may hold a copy of a cut payload's pipe.
  if (in_job_) {
    kill_tree(-1);
    consumer_ended(false);
  }
  return paths_.run(std::move(spec), [&](const SpawnSpec& s) { return start_once(s, write_end); });
}

/// One start, with one more try after a guard that was lost before it took
/// the order, with a new cgroup when a reused one refused the consumer, and
/// without a cgroup when a new one did.
Consumer Launcher::start_once(const SpawnSpec& spec, int write_end) {
  std::function<void()> meanwhile = std::exchange(meanwhile_, nullptr);
  for (int lost = 0;;) {
    Guard& guard = ready_guard();
    bool reused = make_job_cgroup();
    bool cgroup_failed = false;
    try {
      Consumer c =
          guard.consume({spec, write_end, job_cgroup_ ? job_cgroup_->fd() : -1, &meanwhile},
                        kStartBoundMs, &cgroup_failed);
      consumer_ = c.pid;
      in_job_ = true;
      return c;
    } catch (const GuardLost& e) {
      // It may have started the consumer before it was lost: the job's
      // cgroup, the pipe or the job file it reads find that consumer.
      kill_tree(write_end >= 0 ? write_end : spec.stdin_fd);
      // Not again with the same descriptors: a consumer that read part of
      // a job file moved the offset a second one would start from.
      if (e.delivered)
        throw Error(std::string(e.what()) +
                        "; what of the consumer it may have started could be found was killed, "
                        "and the job is not started again in this run",
                    kExitUnavailable);
      if (++lost > 1) throw Error(std::string(e.what()) + " twice", kExitUnavailable);
      spdlog::warn("{}; starting a new one", e.what());
    } catch (const SysError& e) {
      drop_cgroup();
      if (!cgroup_failed) throw;
      if (reused) {  // whatever the last job left in it, a new one has not
        spdlog::debug("{}; trying a new cgroup", e.what());
        continue;
      }
      spdlog::warn("{}; consumers of this run go without per-job cgroups", e.what());
      cgroups_.reset();
    }
  }
}

/// The job's cgroup, in cgroup mode: the last job's when that ended clean
/// and left it as a new one would be (JobCgroup::reusable(); a mkdir and
/// an rmdir less per job), else a new one; a run that cannot make one goes
/// on without (the subreaper still finds the tree). True when reused.
bool Launcher::make_job_cgroup() {
  if (!cgroups_) return false;
  if (spare_) {
    job_cgroup_ = std::move(spare_);
    spare_.reset();
    return true;
  }
  try {
    job_cgroup_ = cgroups_->make_job();
  } catch (const SysError& e) {
    spdlog::warn("{}; consumers of this run go without per-job cgroups", e.what());
    cgroups_.reset();
  }
  return false;
}

Guard& Launcher::ready_guard() {
  if (guard_ && guard_->gone()) forget(false, 0, "was gone; starting a new one");
  if (guard_ && guard_->stopped()) forget(false, 0, "was stopped; starting a new one");
  if (!guard_) {
    guard_ = Guard::start();
    spdlog::debug("started guard {}", guard_->pid());
  }
  return *guard_;
}

std::string Launcher::guard_trouble() const {
  if (!guard_) return "no safespool-guard runs";
  std::string who = "safespool-guard " + std::to_string(guard_->pid());
  if (guard_->gone()) return who + " died";
  if (guard_->stopped()) return who + " was stopped";
  return "";
}

void Launcher::payload_complete() {
  // A guard that does not take it is dealt with when the consumer ends.
  if (guard_) guard_->drop();
}

std::optional<ExitStatus> Launcher::kill_tree(int write_end) {
  std::optional<ExitStatus> status;
  // What can be killed at once, from here: the whole cgroup, the group.
  if (job_cgroup_) job_cgroup_->kill();
  if (consumer_ > 0) ::kill(-consumer_, SIGKILL);
  bool by_guard = guard_ && !guard_->gone() && !guard_->stopped() && guard_->kill_tree() &&
                  await_exit(*guard_, kKillBoundMs, status);
  if (!by_guard) {
    // Lost, stopped or too slow: its orphans may be out of its reach.
    if (guard_) kill_children_of(guard_->pid(), kStoppedGuardRounds);
    kill_holders(write_end);
    if (guard_) guard_->kill();
  }
  if (guard_) forget(by_guard, 2000, by_guard ? "killed the tree" : "could not kill the tree");
  drop_cgroup();
  consumer_ = 0;
  in_job_ = false;
  return status;
}

void Launcher::consumer_ended(bool clean) {
  if (!in_job_) return;
  in_job_ = false;
  consumer_ = 0;
  if (guard_ && clean && guard_->done()) {  // ready for the next one
    if (job_cgroup_ && job_cgroup_->reusable()) {
      spare_ = std::move(job_cgroup_);
      job_cgroup_.reset();
    }
    return drop_cgroup();
  }
  if (guard_) forget(false, 0, "did not take 'd'");
  drop_cgroup();
}

void Launcher::release() {
  if (in_job_) kill_tree(-1);
  spare_.reset();
  drop_cgroup();
  if (!guard_) return;
  guard_->release();
  ExitStatus st = guard_->reap();
  spdlog::debug("released guard {}: {}", guard_->pid(), st.describe());
  guard_.reset();
}

void Launcher::forget(bool expected, int bound_ms, const char* why) {
  if (!guard_) return;
  pid_t pid = guard_->pid();
  ExitStatus st = guard_->reap(bound_ms);
  if (expected)
    spdlog::debug("guard {} {}: {}", pid, why, st.describe());
  else
    spdlog::warn("safespool-guard {} {} ({})", pid, why, st.describe());
  guard_.reset();
}

void Launcher::drop_cgroup() {
  // A cgroup that still holds processes (what a clean job left behind,
  // killed ones that init has not reaped yet) is tried again at the next
  // job's end and at the end of the run; CgroupDir::reclaim() of a later
  // run removes what is left once it is empty.
  std::erase_if(lingering_, [](JobCgroup& cg) { return cg.remove(); });
  if (job_cgroup_ && !job_cgroup_->remove()) {
    spdlog::debug("cgroup {} is not empty yet; left for later", job_cgroup_->path());
    lingering_.push_back(std::move(*job_cgroup_));
  }
  job_cgroup_.reset();
}

}  // namespace safespool
