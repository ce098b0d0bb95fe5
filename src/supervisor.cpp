// SPDX-License-Identifier: GPL-3.0-or-later
// The supervisor: one Asio event loop per started consumer, run by
// ConsumerRun::wait() on the calling thread.
//
// It waits on the guard's lifeline (the consumer's end, reported by its
// guard), the guard's pidfd (the guard's death), the interrupt signalfd, a
// --timeout timer, a grace timer and a periodic tick (stall detection,
// progress, whether the guard was stopped), and on the relay thread's
// "done" notice. Every ending funnels through the same steps: stop the
// relay, kill the consumer's whole tree unless the ending was clean, only
// then close the pipe's write end, and tell the launcher, which keeps a
// guard that survived for the next consumer. See docs/design/handoff.md.
#include "supervisor.hpp"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/syscall.h>
#include <unistd.h>

// clang-format off
#include <utility>  // before Asio: Boost 1.74 under C++20 needs it first
// clang-format on

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdio>
#include <cstring>
#include <functional>

#include "safespool/error.hpp"
#include "safespool/signals.hpp"

namespace safespool {
namespace {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;
using Kind = HandoffResult::Kind;
using namespace std::chrono_literals;

/// Below this, a progress line would only flicker.
constexpr uint64_t kProgressMinBytes = 4 << 20;
/// Without --stall-timeout a stall is reported this often, never fatal.
constexpr auto kStallWarnEvery = 60s;

std::string seconds_text(std::chrono::milliseconds d) {
  return fmt::format("{:g} s", static_cast<double>(d.count()) / 1000.0);
}

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) b /= 1024, ++u;
  return fmt::format("{:.1f} {}", b, units[u]);
}

/// Waits for readability of a descriptor owned elsewhere (the guard's
/// lifeline and pidfd, the process-wide signalfd): releases it instead of
/// closing it.
class Watch {
 public:
  Watch(asio::io_context& io, int fd) : d_(io) {
    if (fd >= 0) d_.assign(fd);
  }
  ~Watch() { release(); }
  bool open() const { return d_.is_open(); }
  /// Stops watching (a waiting handler gets operation_aborted) and lets
  /// the descriptor go, so that its owner may close it.
  void release() {
    if (d_.is_open()) d_.release();
  }
  void wait(std::function<void()> f) {
    if (!d_.is_open()) return;
    d_.async_wait(asio::posix::descriptor_base::wait_read,
                  [f = std::move(f)](boost::system::error_code ec) {
                    if (ec == asio::error::operation_aborted) return;
                    // Failing loudly beats never noticing the consumer's exit.
                    if (ec) throw SysError("cannot wait on descriptor", ec.value());
                    f();
                  });
  }

 private:
  asio::posix::stream_descriptor d_;
};

void log_result(const HandoffOptions& opts, const HandoffResult& r) {
  spdlog::info("{}: {} bytes in {:.1f} s ({}/s): {}", opts.job_name, r.bytes, r.seconds,
               human_bytes(r.bytes / std::max(r.seconds, 1e-3)), r.describe());
}

}  // namespace

/// Runs the event loop for one started consumer and builds the result.
class ConsumerRun::Supervisor {
 public:
  Supervisor(Supervised what, const HandoffOptions& opts)
      : opts_(opts),
        launcher_(what.launcher),
        relay_(std::move(what.relay)),
        consumer_(std::move(what.consumer)),
        file_(std::move(what.file)),
        start_offset_(what.start_offset),
        lifeline_watch_(io_, launcher_.guard_lifeline()),
        guard_watch_(io_, launcher_.guard_pidfd()),
        signal_watch_(io_, interrupt_fd()),
        timeout_(io_),
        grace_(io_),
        tick_(io_) {}
  ~Supervisor();
  /// Sets the payload flowing and the timers running.
  void start();
  HandoffResult run();

