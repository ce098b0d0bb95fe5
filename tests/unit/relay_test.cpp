// SPDX-License-Identifier: GPL-3.0-or-later
// The relay alone: a Reader, a pipe, and the test as the consumer. The
// hand-off's tests (handoff_test.cpp) run real consumers; these reach the
// endings a consumer cannot cause, such as a pipe write that fails.
#include "safespool/relay.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>

#include "safespool/error.hpp"

namespace safespool {
namespace {

using namespace std::chrono_literals;

/// `size` pattern bytes, except that the read at `hang_at` blocks until
/// cancel(); once cancelled, every read returns 0 at once, which looks like
/// a clean end (the relay must not take it for one).
class PatternReader : public Reader {
 public:
  PatternReader(size_t size, size_t hang_at) : size_(size), hang_at_(hang_at) {}
  std::atomic<bool> hanging{false};
  std::atomic<int> cancels{0}, finishes{0};

  size_t read(std::span<std::byte> buf) override {
    std::unique_lock lock(mu_);
    if (cancels > 0) return 0;
    if (pos_ >= hang_at_) {
      hanging = true;
      cv_.wait(lock, [&] { return cancels > 0; });
      return 0;
    }
    size_t n = std::min({buf.size(), size_ - pos_, hang_at_ - pos_});
    for (size_t i = 0; i < n; ++i) buf[i] = static_cast<std::byte>((pos_ + i) % 251);
    pos_ += n;
    return n;
  }
  void finish() override { ++finishes; }
  void cancel() override {
    std::lock_guard lock(mu_);
    ++cancels;
    cv_.notify_all();
  }
  std::string describe() const override { return "pattern"; }

 private:
  size_t size_, hang_at_, pos_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
};

void read_exactly(int fd, size_t want) {
  std::vector<std::byte> buf(64 << 10);
  while (want > 0) {
    ssize_t n = ::read(fd, buf.data(), std::min(want, buf.size()));
    ASSERT_GT(n, 0) << "the pipe ended early";
    want -= static_cast<size_t>(n);
  }
}

// The relay thread, failing a pipe write while its decoder thread is stuck
// in a read, must cancel that read to end at all.
TEST(RelayTest, PipeWriteFailingWhileTheDecoderHangsCancelsItAndFails) {
  PatternReader r(64 << 20, 3 << 20);
  Pipe p = make_pipe();
  int fl = ::fcntl(p.write.get(), F_GETFL);
  ASSERT_EQ(::fcntl(p.write.get(), F_SETFL, fl | O_NONBLOCK), 0);
  std::promise<void> done;  // before the relay: its thread sets it, also on a failed test
  auto ended = done.get_future();
  Relay relay(r, std::move(p.write), 50ms);
  relay.start([&] { done.set_value(); });

  // Past the first MiB the decoder has its own thread; it runs up to four
  // 256 KiB blocks ahead of the writes, here to its hang at 3 MiB, while
  // the relay waits for room in the full pipe.
  ASSERT_NO_FATAL_FAILURE(read_exactly(p.read.get(), 5 << 19));
  for (int i = 0; i < 1000 && !r.hanging; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_TRUE(r.hanging) << "the decoder never reached its hang";
  // The relay's next write fails with ENOSPC: /dev/full in the pipe's place.
  Fd full(::open("/dev/full", O_WRONLY | O_CLOEXEC));
  ASSERT_TRUE(full);
  ASSERT_GE(::dup3(full.get(), relay.write_fd(), O_CLOEXEC), 0);

  ASSERT_EQ(ended.wait_for(10s), std::future_status::ready)
      << "the relay never ended: its decoder's read was not cancelled";
  relay.join();
  EXPECT_EQ(relay.outcome(), Relay::Outcome::Failed);
  EXPECT_NE(relay.error().find("cannot write to the consumer's pipe"), std::string::npos)
      << relay.error();
  EXPECT_GE(r.cancels, 1);
  EXPECT_EQ(r.finishes, 0) << "a failed relay confirmed the stream";
}

}  // namespace
}  // namespace safespool
