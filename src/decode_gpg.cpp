// SPDX-License-Identifier: GPL-3.0-or-later
// The OpenPGP stage: GPGME decrypt+verify, streamed in constant memory.
//
// GPGME is push-based: gpgme_op_decrypt_verify() runs to completion,
// pulling ciphertext through one callback and pushing plaintext through
// another. So it runs on a worker thread, and its output callback fills a
// bounded ring (kRingSize) that read() drains; a slow consumer blocks gpg,
// never grows memory. The worker is the only user of the inner reader while
// it runs.
//
// Cost: one gpg process per message, which is GPGME's model (a context is
// reused from a pool, so setting the GnuPG home does not start another,
// and the primary key of a signer comes from gpg's own VALIDSIG line, not
// from a key listing). A reader dropped before the end (a queue scan reads
// only the header) cancels the operation: GPGME closes its pipes and gpg
// ends on the broken pipe, having read little more than the buffers below.
//
// Unattended by design: loopback pinentry with a passphrase callback that
// refuses, so a key needing a passphrase is an error, never a prompt or a
// hang. Any non-zero GPGME result fails the stream, found at the end of the
// stream at the latest (a truncated message fails only after most of its
// plaintext came out: EOF is a promise). Signatures are recorded, not
// judged; a signer policy sits above this layer.
#include <fcntl.h>
#include <gpgme.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "gpgme_handles.hpp"
#include "safespool/decode.hpp"
#include "safespool/error.hpp"
#include "safespool/signals.hpp"
#include "safespool/spawn.hpp"

namespace safespool {
namespace {

/// Plaintext buffered between gpg and read(): the memory bound.
constexpr size_t kRingSize = 256 * 1024;
/// GPGME's buffer per pipe read or write (its default is 4 KiB: one poll,
/// one read and one callback per 4 KiB bounds throughput well below gpg's
/// own). A pipe holds 64 KiB, so more would not be filled.
constexpr const char* kIoBufferSize = "65536";
/// Most bytes read to find the first packet behind armor header lines.
constexpr size_t kSniffMax = 4096;

using gpg::DataPtr;
using gpg::KeyPtr;

/// A fixed-capacity byte FIFO.
class ByteRing {
 public:
  explicit ByteRing(size_t cap) : buf_(cap) {}
  bool empty() const { return count_ == 0; }
  size_t space() const { return buf_.size() - count_; }

  size_t push(const std::byte* p, size_t n) {
    n = std::min(n, space());
    for (size_t done = 0; done < n;) {
      size_t tail = (head_ + count_) % buf_.size();
      size_t k = std::min(n - done, buf_.size() - tail);
      std::memcpy(buf_.data() + tail, p + done, k);
      done += k;
      count_ += k;
    }
    return n;
  }

  size_t pop(std::span<std::byte> out) {
    size_t n = std::min(out.size(), count_);
    for (size_t done = 0; done < n;) {
      size_t k = std::min(n - done, buf_.size() - head_);
      std::memcpy(out.data() + done, buf_.data() + head_, k);
      done += k;
      head_ = (head_ + k) % buf_.size();
      count_ -= k;
    }
    return n;
  }

 private:
  std::vector<std::byte> buf_;
  size_t head_ = 0;
  size_t count_ = 0;
};

class GpgReader : public Reader {
 public:
  GpgReader(std::unique_ptr<Reader> inner, const std::optional<std::string>& home, bool unwrap)
      : inner_(std::move(inner)), unwrap_(unwrap), ring_(kRingSize) {
    ctx_ = gpg::lease_context(home, inner_->source() + ": OpenPGP");
    gpgme_set_passphrase_cb(ctx_.get(), &GpgReader::on_passphrase, this);
    gpgme_set_status_cb(ctx_.get(), &GpgReader::on_status, this);
    gpgme_data_t in = nullptr, out = nullptr;
    check_setup(gpgme_data_new_from_cbs(&in, &kInputCbs, this), "input stream");
    in_.reset(in);
    check_setup(gpgme_data_new_from_cbs(&out, &kOutputCbs, this), "output stream");
    out_.reset(out);
    check_setup(gpgme_data_set_flag(in_.get(), "io-buffer-size", kIoBufferSize), "input buffer");
    check_setup(gpgme_data_set_flag(out_.get(), "io-buffer-size", kIoBufferSize), "output buffer");
    // Last: the worker uses every member above.
    worker_ = std::thread(&GpgReader::run, this);
  }

