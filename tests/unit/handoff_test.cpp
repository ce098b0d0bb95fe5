// SPDX-License-Identifier: GPL-3.0-or-later
// Hand-off tests: real consumers (tests/tools/probe_consumer, sh), real
// pipes, real process groups. The probe reports what the consumer was
// handed; the tests check the hand-off invariant from that side.
#include "safespool/handoff.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include "safespool/error.hpp"
#include "safespool/signals.hpp"
#include "test_util.hpp"

extern char** environ;

namespace safespool {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Kind = HandoffResult::Kind;

const std::string kProbe = std::string(SAFESPOOL_TOOLS) + "/probe_consumer";

std::string random_bytes(size_t n) {
  std::mt19937_64 rng(n);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

std::string fnv_hex(const std::string& s) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

using test::slurp;

/// The value of `key=` in a probe report line ("" when absent).
std::string field(const std::string& line, const std::string& key) {
  auto pos = line.find(" " + key + "=");
  if (line.rfind(key + "=", 0) == 0)
    pos = 0;
  else if (pos != std::string::npos)
    ++pos;
  if (pos == std::string::npos) return "";
  auto start = pos + key.size() + 1;
  return line.substr(start, line.find_first_of(" \n", start) - start);
}

/// In-memory payload stream with the failure modes the hand-off must handle.
class MemReader : public Reader {
 public:
  explicit MemReader(std::string data) : data_(std::move(data)) {}
  std::string gate;           ///< before the first byte, wait for this file
  bool fail_finish = false;   ///< finish() throws (truncated stream)
  size_t fail_at = SIZE_MAX;  ///< read() throws once this many bytes were given
  size_t hang_at = SIZE_MAX;  ///< read() blocks here until cancel(), then returns 0
  size_t slow_until = 0;      ///< below this offset: 4 KiB reads, 200 us apart
  std::atomic<int> cancels{0}, reads{0};
  std::vector<std::pair<size_t, std::thread::id>> readers;  ///< offset, thread of each read

  size_t read(std::span<std::byte> buf) override {
    ++reads;
    readers.emplace_back(pos_, std::this_thread::get_id());
    if (pos_ == 0 && !gate.empty()) wait_for_gate();
    if (pos_ >= fail_at) throw FormatError("memory: corrupt block at " + std::to_string(pos_));
    if (pos_ >= hang_at) return hang();
    static const size_t chunks[] = {1000, 65536, 300000, 1 << 20, 7};
    size_t n = std::min(
        {buf.size(), data_.size() - pos_, chunks[reads % 5], fail_at - pos_, hang_at - pos_});
    if (pos_ < slow_until) n = std::min<size_t>(n, 4096);
    if (pos_ < slow_until) std::this_thread::sleep_for(200us);
    std::memcpy(buf.data(), data_.data() + pos_, n);
    pos_ += n;
    return n;
  }
  void finish() override {
    if (fail_finish) throw FormatError("memory: zstd frame truncated");
  }
  void cancel() override {
    std::lock_guard lock(mu_);
    ++cancels;
    cv_.notify_all();
  }
  std::string describe() const override { return "memory"; }

 private:
  void wait_for_gate() {
    for (int i = 0; i < 1000 && !fs::exists(gate); ++i) std::this_thread::sleep_for(10ms);
  }
  size_t hang() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return cancels > 0; });
    return 0;  // the nastiest answer: looks like a clean end
  }
  std::string data_;
  size_t pos_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
};

class HandoffTest : public ::testing::Test {
 protected:
  void SetUp() override {
    opts_.grace = 1000ms;
    opts_.job_name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
  }

