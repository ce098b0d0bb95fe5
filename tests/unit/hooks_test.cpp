// SPDX-License-Identifier: GPL-3.0-or-later
// Hooks: which programs run for which event, what they find in their
// environment, and that a failing, missing or hanging hook changes nothing
// but a log line (a hanging one is killed with its whole process group).
#include "safespool/hooks.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>

#include "safespool/signals.hpp"
#include "test_util.hpp"

namespace safespool {
namespace {

using namespace std::chrono_literals;
using test::slurp;
using test::TempDir;

class HooksTest : public ::testing::Test {
 protected:
  /// DIR/name: a /bin/sh script with `body`, executable.
  std::string script(const std::string& name, const std::string& body) {
    std::string p = dir_ / name;
    std::ofstream(p) << "#!/bin/sh\n" << body << "\n";
    ::chmod(p.c_str(), 0755);
    return p;
  }
  /// A script that appends "NAME EVENT" to DIR/ran.
  std::string recorder(const std::string& name) {
    return script(name, "echo \"" + name + " $SAFESPOOL_EVENT\" >> '" + (dir_ / "ran") + "'");
  }
  std::string ran() const { return slurp(dir_ / "ran"); }

  TempDir dir_;
};

HookEvent failure_event() {
  HookEvent e;
  e.kind = HookEvent::Kind::Failure;
  e.queue = "/srv/queue";
  e.seq = 42;
  e.exit_status = 3;
  e.reason = "exit status 3\nsecond line\r\n";
  e.stderr_tail = "line one\nline two\n";
  e.job_env = {{"FSPL_SEQ", "42"}, {"FSPL_SET_ZFS_SNAPSHOT", "tank/fs@s1"}};
  return e;
}

TEST_F(HooksTest, RunsOnlyTheProgramsOfTheEventInOrder) {
  Hooks h;
  EXPECT_TRUE(h.empty());
  h.add(HookEvent::Kind::Success, recorder("s1"));
  h.add(HookEvent::Kind::Failure, recorder("f1"));
  h.add(HookEvent::Kind::Success, recorder("s2"));
  EXPECT_FALSE(h.empty());
  EXPECT_TRUE(h.has(HookEvent::Kind::Failure));
  EXPECT_FALSE(h.has(HookEvent::Kind::Blocked));
  HookEvent e;
  h.fire(e);
  EXPECT_EQ(ran(), "s1 success\ns2 success\n");
  e.kind = HookEvent::Kind::Blocked;
  h.fire(e);  // nothing registered
  e.kind = HookEvent::Kind::Failure;
  h.fire(e);
  EXPECT_EQ(ran(), "s1 success\ns2 success\nf1 failure\n");
}

TEST_F(HooksTest, EnvironmentHasTheEventTheJobAndTheProcessorsOwn) {
  ::setenv("SAFESPOOL_HOOKS_TEST_OUTER", "kept", 1);
  ::setenv("SAFESPOOL_SEQ", "stale", 1);  // inherited: replaced by the event's
  Hooks h;
  std::string out = dir_ / "env";
  h.add(HookEvent::Kind::Failure, script("dump", "env > '" + out + "'; cat > '" + out + ".in'"));
  h.fire(failure_event());
  ::unsetenv("SAFESPOOL_HOOKS_TEST_OUTER");
  ::unsetenv("SAFESPOOL_SEQ");
  std::string env = slurp(out);
  for (const char* line :
       {"SAFESPOOL_EVENT=failure\n", "SAFESPOOL_QUEUE=/srv/queue\n", "SAFESPOOL_SEQ=42\n",
        "SAFESPOOL_EXIT_STATUS=3\n", "SAFESPOOL_REASON=exit status 3 second line\n",
        "SAFESPOOL_STDERR_TAIL=line one\nline two\n", "FSPL_SEQ=42\n",
        "FSPL_SET_ZFS_SNAPSHOT=tank/fs@s1\n", "SAFESPOOL_HOOKS_TEST_OUTER=kept\n"})
    EXPECT_NE(env.find(line), std::string::npos) << "no " << line << " in:\n" << env;
  EXPECT_EQ(env.find("SAFESPOOL_SEQ=stale"), std::string::npos);
  EXPECT_EQ(slurp(out + ".in"), "") << "stdin is not /dev/null";
}

TEST_F(HooksTest, UnknownFieldsAreEmptyNotInherited) {
  auto env = Hooks::environment(HookEvent{HookEvent::Kind::Blocked,
                                          "/q",
                                          std::nullopt,
                                          std::nullopt,
                                          "blocked (conflict): x",
                                          "",
                                          {}},
                                {"SAFESPOOL_EXIT_STATUS=9", "PATH=/bin"});
  std::vector<std::string> want = {
      "SAFESPOOL_EXIT_STATUS=", "PATH=/bin",      "SAFESPOOL_EVENT=blocked",
      "SAFESPOOL_QUEUE=/q",     "SAFESPOOL_SEQ=", "SAFESPOOL_REASON=blocked (conflict): x",
      "SAFESPOOL_STDERR_TAIL="};
  EXPECT_EQ(env, want);
}

TEST_F(HooksTest, AFailingOrMissingHookDoesNotStopTheNext) {
  Hooks h;
  h.add(HookEvent::Kind::Failure, script("bad", "exit 7"));
  h.add(HookEvent::Kind::Failure, dir_ / "no-such-hook");
  h.add(HookEvent::Kind::Failure, script("noexec", "exit 0"));
  ::chmod((dir_ / "noexec").c_str(), 0644);
  h.add(HookEvent::Kind::Failure, recorder("last"));
  h.fire(failure_event());  // noexcept: a throw would end the test program
  EXPECT_EQ(ran(), "last failure\n");
}

bool gone(pid_t pid) {
  if (::kill(pid, 0) != 0) return true;
  // A zombie not yet reaped by whoever inherited it is dead too.
  std::string stat = slurp("/proc/" + std::to_string(pid) + "/stat");
  auto close = stat.rfind(')');
  return close == std::string::npos || stat.substr(close + 2, 1) == "Z";
}

TEST_F(HooksTest, AHangingHookIsKilledWithItsProcessGroup) {
  Hooks h;
  h.set_timeout(2s);  // room for a slow start of sh under load
  std::string pidfile = dir_ / "pid";
  // The hook leaves a background child that ignores SIGTERM: only a
  // SIGKILL to the whole group ends both.
  h.add(HookEvent::Kind::Blocked,
        script("hang", "trap '' TERM; sleep 1000 >/dev/null 2>&1 & echo $! > '" + pidfile +
                           ".tmp'; mv '" + pidfile + ".tmp' '" + pidfile + "'; wait"));
  h.add(HookEvent::Kind::Blocked, recorder("after"));
  HookEvent e;
  e.kind = HookEvent::Kind::Blocked;
  h.fire(e);
  EXPECT_EQ(ran(), "after blocked\n");
  ASSERT_TRUE(test::eventually([&] { return !slurp(pidfile).empty(); }));
  pid_t grandchild = std::atoi(slurp(pidfile).c_str());
  ASSERT_GT(grandchild, 0);
  EXPECT_TRUE(test::eventually([&] { return gone(grandchild); }))
      << "the hook's background child " << grandchild << " survived";
  ::kill(grandchild, SIGKILL);  // when it did: not left behind
}

// In a child process of its own: the interrupt it takes stays taken.
TEST_F(HooksTest, AnInterruptStopsTheRunningHookAndTheRest) {
  Hooks h;
  h.set_timeout(60s);  // far longer than the test may take
  // The hook asks its parent, the processor, to stop (as systemd would),
  // then hangs; the hook after it must not start.
  h.add(HookEvent::Kind::Failure,
        script("stop", "kill -TERM $PPID; exec sleep 1000 >/dev/null 2>&1"));
  h.add(HookEvent::Kind::Failure, recorder("after"));
  EXPECT_EXIT(
      {
        install_interrupt_fd();
        h.fire(failure_event());
        std::_Exit(interrupted() == SIGTERM && ran().empty() ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
  EXPECT_EQ(ran(), "");
}

TEST(HookKind, Names) {
  EXPECT_STREQ(hook_kind_name(HookEvent::Kind::Success), "success");
  EXPECT_STREQ(hook_kind_name(HookEvent::Kind::Failure), "failure");
  EXPECT_STREQ(hook_kind_name(HookEvent::Kind::Blocked), "blocked");
}

}  // namespace
}  // namespace safespool