  ~GpgReader() override {
    bool running;
    {
      std::lock_guard lock(mu_);
      running = !done_;
    }
    if (running) cancel();
    join();
  }

  size_t read(std::span<std::byte> buf) override {
    if (buf.empty()) return 0;
    std::unique_lock lock(mu_);
    data_cv_.wait(lock, [&] { return !ring_.empty() || done_ || cancelled_; });
    if (cancelled_) throw Error(inner_->source() + ": OpenPGP: decryption was cancelled");
    if (!ring_.empty()) {
      size_t n = ring_.pop(buf);
      space_cv_.notify_all();
      return n;
    }
    lock.unlock();
    join();
    check_result();
    return 0;
  }

  void finish() override {
    {
      std::lock_guard lock(mu_);
      if (!done_ || !ring_.empty()) {
        throw Error(inner_->source() + ": OpenPGP: finish() before the end of the stream");
      }
    }
    join();
    check_result();
    inner_->finish();
  }

  void cancel() override {
    {
      std::lock_guard lock(mu_);
      cancelled_ = true;
    }
    data_cv_.notify_all();
    space_cv_.notify_all();
    inner_->cancel();                // unblocks the worker's input callback
    gpgme_cancel_async(ctx_.get());  // and GPGME's own wait loop
    join();
  }

  std::string describe() const override { return "OpenPGP < " + inner_->describe(); }
  std::string source() const override { return inner_->source(); }

  std::optional<openpgp::Announcement> announcement() const override {
    {
      std::lock_guard lock(mu_);
      if (announcement_) return announcement_;
    }
    return inner_->announcement();
  }

  std::vector<Signature> signatures() const override {
    std::vector<Signature> all;
    {
      std::lock_guard lock(mu_);
      all = sigs_;
    }
    for (auto& s : inner_->signatures()) all.push_back(std::move(s));
    return all;
  }

 private:
  // Not const only because GPGME's prototype lacks it; never modified.
  static gpgme_data_cbs kInputCbs;
  static gpgme_data_cbs kOutputCbs;

  void check_setup(gpgme_error_t err, const std::string& what) const {
    if (err) {
      throw Error(inner_->source() + ": OpenPGP: " + what + ": " + gpgme_strerror(err));
    }
  }

  /// The worker thread: the whole GPGME operation, then its verdict.
  void run() noexcept {
    gpgme_error_t err = 0;
    std::vector<Signature> sigs;
    std::exception_ptr failure;
    bool encrypted = true;
    try {
      encrypted = sniff();
      // gpgme_op_decrypt_verify refuses a message that is only signed.
      if (!encrypted)
        err = gpgme_op_verify(ctx_.get(), in_.get(), nullptr, out_.get());
      else if (unwrap_)
        err = gpgme_op_decrypt_ext(ctx_.get(), GPGME_DECRYPT_UNWRAP, in_.get(), out_.get());
      else
        err = gpgme_op_decrypt_verify(ctx_.get(), in_.get(), out_.get());
      if (!err) sigs = collect_signatures();
    } catch (...) {
      failure = std::current_exception();
    }
    std::lock_guard lock(mu_);
    if (failure && !inner_error_) inner_error_ = failure;
    err_ = err;
    // Without encryption there is no MDC: only a good signature vouches
    // for the bytes of a signed message. One that announces no signature
    // and has none is a plain container (gpg --store), as with `gpg -d`.
    bool signed_message = !sigs.empty() || !announcement_ ||
                          announcement_->kind != openpgp::Announcement::Kind::NoSignature;
    unvouched_ = !encrypted && signed_message &&
                 std::none_of(sigs.begin(), sigs.end(), [](const Signature& s) { return s.good; });
    sigs_ = std::move(sigs);
    done_ = true;
    data_cv_.notify_all();
  }

