// SPDX-License-Identifier: GPL-3.0-or-later
// The OpenPGP batch: the first bytes of many messages, decrypted by one gpg.
//
// A queue scan needs only the first bytes of each packet, and GPGME starts
// one gpg per message: on a queue of small encrypted packets, process
// start-up is nearly all the cost. `gpg --decrypt-files` decrypts many
// messages in one process. Its outputs are FIFOs in a private directory
// (the plaintext never rests in a file), its inputs symlinks to the job
// files we already opened (/proc/PID/fd/N: the very files, not whatever
// the names point to now). What it writes is a hint only: a head reader
// serves it and then continues with a GPGME reader of its own, which
// checks it against the real output and gives the verdict.
//
// HeadsBatch owns the directory and what was read so far; GpgRun is one
// gpg process over the files not tried yet. gpg handles the files in
// order and gives up by itself on some errors (a key that needs a
// passphrase ends a --batch run); its FILE_START status lines say where,
// and the next run starts after that file.
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstring>
#include <mutex>
#include <string_view>
#include <utility>
#include <vector>

#include "gpgme_handles.hpp"
#include "prefix_reader.hpp"
#include "safespool/decode.hpp"
#include "safespool/error.hpp"
#include "safespool/guard.hpp"
#include "safespool/signals.hpp"
#include "safespool/spawn.hpp"
#include "scratch_dir.hpp"