 private:
  void arm();
  void arm_tick();
  void on_guard_said();
  void on_guard_gone();
  void on_consumer_end(ExitStatus st);
  void on_relay_done();
  void on_interrupt();
  void on_tick();
  void check_stall(Clock::duration idle);
  void abort(Kind kind, std::string message);
  void guard_lost(const std::string& why);
  void kill_now(const char* why);
  void kill_tree();
  void stop_watching();
  void clean_up();
  uint64_t bytes() const;
  void show_progress(bool final);
  HandoffResult make_result() const;

  const HandoffOptions opts_;
  Launcher& launcher_;
  // Destroyed after the consumer: the relay's destructor closes the write end.
  std::unique_ptr<Relay> relay_;
  Consumer consumer_;
  Fd file_;  ///< plain payload: the job file, whose shared offset tells the bytes read
  uint64_t start_offset_;
  asio::io_context io_;
  Watch lifeline_watch_, guard_watch_, signal_watch_;
  asio::steady_timer timeout_, grace_, tick_;
  Clock::time_point start_ = Clock::now();
  Clock::time_point last_shown_ = start_;
  std::optional<ExitStatus> status_;
  std::optional<Kind> abort_kind_;
  std::string abort_message_;
  int signal_ = 0;
  int stall_warnings_ = 0;
  bool progress_shown_ = false;
  bool killed_ = false;  ///< the consumer's tree was killed
  bool ended_ = false;   ///< run() cleaned up: the launcher knows
};

ConsumerRun::Supervisor::~Supervisor() {
  if (ended_) return;
  // Abandoned (the caller threw before wait(), or the loop failed): the
  // relay thread posts to io_ and must end first; the tree dies before
  // our write end closes.
  try {
    stop_watching();
    if (relay_) {
      relay_->stop();
      relay_->join();
    }
    kill_tree();
    launcher_.consumer_ended(false);
  } catch (const std::exception& e) {
    spdlog::warn("{}: cannot end the consumer cleanly: {}", opts_.job_name, e.what());
  }
}

void ConsumerRun::Supervisor::start() {
  if (relay_) relay_->start([this] { asio::post(io_, [this] { on_relay_done(); }); });
  arm();
}

HandoffResult ConsumerRun::Supervisor::run() {
  io_.run();
  clean_up();
  ended_ = true;
  show_progress(true);
  HandoffResult result = make_result();
  log_result(opts_, result);
  return result;
}

void ConsumerRun::Supervisor::arm() {
  lifeline_watch_.wait([this] { on_guard_said(); });
  guard_watch_.wait([this] { on_guard_gone(); });
  signal_watch_.wait([this] { on_interrupt(); });
  if (opts_.timeout) {
    timeout_.expires_after(*opts_.timeout);
    timeout_.async_wait([this](boost::system::error_code ec) {
      if (!ec) abort(Kind::TimedOut, "timed out after " + seconds_text(*opts_.timeout));
    });
  }
  arm_tick();
}

void ConsumerRun::Supervisor::arm_tick() {
  tick_.expires_after(std::max<std::chrono::milliseconds>(opts_.tick, 10ms));
  tick_.async_wait([this](boost::system::error_code ec) {
    if (!ec) on_tick();
  });
}

void ConsumerRun::Supervisor::on_guard_said() {
  if (auto st = launcher_.take_exit()) return on_consumer_end(*st);
  // A guard that hung up is ending: its pidfd says the rest.
  if (launcher_.guard_hung_up()) return;
  lifeline_watch_.wait([this] { on_guard_said(); });
}

void ConsumerRun::Supervisor::on_guard_gone() {
  if (auto st = launcher_.take_exit()) return on_consumer_end(*st);  // said before it went
  if (status_ || killed_) return;
  guard_lost(launcher_.guard_trouble());
}

void ConsumerRun::Supervisor::on_consumer_end(ExitStatus st) {
  status_ = st;
  spdlog::debug("{}: consumer {} ended: {}", opts_.job_name, consumer_.pid, st.describe());
  stop_watching();  // nothing else can change the outcome now: io_.run() returns
}