  /// The probe with its report going to dir_/out.
  ConsumerSpec probe(std::vector<std::string> args = {}) {
    ConsumerSpec c;
    c.argv = {kProbe, "--out", out().string()};
    c.argv.insert(c.argv.end(), args.begin(), args.end());
    for (char** e = environ; *e; ++e) c.env.push_back(*e);
    return c;
  }
  ConsumerSpec shell(const std::string& script) {
    ConsumerSpec c = probe();
    c.argv = {"/bin/sh", "-c", "cd '" + dir_.string() + "' || exit 99; " + script};
    return c;
  }
  HandoffResult run_stream(const ConsumerSpec& c, MemReader& r) {
    PayloadSource p;
    p.stream = &r;
    return run(c, std::move(p));
  }
  /// Through the test's launcher when it has one, else a guard of its own.
  HandoffResult run(const ConsumerSpec& c, PayloadSource p) {
    if (launcher_) return run_consumer(*launcher_, c, std::move(p), opts_);
    return run_consumer(c, std::move(p), opts_);
  }
  fs::path out() const { return dir_ / "out"; }
  std::string report() const { return slurp(out()); }
  /// True once `pid` is gone or a zombie (reparented, so not ours to reap).
  static bool gone(pid_t pid) {
    for (int i = 0; i < 200; ++i) {
      std::string stat = slurp("/proc/" + std::to_string(pid) + "/stat");
      auto p = stat.rfind(')');
      if (p == std::string::npos || stat.substr(p + 2, 1) == "Z") return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }

  test::TempDir tmp_{"handoff_test"};
  fs::path dir_ = tmp_.path;
  HandoffOptions opts_;
  Launcher* launcher_ = nullptr;
};

TEST_F(HandoffTest, StreamPipeIsEmptyAndAlreadyMaxSizeWhenConsumerStarts) {
  std::string data = random_bytes(4 << 20);
  MemReader r(data);
  r.gate = (dir_ / "started").string();  // no byte until the probe looked
  auto res = run_stream(probe({"--started", r.gate}), r);
  std::string rep = report();
  EXPECT_TRUE(res.success()) << res.describe();
  EXPECT_EQ(res.bytes, data.size());
  EXPECT_EQ(field(rep, "fifo"), "1") << rep;
  EXPECT_EQ(field(rep, "waiting"), "0") << "bytes sat in the pipe before exec: " << rep;
  EXPECT_EQ(field(rep, "pipe_size"), std::to_string(target_pipe_size(0))) << rep;
  EXPECT_EQ(field(rep, "grew"), "0") << "a libzfs-style consumer had to grow: " << rep;
  EXPECT_EQ(field(rep, "bytes"), std::to_string(data.size())) << rep;
  EXPECT_EQ(field(rep, "fnv"), fnv_hex(data)) << rep;
}

TEST_F(HandoffTest, ProbeSeesAPipeLeftSmallAndConfiguredSizeIsUsed) {
  std::string data = random_bytes(3 << 20);
  MemReader r(data);
  opts_.pipe_size = 65536;
  auto res = run_stream(probe(), r);
  std::string rep = report();
  EXPECT_TRUE(res.success()) << res.describe();
  EXPECT_EQ(field(rep, "pipe_size"), "65536") << rep;
  EXPECT_EQ(field(rep, "grew"), "1") << rep;
  EXPECT_EQ(field(rep, "fnv"), fnv_hex(data)) << rep;
}

TEST_F(HandoffTest, PlainFileIsStdinPositionedAtThePayload) {
  std::string header = "*FILESPOOLER-not-really-a-header", data = random_bytes(2 << 20);
  std::ofstream(dir_ / "job") << header << data;
  PayloadSource p;
  p.file = Fd(::open((dir_ / "job").c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_EQ(::lseek(p.file.get(), static_cast<off_t>(header.size()), SEEK_SET),
            static_cast<off_t>(header.size()));
  auto res = run(probe({"--report"}), std::move(p));
  std::string rep = report();
  EXPECT_TRUE(res.success()) << res.describe();
  EXPECT_EQ(res.bytes, data.size());
  EXPECT_EQ(field(rep, "fifo"), "0") << rep;
  EXPECT_EQ(field(rep, "stdin"), (dir_ / "job").string()) << rep;
  EXPECT_EQ(field(rep, "bytes"), std::to_string(data.size())) << rep;
  EXPECT_EQ(field(rep, "fnv"), fnv_hex(data)) << rep;
}

TEST_F(HandoffTest, NoPayloadGivesDevNull) {
  auto res = run(probe({"--report"}), PayloadSource{});
  std::string rep = report();
  EXPECT_TRUE(res.success()) << res.describe();
  EXPECT_EQ(field(rep, "stdin"), "/dev/null") << rep;
  EXPECT_EQ(field(rep, "bytes"), "0") << rep;
}

TEST_F(HandoffTest, ConsumerGetsFds012GuardsGroupDefaultSignalsEmptyMask) {
  Fd leaked(::dup(2));  // dup() clears FD_CLOEXEC: spawn must close it anyway
  sigset_t usr1, old;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &usr1, &old);
  auto old_usr2 = ::signal(SIGUSR2, SIG_IGN);
  MemReader r(random_bytes(100000));
  auto res = run_stream(probe({"--report"}), r);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  ::signal(SIGUSR2, old_usr2);
  std::string rep = report();
  EXPECT_TRUE(res.success()) << res.describe();
  EXPECT_EQ(field(rep, "fds"), "0,1,2") << rep;
  // A group of its own, never ours; its parent is its guard.
  EXPECT_EQ(field(rep, "own_pgrp"), "1") << rep;
  EXPECT_EQ(field(rep, "parent"), "safespool-guard") << rep;
  EXPECT_NE(field(rep, "pgrp"), std::to_string(getpgrp())) << rep;
  EXPECT_EQ(field(rep, "sigblk"), "0000000000000000") << rep;
  EXPECT_EQ(field(rep, "sigign"), "0000000000000000") << "SIGPIPE/SIGUSR2 ignored: " << rep;
}

TEST_F(HandoffTest, ConsumerShrinkingAndRegrowingItsPipeStillGetsEverything) {
  std::string data = random_bytes(16 << 20);
  MemReader r(data);
  r.slow_until = 3 << 20;  // a trickle, so the probe finds the pipe empty enough to shrink
  auto res = run_stream(probe({"--shrink-regrow", std::to_string(1 << 20)}), r);
  std::string rep = report();
  EXPECT_TRUE(res.success()) << res.describe();
  EXPECT_EQ(field(rep, "shrunk"), "1") << rep;
  EXPECT_EQ(field(rep, "regrew"), "1") << rep;
  EXPECT_EQ(field(rep, "bytes"), std::to_string(data.size())) << rep;
  EXPECT_EQ(field(rep, "fnv"), fnv_hex(data)) << rep;
}

TEST_F(HandoffTest, ConsumerExitingEarlyGivesItsStatusWithoutHanging) {
  MemReader r(random_bytes(16 << 20));
  auto res = run_stream(probe({"--exit-after", "65536", "--status", "7"}), r);
  EXPECT_EQ(res.kind, Kind::Exited) << res.describe();
  EXPECT_EQ(res.status, 7);
  EXPECT_LT(res.bytes, 16u << 20);
  EXPECT_LT(res.seconds, 10);
  EXPECT_GE(r.cancels, 1) << "the reader was not cancelled";
  EXPECT_EQ(field(report(), "bytes"), "65536");
}

TEST_F(HandoffTest, CallerWorksWhileTheConsumerRunsAndItsPayloadFlows) {
  // The consumer reads the start of its payload, then waits for the
  // caller's mark: made between start and wait, the mark must find the
  // payload already flowing and the consumer alive. (The end of the payload
  // is the supervisor's to deliver, in wait().)
  MemReader r(random_bytes(1 << 20));
  opts_.timeout = 20000ms;
  Launcher launcher;
  PayloadSource p;
  p.stream = &r;
  ConsumerRun run = start_consumer(
      launcher,
      shell("head -c 1000 > /dev/null; touch read; while [ ! -e mark ]; do sleep 0.01; done; "
            "cat > /dev/null"),
      std::move(p), opts_);
  EXPECT_TRUE(test::eventually([&] { return fs::exists(dir_ / "read"); }))
      << "no payload before wait()";
  std::ofstream(dir_ / "mark") << "x";
  auto res = run.wait();
  EXPECT_EQ(res.kind, Kind::Exited) << res.describe();
  EXPECT_EQ(res.status, 0);
  EXPECT_EQ(res.bytes, 1u << 20);
}

TEST_F(HandoffTest, RunDroppedBeforeWaitKillsTheConsumerBeforeEof) {
  MemReader r(random_bytes(16 << 20));
  Launcher launcher;
  {
    PayloadSource p;
    p.stream = &r;
    ConsumerRun run = start_consumer(
        launcher, shell("trap '' TERM; echo $$ > pid; cat > /dev/null; echo eof > marker"),
        std::move(p), opts_);
    ASSERT_TRUE(test::eventually([&] { return !slurp(dir_ / "pid").empty(); }));
  }
  EXPECT_TRUE(gone(std::stoi(slurp(dir_ / "pid")))) << "an abandoned consumer survived";
  std::this_thread::sleep_for(100ms);
  EXPECT_FALSE(fs::exists(dir_ / "marker")) << "an abandoned consumer saw EOF";
  int st;
  EXPECT_LE(::waitpid(-1, &st, WNOHANG), 0) << "an unreaped child is left";
}

TEST_F(HandoffTest, TimeoutTerminatesConsumerAndItsGrandchildren) {
  MemReader r(random_bytes(16 << 20));
  opts_.timeout = 1000ms;
  auto res = run_stream(shell("sleep 100 & echo $! > gc; sleep 100"), r);
  EXPECT_EQ(res.kind, Kind::TimedOut) << res.describe();
  EXPECT_EQ(res.message, "timed out after 1 s");
  EXPECT_LT(res.seconds, 5);
  EXPECT_TRUE(gone(std::stoi(slurp(dir_ / "gc")))) << "grandchild survived";
}

TEST_F(HandoffTest, TimeoutKillsGrandchildThatIgnoresSigterm) {
  opts_.timeout = 1000ms;
  opts_.grace = 30000ms;  // the direct child dies of SIGTERM: no grace wait
  auto sh = shell("(trap '' TERM; exec sleep 100) & echo $! > gc; exec sleep 100");
  for (bool stream : {true, false}) {
    MemReader r(random_bytes(16 << 20));
    PayloadSource p;
    if (stream) p.stream = &r;
    auto res = run(sh, std::move(p));
    EXPECT_EQ(res.kind, Kind::TimedOut) << res.describe();
    EXPECT_LT(res.seconds, 5);
    EXPECT_TRUE(gone(std::stoi(slurp(dir_ / "gc"))))
        << "grandchild ignoring SIGTERM survived, stream=" << stream;
  }
}

TEST_F(HandoffTest, FailureAtFinishKillsConsumerBeforeItSeesEof) {
  MemReader r(random_bytes(200000));
  r.fail_finish = true;
  // Ignores SIGTERM, so only a SIGKILL before the close keeps "eof" unwritten.
  auto res = run_stream(shell("trap '' TERM; cat > /dev/null; echo eof > marker"), r);
  EXPECT_EQ(res.kind, Kind::DecodeFailed) << res.describe();
  EXPECT_EQ(res.message, "memory: zstd frame truncated");
  EXPECT_EQ(res.status, SIGKILL);
  std::this_thread::sleep_for(100ms);
  EXPECT_FALSE(fs::exists(dir_ / "marker")) << "consumer saw EOF of a failed stream";
}

TEST_F(HandoffTest, FailureMidStreamKillsConsumer) {
  MemReader r(random_bytes(8 << 20));
  r.fail_at = 3 << 20;
  auto res = run_stream(probe(), r);
  EXPECT_EQ(res.kind, Kind::DecodeFailed) << res.describe();
  EXPECT_NE(res.message.find("corrupt block"), std::string::npos) << res.message;
  EXPECT_FALSE(fs::exists(out())) << "probe finished: " << report();
}

TEST_F(HandoffTest, ExecFailureThrowsAndLeavesNoZombie) {
  MemReader r(random_bytes(1000));
  ConsumerSpec c = probe();
  c.argv = {"/nonexistent/safespool-no-such-command"};
  EXPECT_THROW(run_stream(c, r), SysError);
  EXPECT_EQ(r.reads, 0);
  int st;
  EXPECT_LE(::waitpid(-1, &st, WNOHANG), 0) << "an unreaped child is left";
}

TEST_F(HandoffTest, RunOfConsumersSharesOneGuardUntilAnAbortKillsIt) {
  Launcher launcher;
  launcher_ = &launcher;
  // The consumer's guard (its parent), as the probe saw it.
  auto group_of = [&](PayloadSource p) {
    fs::remove(out());
    auto res = run(probe({"--report"}), std::move(p));
    EXPECT_TRUE(res.success()) << res.describe();
    EXPECT_EQ(field(report(), "parent"), "safespool-guard") << report();
    return field(report(), "ppid");
  };
  auto stream = [](MemReader& r) {
    PayloadSource p;
    p.stream = &r;
    return p;
  };
  MemReader r1(random_bytes(300000));
  std::string first = group_of(stream(r1));
  EXPECT_EQ(first, std::to_string(launcher.guard_pid()));
  std::ofstream(dir_ / "job") << "payload";
  PayloadSource file;
  file.file = Fd(::open((dir_ / "job").c_str(), O_RDONLY | O_CLOEXEC));
  EXPECT_EQ(group_of(std::move(file)), first) << "a plain file got a new guard";
  EXPECT_EQ(group_of(PayloadSource{}), first) << "/dev/null got a new guard";
  // A command that cannot run leaves the guard holding nothing: were it
  // still holding that pipe, the next consumer would make it kill all.
  ConsumerSpec missing = probe();
  missing.argv = {"safespool-no-such-command"};
  MemReader r2(random_bytes(1000));
  try {
    run_stream(missing, r2);
    ADD_FAILURE() << "a missing command ran";
  } catch (const SysError& e) {
    EXPECT_STREQ(e.what(), "cannot run 'safespool-no-such-command': No such file or directory");
  }
  MemReader r3(random_bytes(300000));
  EXPECT_EQ(group_of(stream(r3)), first);
  // An abort kills the tree, and the guard exits after it: the next
  // consumer gets a new guard, which the one after it shares.
  opts_.timeout = 300ms;
  auto res = run(shell("sleep 100"), PayloadSource{});
  EXPECT_EQ(res.kind, Kind::TimedOut) << res.describe();
  EXPECT_EQ(launcher.guard_pid(), 0) << "the killed guard was not reaped";
  opts_.timeout.reset();
  MemReader r4(random_bytes(300000)), r5(random_bytes(300000));
  std::string second = group_of(stream(r4));
  EXPECT_NE(second, first);
  EXPECT_EQ(group_of(stream(r5)), second);
  launcher.release();
  EXPECT_EQ(launcher.guard_pid(), 0);
  EXPECT_NE(::kill(std::stoi(second), 0), 0) << "the released guard still runs";
  int st;
  EXPECT_LE(::waitpid(-1, &st, WNOHANG), 0) << "an unreaped child is left";
}

TEST_F(HandoffTest, ConsumerQuittingWithNoReaderLeftKeepsTheGuard) {
  Launcher launcher;
  launcher_ = &launcher;
  // More than the pipe holds: the relay is still at work when they quit.
  MemReader r1(random_bytes(16 << 20)), r2(random_bytes(16 << 20));
  auto res = run_stream(shell("exit 3"), r1);
  EXPECT_EQ(res.kind, Kind::Exited) << res.describe();
  EXPECT_EQ(res.status, 3);
  pid_t guard = launcher.guard_pid();
  EXPECT_NE(guard, 0) << "the guard was killed although nobody could read on";
  res = run_stream(probe({"--exit-after", "65536", "--status", "0"}), r2);
  EXPECT_TRUE(res.success()) << res.describe();
  EXPECT_EQ(launcher.guard_pid(), guard) << "a new guard after a consumer that left no reader";
}

TEST_F(HandoffTest, ConsumerQuittingWhileItsChildHoldsTheCutPayloadKillsTheGroup) {
  Launcher launcher;
  launcher_ = &launcher;
  MemReader r(random_bytes(16 << 20));
  // The grandchild keeps stdin open and never reads: the payload is cut
  // short. (An asynchronous command's own stdin is /dev/null: hence fd 3.)
  auto res = run_stream(shell("exec 3<&0; sleep 100 <&3 3<&- & echo $! > gc"), r);
  EXPECT_EQ(res.kind, Kind::Exited) << res.describe();
  EXPECT_TRUE(gone(std::stoi(slurp(dir_ / "gc")))) << "a holder of the cut payload survived";
  EXPECT_EQ(launcher.guard_pid(), 0) << "the killed guard was not reaped";
}

TEST_F(HandoffTest, StallTimeoutWhenConsumerNeverReads) {
  MemReader r(random_bytes(16 << 20));
  opts_.stall_timeout = 1000ms;
  auto res = run_stream(probe({"--never-read"}), r);
  EXPECT_EQ(res.kind, Kind::Stalled) << res.describe();
  EXPECT_EQ(res.message, "stalled: no payload byte moved for 1 s");
  EXPECT_LT(res.seconds, 6);
}

TEST_F(HandoffTest, StallTimeoutWhenDecoderHangsNeverClosesCleanly) {
  MemReader r(random_bytes(1 << 20));
  r.hang_at = 500000;  // then read() returns 0 once cancelled
  opts_.stall_timeout = 1000ms;
  auto res = run_stream(shell("trap '' TERM; cat > /dev/null; echo eof > marker"), r);
  EXPECT_EQ(res.kind, Kind::Stalled) << res.describe();
  EXPECT_GE(r.cancels, 1);
  EXPECT_EQ(res.bytes, 500000u);
  std::this_thread::sleep_for(100ms);
  EXPECT_FALSE(fs::exists(dir_ / "marker")) << "a cancelled read became EOF";
}

// Past its first MiB a payload is decoded on a thread of its own, a few
// blocks ahead of the writes. Every way a stream ends must still hold.
TEST_F(HandoffTest, LargePayloadIsDecodedAheadOnItsOwnThreadInOrder) {
  std::string data = random_bytes(12 << 20);
  MemReader r(data);
  auto res = run_stream(probe(), r);
  std::string rep = report();
  EXPECT_TRUE(res.success()) << res.describe();
  EXPECT_EQ(field(rep, "fnv"), fnv_hex(data)) << rep;
  ASSERT_FALSE(r.readers.empty());
  const auto first = r.readers.front().second;
  for (auto [at, thread] : r.readers) {
    if (at < (1u << 20)) {
      EXPECT_EQ(thread, first) << "a read below 1 MiB moved, at " << at;
    }
  }
  EXPECT_NE(r.readers.back().second, first) << "the decoder never got a thread of its own";
}

TEST_F(HandoffTest, PayloadOfOneMegabyteIsDecodedOnTheRelayThreadAlone) {
  MemReader r(random_bytes(1 << 20));  // its end too: a thread only past the first MiB
  auto res = run_stream(probe(), r);
  EXPECT_TRUE(res.success()) << res.describe();
  for (auto [at, thread] : r.readers) EXPECT_EQ(thread, r.readers.front().second) << at;
}

TEST_F(HandoffTest, FailureAtFinishOfALargePayloadKillsConsumerBeforeEof) {
  MemReader r(random_bytes(6 << 20));
  r.fail_finish = true;
  auto res = run_stream(shell("trap '' TERM; cat > /dev/null; echo eof > marker"), r);
  EXPECT_EQ(res.kind, Kind::DecodeFailed) << res.describe();
  EXPECT_EQ(res.message, "memory: zstd frame truncated");
  std::this_thread::sleep_for(100ms);
  EXPECT_FALSE(fs::exists(dir_ / "marker")) << "consumer saw EOF of a failed stream";
}

TEST_F(HandoffTest, DecoderHangingPastItsFirstMegabyteStallsAndNeverEnds) {
  MemReader r(random_bytes(4 << 20));
  r.hang_at = 3 << 20;  // on the decoder's own thread; read() returns 0 once cancelled
  opts_.stall_timeout = 1000ms;
  auto res = run_stream(shell("trap '' TERM; cat > /dev/null; echo eof > marker"), r);
  EXPECT_EQ(res.kind, Kind::Stalled) << res.describe();
  EXPECT_GE(r.cancels, 1);
  EXPECT_EQ(res.bytes, 3u << 20);
  std::this_thread::sleep_for(100ms);
  EXPECT_FALSE(fs::exists(dir_ / "marker")) << "a cancelled read became EOF";
}

TEST_F(HandoffTest, ConsumerLeavingPastTheFirstMegabyteGivesItsStatus) {
  MemReader r(random_bytes(32 << 20));
  auto res = run_stream(probe({"--exit-after", std::to_string(3 << 20), "--status", "5"}), r);
  EXPECT_EQ(res.kind, Kind::Exited) << res.describe();
  EXPECT_EQ(res.status, 5);
  EXPECT_LT(res.seconds, 10);
  EXPECT_GE(r.cancels, 1) << "the reader was not cancelled";
}

TEST(HandoffResultTest, Describe) {
  HandoffResult r;
  r.status = 3;
  EXPECT_EQ(r.describe(), "exit status 3");
  r.kind = Kind::Signaled;
  r.status = SIGKILL;
  EXPECT_EQ(r.describe(), "killed by signal 9 (Killed)");
  r.kind = Kind::TimedOut;
  r.message = "timed out after 2 s";
  EXPECT_EQ(r.describe(), "timed out after 2 s");
  EXPECT_EQ(target_pipe_size(12345), 12345u);
}

// Interrupts use the process-wide signalfd and leave interrupted() set, so
// they run in a re-executed child ("threadsafe" death tests).
int interrupt_case(const std::string& script, int grace_ms, double max_seconds) {
  install_interrupt_fd();
  ConsumerSpec c;
  // $US: this process (the consumer's parent is its guard).
  c.argv = {"/bin/sh", "-c", "US=" + std::to_string(::getpid()) + "; " + script};
  for (char** e = environ; *e; ++e) c.env.push_back(*e);
  HandoffOptions o;
  o.grace = std::chrono::milliseconds(grace_ms);
  auto res = run_consumer(c, PayloadSource{}, o);
  bool ok = res.kind == Kind::Interrupted && res.signal_received == SIGTERM &&
            res.message == "interrupted by SIGTERM" && res.seconds < max_seconds;
  if (!ok) std::fprintf(stderr, "got %s after %.1f s\n", res.describe().c_str(), res.seconds);
  return ok ? 0 : 1;
}

TEST(HandoffDeathTest, InterruptTerminatesConsumerGroup) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(std::_Exit(interrupt_case("kill -TERM $US; sleep 100", 5000, 4)),
              ::testing::ExitedWithCode(0), "");
}

TEST(HandoffDeathTest, SecondInterruptDuringGraceKillsAtOnce) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(std::_Exit(interrupt_case(
                  "trap '' TERM; kill -TERM $US; sleep 0.5; kill -INT $US; sleep 100", 30000, 5)),
              ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace safespool