  /// Reads the start of the message (kept in prefix_ for on_input) far
  /// enough to tell an encrypted message from a signed-only one, and for
  /// one that is not encrypted, what it announces about its signers.
  bool sniff() {
    std::optional<bool> encrypted;
    std::optional<openpgp::Announcement> said;
    auto decided = [&] {
      if (!encrypted) return false;
      if (*encrypted) return true;
      said = openpgp::announced_signers(prefix_);
      return said->kind != openpgp::Announcement::Kind::Unknown;
    };
    while (!decided() && prefix_.size() < kSniffMax) {
      std::byte buf[512];
      size_t n =
          inner_->read(std::span(buf).first(std::min(sizeof buf, kSniffMax - prefix_.size())));
      if (n == 0) break;
      prefix_.insert(prefix_.end(), buf, buf + n);
      if (!encrypted) encrypted = openpgp_encrypted(prefix_);
    }
    if (said) {
      std::lock_guard lock(mu_);
      announcement_ = std::move(said);
    }
    return encrypted.value_or(true);  // undecidable: let gpg say what is wrong
  }

  std::vector<Signature> collect_signatures();
  std::string primary_fingerprint(const std::string& fpr);
  void check_result() const;

  void join() {
    std::lock_guard lock(join_mu_);
    if (worker_.joinable()) worker_.join();
  }

  static gpgme_ssize_t on_input(void* handle, void* buf, size_t size);
  static gpgme_ssize_t on_output(void* handle, const void* buf, size_t size);
  static gpgme_error_t on_passphrase(void* handle, const char* uid_hint, const char*, int, int);
  static gpgme_error_t on_status(void* handle, const char* keyword, const char* args);

