// SPDX-License-Identifier: GPL-3.0-or-later
// handoff_driver: a stand-in processor for tests that SIGKILL the processor.
//
// It runs run_consumer() (guard included) for a shell consumer in DIR that
// writes its pid to DIR/consumer.pid and, only if it ever sees the end of
// its stdin, DIR/marker. The test kills this process with SIGKILL and then
// checks that the consumer died with it and never wrote the marker.
//
//   handoff_driver DIR stream [BYTES [SECONDS]]
//                                       decoded stream: BYTES bytes, or an
//                                       endless one; consumer: cat > /dev/null,
//                                       then (after the marker) sleeps SECONDS
//                                       and writes DIR/done
//   handoff_driver DIR file LINES       plain file of LINES lines as stdin;
//                                       consumer reads a line every 50 ms
//   handoff_driver DIR escape [orphan]  endless stream into
//                                       tests/tools/session_escaper DIR
//                                       [orphan], whose child leaves the
//                                       consumer's group and writes
//                                       DIR/escaper.eof should it see EOF
//   handoff_driver DIR held JOBS        JOBS complete 1 MiB streams, each
//                                       consumer appending its parent (the
//                                       guard) to DIR/parents, then a stream that
//                                       never yields a byte, all through one
//                                       Launcher (one guard): the last
//                                       consumer waits with the guard
//                                       holding its pipe and nothing in it
//
// Exits 0 when the consumer succeeded, 1 otherwise, 2 on bad usage.
#include <fcntl.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>

#include "safespool/handoff.hpp"

extern char** environ;

namespace {

using namespace safespool;

/// Pseudo-random bytes, `limit` of them (0: for ever); with `hold`, none:
/// the first read waits until cancelled.
class Generator : public Reader {
 public:
  explicit Generator(uint64_t limit, bool hold = false) : limit_(limit), hold_(hold) {}
  size_t read(std::span<std::byte> buf) override {
    if (hold_) {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return cancelled_; });
      return 0;
    }
    size_t n = std::min<size_t>(buf.size(), 64 << 10);
    if (limit_) n = static_cast<size_t>(std::min<uint64_t>(n, limit_ - pos_));
    for (size_t i = 0; i < n; ++i) buf[i] = std::byte(static_cast<unsigned char>((pos_ + i) * 131));
    pos_ += n;
    return n;
  }
  void finish() override {}
  void cancel() override {
    std::lock_guard lock(mu_);
    cancelled_ = true;
    cv_.notify_all();
  }
  std::string describe() const override { return "generator"; }

 private:
  uint64_t limit_, pos_ = 0;
  bool hold_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool cancelled_ = false;
};

ConsumerSpec sh(const std::string& script) {
  ConsumerSpec c;
  c.argv = {"/bin/sh", "-c", script};
  for (char** e = environ; *e; ++e) c.env.push_back(*e);
  return c;
}

ConsumerSpec shell(const std::string& dir, const std::string& body, const std::string& after) {
  return sh("cd '" + dir + "' || exit 99; echo $$ > consumer.pid; " + body + "; echo eof > marker" +
            after);
}

int run_held(const std::string& dir, int jobs) {
  Launcher launcher;
  HandoffOptions opts;
  for (int i = 0; i < jobs; ++i) {
    opts.job_name = "handoff_driver held, job " + std::to_string(i + 1);
    Generator gen(1 << 20);
    PayloadSource payload;
    payload.stream = &gen;
    auto c = sh("cd '" + dir + "' && cat > /dev/null && cut -d' ' -f4 /proc/$$/stat >> parents");
    if (!run_consumer(launcher, c, std::move(payload), opts).success()) return 1;
  }
  opts.job_name = "handoff_driver held, last job";
  Generator gen(0, true);
  PayloadSource payload;
  payload.stream = &gen;
  auto c = shell(dir, "cat > /dev/null", "");
  return run_consumer(launcher, c, std::move(payload), opts).success() ? 0 : 1;
}

int run_escape(const std::string& dir, bool orphan) {
  HandoffOptions opts;
  opts.job_name = "handoff_driver escape";
  Generator gen(0);
  PayloadSource payload;
  payload.stream = &gen;
  ConsumerSpec c = sh("");
  // Built beside this program.
  std::string self = std::filesystem::read_symlink("/proc/self/exe");
  c.argv = {self.substr(0, self.rfind('/')) + "/session_escaper", dir};
  if (orphan) c.argv.push_back("orphan");
  return run_consumer(c, std::move(payload), opts).success() ? 0 : 1;
}

int run(const std::string& dir, const std::string& mode, const std::string& arg,
        const std::string& linger) {
  if (mode == "held") return run_held(dir, std::stoi(arg));
  if (mode == "escape") return run_escape(dir, arg == "orphan");
  HandoffOptions opts;
  opts.job_name = "handoff_driver " + mode;
  PayloadSource payload;
  if (mode == "stream") {
    Generator gen(arg.empty() ? 0 : std::stoull(arg));
    payload.stream = &gen;
    std::string after = linger.empty() ? "" : "; sleep " + linger + "; echo done > done";
    auto c = shell(dir, "cat > /dev/null", after);
    return run_consumer(c, std::move(payload), opts).success() ? 0 : 1;
  }
  {
    std::ofstream out(dir + "/payload");
    for (long i = 0; i < std::stol(arg); ++i) out << "line " << i << "\n";
  }
  payload.file = Fd(::open((dir + "/payload").c_str(), O_RDONLY | O_CLOEXEC));
  auto c = shell(dir, "while read -r l; do sleep 0.05; done", "");
  return run_consumer(c, std::move(payload), opts).success() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string mode = argc > 2 ? argv[2] : "";
  bool known = mode == "stream" || mode == "file" || mode == "held" || mode == "escape";
  bool optional_arg = mode == "stream" || mode == "escape";
  if (!known || (!optional_arg && argc != 4) || argc > 5) {
    std::fprintf(stderr,
                 "usage: handoff_driver DIR stream [BYTES [SECONDS]] | DIR file LINES | "
                 "DIR held JOBS | DIR escape [orphan]\n");
    return 2;
  }
  try {
    return run(argv[1], mode, argc > 3 ? argv[3] : "", argc > 4 ? argv[4] : "");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "handoff_driver: %s\n", e.what());
    return 1;
  }
}
