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
#include <gpgme.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "byte_ring.hpp"
#include "gpg_status_trail.hpp"
#include "gpgme_handles.hpp"
#include "prefix_reader.hpp"
#include "safespool/decode.hpp"
#include "safespool/error.hpp"

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

class GpgReader : public Reader {
 public:
  GpgReader(std::unique_ptr<Reader> inner, const std::optional<std::string>& home, bool unwrap)
      : inner_(std::make_unique<PrefixReader>(std::move(inner))),
        unwrap_(unwrap),
        ring_(kRingSize) {
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
  std::optional<SourcePosition> position() const override { return inner_->position(); }

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

  /// Peeks at the start of the message (inner_ serves it again to gpg)
  /// far enough to tell an encrypted message from a signed-only one, and for
  /// one that is not encrypted, what it announces about its signers.
  bool sniff() {
    std::optional<bool> encrypted;
    std::optional<openpgp::Announcement> said;
    for (size_t want = 512;; want *= 2) {
      std::span<const std::byte> head = inner_->peek(std::min(want, kSniffMax));
      encrypted = openpgp_encrypted(head);
      if (encrypted && !*encrypted) said = openpgp::announced_signers(head);
      bool decided =
          encrypted && (*encrypted || said->kind != openpgp::Announcement::Kind::Unknown);
      if (decided || head.size() < want || want >= kSniffMax) break;  // or the end, or enough
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

  /// The worker reads it: first what sniff() peeked, then the rest.
  std::unique_ptr<PrefixReader> inner_;
  const bool unwrap_;  ///< decrypt only; an inner stage verifies
  /// worker only: signing key fingerprint -> its primary key's, from VALIDSIG
  std::vector<std::pair<std::string, std::string>> primaries_;
  GpgStatusTrail trail_;  ///< worker only until it ended: what gpg said about damage
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
  if (!keyword) return 0;
  auto* self = static_cast<GpgReader*>(handle);
  self->trail_.note(keyword, args);
  if (std::strcmp(keyword, "VALIDSIG") != 0 || !args) return 0;
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
    self->primaries_.emplace_back(std::string(f[0]), std::string(f[9]));
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
      throw FormatError(what + trail_.damage(gpgme_strerror(err_)));
  }
}

}  // namespace

std::unique_ptr<Reader> make_gpg_reader(std::unique_ptr<Reader> inner,
                                        const std::optional<std::string>& gnupg_home, bool unwrap) {
  return std::make_unique<GpgReader>(std::move(inner), gnupg_home, unwrap);
}

}  // namespace safespool
