// SPDX-License-Identifier: GPL-3.0-or-later
// Containment: a consumer's whole tree dies before our write end of its
// pipe closes — a descendant in a session of its own included — by the
// guard as child subreaper and by per-job cgroups, and when the guard
// itself is lost mid-job. Every case runs in each mode this machine
// allows (cgroups need a writable cgroup v2 directory: root here).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <thread>

#include "safespool/cgroup.hpp"
#include "safespool/error.hpp"
#include "safespool/guard.hpp"
#include "safespool/handoff.hpp"
#include "test_util.hpp"

extern char** environ;

namespace safespool {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Kind = HandoffResult::Kind;
using test::eventually;
using test::slurp;

/// `size` bytes, then nothing until cancelled: a payload that only an
/// abort ends.
class StalledReader : public Reader {
 public:
  explicit StalledReader(size_t size) : left_(size) {}
  size_t read(std::span<std::byte> buf) override {
    if (left_ == 0) {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return cancelled_; });
      return 0;  // the nastiest answer: looks like a clean end
    }
    size_t n = std::min(buf.size(), left_);
    std::memset(buf.data(), 'x', n);
    left_ -= n;
    return n;
  }
  void finish() override {}
  void cancel() override {
    std::lock_guard lock(mu_);
    cancelled_ = true;
    cv_.notify_all();
  }
  std::string describe() const override { return "stalled"; }

 private:
  size_t left_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool cancelled_ = false;
};

/// The modes this machine allows.
std::vector<Containment> modes() {
  std::string why;
  if (CgroupDir::find(why)) return {Containment::Subreaper, Containment::Cgroup};
  std::fprintf(stderr, "per-job cgroups not tested here: %s\n", why.c_str());
  return {Containment::Subreaper};
}

const char* name(Containment m) { return m == Containment::Cgroup ? "cgroup" : "subreaper"; }

/// True once `pid` is gone or a zombie.
bool gone(pid_t pid) {
  return eventually([&] {
    std::string stat = slurp("/proc/" + std::to_string(pid) + "/stat");
    auto p = stat.rfind(')');
    return p == std::string::npos || stat.substr(p + 2, 1) == "Z";
  });
}

class ContainmentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    opts_.grace = 1000ms;
    opts_.timeout = 20000ms;  // a bound for a run that would hang
    opts_.job_name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
  }
  /// A consumer running `argv` with our environment.
  static ConsumerSpec consumer(std::vector<std::string> argv) {
    ConsumerSpec c;
    c.argv = std::move(argv);
    for (char** e = environ; *e; ++e) c.env.push_back(*e);
    return c;
  }
  /// A consumer that first notes its cgroup in dir_/`note` (see
  /// cgroup_of()), then runs the shell words `then`.
  ConsumerSpec noting_cgroup(const char* note, const std::string& then = "") {
    return consumer({"/bin/sh", "-c",
                     "cat /proc/self/cgroup > '" + (dir_ / note).string() + "'" +
                         (then.empty() ? "" : "; " + then)});
  }
  /// tests/tools/session_escaper in a fresh directory: its child leaves
  /// the consumer's group and holds stdin.
  ConsumerSpec escaper(bool orphan) {
    fs::remove_all(dir_ / "run");
    fs::create_directory(dir_ / "run");
    ConsumerSpec c =
        consumer({std::string(SAFESPOOL_TOOLS) + "/session_escaper", (dir_ / "run").string()});
    if (orphan) c.argv.push_back("orphan");
    return c;
  }
  pid_t escaper_pid() {
    eventually([&] { return !slurp(dir_ / "run/escaper.pid").empty(); });
    std::string s = slurp(dir_ / "run/escaper.pid");
    return s.empty() ? 0 : std::stoi(s);
  }
  /// The escaper died without seeing EOF, in the cgroup of `mode`.
  void expect_killed_before_eof(pid_t escaper) {
    EXPECT_TRUE(gone(escaper)) << "a descendant in a session of its own survived";
    std::this_thread::sleep_for(100ms);
    EXPECT_FALSE(fs::exists(dir_ / "run/escaper.eof")) << slurp(dir_ / "run/escaper.eof");
  }
  HandoffResult run_stalled(Launcher& launcher, bool orphan, StalledReader& r) {
    PayloadSource p;
    p.stream = &r;
    return run_consumer(launcher, escaper(orphan), std::move(p), opts_);
  }

  test::TempDir tmp_{"contain"};
  fs::path dir_ = tmp_.path;
  HandoffOptions opts_;
};

