// SPDX-License-Identifier: GPL-3.0-or-later
// Internal to src/supervisor.cpp: an Asio wait on a descriptor that
// someone else owns (the guard's lifeline and pidfd, the process-wide
// interrupt signalfd), let go instead of closed.
#pragma once

// clang-format off
#include <utility>  // before Asio: Boost 1.74 under C++20 needs it first
// clang-format on

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <functional>

#include "safespool/error.hpp"

namespace safespool {

/// Waits for readability of a descriptor owned elsewhere (the guard's
/// lifeline and pidfd, the process-wide signalfd): releases it instead of
/// closing it.
class DescriptorWatch {
 public:
  DescriptorWatch(boost::asio::io_context& io, int fd) : d_(io) {
    if (fd >= 0) d_.assign(fd);
  }
  ~DescriptorWatch() { release(); }
  bool open() const { return d_.is_open(); }
  /// Stops watching (a waiting handler gets operation_aborted) and lets
  /// the descriptor go, so that its owner may close it.
  void release() {
    if (d_.is_open()) d_.release();
  }
  void wait(std::function<void()> f) {
    if (!d_.is_open()) return;
    d_.async_wait(boost::asio::posix::descriptor_base::wait_read,
                  [f = std::move(f)](boost::system::error_code ec) {
                    if (ec == boost::asio::error::operation_aborted) return;
                    // Failing loudly beats never noticing the consumer's exit.
                    if (ec) throw SysError("cannot wait on descriptor", ec.value());
                    f();
                  });
  }

 private:
  boost::asio::posix::stream_descriptor d_;
};

}  // namespace safespool
