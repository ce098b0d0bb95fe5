// SPDX-License-Identifier: GPL-3.0-or-later
#include "safespool/hooks.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <map>

#include "safespool/fd.hpp"
#include "safespool/signals.hpp"
#include "safespool/spawn.hpp"

extern char** environ;

namespace safespool {
namespace {

using Clock = std::chrono::steady_clock;

// Control characters (newlines too) become spaces, runs of them one space:
// SAFESPOOL_REASON fits a log line or a mail subject.
std::string one_line(const std::string& text) {
  std::string out;
  for (char c : text) {
    bool control = static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
    if (control && (out.empty() || out.back() == ' ')) continue;
    out += control ? ' ' : c;
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

// An environment value cannot hold a NUL byte.
std::string env_value(std::string v) {
  std::replace(v.begin(), v.end(), '\0', '?');
  return v;
}

std::vector<std::string> current_environment() {
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e) env.emplace_back(*e);
  return env;
}

enum class Waited { Exited, TimedOut, Interrupted };

// Waits for `child` up to `limit`, or until SIGINT/SIGTERM/SIGHUP asks the
// processor to stop: a notifier must never delay a stop.
Waited wait_bounded(Child& child, std::chrono::milliseconds limit) {
  auto end = Clock::now() + limit;
  for (;;) {
    if (child.try_wait()) return Waited::Exited;
    if (take_interrupt() || interrupted()) return Waited::Interrupted;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now());
    if (left.count() <= 0) return Waited::TimedOut;
    pollfd p[2] = {{child.pidfd(), POLLIN, 0}, {interrupt_fd(), POLLIN, 0}};
    int n = interrupt_fd() >= 0 ? 2 : 1;
    if (::poll(p, n, static_cast<int>(std::min<int64_t>(left.count(), 1000))) < 0 && errno != EINTR)
      return child.try_wait() ? Waited::Exited : Waited::TimedOut;
  }
}

std::string seconds_text(std::chrono::milliseconds t) {
  auto ms = t.count();
  return ms % 1000 == 0 ? std::to_string(ms / 1000) + " s" : std::to_string(ms) + " ms";
}

// Runs one hook program to its end or its timeout; logs what went wrong.
void run_one(const std::string& program, const std::vector<std::string>& env, const char* kind,
             std::chrono::milliseconds timeout) {
  Fd null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  SpawnSpec spec;
  spec.argv = {program};
  spec.env = env;
  spec.stdin_fd = null ? null.get() : 0;
  spec.stdout_fd = 2;  // a notifier's words are log lines, not job output
  Child child = spawn(spec);
  Waited w = wait_bounded(child, timeout);
  if (w != Waited::Exited) {
    child.kill_group(SIGKILL);
    child.wait();
    if (w == Waited::TimedOut)
      spdlog::warn("{} hook {} did not finish within {}: killed", kind, program,
                   seconds_text(timeout));
    else
      spdlog::warn("{} hook {} stopped: safespool was interrupted", kind, program);
    return;
  }
  ExitStatus st = child.wait();
  if (!st.success()) spdlog::warn("{} hook {} failed: {}", kind, program, st.describe());
}

}  // namespace

const char* hook_kind_name(HookEvent::Kind kind) {
  switch (kind) {
    case HookEvent::Kind::Success:
      return "success";
    case HookEvent::Kind::Failure:
      return "failure";
    case HookEvent::Kind::Blocked:
      return "blocked";
  }
  return "?";
}

void Hooks::add(HookEvent::Kind kind, std::string program) {
  programs_.emplace_back(kind, std::move(program));
}

void Hooks::set_timeout(std::chrono::milliseconds t) { timeout_ = t; }

bool Hooks::empty() const { return programs_.empty(); }

bool Hooks::has(HookEvent::Kind kind) const {
  return std::any_of(programs_.begin(), programs_.end(),
                     [kind](const auto& p) { return p.first == kind; });
}

std::vector<std::string> Hooks::environment(const HookEvent& e,
                                            const std::vector<std::string>& base) {
  std::vector<std::pair<std::string, std::string>> env;
  std::map<std::string, size_t> at;  // name -> index in env
  auto set = [&](const std::string& name, const std::string& value) {
    if (name.empty() || name.find('=') != std::string::npos) return;
    auto [it, fresh] = at.emplace(name, env.size());
    if (fresh)
      env.emplace_back(name, env_value(value));
    else
      env[it->second].second = env_value(value);
  };
  for (const auto& kv : base) {
    auto eq = kv.find('=');
    if (eq != std::string::npos) set(kv.substr(0, eq), kv.substr(eq + 1));
  }
  for (const auto& [k, v] : e.job_env) set(k, v);
  set("SAFESPOOL_EVENT", hook_kind_name(e.kind));
  set("SAFESPOOL_QUEUE", e.queue);
  set("SAFESPOOL_SEQ", e.seq ? std::to_string(*e.seq) : "");
  set("SAFESPOOL_EXIT_STATUS", e.exit_status ? std::to_string(*e.exit_status) : "");
  set("SAFESPOOL_REASON", one_line(e.reason));
  set("SAFESPOOL_STDERR_TAIL", e.stderr_tail);
  std::vector<std::string> out;
  out.reserve(env.size());
  for (auto& [k, v] : env) out.push_back(k + "=" + v);
  return out;
}

void Hooks::fire(const HookEvent& e) const noexcept {
  const char* kind = hook_kind_name(e.kind);
  for (const auto& [k, program] : programs_) {
    if (k != e.kind) continue;
    if (interrupted()) {
      spdlog::debug("{} hook {} not run: safespool was interrupted", kind, program);
      continue;
    }
    try {
      spdlog::debug("running {} hook {}", kind, program);
      run_one(program, environment(e, current_environment()), kind, timeout_);
    } catch (const std::exception& ex) {
      try {
        spdlog::warn("{} hook {} could not run: {}", kind, program, ex.what());
      } catch (...) {
      }
    } catch (...) {
    }
  }
}

}  // namespace safespool