TEST_F(ContainmentTest, TimeoutKillsADescendantThatLeftTheGroupBeforeItSeesEof) {
  for (Containment mode : modes()) {
    SCOPED_TRACE(name(mode));
    Launcher launcher(mode);
    ASSERT_EQ(launcher.mode(), mode);
    StalledReader r(1 << 20);
    opts_.timeout = 1000ms;
    auto res = run_stalled(launcher, false, r);
    EXPECT_EQ(res.kind, Kind::TimedOut) << res.describe();
    pid_t pid = escaper_pid();
    ASSERT_GT(pid, 0) << "the escaper never started";
    expect_killed_before_eof(pid);
  }
}

TEST_F(ContainmentTest, ConsumerQuittingWhileAnEscapedChildHoldsTheCutPayloadKillsIt) {
  for (Containment mode : modes()) {
    SCOPED_TRACE(name(mode));
    Launcher launcher(mode);
    StalledReader r(1 << 20);
    auto res = run_stalled(launcher, true, r);
    EXPECT_EQ(res.kind, Kind::Exited) << res.describe();
    pid_t pid = escaper_pid();
    ASSERT_GT(pid, 0) << "the escaper never started";
    expect_killed_before_eof(pid);
  }
}

/// The cgroup v2 path a consumer that ran `cat /proc/self/cgroup > FILE`
/// found itself in.
std::string cgroup_of(const fs::path& file) {
  std::string cg = slurp(file);
  auto at = cg.find("0::");
  if (at == std::string::npos) return "";
  return cg.substr(at + 3, cg.find('\n', at) - at - 3);
}

TEST_F(ContainmentTest, CleanJobsShareAJobCgroupThatIsRemovedWhenTheRunEnds) {
  std::string why;
  auto dir = CgroupDir::find(why);
  if (!dir) GTEST_SKIP() << why;
  std::string first, second;
  {
    Launcher launcher(Containment::Cgroup);
    for (const char* name : {"cg1", "cg2"}) {
      auto res = run_consumer(launcher, noting_cgroup(name), PayloadSource{}, opts_);
      EXPECT_TRUE(res.success()) << res.describe();
    }
    first = cgroup_of(dir_ / "cg1");
    second = cgroup_of(dir_ / "cg2");
    EXPECT_NE(first.find("/safespool-" + std::to_string(::getpid()) + "-"), std::string::npos)
        << first;
    EXPECT_EQ(first, second) << "an empty job cgroup serves the next job";
  }
  std::string job = dir->path() + first.substr(first.rfind('/'));
  EXPECT_FALSE(fs::exists(job)) << "the job's cgroup was left behind: " << job;
}

TEST_F(ContainmentTest, AJobThatLeavesAProcessBehindDoesNotPassItsCgroupOn) {
  std::string why;
  auto dir = CgroupDir::find(why);
  if (!dir) GTEST_SKIP() << why;
  Launcher launcher(Containment::Cgroup);
  ConsumerSpec c = noting_cgroup("cg1", "sleep 30 </dev/null >/dev/null 2>&1 & echo $! > '" +
                                            (dir_ / "left.pid").string() + "'");
  EXPECT_TRUE(run_consumer(launcher, c, PayloadSource{}, opts_).success());
  pid_t left = std::atoi(slurp(dir_ / "left.pid").c_str());
  ASSERT_GT(left, 0);
  EXPECT_TRUE(run_consumer(launcher, noting_cgroup("cg2"), PayloadSource{}, opts_).success());
  EXPECT_NE(cgroup_of(dir_ / "cg1"), cgroup_of(dir_ / "cg2"))
      << "the next job joined a cgroup with a process of the last one in it";
  ::kill(left, SIGKILL);
}

TEST_F(ContainmentTest, AJobThatMadeACgroupBelowItsOwnDoesNotPassItOn) {
  std::string why;
  auto dir = CgroupDir::find(why);
  if (!dir) GTEST_SKIP() << why;
  Launcher launcher(Containment::Cgroup);
  ConsumerSpec c = noting_cgroup(
      "cg1", "b=$(sed -n 's|^0::.*/||p' /proc/self/cgroup); mkdir '" + dir->path() + "'/$b/below");
  auto first = run_consumer(launcher, c, PayloadSource{}, opts_);
  EXPECT_TRUE(first.success()) << first.describe();
  std::string cg1 = cgroup_of(dir_ / "cg1");
  std::string job = dir->path() + cg1.substr(cg1.rfind('/'));
  ASSERT_TRUE(fs::is_directory(job + "/below")) << "the consumer could not make its cgroup";
  EXPECT_TRUE(run_consumer(launcher, noting_cgroup("cg2"), PayloadSource{}, opts_).success());
  EXPECT_NE(cg1, cgroup_of(dir_ / "cg2")) << "the next job joined a cgroup with a cgroup below";
  ::rmdir((job + "/below").c_str());
}

