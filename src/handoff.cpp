// SPDX-License-Identifier: GPL-3.0-or-later
// The hand-off: picks the consumer's stdin, spawns it, and supervises it.
//
// The supervisor is one Asio event loop on the calling thread. It waits on
// the consumer's pidfd (exit), the interrupt signalfd, a --timeout timer, a
// grace timer and a periodic tick (stall detection, progress), and on the
// relay thread's "done" notice. Every ending funnels through the same steps:
// stop the relay, signal the process group, reap the consumer, kill what is
// left of its group (guard included) before the pipe's write end is closed
// unless the ending was clean, join the relay, and tell the launcher, which
// keeps a guard that survived for the next consumer and reaps one that was
// killed. The guard (guard.hpp) leads the consumer's group and keeps the
// consumer from seeing EOF, or outliving us, if this process dies. See
// docs/design/handoff.md.
#include "safespool/handoff.hpp"

#include <signal.h>
#include <spdlog/spdlog.h>
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
#include <mutex>

#include "consumer_stdin.hpp"
#include "safespool/error.hpp"
#include "safespool/guard.hpp"
#include "safespool/relay.hpp"
#include "safespool/signals.hpp"
#include "safespool/spawn.hpp"

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

/// A consumer gets default SIGPIPE (spawn resets it); we must not die of
/// it when the consumer quits early, so EPIPE comes back from write().
void ignore_sigpipe() {
  static std::once_flag once;
  std::call_once(once, [] { ::signal(SIGPIPE, SIG_IGN); });
}

