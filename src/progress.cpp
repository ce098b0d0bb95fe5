// SPDX-License-Identifier: GPL-3.0-or-later
#include "progress.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace safespool {
namespace {

using namespace std::chrono_literals;

/// Below this, a terminal line would only flicker.
constexpr uint64_t kTerminalMinBytes = 4 << 20;
constexpr auto kTerminalEvery = 1s;

}  // namespace

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) b /= 1024, ++u;
  return fmt::format("{:.1f} {}", b, units[u]);
}

std::string duration_text(double seconds) {
  long s = std::lround(std::max(seconds, 0.0));
  if (s < 90) return fmt::format("{} s", s);
  if (s < 90 * 60) return fmt::format("{} min", (s + 30) / 60);
  long min = (s + 30) / 60;
  return fmt::format("{} h {:02} min", min / 60, min % 60);
}

std::string progress_text(const PayloadProgress& p, double seconds) {
  std::string out = fmt::format("{} ({}/s)", human_bytes(static_cast<double>(p.bytes)),
                                human_bytes(p.bytes / std::max(seconds, 1e-3)));
  if (!p.of || p.of->size == 0) return out;
  double done = std::min(1.0, static_cast<double>(p.of->offset) / p.of->size);
  out += fmt::format(", {:.0f}%", std::floor(done * 100));
  if (done > 0 && done < 1)
    out += ", about " + duration_text(seconds * (1 - done) / done) + " left";
  return out;
}

ProgressReport::ProgressReport(std::string job_name, bool terminal,
                               std::chrono::milliseconds log_every)
    : job_name_(std::move(job_name)), terminal_(terminal), log_every_(log_every) {}

void ProgressReport::tick(const PayloadProgress& p) {
  auto now = Clock::now();
  double seconds = std::chrono::duration<double>(now - start_).count();
  if (terminal_) {
    if (p.bytes < kTerminalMinBytes || now - last_ < kTerminalEvery) return;
    last_ = now;
    std::string line = fmt::format("\r{}: {}   ", job_name_, progress_text(p, seconds));
    std::fputs(line.c_str(), stderr);
    line_shown_ = true;
  } else if (now - last_ >= log_every_) {
    last_ = now;
    spdlog::info("{}: {} so far", job_name_, progress_text(p, seconds));
  }
}

void ProgressReport::done() {
  if (line_shown_) std::fputs("\n", stderr);
  line_shown_ = false;
}

}  // namespace safespool
