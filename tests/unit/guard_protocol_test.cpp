// SPDX-License-Identifier: GPL-3.0-or-later
// The guard's protocol, spoken by the test on the lifeline of a real
// safespool-guard: it starts consumers, reports their end, holds a copy of
// a pipe's write end, and kills the whole tree — setsid() escapers and
// orphans included — on a kill order, on our death, and on any message it
// does not expect.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <thread>

#include "../../src/fd_passing.hpp"
#include "safespool/error.hpp"
#include "safespool/guard.hpp"
#include "safespool/spawn.hpp"
#include "test_util.hpp"

extern char** environ;

namespace safespool {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using test::eventually;
using test::slurp;

const std::string kEscaper = std::string(SAFESPOOL_TOOLS) + "/session_escaper";

/// The request file the processor sends: u32 argc, u32 envc, then the
/// file, argv and environment, NUL-terminated.
Fd request(const std::vector<std::string>& argv) {
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) env.emplace_back(*e);
  uint32_t counts[2] = {static_cast<uint32_t>(argv.size()), static_cast<uint32_t>(env.size())};
  std::string text(reinterpret_cast<const char*>(counts), sizeof counts);
  text.append(argv[0]).push_back('\0');
  for (const auto& a : argv) text.append(a).push_back('\0');
  for (const auto& a : env) text.append(a).push_back('\0');
  Fd fd(::memfd_create("request", MFD_CLOEXEC));
  write_all(fd.get(), text, "request");
  return fd;
}

/// Sends one message the way the processor does, or a broken one.
bool send_message(int sock, const std::string& bytes, std::vector<int> fds) {
  return send_with_fds(sock, bytes, fds);
}

/// One answer from the guard (kind 0: none within `ms`).
struct Reply {
  char kind = 0;
  std::string bytes;
  Fd fd;
  int32_t number(size_t at) const {
    int32_t v = 0;
    std::memcpy(&v, bytes.data() + at, sizeof v);
    return v;
  }
};

Reply read_reply(int sock, int ms = 5000) {
  Reply r;
  pollfd p{sock, POLLIN, 0};
  if (::poll(&p, 1, ms) != 1) return r;
  char buf[16];
  iovec iov{buf, sizeof buf};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  if (n <= 0) return r;
  if (cmsghdr* c = CMSG_FIRSTHDR(&msg)) {
    int fd;
    std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
    r.fd.reset(fd);
  }
  r.kind = buf[0];
  r.bytes.assign(buf + 1, buf + n);
  return r;
}

/// /proc/PID/stat after the command name ("" when gone).
std::string stat_tail(pid_t pid) {
  std::string stat = slurp("/proc/" + std::to_string(pid) + "/stat");
  auto p = stat.rfind(')');
  return p == std::string::npos ? "" : stat.substr(p + 2);
}

bool dead(pid_t pid) {
  std::string t = stat_tail(pid);
  return t.empty() || t[0] == 'Z';
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

class GuardProtocolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    lifeline_ = Fd(sv[0]);
    Fd theirs(sv[1]);
    SpawnSpec gs;
    gs.argv = {find_guard(guard_candidates())};
    gs.stdin_fd = theirs.get();
    gs.stderr_fd = quiet_.get();  // its last words are not the test's
    guard_ = spawn(gs);
  }

  /// 'c' for `argv`, stdin `in`, stdout and stderr /dev/null; with `hold`.
  bool consume(const std::vector<std::string>& argv, int in, int hold = -1) {
    Fd req = request(argv);
    std::vector<int> fds = {req.get(), in, quiet_.get(), quiet_.get()};
    if (hold >= 0) fds.push_back(hold);
    return send_message(lifeline_.get(), hold >= 0 ? "ch" : "c", fds);
  }
  /// The started consumer's pid (its 's' answer), 0 when it did not start.
  pid_t started() {
    Reply r = read_reply(lifeline_.get());
    EXPECT_EQ(r.kind, 's') << r.bytes;
    return r.kind == 's' && r.fd ? r.number(0) : 0;
  }
  std::string marker(const char* name) const { return (dir_ / name).string(); }

  test::TempDir tmp_{"guardproto"};
  fs::path dir_ = tmp_.path;
  Fd quiet_{::open("/dev/null", O_RDWR | O_CLOEXEC)};
  Fd lifeline_;
  Child guard_;
};

