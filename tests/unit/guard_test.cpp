// SPDX-License-Identifier: GPL-3.0-or-later
// Guard tests: the consumer dies with the processor, before it can take the
// processor's death for the end of the payload. The processor is played by
// tests/tools/handoff_driver, which the tests SIGKILL.
#include "safespool/guard.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "safespool/cgroup.hpp"
#include "safespool/error.hpp"
#include "safespool/handoff.hpp"
#include "safespool/spawn.hpp"
#include "test_util.hpp"

extern char** environ;

namespace safespool {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

const std::string kDriver = std::string(SAFESPOOL_TOOLS) + "/handoff_driver";

using test::eventually;
using test::slurp;

/// /proc/PID/stat after the command name: "S ppid pgrp ..." ("" when gone).
std::string stat_tail(pid_t pid) {
  std::string stat = slurp("/proc/" + std::to_string(pid) + "/stat");
  auto p = stat.rfind(')');
  return p == std::string::npos ? "" : stat.substr(p + 2);
}

pid_t pgrp_of(pid_t pid) {
  int ppid = 0, pgrp = 0;
  char state = 0;
  std::sscanf(stat_tail(pid).c_str(), "%c %d %d", &state, &ppid, &pgrp);
  return pgrp;
}

pid_t parent_of(pid_t pid) {
  int ppid = 0;
  char state = 0;
  std::sscanf(stat_tail(pid).c_str(), "%c %d", &state, &ppid);
  return ppid;
}

/// Processes of group `pgid` that are alive (zombies do not count: they are
/// reparented and not ours to reap).
std::vector<pid_t> live_members(pid_t pgid) {
  std::vector<pid_t> out;
  for (const auto& e : fs::directory_iterator("/proc")) {
    pid_t pid = std::atoi(e.path().filename().c_str());
    if (pid <= 0) continue;
    std::string t = stat_tail(pid);
    if (!t.empty() && t[0] != 'Z' && pgrp_of(pid) == pgid) out.push_back(pid);
  }
  return out;
}

/// Bytes read so far by the group's members (/proc/PID/io rchar), at most.
long long max_rchar(pid_t pgid) {
  long long best = 0;
  for (pid_t pid : live_members(pgid)) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/io");
    std::string key;
    long long v = 0;
    while (in >> key >> v)
      if (key == "rchar:") best = std::max(best, v);
  }
  return best;
}

/// Bytes `pid` has read so far (/proc/PID/io rchar; 0 when gone).
long long rchar(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/io");
  std::string key;
  long long v = 0;
  while (in >> key >> v)
    if (key == "rchar:") return v;
  return 0;
}

class GuardTest : public ::testing::Test {
 protected:
  /// The driver, with `env` added to our environment.
  Child driver(std::vector<std::string> args, std::vector<std::string> env = {}) {
    SpawnSpec s;
    s.argv = {kDriver, dir_.string()};
    for (auto& a : args)
      if (!a.empty()) s.argv.push_back(a);
    for (char** e = environ; *e; ++e) env.emplace_back(*e);
    s.env = env;
    return spawn(s);
  }
  /// The consumer's pid once it has started (0 after 5 s).
  pid_t consumer_pid() {
    eventually([&] { return !slurp(dir_ / "consumer.pid").empty(); });
    std::string s = slurp(dir_ / "consumer.pid");
    return s.empty() ? 0 : std::stoi(s);
  }
  /// SIGKILLs the driver (only it: as the OOM killer would), then checks
  /// that the consumer's whole group followed and never saw EOF.
  void kill_driver_and_check(Child& d, pid_t pgid) {
    ASSERT_EQ(::kill(d.pid(), SIGKILL), 0);
    EXPECT_EQ(d.wait().describe(), "killed by signal 9 (Killed)");
    EXPECT_TRUE(eventually([&] { return live_members(pgid).empty(); }))
        << "the consumer outlived the processor";
    std::this_thread::sleep_for(200ms);
    EXPECT_FALSE(fs::exists(dir_ / "marker")) << "the consumer took our death for EOF";
  }
  /// The consumer's group: its own, not the driver's; its parent: its guard.
  pid_t guard_group(pid_t consumer, const Child& d) {
    pid_t pgid = pgrp_of(consumer);
    EXPECT_EQ(pgid, consumer);
    EXPECT_NE(pgid, d.pgid());
    std::string comm = slurp("/proc/" + std::to_string(parent_of(consumer)) + "/comm");
    EXPECT_EQ(comm, "safespool-guard\n");
    return pgid;
  }