/// Waits for readability of a descriptor owned elsewhere (the Child's
/// pidfd, the process-wide signalfd): releases it instead of closing it.
class Watch {
 public:
  Watch(asio::io_context& io, int fd) : d_(io) {
    if (fd >= 0) d_.assign(fd);
  }
  ~Watch() {
    if (d_.is_open()) d_.release();
  }
  bool open() const { return d_.is_open(); }
  void cancel() {
    if (d_.is_open()) d_.cancel();
  }
  void wait(std::function<void()> f) {
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
  Supervisor(Launcher& launcher, Child child, std::unique_ptr<Relay> relay, Fd file,
             uint64_t start_offset, const HandoffOptions& opts)
      : opts_(opts),
        launcher_(launcher),
        relay_(std::move(relay)),
        child_(std::move(child)),
        file_(std::move(file)),
        start_offset_(start_offset),
        child_watch_(io_, child_.pidfd()),
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
  void on_child_exit();
  void on_relay_done();
  void on_interrupt();
  void on_tick();
  void check_stall(Clock::duration idle);
  void abort(Kind kind, std::string message);
  void kill_now(const char* why);
  void clean_up();
  uint64_t bytes() const;
  void show_progress(bool final);
  HandoffResult make_result() const;

  const HandoffOptions opts_;
  Launcher& launcher_;
  // Destroyed after the child: the relay's destructor closes the write end.
  std::unique_ptr<Relay> relay_;
  Child child_;
  Fd file_;  ///< plain payload: the job file, whose shared offset tells the bytes read
  uint64_t start_offset_;
  asio::io_context io_;
  Watch child_watch_, signal_watch_;
  asio::steady_timer timeout_, grace_, tick_;
  Clock::time_point start_ = Clock::now();
  Clock::time_point last_shown_ = start_;
  std::optional<ExitStatus> status_;
  std::optional<Kind> abort_kind_;
  std::string abort_message_;
  int signal_ = 0;
  int stall_warnings_ = 0;
  bool progress_shown_ = false;
  bool ended_ = false;  ///< run() cleaned up: the launcher knows
};

ConsumerRun::Supervisor::~Supervisor() {
  if (ended_) return;
  // Abandoned (the caller threw before wait()): the relay thread posts to
  // io_ and must end first; the group dies before our write end closes.
  try {
    if (relay_) {
      relay_->stop();
      relay_->join();
    }
    child_.kill_group(SIGKILL);
    child_.wait();
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
  child_watch_.wait([this] { on_child_exit(); });
  if (signal_watch_.open()) signal_watch_.wait([this] { on_interrupt(); });
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

void ConsumerRun::Supervisor::on_child_exit() {
  // A readable pidfd means it has exited: this cannot block for long, and
  // re-arming instead could wait forever for an edge that already passed.
  status_ = child_.try_wait();
  if (!status_) status_ = child_.wait();
  spdlog::debug("{}: consumer {} ended: {}", opts_.job_name, child_.pid(), status_->describe());
  // Nothing else can change the outcome now: let io_.run() return.
  timeout_.cancel();
  grace_.cancel();
  tick_.cancel();
  signal_watch_.cancel();
}

void ConsumerRun::Supervisor::on_relay_done() {
  if (status_ || !relay_) return;  // consumer already reaped; run() cleans up
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
  if (!status_) signal_watch_.wait([this] { on_interrupt(); });
}

void ConsumerRun::Supervisor::on_tick() {
  show_progress(false);
  if (relay_ && !relay_->finished() && !abort_kind_)
    check_stall(Clock::now() - relay_->last_progress());
  if (!status_) arm_tick();
}

void ConsumerRun::Supervisor::check_stall(Clock::duration idle) {
  if (opts_.stall_timeout && idle >= *opts_.stall_timeout) {
    spdlog::error("{}: stalled: {}; consumer {}", opts_.job_name, relay_->describe_pipe(),
                  describe_process(child_.pid()));
    abort(Kind::Stalled,
          "stalled: no payload byte moved for " + seconds_text(*opts_.stall_timeout));
  } else if (!opts_.stall_timeout && idle >= (stall_warnings_ + 1) * kStallWarnEvery) {
    ++stall_warnings_;
    spdlog::warn("{}: no payload byte moved for {} s: {}; consumer {}", opts_.job_name,
                 std::chrono::duration_cast<std::chrono::seconds>(idle).count(),
                 relay_->describe_pipe(), describe_process(child_.pid()));
  } else if (idle < kStallWarnEvery) {
    stall_warnings_ = 0;
  }
}

void ConsumerRun::Supervisor::abort(Kind kind, std::string message) {
  if (abort_kind_ || status_) return;
  abort_kind_ = kind;
  abort_message_ = std::move(message);
  timeout_.cancel();
  if (relay_) relay_->stop();
  if (kind == Kind::DecodeFailed) {
    // EOF is a promise: kill first, so the consumer cannot read the
    // closed pipe as a complete stream, then close.
    kill_now("payload stream failed");
    if (relay_) relay_->close_write();
    return;
  }
  spdlog::debug("{}: {}: SIGTERM to group {}, grace {}", opts_.job_name, abort_message_,
                child_.pgid(), seconds_text(opts_.grace));
  child_.kill_group(SIGTERM);
  grace_.expires_after(opts_.grace);
  grace_.async_wait([this](boost::system::error_code ec) {
    if (!ec) kill_now("grace period over");
  });
}

void ConsumerRun::Supervisor::kill_now(const char* why) {
  spdlog::debug("{}: {}: SIGKILL to group {}", opts_.job_name, why, child_.pgid());
  child_.kill_group(SIGKILL);
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
  // what is left of the group (grandchildren that ignored SIGTERM, holders
  // of the read end, the guard) dies before our close could look like the
  // end of the payload. The group id is still pinned: the guard, its
  // leader, is not reaped yet.
  if (!clean) child_.kill_group(SIGKILL);
  if (relay_) relay_->close_write();
  // After a clean ending the guard holds nothing and stays, ready to kill
  // the next consumer should we die; a killed one is reaped.
  launcher_.consumer_ended(clean);
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

std::string HandoffResult::describe() const {
  switch (kind) {
    case Kind::Exited:
      return ExitStatus{false, status}.describe();
    case Kind::Signaled:
      return ExitStatus{true, status}.describe();
    default:
      return message;
  }
}

uint64_t ConsumerRun::Supervisor::bytes() const {
  if (relay_) return relay_->bytes();
  if (!file_) return 0;
  off_t at = ::lseek(file_.get(), 0, SEEK_CUR);
  return at > 0 && static_cast<uint64_t>(at) > start_offset_ ? at - start_offset_ : 0;
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

ConsumerRun start_consumer(Launcher& launcher, const ConsumerSpec& consumer, PayloadSource payload,
                           const HandoffOptions& opts) {
  ignore_sigpipe();
  ConsumerStdin in = choose_stdin(payload, opts);
  SpawnSpec spec;
  spec.argv = consumer.argv;
  spec.env = consumer.env;
  spec.stdin_fd = in.fd;
  spec.stdout_fd = consumer.stdout_fd;
  spec.stderr_fd = consumer.stderr_fd;
  // Into the guard's group; with a pipe, the guard holds its copy of the
  // write end before the consumer exists.
  Child child = launcher.start(std::move(spec), payload.stream ? in.pipe.write.get() : -1);
  in.pipe.read.reset();  // only the consumer may hold the read end
  std::unique_ptr<Relay> relay;
  if (payload.stream)
    relay = std::make_unique<Relay>(*payload.stream, std::move(in.pipe.write), opts.tick);
  spdlog::debug("{}: started consumer {} ({}) in the group of guard {}", opts.job_name, child.pid(),
                consumer.argv[0], child.pgid());
  auto sup = std::make_unique<ConsumerRun::Supervisor>(
      launcher, std::move(child), std::move(relay), std::move(payload.file), in.start_offset, opts);
  sup->start();
  return ConsumerRun(std::move(sup));
}

HandoffResult run_consumer(Launcher& launcher, const ConsumerSpec& consumer, PayloadSource payload,
                           const HandoffOptions& opts) {
  return start_consumer(launcher, consumer, std::move(payload), opts).wait();
}

HandoffResult run_consumer(const ConsumerSpec& consumer, PayloadSource payload,
                           const HandoffOptions& opts) {
  Launcher own;
  return run_consumer(own, consumer, std::move(payload), opts);
}

}  // namespace safespool