TEST_F(GuardProtocolTest, StartsAConsumerInAGroupOfItsOwnAndReportsItsEnd) {
  ASSERT_TRUE(consume({"/bin/sh", "-c", "exit 3"}, quiet_.get()));
  pid_t pid = started();
  ASSERT_GT(pid, 0);
  Reply x = read_reply(lifeline_.get());
  ASSERT_EQ(x.kind, 'x');
  EXPECT_EQ(x.bytes[0], 0) << "signaled";
  EXPECT_EQ(x.number(1), 3);
  EXPECT_EQ(stat_tail(pid)[0], 'Z') << "reaped before we were done with it";
  ASSERT_TRUE(send_message(lifeline_.get(), "d", {}));
  EXPECT_TRUE(eventually([&] { return stat_tail(pid).empty(); })) << "'d' did not reap it";
  ASSERT_TRUE(send_message(lifeline_.get(), "r", {}));
  EXPECT_EQ(guard_.wait().describe(), "exit status 0");
}

TEST_F(GuardProtocolTest, ExecFailureIsAnAnswerNotAnExitStatus) {
  ASSERT_TRUE(consume({"/nonexistent/safespool-nothing"}, quiet_.get()));
  Reply f = read_reply(lifeline_.get());
  ASSERT_EQ(f.kind, 'f');
  EXPECT_EQ(f.bytes[0], 'x') << "stage";
  EXPECT_EQ(f.number(1), ENOENT);
  ASSERT_TRUE(send_message(lifeline_.get(), "r", {}));
  EXPECT_EQ(guard_.wait().describe(), "exit status 0");
}

TEST_F(GuardProtocolTest, HeldCopyKeepsThePipeOpenFromTheMomentItIsSent) {
  Pipe p = make_pipe();
  Fd consumer_in = make_pipe().read;  // the consumer reads another pipe
  // Stopped, the guard cannot receive: the copy stays in flight, in its
  // socket's queue, as when we die right after sending it.
  ASSERT_TRUE(stop(guard_.pid()));
  ASSERT_TRUE(consume({"/bin/sleep", "100"}, consumer_in.get(), p.write.get()));
  p.write.reset();
  EXPECT_FALSE(eof_within(p.read.get(), 200)) << "a copy in flight did not keep the pipe open";
  ASSERT_EQ(::kill(guard_.pid(), SIGCONT), 0);
  ASSERT_GT(started(), 0);
  EXPECT_FALSE(eof_within(p.read.get(), 200)) << "the guard did not keep its copy";
  ASSERT_TRUE(send_message(lifeline_.get(), "e", {}));
  EXPECT_TRUE(eof_within(p.read.get(), 5000)) << "'e' did not close the guard's copy";
  ASSERT_TRUE(send_message(lifeline_.get(), "k", {}));
  EXPECT_EQ(guard_.wait().describe(), "exit status 2");
}

TEST_F(GuardProtocolTest, ProcessorDeathWithTheHoldStillInFlightIsNoEof) {
  Pipe p = make_pipe();
  ASSERT_TRUE(stop(guard_.pid()));
  ASSERT_TRUE(consume(
      {"/bin/sh", "-c",
       "echo $$ > '" + marker("pid") + "'; cat > /dev/null; echo eof > '" + marker("eof") + "'"},
      p.read.get(), p.write.get()));
  // We die: our write end and our end of the lifeline close.
  p.read.reset();
  p.write.reset();
  lifeline_.reset();
  ASSERT_EQ(::kill(guard_.pid(), SIGCONT), 0);
  EXPECT_EQ(guard_.wait().describe(), "exit status 1");
  std::string pid = slurp(marker("pid"));
  if (!pid.empty()) {
    EXPECT_TRUE(dead(std::stoi(pid))) << "the consumer outlived us";
  }
  EXPECT_FALSE(fs::exists(marker("eof"))) << "the consumer took our death for EOF";
}