  std::unique_ptr<Reader> inner_;
  const bool unwrap_;              ///< decrypt only; an inner stage verifies
  std::vector<std::byte> prefix_;  ///< worker only: sniffed bytes not yet given to gpg
  size_t prefix_pos_ = 0;
  /// worker only: signing key fingerprint -> its primary key's, from VALIDSIG
  std::vector<std::pair<std::string, std::string>> primaries_;
  // Declared before the data objects: they are released first, and the
  // context goes back to the pool only after the worker was joined
  // (destructor body) and every member that GPGME calls back into is idle.
  gpg::CtxLease ctx_;
  DataPtr in_;
  DataPtr out_;
  mutable std::mutex mu_;             ///< guards everything below down to sigs_
  std::condition_variable data_cv_;   ///< ring has data, or done/cancelled
  std::condition_variable space_cv_;  ///< ring has space, or cancelled
  ByteRing ring_;
  bool done_ = false;
  bool cancelled_ = false;
  gpgme_error_t err_ = 0;
  std::exception_ptr inner_error_;
  std::string passphrase_for_;  ///< non-empty: gpg asked for a passphrase
  bool unvouched_ = false;      ///< signed-only message without a good signature
  /// What a message that is not encrypted announced (set by sniff()).
  std::optional<openpgp::Announcement> announcement_;
  std::vector<Signature> sigs_;
  std::mutex join_mu_;
  std::thread worker_;
};

gpgme_data_cbs GpgReader::kInputCbs = {&GpgReader::on_input, nullptr, nullptr, nullptr};
gpgme_data_cbs GpgReader::kOutputCbs = {nullptr, &GpgReader::on_output, nullptr, nullptr};

gpgme_ssize_t GpgReader::on_input(void* handle, void* buf, size_t size) {
  auto* self = static_cast<GpgReader*>(handle);
  {
    std::lock_guard lock(self->mu_);
    if (self->cancelled_) {
      errno = ECANCELED;
      return -1;
    }
  }
  std::span out(static_cast<std::byte*>(buf), size);
  if (self->prefix_pos_ < self->prefix_.size()) {
    size_t n = std::min(size, self->prefix_.size() - self->prefix_pos_);
    std::memcpy(out.data(), self->prefix_.data() + self->prefix_pos_, n);
    self->prefix_pos_ += n;
    return static_cast<gpgme_ssize_t>(n);
  }
  try {
    return static_cast<gpgme_ssize_t>(self->inner_->read(out));
  } catch (...) {
    // Exceptions must not cross GPGME's C frames; the cause is rethrown at
    // the end, in the reading thread.
    std::lock_guard lock(self->mu_);
    self->inner_error_ = std::current_exception();
    errno = EIO;
    return -1;
  }
}

gpgme_ssize_t GpgReader::on_output(void* handle, const void* buf, size_t size) {
  auto* self = static_cast<GpgReader*>(handle);
  std::unique_lock lock(self->mu_);
  self->space_cv_.wait(lock, [&] { return self->ring_.space() > 0 || self->cancelled_; });
  if (self->cancelled_) {
    errno = ECANCELED;  // fails the operation at once
    return -1;
  }
  size_t n = self->ring_.push(static_cast<const std::byte*>(buf), size);
  self->data_cv_.notify_all();
  return static_cast<gpgme_ssize_t>(n);
}

/// Runs on the worker thread (GPGME's wait loop), for every status line.
gpgme_error_t GpgReader::on_status(void* handle, const char* keyword, const char* args) {
  if (!keyword || std::strcmp(keyword, "VALIDSIG") != 0 || !args) return 0;
  // VALIDSIG <signing key fpr> <date> <timestamp> <expiry> <version>
  //          <reserved> <pk algo> <hash algo> <class> <primary key fpr>
  std::string_view f[10];
  size_t count = 0;
  std::string_view rest(args);
  while (!rest.empty() && count < 10) {
    size_t sp = rest.find(' ');
    if (sp != 0) f[count++] = rest.substr(0, sp);
    if (sp == std::string_view::npos) break;
    rest.remove_prefix(sp + 1);
  }
  if (count < 10) return 0;
  try {
    static_cast<GpgReader*>(handle)->primaries_.emplace_back(std::string(f[0]), std::string(f[9]));
  } catch (...) {  // nothing may cross GPGME's C frames
    return gpg_error(GPG_ERR_ENOMEM);
  }
  return 0;
}

gpgme_error_t GpgReader::on_passphrase(void* handle, const char* uid_hint, const char*, int, int) {
  auto* self = static_cast<GpgReader*>(handle);
  std::lock_guard lock(self->mu_);
  self->passphrase_for_ = uid_hint && *uid_hint ? uid_hint : "a secret key";
  return gpg_error(GPG_ERR_NO_PASSPHRASE);
}

std::vector<Signature> GpgReader::collect_signatures() {
  // Copy first: the key lookups below start new operations on the context,
  // which frees this result.
  std::vector<std::pair<std::string, gpgme_error_t>> found;
  gpgme_verify_result_t vr = gpgme_op_verify_result(ctx_.get());
  for (gpgme_signature_t s = vr ? vr->signatures : nullptr; s; s = s->next) {
    found.emplace_back(s->fpr ? s->fpr : "", s->status);
  }
  std::vector<Signature> sigs;
  for (const auto& [fpr, status] : found) {
    Signature sig;
    sig.fingerprint = primary_fingerprint(fpr);
    sig.good = gpgme_err_code(status) == GPG_ERR_NO_ERROR;
    sig.summary = sig.good ? "good signature" : gpgme_strerror(status);
    sigs.push_back(std::move(sig));
  }
  return sigs;
}

/// A subkey signature names the subkey; policies list primary keys. A valid
/// signature's primary key is in its VALIDSIG line; only for others (bad,
/// expired key, ...) is the keyring asked, which starts another gpg.
std::string GpgReader::primary_fingerprint(const std::string& fpr) {
  if (fpr.empty()) return fpr;
  for (const auto& [signing, primary] : primaries_) {
    if (signing == fpr) return primary;
  }
  gpgme_key_t k = nullptr;
  if (gpgme_get_key(ctx_.get(), fpr.c_str(), &k, 0) != 0 || !k) return fpr;
  KeyPtr key(k);
  return key->fpr ? key->fpr : fpr;
}

void GpgReader::check_result() const {
  std::lock_guard lock(mu_);
  if (inner_error_) std::rethrow_exception(inner_error_);
  const std::string what = inner_->source() + ": OpenPGP: ";
  if (!err_ && unvouched_) {
    std::string why = sigs_.empty() ? "no signature" : sigs_.front().summary;
    throw FormatError(what + "signed-only message without a good signature (" + why + ")");
  }
  if (!err_) return;
  if (!passphrase_for_.empty()) {
    throw Error(what + "the secret key of " + passphrase_for_ +
                    " needs a passphrase, which unattended decryption cannot give (" +
                    gpgme_strerror(err_) + ")",
                kExitConfig);
  }
  switch (gpgme_err_code(err_)) {
    case GPG_ERR_NO_SECKEY:
      throw Error(what + gpgme_strerror(err_), kExitConfig);
    case GPG_ERR_CANCELED:
      throw Error(what + gpgme_strerror(err_));
    case GPG_ERR_ENOENT:
    case GPG_ERR_INV_ENGINE:
      throw Error(what + gpgme_strerror(err_), kExitUnavailable);
    default:
      throw FormatError(what + gpgme_strerror(err_));
  }
}

// ---------------------------------------------------------------- heads
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

/// An interrupt is waiting to be taken (signals.hpp); not consumed here.
bool interrupt_pending() {
  pollfd p{interrupt_fd(), POLLIN, 0};
  return p.fd >= 0 && ::poll(&p, 1, 0) > 0;
}

/// A private directory, removed with its contents.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/safespool-gpg-XXXXXX";
    if (!::mkdtemp(tmpl.data())) throw_errno("cannot create a directory in " + tmpl);
    path_ = tmpl;
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

/// Plaintext read and dropped per batched message before gpg is stopped:
/// a message of at most kBatchMaxFileSize bytes that expands further is a
/// compression bomb, and its reader will stop early on its own.
constexpr uint64_t kMaxDropped = 64 << 20;
/// Messages per gpg run (and FIFOs open at once).
constexpr size_t kHeadsPerRun = 128;

/// How a run of gpg over files [from, n) ended, and where the next starts.
struct BatchEnd {
  size_t next;   ///< first file not yet tried; n when all were
  bool aborted;  ///< gpg gave up on its own before the last file
};

/// One run of gpg over files [from, n), filling heads with up to `limit`
/// bytes each; the rest of an output is read and dropped, so that gpg goes
/// on to the next file, unless it grows past kMaxDropped (a compression
/// bomb): then gpg is stopped and the next run starts after that file (gpg
/// handles them in order). An interrupt stops gpg and gives up the rest.
/// gpg also gives up by itself on some errors (a key that needs a
/// passphrase ends a --batch run); its FILE_START status lines say where.
BatchEnd run_heads_batch(const std::string& program, const std::optional<std::string>& home,
                         const std::string& dir, size_t from, std::vector<Fd>& fifos,
                         std::vector<std::vector<std::byte>>& heads, size_t limit, int devnull) {
  const size_t n = fifos.size();
  // Every output gpg may open has a reader before it runs, so its open
  // for writing never waits (a previous run may have closed some).
  for (size_t i = from; i < n; ++i) {
    if (fifos[i]) continue;
    const std::string out = dir + "/" + std::to_string(i);
    fifos[i].reset(::open(out.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
    if (!fifos[i]) throw_errno("cannot open " + out);
  }
  SpawnSpec spec;
  // --no-use-embedded-filename: whatever gpg.conf says, the outputs are
  // our FIFOs, never a name taken from the message.
  spec.argv = {program,
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
    spec.argv.push_back("--homedir");
    spec.argv.push_back(*home);
  }
  spec.argv.push_back("--decrypt-files");
  spec.argv.push_back("--");
  for (size_t i = from; i < n; ++i) spec.argv.push_back(dir + "/" + std::to_string(i) + ".gpg");
  // Status on stderr, among gpg's "gpg: ..." messages: stdout is where a
  // "for your eyes only" message would go.
  Pipe status = make_pipe();
  if (::fcntl(status.read.get(), F_SETFL, O_NONBLOCK) != 0) throw_errno("cannot set up a pipe");
  spec.stdin_fd = spec.stdout_fd = devnull;
  spec.stderr_fd = status.write.get();
  Child child = spawn(spec);
  status.write.reset();

  std::vector<std::byte> buf(65536);
  std::vector<uint64_t> dropped(n);
  // Reads what is there; true when file i's output grew too large.
  auto drain = [&](size_t i) {
    for (;;) {
      ssize_t got = ::read(fifos[i].get(), buf.data(), buf.size());
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) return false;  // EAGAIN: more later
      if (got == 0) {             // its writer closed (or never opened it)
        fifos[i].reset();
        return false;
      }
      auto& h = heads[i];
      size_t keep = std::min(static_cast<size_t>(got), limit - h.size());
      h.insert(h.end(), buf.begin(), buf.begin() + static_cast<ptrdiff_t>(keep));
      dropped[i] += static_cast<size_t>(got) - keep;
      if (dropped[i] > kMaxDropped) return true;
    }
  };
  // The last file gpg started, from "[GNUPG:] FILE_START 3 DIR/I.gpg".
  std::string lines;
  std::optional<size_t> started;
  auto read_status = [&] {
    for (;;) {
      ssize_t got = status.read ? ::read(status.read.get(), buf.data(), buf.size()) : 0;
      if (got < 0 && errno == EINTR) continue;
      if (got == 0) status.read.reset();
      if (got <= 0) return;
      lines.append(reinterpret_cast<const char*>(buf.data()), static_cast<size_t>(got));
      for (size_t nl; (nl = lines.find('\n')) != std::string::npos; lines.erase(0, nl + 1)) {
        std::string_view line(lines.data(), nl);
        constexpr std::string_view kStart = "[GNUPG:] FILE_START ";
        const std::string prefix = dir + "/";
        if (!line.starts_with(kStart)) continue;
        size_t at = line.find(prefix);
        if (at == std::string_view::npos) continue;
        size_t i = 0;
        auto [end, ec] = std::from_chars(line.data() + at + prefix.size(), line.data() + nl, i);
        if (ec == std::errc() && std::string_view(end, line.data() + nl - end) == ".gpg" && i < n) {
          started = std::max(started.value_or(i), i);
        }
      }
    }
  };
  auto stop = [&] {
    child.kill_group(SIGKILL);
    child.wait();
  };
  std::vector<pollfd> pfds;
  std::vector<size_t> which;
  for (;;) {
    pfds.assign({{child.pidfd(), POLLIN, 0}});
    const int intr = interrupt_fd();
    const size_t intr_at = pfds.size();
    if (intr >= 0) pfds.push_back({intr, POLLIN, 0});
    const size_t status_at = pfds.size();
    if (status.read) pfds.push_back({status.read.get(), POLLIN, 0});
    const size_t first_fifo = pfds.size();
    which.clear();
    for (size_t i = from; i < n; ++i) {
      if (!fifos[i]) continue;
      pfds.push_back({fifos[i].get(), POLLIN, 0});
      which.push_back(i);
    }
    while (::poll(pfds.data(), pfds.size(), -1) < 0) {
      if (errno != EINTR) throw_errno("cannot poll gpg's outputs");
    }
    if (intr >= 0 && pfds[intr_at].revents) {
      stop();
      return {n, false};
    }
    if (status.read && pfds[status_at].revents) read_status();
    for (size_t k = first_fifo; k < pfds.size(); ++k) {
      if (pfds[k].revents && drain(which[k - first_fifo])) {
        stop();
        return {which[k - first_fifo] + 1, false};
      }
    }
    if (pfds[0].revents) {  // gpg exited: what it wrote is in the pipes
      child.wait();
      read_status();
      for (size_t i = from; i < n; ++i) {
        if (fifos[i]) drain(i);
      }
      if (!started) return {n, true};  // it did not even start: give up
      return {*started + 1, *started + 1 < n};
    }
  }
}

/// Serves a head from a batch, then the rest from a GPGME reader that
/// first re-reads the head and checks it. finish() and signatures() are
/// that reader's.
class GpgHeadReader : public Reader {
 public:
  GpgHeadReader(Fd file, std::string name, std::vector<std::byte> head,
                std::optional<std::string> home)
      : file_(std::move(file)),
        name_(std::move(name)),
        head_(std::move(head)),
        home_(std::move(home)) {}

  size_t read(std::span<std::byte> buf) override {
    if (buf.empty()) return 0;
    if (!full_ && pos_ < head_.size()) {
      size_t n = std::min(buf.size(), head_.size() - pos_);
      std::memcpy(buf.data(), head_.data() + pos_, n);
      pos_ += n;
      return n;
    }
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

 private:
  void open_full() {
    auto r = make_gpg_reader(make_fd_reader(std::move(file_), name_), home_);
    {
      std::lock_guard lock(mu_);
      if (cancelled_) throw Error(name_ + ": OpenPGP: decryption was cancelled");
      full_ = std::move(r);
    }
    std::vector<std::byte> again(pos_);
    size_t got = 0;
    while (got < pos_) {
      size_t n = full_->read(std::span(again).subspan(got));
      if (n == 0) break;
      got += n;
    }
    if (got < pos_ || (pos_ > 0 && std::memcmp(again.data(), head_.data(), pos_) != 0)) {
      throw FormatError(name_ + ": OpenPGP: the message changed while it was read");
    }
    head_ = {};
  }

  Fd file_;
  std::string name_;
  std::vector<std::byte> head_;
  size_t pos_ = 0;
  std::optional<std::string> home_;
  std::mutex mu_;  ///< guards full_ (set once) and cancelled_ against cancel()
  bool cancelled_ = false;
  std::unique_ptr<Reader> full_;
};

}  // namespace

std::unique_ptr<Reader> make_gpg_reader(std::unique_ptr<Reader> inner,
                                        const std::optional<std::string>& gnupg_home, bool unwrap) {
  return std::make_unique<GpgReader>(std::move(inner), gnupg_home, unwrap);
}

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
  const std::string program = gpg::gpg_program("OpenPGP");
  TempDir dir;
  const std::string self = "/proc/" + std::to_string(::getpid()) + "/fd/";
  std::vector<Fd> fifos(n);
  for (size_t i = 0; i < n; ++i) {
    const std::string out = dir.path() + "/" + std::to_string(i);
    if (::symlink((self + std::to_string(files[i])).c_str(), (out + ".gpg").c_str()) != 0) {
      throw_errno("cannot create a link in " + dir.path());
    }
    if (::mkfifo(out.c_str(), 0600) != 0) throw_errno("cannot create a FIFO in " + dir.path());
  }
  Fd devnull(::open("/dev/null", O_RDWR | O_CLOEXEC));
  if (!devnull) throw_errno("cannot open /dev/null");
  // A run that gpg gives up resumes after the file it gave up on; after a
  // few, the rest is left to the readers (each message alone, as before).
  int aborted = 0;
  for (size_t next = 0; next < n && aborted < 3;) {
    BatchEnd end =
        run_heads_batch(program, gnupg_home, dir.path(), next, fifos, heads, limit, devnull.get());
    next = end.next;
    aborted += end.aborted;
  }
  return heads;
}

std::unique_ptr<Reader> make_gpg_head_reader(Fd file, std::string name, std::vector<std::byte> head,
                                             const std::optional<std::string>& gnupg_home) {
  return std::make_unique<GpgHeadReader>(std::move(file), std::move(name), std::move(head),
                                         gnupg_home);
}

}  // namespace safespool
