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
#include <sys/stat.h>
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

#include "descriptor_watch.hpp"
#include "progress.hpp"
#include "safespool/error.hpp"
#include "safespool/signals.hpp"
#include "stderr_tail.hpp"

namespace safespool {
namespace {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;
using Kind = HandoffResult::Kind;
using namespace std::chrono_literals;

/// Without --stall-timeout a stall is reported this often, never fatal.
constexpr auto kStallWarnEvery = 60s;

std::string seconds_text(std::chrono::milliseconds d) {
  return fmt::format("{:g} s", static_cast<double>(d.count()) / 1000.0);
}

/// A plain payload's stall diagnosis: how far the consumer is.
std::string describe_file(const PayloadProgress& p) {
  if (!p.of) return std::to_string(p.bytes) + " payload bytes read from the job file";
  return std::to_string(p.bytes) + " of " + std::to_string(p.of->size) +
         " payload bytes read from the job file";
}

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
        stream_(what.stream),
        consumer_(std::move(what.consumer)),
        file_(std::move(what.file)),
        start_offset_(what.start_offset),
        tail_(std::move(what.tail)),
        report_(opts.job_name, opts.progress, opts.log_progress_every),
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
  void watch_stall(const PayloadProgress& p);
  void check_stall(Clock::duration idle, const std::string& where);
  void abort(Kind kind, std::string message);
  void guard_lost(const std::string& why);
  void kill_now(const char* why);
  void kill_tree();
  void stop_watching();
  void clean_up();
  PayloadProgress progress() const;
  HandoffResult make_result() const;

  const HandoffOptions opts_;
  Launcher& launcher_;
  // Destroyed after the consumer: the relay's destructor closes the write end.
  std::unique_ptr<Relay> relay_;
  const Reader* stream_;  ///< stream payload: how far it has read its job file
  Consumer consumer_;
  /// Plain payload: the job file. Its offset is the consumer's (one open
  /// file, shared): what /proc/PID/fdinfo/0 shows as pos.
  Fd file_;
  uint64_t start_offset_;
  std::unique_ptr<StderrTail> tail_;
  ProgressReport report_;
  asio::io_context io_;
  DescriptorWatch lifeline_watch_, guard_watch_, signal_watch_;
  asio::steady_timer timeout_, grace_, tick_;
  Clock::time_point start_ = Clock::now();
  uint64_t last_bytes_ = 0;                ///< plain payload: the position last seen
  Clock::time_point last_moved_ = start_;  ///< plain payload: when it moved
  std::optional<ExitStatus> status_;
  std::optional<Kind> abort_kind_;
  std::string abort_message_;
  int signal_ = 0;
  int stall_warnings_ = 0;
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
  report_.done();
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
  PayloadProgress p = progress();
  report_.tick(p);
  if (!abort_kind_) watch_stall(p);
  arm_tick();
}

/// The same watchdog for both payloads that we can watch: bytes into the
/// consumer's pipe, or the consumer's position in the job file.
void ConsumerRun::Supervisor::watch_stall(const PayloadProgress& p) {
  if (relay_) {
    if (!relay_->finished())
      check_stall(Clock::now() - relay_->last_progress(), relay_->describe_pipe());
    return;
  }
  if (!file_) return;
  if (p.bytes != last_bytes_) {
    last_bytes_ = p.bytes;
    last_moved_ = Clock::now();
  }
  // What is left would have fitted into the pipe a stream gets, where it
  // would count as delivered: the consumer may work on as long as it likes
  // (and one that maps its stdin moves no offset at all).
  if (p.of && p.of->size - std::min(p.of->offset, p.of->size) <= target_pipe_size(opts_.pipe_size))
    return;
  check_stall(Clock::now() - last_moved_, describe_file(p));
}

void ConsumerRun::Supervisor::check_stall(Clock::duration idle, const std::string& where) {
  if (opts_.stall_timeout && idle >= *opts_.stall_timeout) {
    spdlog::error("{}: stalled: {}; consumer {}", opts_.job_name, where,
                  describe_process(consumer_.pid));
    abort(Kind::Stalled,
          "stalled: no payload byte moved for " + seconds_text(*opts_.stall_timeout));
  } else if (!opts_.stall_timeout && idle >= (stall_warnings_ + 1) * kStallWarnEvery) {
    ++stall_warnings_;
    spdlog::warn("{}: no payload byte moved for {} s: {}; consumer {}", opts_.job_name,
                 std::chrono::duration_cast<std::chrono::seconds>(idle).count(), where,
                 describe_process(consumer_.pid));
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

PayloadProgress ConsumerRun::Supervisor::progress() const {
  PayloadProgress p;
  if (relay_) {
    p.bytes = relay_->bytes();
    if (stream_) p.of = stream_->position();  // how far decoding has read the job file
    return p;
  }
  struct stat st {};
  off_t at = file_ ? ::lseek(file_.get(), 0, SEEK_CUR) : -1;
  if (at < 0 || ::fstat(file_.get(), &st) != 0) return p;
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  p.bytes = static_cast<uint64_t>(at) > start_offset_ ? at - start_offset_ : 0;
  p.of = SourcePosition{p.bytes, size > start_offset_ ? size - start_offset_ : 0};
  return p;
}

HandoffResult ConsumerRun::Supervisor::make_result() const {
  HandoffResult r;
  ExitStatus st = status_.value_or(ExitStatus{});
  r.status = st.value;
  r.bytes = progress().bytes;
  if (tail_) r.stderr_tail = tail_->take();
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