TEST_F(GuardProtocolTest, KillOrderTakesADescendantInASessionOfItsOwn) {
  Pipe p = make_pipe();
  ASSERT_TRUE(consume({kEscaper, dir_.string()}, p.read.get(), p.write.get()));
  ASSERT_GT(started(), 0);
  p.read.reset();
  ASSERT_TRUE(eventually([&] { return !slurp(dir_ / "escaper.pid").empty(); }));
  pid_t escaper = std::stoi(slurp(dir_ / "escaper.pid"));
  ASSERT_TRUE(send_message(lifeline_.get(), "k", {}));
  Reply x = read_reply(lifeline_.get());
  EXPECT_EQ(x.kind, 'x') << "the consumer's end was not reported";
  EXPECT_EQ(guard_.wait().describe(), "exit status 2");
  EXPECT_TRUE(dead(escaper)) << "the guard exited before the escaper died";
  p.write.reset();
  std::this_thread::sleep_for(100ms);
  EXPECT_FALSE(fs::exists(dir_ / "escaper.eof")) << slurp(dir_ / "escaper.eof");
}

TEST_F(GuardProtocolTest, AnOrphanIsInheritedAndKilledWhenTheProcessorDies) {
  Pipe p = make_pipe();
  ASSERT_TRUE(consume({kEscaper, dir_.string(), "orphan"}, p.read.get(), p.write.get()));
  pid_t consumer = started();
  ASSERT_GT(consumer, 0);
  p.read.reset();
  Reply x = read_reply(lifeline_.get());
  ASSERT_EQ(x.kind, 'x');
  EXPECT_EQ(x.number(1), 0);
  ASSERT_TRUE(eventually([&] { return !slurp(dir_ / "escaper.pid").empty(); }));
  pid_t escaper = std::stoi(slurp(dir_ / "escaper.pid"));
  EXPECT_TRUE(eventually([&] {
    char state = 0;
    int ppid = 0;
    std::sscanf(stat_tail(escaper).c_str(), "%c %d", &state, &ppid);
    return ppid == guard_.pid();
  })) << "the orphan was not handed to the guard";
  p.write.reset();
  lifeline_.reset();  // our death, with a descendant still reading
  EXPECT_EQ(guard_.wait().describe(), "exit status 1");
  EXPECT_TRUE(dead(escaper)) << "the orphan outlived the processor";
  EXPECT_FALSE(fs::exists(dir_ / "escaper.eof")) << slurp(dir_ / "escaper.eof");
}

TEST_F(GuardProtocolTest, AnyBrokenMessageKillsTheTree) {
  struct Case {
    const char* name;
    std::string bytes;
    int fds;  // copies of a pipe's write end attached
  };
  const std::vector<Case> cases = {
      {"a second consumer while one runs", "", -1},
      {"release while a consumer runs", "r", 0},
      {"done before the consumer ended", "d", 0},
      {"unknown byte", "x", 0},
      {"consume without descriptors", "c", 0},
      {"descriptors that do not match the flags", "ch", 4},
      {"descriptor with 'e'", "e", 1},
      {"two bytes", "ee", 0},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    if (&c != &cases.front()) SetUp();
    ASSERT_TRUE(consume({"/bin/sleep", "100"}, quiet_.get()));
    pid_t pid = started();
    ASSERT_GT(pid, 0);
    Pipe p = make_pipe();
    bool sent =
        c.fds < 0 ? consume({"/bin/sleep", "100"}, quiet_.get())
                  : send_message(lifeline_.get(), c.bytes, std::vector<int>(c.fds, p.write.get()));
    ASSERT_TRUE(sent);
    EXPECT_EQ(guard_.wait().describe(), "exit status 1");
    EXPECT_TRUE(dead(pid)) << "the consumer survived";
  }
}

}  // namespace
}  // namespace safespool
