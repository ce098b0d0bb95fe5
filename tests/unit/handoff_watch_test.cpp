// SPDX-License-Identifier: GPL-3.0-or-later
// What the supervisor watches and tells besides the consumer's end: a
// stall of a plain packet's consumer (its position in the job file), the
// progress lines, and the tail of the consumer's stderr.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <thread>

#include "../../src/progress.hpp"
#include "../../src/stderr_tail.hpp"
#include "safespool/handoff.hpp"
#include "test_util.hpp"

extern char** environ;

namespace safespool {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Kind = HandoffResult::Kind;
using test::slurp;

class HandoffWatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    opts_.grace = 1000ms;
    opts_.timeout = 20000ms;  // a bound for a run that would not end
    opts_.job_name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
  }
  ConsumerSpec shell(const std::string& script) {
    ConsumerSpec c;
    c.argv = {"/bin/sh", "-c", "cd '" + dir_.string() + "' || exit 99; " + script};
    for (char** e = environ; *e; ++e) c.env.push_back(*e);
    return c;
  }
  /// A plain payload of `size` bytes after a 100-byte "header".
  PayloadSource plain_file(size_t size) {
    test::spit(dir_ / "job", std::string(100, 'h') + std::string(size, 'p'));
    PayloadSource p;
    p.file = Fd(::open((dir_ / "job").c_str(), O_RDONLY | O_CLOEXEC));
    ::lseek(p.file.get(), 100, SEEK_SET);
    return p;
  }

  test::TempDir tmp_{"hwatch"};
  fs::path dir_ = tmp_.path;
  HandoffOptions opts_;
};

TEST_F(HandoffWatchTest, PlainPacketConsumerThatStopsReadingIsStalled) {
  opts_.stall_timeout = 1000ms;
  opts_.pipe_size = 64 << 10;  // what a decoded payload's pipe would hold
  auto res = run_consumer(shell("head -c 1024 > /dev/null; sleep 30"), plain_file(4 << 20), opts_);
  EXPECT_EQ(res.kind, Kind::Stalled) << res.describe();
  EXPECT_EQ(res.message, "stalled: no payload byte moved for 1 s");
  EXPECT_GT(res.bytes, 0u);
  EXPECT_LT(res.bytes, 4u << 20);
}

TEST_F(HandoffWatchTest, PlainPacketReadToItsEndIsNotStalledWhileTheConsumerWorks) {
  opts_.stall_timeout = 500ms;
  auto res = run_consumer(shell("cat > /dev/null; sleep 1.5"), plain_file(1 << 20), opts_);
  EXPECT_TRUE(res.success()) << res.describe();
  EXPECT_EQ(res.bytes, 1u << 20);
}

TEST(ProgressText, BytesRatePercentAndTimeLeft) {
  PayloadProgress p;
  p.bytes = 3 << 20;
  EXPECT_EQ(progress_text(p, 2), "3.0 MiB (1.5 MiB/s)");
  p.of = SourcePosition{25, 100};
  EXPECT_EQ(progress_text(p, 29), "3.0 MiB (105.9 KiB/s), 25%, about 87 s left");
  p.of = SourcePosition{1, 1000};
  EXPECT_EQ(progress_text(p, 60), "3.0 MiB (51.2 KiB/s), 0%, about 16 h 39 min left");
  p.of = SourcePosition{100, 100};
  EXPECT_EQ(progress_text(p, 60), "3.0 MiB (51.2 KiB/s), 100%");
  EXPECT_EQ(duration_text(89), "89 s");
  EXPECT_EQ(duration_text(150), "3 min");
  EXPECT_EQ(duration_text(3 * 3600 + 125), "3 h 02 min");
}

/// Log lines of the default logger while it lives.
class CapturedLog {
 public:
  CapturedLog() : old_(spdlog::default_logger()) {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out_);
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("capture", sink));
  }
  ~CapturedLog() { spdlog::set_default_logger(old_); }
  std::string text() const { return out_.str(); }

 private:
  std::ostringstream out_;
  std::shared_ptr<spdlog::logger> old_;
};

TEST_F(HandoffWatchTest, WithoutATerminalALongJobLogsItsProgress) {
  CapturedLog log;
  opts_.progress = false;
  opts_.log_progress_every = 300ms;  // a minute, outside tests
  auto res =
      run_consumer(shell("head -c 1000000 > /dev/null; sleep 1"), plain_file(2000000), opts_);
  EXPECT_TRUE(res.success()) << res.describe();
  std::string text = log.text();
  EXPECT_NE(text.find(opts_.job_name + ": "), std::string::npos) << text;
  EXPECT_NE(text.find("so far"), std::string::npos) << text;
  EXPECT_NE(text.find("%, about "), std::string::npos) << "no percentage or estimate: " << text;
}

TEST_F(HandoffWatchTest, AnEncodedPayloadsProgressIsHowFarItsFileWasRead) {
  ASSERT_TRUE(
      test::run("head -c 8000000 /dev/urandom | zstd -q -c > '" + (dir_ / "z").string() + "'"));
  auto stream =
      make_zstd_reader(make_fd_reader(Fd(::open((dir_ / "z").c_str(), O_RDONLY | O_CLOEXEC)), "z"));
  CapturedLog log;
  opts_.log_progress_every = 300ms;
  PayloadSource p;
  p.stream = stream.get();
  auto res = run_consumer(shell("head -c 1000000 > /dev/null; sleep 1; cat > /dev/null"),
                          std::move(p), opts_);
  EXPECT_TRUE(res.success()) << res.describe();
  EXPECT_NE(log.text().find("%, about "), std::string::npos) << log.text();
}