void ConsumerRun::Supervisor::on_relay_done() {
  if (status_ || killed_ || !relay_) return;  // run() cleans up
  switch (relay_->outcome()) {
    case Relay::Outcome::Failed:
      relay_->join();
      abort(Kind::DecodeFailed, relay_->error());
      break;
    case Relay::Outcome::Eof:
      spdlog::debug("{}: payload complete, EOF after {} bytes", opts_.job_name, relay_->bytes());
      // Our write end is closed; the guard's copy is the last one. After an
      // abort it stays, so the consumer dies without seeing EOF.
      if (!abort_kind_) launcher_.payload_complete();
      break;
    default:
      break;  // ConsumerGone: its exit status is the answer; Stopped: ours
  }
}

void ConsumerRun::Supervisor::on_interrupt() {
  while (int sig = take_interrupt()) {
    spdlog::debug("{}: got signal {}", opts_.job_name, sig);
    if (abort_kind_) {
      kill_now("second interrupt");
    } else {
      signal_ = sig;
      abort(Kind::Interrupted, std::string("interrupted by SIG") + sigabbrev_np(sig));
    }
  }
  if (!status_ && !killed_) signal_watch_.wait([this] { on_interrupt(); });
}

void ConsumerRun::Supervisor::on_tick() {
  if (status_ || killed_) return;
  if (std::string trouble = launcher_.guard_trouble(); !trouble.empty()) return guard_lost(trouble);
  show_progress(false);
  if (relay_ && !relay_->finished() && !abort_kind_)
    check_stall(Clock::now() - relay_->last_progress());
  arm_tick();
}

void ConsumerRun::Supervisor::check_stall(Clock::duration idle) {
  if (opts_.stall_timeout && idle >= *opts_.stall_timeout) {
    spdlog::error("{}: stalled: {}; consumer {}", opts_.job_name, relay_->describe_pipe(),
                  describe_process(consumer_.pid));
    abort(Kind::Stalled,
          "stalled: no payload byte moved for " + seconds_text(*opts_.stall_timeout));
  } else if (!opts_.stall_timeout && idle >= (stall_warnings_ + 1) * kStallWarnEvery) {
    ++stall_warnings_;
    spdlog::warn("{}: no payload byte moved for {} s: {}; consumer {}", opts_.job_name,
                 std::chrono::duration_cast<std::chrono::seconds>(idle).count(),
                 relay_->describe_pipe(), describe_process(consumer_.pid));
  } else if (idle < kStallWarnEvery) {
    stall_warnings_ = 0;
  }
}

void ConsumerRun::Supervisor::abort(Kind kind, std::string message) {
  if (abort_kind_ || status_ || killed_) return;
  abort_kind_ = kind;
  abort_message_ = std::move(message);
  timeout_.cancel();
  if (relay_) relay_->stop();
  // EOF is a promise: a failed stream is killed at once, the pipe closed
  // only after that.
  if (kind == Kind::DecodeFailed) return kill_now("payload stream failed");
  spdlog::debug("{}: {}: SIGTERM to group {}, grace {}", opts_.job_name, abort_message_,
                consumer_.pid, seconds_text(opts_.grace));
  // The guard keeps the consumer unreaped until we are done: its group id
  // cannot have been reused.
  ::kill(-consumer_.pid, SIGTERM);
  grace_.expires_after(opts_.grace);
  grace_.async_wait([this](boost::system::error_code ec) {
    if (!ec) kill_now("grace period over");
  });
}

void ConsumerRun::Supervisor::guard_lost(const std::string& why) {
  spdlog::error("{}: {} while its consumer ran: the job fails, the consumer is killed",
                opts_.job_name, why);
  if (!abort_kind_) {
    abort_kind_ = Kind::GuardLost;
    abort_message_ = why + " while the consumer ran; consumer killed";
  }
  kill_now("guard lost");
}

void ConsumerRun::Supervisor::kill_now(const char* why) {
  if (killed_) return;
  spdlog::debug("{}: {}: SIGKILL to consumer {} and its whole tree", opts_.job_name, why,
                consumer_.pid);
  if (relay_) relay_->stop();
  stop_watching();
  kill_tree();  // the loop ends: nothing is watched any more
}

