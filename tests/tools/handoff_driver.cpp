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
//
// Exits 0 when the consumer succeeded, 1 otherwise, 2 on bad usage.
#include <fcntl.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "safespool/handoff.hpp"

extern char** environ;

namespace {

using namespace safespool;

/// Pseudo-random bytes, `limit` of them (0: for ever).
class Generator : public Reader {
 public:
  explicit Generator(uint64_t limit) : limit_(limit) {}
  size_t read(std::span<std::byte> buf) override {
    size_t n = std::min<size_t>(buf.size(), 64 << 10);
    if (limit_) n = static_cast<size_t>(std::min<uint64_t>(n, limit_ - pos_));
    for (size_t i = 0; i < n; ++i) buf[i] = std::byte(static_cast<unsigned char>((pos_ + i) * 131));
    pos_ += n;
    return n;
  }
  void finish() override {}
  std::string describe() const override { return "generator"; }

 private:
  uint64_t limit_, pos_ = 0;
};

ConsumerSpec shell(const std::string& dir, const std::string& body, const std::string& after) {
  ConsumerSpec c;
  c.argv = {"/bin/sh", "-c", "cd '" + dir + "' || exit 99; echo $$ > consumer.pid; " + body +
                                 "; echo eof > marker" + after};
  for (char** e = environ; *e; ++e) c.env.push_back(*e);
  return c;
}

int run(const std::string& dir, const std::string& mode, const std::string& arg,
        const std::string& linger) {
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
  if ((mode != "stream" && mode != "file") || (mode == "file" && argc != 4) || argc > 5) {
    std::fprintf(stderr, "usage: handoff_driver DIR stream [BYTES [SECONDS]] | DIR file LINES\n");
    return 2;
  }
  try {
    return run(argv[1], mode, argc > 3 ? argv[3] : "", argc > 4 ? argv[4] : "");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "handoff_driver: %s\n", e.what());
    return 1;
  }
}