  test::TempDir tmp_{"guard_test"};
  fs::path dir_ = tmp_.path;
};

TEST_F(GuardTest, ProcessorKilledMidStreamTakesTheConsumerWithIt) {
  Child d = driver({"stream"});
  pid_t consumer = consumer_pid();
  ASSERT_GT(consumer, 0) << "consumer never started";
  pid_t pgid = guard_group(consumer, d);
  // Mid-stream for sure: the consumer's cat has read a good amount.
  ASSERT_TRUE(eventually([&] { return max_rchar(pgid) > (8 << 20); })) << "no bytes flowed";
  kill_driver_and_check(d, pgid);
}

TEST_F(GuardTest, ProcessorKilledWhileConsumerReadsAFileLeavesNoOrphan) {
  Child d = driver({"file", "1000"});  // 50 s of reading at 50 ms a line
  pid_t consumer = consumer_pid();
  ASSERT_GT(consumer, 0) << "consumer never started";
  pid_t pgid = guard_group(consumer, d);
  std::this_thread::sleep_for(300ms);
  kill_driver_and_check(d, pgid);
}

TEST_F(GuardTest, ProcessorKilledAfterEofStillTakesTheWorkingConsumer) {
  // A consumer that goes on working after a complete payload (zfs receive
  // applying it) must not outlive us either: the next run repeats the job.
  Child d = driver({"stream", std::to_string(4 << 20), "100"});
  ASSERT_TRUE(eventually([&] { return fs::exists(dir_ / "marker"); })) << "no EOF";
  pid_t pgid = guard_group(consumer_pid(), d);
  ASSERT_EQ(::kill(d.pid(), SIGKILL), 0);
  d.wait();
  EXPECT_TRUE(eventually([&] { return live_members(pgid).empty(); }))
      << "the consumer outlived the processor";
  EXPECT_FALSE(fs::exists(dir_ / "done"));
}

TEST_F(GuardTest, CompletePayloadStillReachesEofThroughTheGuard) {
  Child d = driver({"stream", std::to_string(16 << 20)});
  ExitStatus st = d.wait();
  EXPECT_TRUE(st.success()) << st.describe();
  EXPECT_EQ(slurp(dir_ / "marker"), "eof\n");
}

TEST_F(GuardTest, ProcessorKilledBetweenHoldAndFirstByteOfALaterJob) {
  // Three jobs through one guard, then a fourth whose pipe the guard holds
  // while not a byte has entered it: our death must not be its EOF.
  Child d = driver({"held", "3"});
  pid_t consumer = consumer_pid();
  ASSERT_GT(consumer, 0) << "consumer never started";
  pid_t pgid = guard_group(consumer, d);
  std::string p = std::to_string(parent_of(consumer)) + "\n";
  EXPECT_EQ(slurp(dir_ / "parents"), p + p + p) << "the jobs did not share one guard";
  std::this_thread::sleep_for(100ms);
  kill_driver_and_check(d, pgid);
}

TEST_F(GuardTest, ProcessorKilledBetweenHoldAndFirstByteOfTheFirstJob) {
  Child d = driver({"held", "0"});
  pid_t consumer = consumer_pid();
  ASSERT_GT(consumer, 0) << "consumer never started";
  pid_t pgid = guard_group(consumer, d);
  kill_driver_and_check(d, pgid);
}