TEST_F(ContainmentTest, SubreaperModeMakesNoCgroup) {
  Launcher launcher(Containment::Subreaper);
  EXPECT_EQ(launcher.mode(), Containment::Subreaper);
  EXPECT_TRUE(run_consumer(launcher, noting_cgroup("cg"), PayloadSource{}, opts_).success());
  EXPECT_EQ(slurp(dir_ / "cg").find("safespool-"), std::string::npos) << slurp(dir_ / "cg");
}

TEST_F(ContainmentTest, GuardKilledMidJobFailsTheJobAndKillsTheTreeBeforeEof) {
  for (Containment mode : modes()) {
    SCOPED_TRACE(name(mode));
    Launcher launcher(mode);
    StalledReader r(1 << 20);
    PayloadSource p;
    p.stream = &r;
    ConsumerRun run = start_consumer(launcher, escaper(false), std::move(p), opts_);
    pid_t pid = escaper_pid();
    ASSERT_GT(pid, 0) << "the escaper never started";
    pid_t guard = launcher.guard_pid();
    ASSERT_EQ(::kill(guard, SIGKILL), 0);
    auto res = run.wait();
    EXPECT_EQ(res.kind, Kind::GuardLost) << res.describe();
    EXPECT_NE(res.message.find("safespool-guard " + std::to_string(guard) + " died"),
              std::string::npos)
        << res.message;
    EXPECT_LT(res.seconds, 10);
    expect_killed_before_eof(pid);
    EXPECT_EQ(launcher.guard_pid(), 0) << "the lost guard was not forgotten";
  }
}

TEST_F(ContainmentTest, GuardStoppedMidJobFailsTheJobInsteadOfHanging) {
  for (Containment mode : modes()) {
    SCOPED_TRACE(name(mode));
    Launcher launcher(mode);
    StalledReader r(1 << 20);
    PayloadSource p;
    p.stream = &r;
    ConsumerRun run = start_consumer(launcher, escaper(false), std::move(p), opts_);
    pid_t pid = escaper_pid();
    ASSERT_GT(pid, 0) << "the escaper never started";
    pid_t guard = launcher.guard_pid();
    ASSERT_EQ(::kill(guard, SIGSTOP), 0);
    auto res = run.wait();
    EXPECT_EQ(res.kind, Kind::GuardLost) << res.describe();
    EXPECT_NE(res.message.find("safespool-guard " + std::to_string(guard) + " was stopped"),
              std::string::npos)
        << res.message;
    EXPECT_LT(res.seconds, 10);
    expect_killed_before_eof(pid);
    EXPECT_TRUE(gone(guard)) << "the stopped guard was left behind";
  }
  int st;
  EXPECT_LE(::waitpid(-1, &st, WNOHANG), 0) << "an unreaped child is left";
}

TEST(CgroupPath, FromMountinfoAndProcCgroup) {
  std::string why;
  const std::string hybrid =
      "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
      "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
      "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
  EXPECT_EQ(cgroup2_dir(hybrid, "4:memory:/x\n0::/\n", why), "/sys/fs/cgroup/unified");
  const std::string unified = "29 23 0:26 / /sys/fs/cgroup rw shared:4 - cgroup2 cgroup2 rw\n";
  EXPECT_EQ(cgroup2_dir(unified, "0::/system.slice/safespool-process@q.service\n", why),
            "/sys/fs/cgroup/system.slice/safespool-process@q.service");
  const std::string spaced = "29 23 0:26 / /mnt/c\\040g rw - cgroup2 cgroup2 rw\n";
  EXPECT_EQ(cgroup2_dir(spaced, "0::/a\n", why), "/mnt/c g/a");
  const std::string rooted = "29 23 0:26 /a /mnt/cg rw - cgroup2 cgroup2 rw\n";
  EXPECT_EQ(cgroup2_dir(rooted, "0::/a/b\n", why), "/mnt/cg/b");
  EXPECT_EQ(cgroup2_dir(rooted, "0::/ab\n", why), std::nullopt);
  EXPECT_NE(why.find("outside"), std::string::npos) << why;
  EXPECT_EQ(cgroup2_dir("31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n", "0::/\n", why),
            std::nullopt);
  EXPECT_EQ(why, "no cgroup2 file system is mounted");
  EXPECT_EQ(cgroup2_dir(unified, "1:name=systemd:/\n", why), std::nullopt);
}

}  // namespace
}  // namespace safespool