TEST(LastLines, TheEndWithinLimits) {
  EXPECT_EQ(last_lines("a\nb\nc\n", 2), "b\nc");
  EXPECT_EQ(last_lines("a\nb\nc", 5), "a\nb\nc");
  EXPECT_EQ(last_lines(std::string(10, 'x') + "\nyz", 20, 5), "xx\nyz");
  EXPECT_EQ(last_lines(std::string("a\0b", 3)), "a?b");
  EXPECT_EQ(last_lines(""), "");
}

// The rest fits into the pipe a decoded payload would get, where it would
// count as delivered: a consumer that waits before reading is not stalled.
TEST_F(HandoffWatchTest, PlainPacketRestThatFitsThePipeIsNotStalled) {
  opts_.stall_timeout = 500ms;
  opts_.pipe_size = 64 << 10;
  auto res = run_consumer(shell("sleep 2; cat > /dev/null"), plain_file(60 << 10), opts_);
  EXPECT_TRUE(res.success()) << res.describe();
  res = run_consumer(shell("head -c 1000 > /dev/null; sleep 2; cat > /dev/null"),
                     plain_file(100 << 10), opts_);
  EXPECT_EQ(res.kind, Kind::Stalled) << "36 KiB more than the pipe holds: " << res.describe();
}

TEST_F(HandoffWatchTest, StderrTailComesBackAndStderrStillGoesWhereItGoes) {
  opts_.keep_stderr_tail = true;
  Pipe dest = make_pipe();  // as our stderr would be: a pipe to a logger
  ConsumerSpec c = shell("for i in $(seq 1 30); do echo line $i >&2; done; exit 3");
  c.stderr_fd = dest.write.get();
  auto res = run_consumer(c, PayloadSource{}, opts_);
  dest.write.reset();
  EXPECT_EQ(res.status, 3) << res.describe();
  std::string want;
  for (int i = 11; i <= 30; ++i) want += "line " + std::to_string(i) + (i < 30 ? "\n" : "");
  EXPECT_EQ(res.stderr_tail, want);
  std::string got(4096, '\0');
  got.resize(read_full(dest.read.get(), std::as_writable_bytes(std::span(got)), "stderr"));
  EXPECT_EQ(got.substr(0, 7), "line 1\n") << "the stderr did not reach its destination";
  EXPECT_EQ(got.substr(got.size() - 8), "line 30\n");
}

TEST_F(HandoffWatchTest, MegabytesOfStderrNeitherBlockNorGrowTheTail) {
  opts_.keep_stderr_tail = true;
  Fd devnull(::open("/dev/null", O_WRONLY | O_CLOEXEC));
  ConsumerSpec c = shell("yes 'a long line of stderr' | head -n 3000000 >&2; echo last >&2");
  c.stderr_fd = devnull.get();
  auto start = std::chrono::steady_clock::now();
  auto res = run_consumer(c, PayloadSource{}, opts_);
  EXPECT_TRUE(res.success()) << res.describe();
  EXPECT_LE(res.stderr_tail.size(), kTailBytes);
  EXPECT_EQ(res.stderr_tail.substr(res.stderr_tail.rfind('\n') + 1), "last");
  std::fprintf(stderr, "69 MB of stderr through the tail in %.2f s\n",
               std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
}

// Unless someone wants the tail, and never on a terminal, the consumer's
// fd 2 is our stderr itself: programs that look at isatty(2) see the
// terminal, and what the consumer leaves behind writes on after we exit.
TEST_F(HandoffWatchTest, StderrIsPassedThroughUnlessTheTailIsWanted) {
  Pipe dest = make_pipe();
  struct stat ours {};
  ASSERT_EQ(::fstat(dest.write.get(), &ours), 0);
  ConsumerSpec c = shell("stat -L -c %i /proc/self/fd/2 > ino; echo said >&2");
  c.stderr_fd = dest.write.get();
  auto res = run_consumer(c, PayloadSource{}, opts_);
  EXPECT_TRUE(res.success()) << res.describe();
  EXPECT_EQ(slurp(dir_ / "ino"), std::to_string(ours.st_ino) + "\n");
  EXPECT_EQ(res.stderr_tail, "");

  Fd master(::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
  ASSERT_TRUE(master && ::grantpt(master.get()) == 0 && ::unlockpt(master.get()) == 0);
  Fd tty(::open(::ptsname(master.get()), O_RDWR | O_NOCTTY | O_CLOEXEC));
  ASSERT_TRUE(tty);
  opts_.keep_stderr_tail = true;
  c = shell("[ -t 2 ]");
  c.stderr_fd = tty.get();
  res = run_consumer(c, PayloadSource{}, opts_);
  EXPECT_TRUE(res.success()) << "the consumer's stderr is no terminal: " << res.describe();
}

TEST_F(HandoffWatchTest, StderrTailOfAnOutputFileIsReadFromIt) {
  test::spit(dir_ / "out", "from an earlier job\n");
  Fd out(::open((dir_ / "out").c_str(), O_WRONLY | O_APPEND | O_CLOEXEC));
  ConsumerSpec c = shell("echo to stdout; echo to stderr >&2");
  c.stdout_fd = c.stderr_fd = out.get();
  auto res = run_consumer(c, PayloadSource{}, opts_);
  EXPECT_TRUE(res.success()) << res.describe();
  EXPECT_EQ(res.stderr_tail, "to stdout\nto stderr");
  EXPECT_EQ(slurp(dir_ / "out"), "from an earlier job\nto stdout\nto stderr\n");
}

}  // namespace
}  // namespace safespool