TEST_F(GuardTest, ProcessorKilledMidStreamTakesADescendantThatLeftTheGroup) {
  std::string why;
  std::vector<std::string> modes = {"SAFESPOOL_CGROUP=off"};       // the subreaper alone
  if (CgroupDir::find(why)) modes.push_back("SAFESPOOL_CGROUP=");  // per-job cgroups
  for (const auto& mode : modes) {
    SCOPED_TRACE(mode);
    fs::remove(dir_ / "escaper.pid");
    Child d = driver({"escape"}, {mode});
    ASSERT_TRUE(eventually([&] { return !slurp(dir_ / "escaper.pid").empty(); }))
        << "the escaper never started";
    pid_t escaper = std::stoi(slurp(dir_ / "escaper.pid"));
    std::string cgroup = slurp("/proc/" + std::to_string(escaper) + "/cgroup");
    EXPECT_EQ(cgroup.find("/safespool-") != std::string::npos, mode.back() == '=') << cgroup;
    ASSERT_TRUE(eventually([&] { return rchar(escaper) > (8 << 20); })) << "no bytes flowed";
    ASSERT_EQ(::kill(d.pid(), SIGKILL), 0);
    d.wait();
    EXPECT_TRUE(eventually([&] {
      return stat_tail(escaper).empty() || stat_tail(escaper)[0] == 'Z';
    })) << "a descendant in its own session outlived the processor";
    std::this_thread::sleep_for(200ms);
    EXPECT_FALSE(fs::exists(dir_ / "escaper.eof"))
        << "it took our death for EOF: " << slurp(dir_ / "escaper.eof");
  }
}

TEST_F(GuardTest, GuardIgnoresGroupSigtermAndExitsZeroWhenReleased) {
  Guard g = Guard::start();
  ::kill(-g.pid(), SIGTERM);  // at once: the blocked-at-spawn window too
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(stat_tail(g.pid()).substr(0, 1), "S") << "guard died of SIGTERM";
  g.release();
  EXPECT_EQ(g.reap().describe(), "exit status 0");
}

TEST_F(GuardTest, MeanwhileWorkRunsOnceForTheNextStartOnly) {
  Launcher launcher;
  int ran = 0;
  launcher.meanwhile([&] { ++ran; });
  ConsumerSpec c;
  c.argv = {"/bin/sh", "-c", "echo ran >> '" + (dir_ / "ran").string() + "'"};
  for (char** e = environ; *e; ++e) c.env.push_back(*e);
  EXPECT_TRUE(run_consumer(launcher, c, PayloadSource{}, HandoffOptions{}).success());
  EXPECT_EQ(ran, 1);
  EXPECT_TRUE(run_consumer(launcher, c, PayloadSource{}, HandoffOptions{}).success());
  EXPECT_EQ(ran, 1) << "the work was done again for a later consumer";
  EXPECT_EQ(slurp(dir_ / "ran"), "ran\nran\n");
}

TEST_F(GuardTest, GuardRefusesToRunOutsideAGroupItLeads) {
  // In a group of its own (sh leads it), so a broken check hurts nobody else.
  std::string guard = find_guard(guard_candidates());
  SpawnSpec s;
  s.argv = {"/bin/sh", "-c",
            "true | '" + guard + "' 2>/dev/null; echo $? > '" + (dir_ / "rc").string() + "'"};
  Child c = spawn(s);
  EXPECT_TRUE(c.wait().success());
  EXPECT_EQ(slurp(dir_ / "rc"), "64\n");
}

TEST_F(GuardTest, MissingGuardIsAClearError) {
  try {
    find_guard({"/nonexistent/a/safespool-guard", "/nonexistent/b/safespool-guard"});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.exit_code(), kExitUnavailable);
    std::string m = e.what();
    EXPECT_NE(m.find("cannot find safespool-guard"), std::string::npos) << m;
    EXPECT_NE(m.find("/nonexistent/a/safespool-guard, /nonexistent/b/"), std::string::npos) << m;
  }
  ::setenv("SAFESPOOL_GUARD", "/nonexistent/safespool-guard", 1);
  ConsumerSpec c;
  c.argv = {"/bin/sh", "-c", "echo ran > '" + (dir_ / "ran").string() + "'"};
  EXPECT_THROW(run_consumer(c, PayloadSource{}, HandoffOptions{}), Error);
  ::unsetenv("SAFESPOOL_GUARD");
  EXPECT_FALSE(fs::exists(dir_ / "ran")) << "a consumer ran without a guard";
}

TEST_F(GuardTest, BuildTreeGuardIsFoundWithoutConfiguration) {
  ::unsetenv("SAFESPOOL_GUARD");
  std::string path = find_guard(guard_candidates());
  EXPECT_EQ(fs::path(path).filename(), "safespool-guard") << path;
}

}  // namespace
}  // namespace safespool
