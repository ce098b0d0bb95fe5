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

class GuardTest : public ::testing::Test {
 protected:
  Child driver(std::vector<std::string> args) {
    SpawnSpec s;
    s.argv = {kDriver, dir_.string()};
    s.argv.insert(s.argv.end(), args.begin(), args.end());
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
  /// The consumer's group: led by its guard, not the driver's.
  pid_t guard_group(pid_t consumer, const Child& d) {
    pid_t pgid = pgrp_of(consumer);
    EXPECT_NE(pgid, d.pgid());
    std::string comm = slurp("/proc/" + std::to_string(pgid) + "/comm");
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
  std::string p = std::to_string(pgid) + "\n";
  EXPECT_EQ(slurp(dir_ / "pgrps"), p + p + p) << "the jobs did not share one guard";
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

/// SIGSTOPs `pid` and waits until it is stopped.
bool stop(pid_t pid) {
  return ::kill(pid, SIGSTOP) == 0 && eventually([&] { return stat_tail(pid)[0] == 'T'; });
}

/// True when the read end `fd` reports EOF within `ms`.
bool eof_within(int fd, int ms) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, ms) != 1) return false;
  char c;
  return ::read(fd, &c, 1) == 0;
}

TEST_F(GuardTest, HeldCopyKeepsThePipeOpenFromTheMomentItIsSent) {
  Guard g = Guard::start();
  Pipe p = make_pipe();
  // Stopped, the guard cannot receive: the copy stays in flight, in its
  // socket's queue, as when we die right after sending it.
  ASSERT_TRUE(stop(g.pgid()));
  ASSERT_TRUE(g.hold(p.write.get()));
  p.write.reset();
  EXPECT_FALSE(eof_within(p.read.get(), 200)) << "a copy in flight did not keep the pipe open";
  ASSERT_EQ(::kill(g.pgid(), SIGCONT), 0);
  EXPECT_FALSE(eof_within(p.read.get(), 200)) << "the guard did not keep its copy";
  ASSERT_TRUE(g.drop());
  EXPECT_TRUE(eof_within(p.read.get(), 5000)) << "'e' did not close the guard's copy";
  g.release();
  EXPECT_EQ(g.reap().describe(), "exit status 0");
}

/// Sends one protocol message the way the processor does, or a broken one.
bool send_message(int sock, const std::string& bytes, std::vector<int> fds) {
  iovec iov{const_cast<char*>(bytes.data()), bytes.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
  if (!fds.empty()) {
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  return ::sendmsg(sock, &msg, MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size());
}

/// A guard started the way Guard::start() does it, but with the test
/// holding the processor's end of the lifeline; its messages to stderr
/// are discarded.
Child raw_guard(Fd& ours) {
  int sv[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
  ours = Fd(sv[0]);
  Fd theirs(sv[1]), quiet(::open("/dev/null", O_WRONLY | O_CLOEXEC));
  SpawnSpec gs;
  gs.argv = {find_guard(guard_candidates())};
  gs.stdin_fd = theirs.get();
  gs.stderr_fd = quiet.get();
  return spawn(gs);
}

TEST_F(GuardTest, ProcessorDeathWithTheHoldStillInFlightIsNoEof) {
  Fd lifeline;
  Child g = raw_guard(lifeline);
  // The consumer: reads its pipe, and marks an EOF should it ever see one.
  Pipe p = make_pipe();
  SpawnSpec cs;
  cs.argv = {"/bin/sh", "-c", "cat > /dev/null; echo eof > '" + (dir_ / "marker").string() + "'"};
  cs.stdin_fd = p.read.get();
  cs.pgroup = g.pid();
  Child consumer = spawn(cs);
  p.read.reset();
  // The guard cannot receive yet; we send the hold and die at once: our
  // write end and our end of the lifeline close.
  ASSERT_TRUE(stop(g.pid()));
  ASSERT_TRUE(send_message(lifeline.get(), "h", {p.write.get()}));
  p.write.reset();
  lifeline.reset();
  std::this_thread::sleep_for(200ms);
  EXPECT_FALSE(fs::exists(dir_ / "marker")) << "a copy in flight did not keep the pipe open";
  ASSERT_EQ(::kill(g.pid(), SIGCONT), 0);
  EXPECT_EQ(consumer.wait().describe(), "killed by signal 9 (Killed)");
  EXPECT_EQ(g.wait().describe(), "killed by signal 9 (Killed)");
  EXPECT_FALSE(fs::exists(dir_ / "marker")) << "the consumer took our death for EOF";
}

TEST_F(GuardTest, GuardKillsItsGroupOnAnyBrokenMessage) {
  struct Case {
    const char* name;
    std::vector<std::pair<std::string, int>> messages;  // byte(s), fds attached
  };
  const std::vector<Case> cases = {
      {"second hold", {{"h", 1}, {"h", 1}}},
      {"release while holding", {{"h", 1}, {"r", 0}}},
      {"unknown byte", {{"x", 0}}},
      {"hold without a descriptor", {{"h", 0}}},
      {"two descriptors", {{"h", 2}}},
      {"descriptor with 'e'", {{"e", 1}}},
      {"two bytes", {{"ee", 0}}},
  };
  for (const auto& c : cases) {
    Fd ours;
    Child g = raw_guard(ours);
    SpawnSpec ms;
    ms.argv = {"sleep", "100"};
    ms.pgroup = g.pid();
    Child member = spawn(ms);
    Pipe p = make_pipe();
    for (const auto& [bytes, nfds] : c.messages)
      ASSERT_TRUE(send_message(ours.get(), bytes, std::vector<int>(nfds, p.write.get()))) << c.name;
    EXPECT_EQ(member.wait().describe(), "killed by signal 9 (Killed)") << c.name;
    EXPECT_EQ(g.wait().describe(), "killed by signal 9 (Killed)") << c.name;
  }
}

TEST_F(GuardTest, GuardIgnoresGroupSigtermAndExitsZeroWhenReleased) {
  Guard g = Guard::start();
  ::kill(-g.pgid(), SIGTERM);  // at once: the blocked-at-spawn window too
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(stat_tail(g.pgid()).substr(0, 1), "S") << "guard died of SIGTERM";
  g.release();
  EXPECT_EQ(g.reap().describe(), "exit status 0");
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