/// Kills the consumer's whole tree, before our write end may close.
void ConsumerRun::Supervisor::kill_tree() {
  if (killed_) return;
  killed_ = true;
  if (consumer_.pidfd) ::syscall(SYS_pidfd_send_signal, consumer_.pidfd.get(), SIGKILL, nullptr, 0);
  auto st = launcher_.kill_tree(relay_ ? relay_->write_fd() : -1);
  if (!status_) status_ = st;
}

/// Lets the guard's descriptors go (the launcher may close them now) and
/// cancels the timers.
void ConsumerRun::Supervisor::stop_watching() {
  timeout_.cancel();
  grace_.cancel();
  tick_.cancel();
  lifeline_watch_.release();
  guard_watch_.release();
  signal_watch_.release();
}

void ConsumerRun::Supervisor::clean_up() {
  bool clean = !abort_kind_;
  if (relay_) {
    relay_->stop();
    relay_->join();
    // A payload cut short by a consumer that quit without reading it all
    // is harmless once nobody holds the read end: nobody can take our
    // close for its end. `true` as a consumer does this on every job.
    clean = clean && (relay_->outcome() == Relay::Outcome::Eof || relay_->reader_gone());
  }
  // Aborted, or the payload was cut short while someone can still read:
  // what is left of the tree (a child in a session of its own, holders of
  // the read end) dies before our close could look like the end of the
  // payload.
  if (!clean) kill_tree();
  if (relay_) relay_->close_write();
  // After a clean ending the guard holds nothing and stays, ready to kill
  // the next consumer should we die.
  launcher_.consumer_ended(clean);
}

uint64_t ConsumerRun::Supervisor::bytes() const {
  if (relay_) return relay_->bytes();
  if (!file_) return 0;
  off_t at = ::lseek(file_.get(), 0, SEEK_CUR);
  return at > 0 && static_cast<uint64_t>(at) > start_offset_ ? at - start_offset_ : 0;
}

void ConsumerRun::Supervisor::show_progress(bool final) {
  if (!opts_.progress) return;
  auto now = Clock::now();
  uint64_t b = bytes();
  if (final) {
    if (progress_shown_) std::fputs("\n", stderr);
    return;
  }
  if (b < kProgressMinBytes || now - last_shown_ < 1s) return;
  last_shown_ = now;
  double secs = std::chrono::duration<double>(now - start_).count();
  std::string line = fmt::format("\r{}: {} ({}/s)   ", opts_.job_name, human_bytes(b),
                                 human_bytes(b / std::max(secs, 1e-3)));
  std::fputs(line.c_str(), stderr);
  progress_shown_ = true;
}

HandoffResult ConsumerRun::Supervisor::make_result() const {
  HandoffResult r;
  ExitStatus st = status_.value_or(ExitStatus{});
  r.status = st.value;
  r.bytes = bytes();
  r.seconds = std::chrono::duration<double>(Clock::now() - start_).count();
  r.signal_received = signal_;
  if (abort_kind_) {
    r.kind = *abort_kind_;
    r.message = abort_message_;
  } else {
    r.kind = st.signaled ? Kind::Signaled : Kind::Exited;
  }
  return r;
}

ConsumerRun supervise(Supervised what, const HandoffOptions& opts) {
  auto sup = std::make_unique<ConsumerRun::Supervisor>(std::move(what), opts);
  sup->start();
  return ConsumerRun(std::move(sup));
}

ConsumerRun::ConsumerRun(std::unique_ptr<Supervisor> sup) : sup_(std::move(sup)) {}
ConsumerRun::ConsumerRun(ConsumerRun&&) noexcept = default;
ConsumerRun& ConsumerRun::operator=(ConsumerRun&&) noexcept = default;
ConsumerRun::~ConsumerRun() = default;

ConsumerRun ConsumerRun::finished(HandoffResult result) {
  ConsumerRun run(nullptr);
  run.result_ = std::move(result);
  return run;
}

HandoffResult ConsumerRun::wait() {
  if (!result_ && sup_) result_ = sup_->run();
  sup_.reset();
  if (!result_) throw Error("a consumer run was waited for twice");
  return *result_;
}

}  // namespace safespool