namespace safespool {
namespace {

/// Plaintext read and dropped per batched message before gpg is stopped:
/// a message of at most kBatchMaxFileSize bytes that expands further is a
/// compression bomb, and its reader will stop early on its own.
constexpr uint64_t kMaxDropped = 64 << 20;
/// Messages per gpg run (and FIFOs open at once).
constexpr size_t kHeadsPerRun = 128;
/// Runs that gpg may give up before the last file; after that, the rest is
/// left to the readers (each message alone, as without a batch).
constexpr int kMaxAborted = 3;

/// An interrupt is waiting to be taken (signals.hpp); not consumed here.
bool interrupt_pending() {
  pollfd p{interrupt_fd(), POLLIN, 0};
  return p.fd >= 0 && ::poll(&p, 1, 0) > 0;
}

/// gpg's options for a batch, before --decrypt-files. Status goes to
/// stderr, among gpg's "gpg: ..." messages: stdout is where a "for your
/// eyes only" message would go. --no-use-embedded-filename: whatever
/// gpg.conf says, the outputs are our FIFOs, never a name taken from the
/// message.
std::vector<std::string> gpg_options(const std::string& program,
                                     const std::optional<std::string>& home) {
  std::vector<std::string> argv = {program,
                                   "--batch",
                                   "--no-tty",
                                   "--quiet",
                                   "--yes",
                                   "--status-fd",
                                   "2",
                                   "--pinentry-mode",
                                   "loopback",
                                   "--disable-dirmngr",
                                   "--no-use-embedded-filename"};
  if (home) {
    argv.push_back("--homedir");
    argv.push_back(*home);
  }
  return argv;
}

/// `argv` run through `safespool-guard --tether`: SIGKILLed when the
/// thread that starts it ends (PR_SET_PDEATHSIG), and not run at all if
/// this process is gone by the time the tether holds. A gpg blocked on
/// its next FIFO would otherwise outlive a killed processor for ever.
/// That thread is the scan's, which waits for gpg in GpgRun::wait(): it
/// cannot end first.
std::vector<std::string> tethered(std::vector<std::string> argv) {
  std::vector<std::string> out = {find_guard(guard_candidates()), "--tether",
                                  std::to_string(::getpid()), argv[0]};
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

/// The file that a status line "[GNUPG:] FILE_START 3 DIR/I.gpg" names, when
/// it names one of files [0, n) of `dir`.
std::optional<size_t> started_file(std::string_view line, const std::string& dir, size_t n) {
  constexpr std::string_view kStart = "[GNUPG:] FILE_START ";
  const std::string prefix = dir + "/";
  if (!line.starts_with(kStart)) return std::nullopt;
  size_t at = line.find(prefix);
  if (at == std::string_view::npos) return std::nullopt;
  const char* end_of_line = line.data() + line.size();
  size_t i = 0;
  auto [end, ec] = std::from_chars(line.data() + at + prefix.size(), end_of_line, i);
  if (ec != std::errc() || std::string_view(end, end_of_line - end) != ".gpg" || i >= n)
    return std::nullopt;
  return i;
}

/// How a run of gpg over files [from, n) ended, and where the next starts.
struct BatchEnd {
  size_t next;   ///< first file not yet tried; n when all were
  bool aborted;  ///< gpg gave up on its own before the last file
};

/// The files of one openpgp_heads() call (at most kHeadsPerRun): in a
/// private directory, a link to each file ("I.gpg") and a FIFO for gpg's
/// output of it ("I"), and up to `limit` bytes of what gpg wrote into each.
class HeadsBatch {
 public:
  HeadsBatch(std::span<const int> files, size_t limit);
  /// Runs gpg until every file was tried, gpg gave up kMaxAborted times or
  /// an interrupt came; returns the heads (empty where gpg wrote nothing).
  std::vector<std::vector<std::byte>> run(const std::vector<std::string>& options);

 private:
  friend class GpgRun;
  std::string path(size_t i, const char* suffix = "") const {
    return dir_.path() + "/" + std::to_string(i) + suffix;
  }

  ScratchDir dir_{"safespool-gpg"};
  size_t limit_;
  std::vector<Fd> fifos_;  ///< read ends; closed once their writer closed
  std::vector<std::vector<std::byte>> heads_;
  Fd devnull_;
};

/// One `gpg --decrypt-files` over files [from, n) of a batch. Every output
/// gpg may open has a reader before gpg runs, so its open for writing
/// never waits (a previous run may have closed some). The rest of an
/// output past the head is read and dropped, so that gpg goes on to the
/// next file, unless it grows past kMaxDropped (a compression bomb): then
/// gpg is stopped and the next run starts after that file. An interrupt
/// stops gpg and gives up the rest.
class GpgRun {
 public:
  /// `options`: gpg_options().
  GpgRun(HeadsBatch& batch, const std::vector<std::string>& options, size_t from);
  /// Follows gpg until it ends or is stopped.
  BatchEnd wait();

 private:
  void open_fifos();
  void start(const std::vector<std::string>& options);
  std::optional<BatchEnd> step();
  void poll_set();
  bool drain(size_t i);
  void read_status();
  BatchEnd stop(size_t next);
  BatchEnd ended();

  HeadsBatch& batch_;
  const size_t from_, n_;
  Fd status_;  ///< read end of gpg's stderr (status lines), O_NONBLOCK
  Child child_;
  std::vector<std::byte> buf_ = std::vector<std::byte>(65536);
  std::vector<uint64_t> dropped_;  ///< per file, bytes read past its head
  std::string lines_;              ///< status text not yet split into lines
  std::optional<size_t> started_;  ///< the last file gpg started
  std::vector<pollfd> pfds_;
  std::vector<size_t> which_;  ///< file of pfds_[first_fifo_ + k]
  size_t intr_at_ = 0, status_at_ = 0, first_fifo_ = 0;
};

HeadsBatch::HeadsBatch(std::span<const int> files, size_t limit)
    : limit_(limit), fifos_(files.size()), heads_(files.size()) {
  const std::string self = "/proc/" + std::to_string(::getpid()) + "/fd/";
  for (size_t i = 0; i < files.size(); ++i) {
    if (::symlink((self + std::to_string(files[i])).c_str(), path(i, ".gpg").c_str()) != 0)
      throw_errno("cannot create a link in " + dir_.path());
    if (::mkfifo(path(i).c_str(), 0600) != 0) throw_errno("cannot create a FIFO in " + dir_.path());
  }
  devnull_.reset(::open("/dev/null", O_RDWR | O_CLOEXEC));
  if (!devnull_) throw_errno("cannot open /dev/null");
}

std::vector<std::vector<std::byte>> HeadsBatch::run(const std::vector<std::string>& options) {
  int aborted = 0;
  for (size_t next = 0; next < fifos_.size() && aborted < kMaxAborted;) {
    BatchEnd end = GpgRun(*this, options, next).wait();
    next = end.next;
    aborted += end.aborted;
  }
  return std::move(heads_);
}

GpgRun::GpgRun(HeadsBatch& batch, const std::vector<std::string>& options, size_t from)
    : batch_(batch), from_(from), n_(batch.fifos_.size()), dropped_(n_) {
  open_fifos();
  start(options);
}

void GpgRun::open_fifos() {
  for (size_t i = from_; i < n_; ++i) {
    if (batch_.fifos_[i]) continue;
    batch_.fifos_[i].reset(::open(batch_.path(i).c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
    if (!batch_.fifos_[i]) throw_errno("cannot open " + batch_.path(i));
  }
}

void GpgRun::start(const std::vector<std::string>& options) {
  SpawnSpec spec;
  spec.argv = options;
  spec.path = options[0];
  spec.argv.push_back("--decrypt-files");
  spec.argv.push_back("--");
  for (size_t i = from_; i < n_; ++i) spec.argv.push_back(batch_.path(i, ".gpg"));
  Pipe status = make_pipe();
  if (::fcntl(status.read.get(), F_SETFL, O_NONBLOCK) != 0) throw_errno("cannot set up a pipe");
  spec.stdin_fd = spec.stdout_fd = batch_.devnull_.get();
  spec.stderr_fd = status.write.get();
  child_ = spawn(spec);
  status_ = std::move(status.read);
}

BatchEnd GpgRun::wait() {
  for (;;) {
    if (std::optional<BatchEnd> end = step()) return *end;
  }
}

/// One wait for gpg's outputs, its status or its end, and what follows.
std::optional<BatchEnd> GpgRun::step() {
  poll_set();
  while (::poll(pfds_.data(), pfds_.size(), -1) < 0) {
    if (errno != EINTR) throw_errno("cannot poll gpg's outputs");
  }
  if (intr_at_ > 0 && pfds_[intr_at_].revents) return stop(n_);
  if (status_at_ > 0 && pfds_[status_at_].revents) read_status();
  for (size_t k = first_fifo_; k < pfds_.size(); ++k) {
    if (pfds_[k].revents && drain(which_[k - first_fifo_]))
      return stop(which_[k - first_fifo_] + 1);
  }
  if (pfds_[0].revents) return ended();  // what gpg wrote is in the pipes
  return std::nullopt;
}

/// pfds_: gpg's pidfd first, then the interrupt fd and the status pipe
/// when there are any (their index is 0 otherwise), then the open FIFOs.
void GpgRun::poll_set() {
  pfds_.assign({{child_.pidfd(), POLLIN, 0}});
  intr_at_ = interrupt_fd() >= 0 ? pfds_.size() : 0;
  if (intr_at_) pfds_.push_back({interrupt_fd(), POLLIN, 0});
  status_at_ = status_ ? pfds_.size() : 0;
  if (status_) pfds_.push_back({status_.get(), POLLIN, 0});
  first_fifo_ = pfds_.size();
  which_.clear();
  for (size_t i = from_; i < n_; ++i) {
    if (!batch_.fifos_[i]) continue;
    pfds_.push_back({batch_.fifos_[i].get(), POLLIN, 0});
    which_.push_back(i);
  }
}

/// Reads what file i's FIFO holds; true when its output grew too large.
bool GpgRun::drain(size_t i) {
  Fd& fifo = batch_.fifos_[i];
  for (;;) {
    ssize_t got = ::read(fifo.get(), buf_.data(), buf_.size());
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return false;  // EAGAIN: more later
    if (got == 0) {             // its writer closed (or never opened it)
      fifo.reset();
      return false;
    }
    auto& head = batch_.heads_[i];
    size_t keep = std::min(static_cast<size_t>(got), batch_.limit_ - head.size());
    head.insert(head.end(), buf_.begin(), buf_.begin() + static_cast<ptrdiff_t>(keep));
    dropped_[i] += static_cast<size_t>(got) - keep;
    if (dropped_[i] > kMaxDropped) return true;
  }
}

/// Reads gpg's status lines, noting the last file it started.
void GpgRun::read_status() {
  for (;;) {
    ssize_t got = status_ ? ::read(status_.get(), buf_.data(), buf_.size()) : 0;
    if (got < 0 && errno == EINTR) continue;
    if (got == 0) status_.reset();
    if (got <= 0) return;
    lines_.append(reinterpret_cast<const char*>(buf_.data()), static_cast<size_t>(got));
    for (size_t nl; (nl = lines_.find('\n')) != std::string::npos; lines_.erase(0, nl + 1)) {
      if (auto i = started_file(std::string_view(lines_.data(), nl), batch_.dir_.path(), n_))
        started_ = std::max(started_.value_or(*i), *i);
    }
  }
}

BatchEnd GpgRun::stop(size_t next) {
  child_.kill_group(SIGKILL);
  child_.wait();
  return {next, false};
}

BatchEnd GpgRun::ended() {
  child_.wait();
  read_status();
  for (size_t i = from_; i < n_; ++i) {
    if (batch_.fifos_[i]) drain(i);
  }
  if (!started_) return {n_, true};  // it did not even start: give up
  return {*started_ + 1, *started_ + 1 < n_};
}

/// The rest of a message whose head a batch served: a GPGME reader of its
/// own, opened by the first read, which reads the head again and checks it
/// before it gives a byte. finish() and signatures() are that reader's.
class GpgRestReader : public Reader {
 public:
  GpgRestReader(Fd file, std::string name, std::vector<std::byte> served,
                std::optional<std::string> home)
      : file_(std::move(file)),
        name_(std::move(name)),
        served_(std::move(served)),
        home_(std::move(home)) {}

  size_t read(std::span<std::byte> buf) override {
    if (buf.empty()) return 0;
    if (!full_) open_full();
    return full_->read(buf);
  }

  void finish() override {
    if (!full_) throw Error(name_ + ": OpenPGP: finish() before the end of the stream");
    full_->finish();
  }

  void cancel() override {
    std::lock_guard lock(mu_);
    cancelled_ = true;
    if (full_) full_->cancel();
  }

  std::string describe() const override { return "OpenPGP < " + name_; }
  std::string source() const override { return name_; }
  std::vector<Signature> signatures() const override {
    return full_ ? full_->signatures() : std::vector<Signature>{};
  }
  std::optional<SourcePosition> position() const override {
    std::lock_guard lock(mu_);  // another thread may ask while full_ is set
    return full_ ? full_->position() : std::nullopt;
  }

 private:
  void open_full() {
    auto r = make_gpg_reader(make_fd_reader(std::move(file_), name_), home_);
    {
      std::lock_guard lock(mu_);
      if (cancelled_) throw Error(name_ + ": OpenPGP: decryption was cancelled");
      full_ = std::move(r);
    }
    std::vector<std::byte> again(served_.size());
    if (read_exact(*full_, again) != again.size() || again != served_)
      throw FormatError(name_ + ": OpenPGP: the message changed while it was read");
    served_ = {};
  }

  Fd file_;
  std::string name_;
  std::vector<std::byte> served_;  ///< the head, until checked
  std::optional<std::string> home_;
  mutable std::mutex mu_;  ///< guards full_ (set once) and cancelled_ against cancel()
  bool cancelled_ = false;
  std::unique_ptr<Reader> full_;
};

}  // namespace

std::vector<std::vector<std::byte>> openpgp_heads(std::span<const int> files,
                                                  const std::optional<std::string>& gnupg_home,
                                                  size_t limit) {
  const size_t n = files.size();
  std::vector<std::vector<std::byte>> heads(n);
  if (n == 0 || limit == 0) return heads;
  if (n > kHeadsPerRun) {
    for (size_t at = 0; at < n; at += kHeadsPerRun) {
      auto part =
          openpgp_heads(files.subspan(at, std::min(kHeadsPerRun, n - at)), gnupg_home, limit);
      std::move(part.begin(), part.end(), heads.begin() + static_cast<ptrdiff_t>(at));
    }
    return heads;
  }
  if (interrupt_pending()) return heads;
  static std::once_flag reclaimed;  // what killed processes left, at our first batch
  std::call_once(reclaimed, [] { ScratchDir::reclaim("safespool-gpg"); });
  // gpg_program() first: it throws when gpg cannot be run at all.
  const auto options = tethered(gpg_options(gpg::gpg_program("OpenPGP"), gnupg_home));
  return HeadsBatch(files, limit).run(options);
}

std::unique_ptr<Reader> make_gpg_head_reader(Fd file, std::string name, std::vector<std::byte> head,
                                             const std::optional<std::string>& gnupg_home) {
  auto rest = std::make_unique<GpgRestReader>(std::move(file), std::move(name), head, gnupg_home);
  return std::make_unique<PrefixReader>(std::move(rest), std::move(head));
}

}  // namespace safespool
