// SPDX-License-Identifier: GPL-3.0-or-later
// The sender's OpenPGP stage: GPGME sign and/or encrypt, streamed.
//
// GPGME's operations run to completion, pulling plaintext through one data
// callback and pushing ciphertext through another. So the operation runs on
// a worker thread. write() is a rendezvous: it lends its span to the
// worker's input callback and returns once GPGME has copied every byte, so
// nothing is queued and memory stays constant; the output callback writes
// straight into the stage below from the worker. finish() signals EOF,
// joins the worker and judges GPGME's result.
//
// Which operation: recipients and a signer -> gpgme_op_encrypt_sign;
// recipients only -> gpgme_op_encrypt (encrypt_sign with no signer would
// quietly sign with gpg's default key); a signer only -> gpgme_op_sign, a
// signed-only message. Recipients are trusted as given (ALWAYS_TRUST): the
// operator named them, and a batch run has no one to ask about validity.
#include <gpgme.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <thread>
#include <vector>

#include "encode_keys.hpp"
#include "safespool/encode.hpp"
#include "safespool/error.hpp"

namespace safespool {
namespace {

using gpg::CtxPtr;
using gpg::DataPtr;
using gpg::KeyPtr;

/// Small writes are gathered up to this size before the worker gets them.
constexpr size_t kStageSize = 64 * 1024;

class GpgWriter : public Writer {
 public:
  GpgWriter(std::unique_ptr<Writer> inner, const EncodeOptions& opts)
      : inner_(std::move(inner)), what_(inner_->describe() + ": OpenPGP: ") {
    ctx_ = gpg::new_context(opts.gnupg_home, refusal_, inner_->describe() + ": OpenPGP");
    for (const auto& spec : opts.recipients) {
      recipients_.push_back(gpg::resolve_recipient(ctx_.get(), spec, opts.gnupg_home));
    }
    if (opts.signer) {
      signer_ = gpg::resolve_signer(ctx_.get(), *opts.signer, opts.gnupg_home);
      check_setup(gpgme_signers_add(ctx_.get(), signer_.get()), "cannot use the signing key");
    }
    // zstd already squeezed the bytes; gpg's zlib pass would only cost time.
    no_compress_ = opts.zstd_level.has_value();
    gpgme_data_t in = nullptr, out = nullptr;
    check_setup(gpgme_data_new_from_cbs(&in, &kInputCbs, this), "input stream");
    in_.reset(in);
    check_setup(gpgme_data_new_from_cbs(&out, &kOutputCbs, this), "output stream");
    out_.reset(out);
    // Last: the worker uses every member above.
    worker_ = std::thread(&GpgWriter::run, this);
  }

  ~GpgWriter() override {
    if (!worker_.joinable()) return;
    {
      std::lock_guard lock(mu_);
      aborted_ = true;
    }
    data_cv_.notify_all();
    gpgme_cancel_async(ctx_.get());
    worker_.join();
  }

  void write(std::span<const std::byte> data) override {
    // Small writes are gathered first: each hand-over costs two thread
    // switches, which would dominate a stream written a few bytes at a time.
    if (finished_) throw Error(what_ + "write after finish");
    if (stage_.size() + data.size() <= kStageSize) {
      stage_.insert(stage_.end(), data.begin(), data.end());
      return;
    }
    flush_stage();
    if (data.size() < kStageSize) {
      stage_.assign(data.begin(), data.end());
    } else {
      hand_over(data);
    }
  }

  void finish() override {
    if (finished_) throw Error(what_ + "finish called twice");
    finished_ = true;
    flush_stage();
    {
      std::lock_guard lock(mu_);
      closed_ = true;
    }
    data_cv_.notify_all();
    if (worker_.joinable()) worker_.join();
    check_result();
    inner_->finish();
  }

  std::string describe() const override { return "OpenPGP > " + inner_->describe(); }

 private:
  // Not const only because GPGME's prototype lacks it; never modified.
  static gpgme_data_cbs kInputCbs;
  static gpgme_data_cbs kOutputCbs;

  void check_setup(gpgme_error_t err, const std::string& what) const {
    if (err) throw Error(what_ + what + ": " + gpgme_strerror(err), kExitUnavailable);
  }

  void flush_stage() {
    if (stage_.empty()) return;
    hand_over(stage_);
    stage_.clear();
  }

  void hand_over(std::span<const std::byte> data);
  void run() noexcept;
  gpgme_error_t operate();
  gpgme_error_t result_problem();
  void check_result() const;
  static gpgme_ssize_t on_input(void* handle, void* buf, size_t size);
  static gpgme_ssize_t on_output(void* handle, const void* buf, size_t size);

  std::unique_ptr<Writer> inner_;  ///< used by the worker until it is joined
  std::string what_;               ///< "NAME: OpenPGP: " for messages
  gpg::PassphraseRefusal refusal_;
  CtxPtr ctx_;
  std::vector<KeyPtr> recipients_;
  KeyPtr signer_;
  bool no_compress_ = false;
  std::vector<std::byte> stage_;  ///< writer thread only: small writes gathered
  bool finished_ = false;         ///< writer thread only
  DataPtr in_;
  DataPtr out_;
  mutable std::mutex mu_;               ///< guards everything below
  std::condition_variable data_cv_;     ///< pending_ has bytes, or closed/aborted
  std::condition_variable taken_cv_;    ///< pending_ is empty, or done
  std::span<const std::byte> pending_;  ///< lent by write() until taken
  bool closed_ = false;                 ///< finish() called: EOF after pending_
  bool aborted_ = false;                ///< destroyed without finish()
  bool done_ = false;                   ///< the GPGME operation returned
  gpgme_error_t err_ = 0;
  std::exception_ptr output_error_;
  std::thread worker_;
};

gpgme_data_cbs GpgWriter::kInputCbs = {&GpgWriter::on_input, nullptr, nullptr, nullptr};
gpgme_data_cbs GpgWriter::kOutputCbs = {nullptr, &GpgWriter::on_output, nullptr, nullptr};

/// Lends `data` to the worker's input callback until it took every byte.
void GpgWriter::hand_over(std::span<const std::byte> data) {
  std::unique_lock lock(mu_);
  if (closed_) throw Error(what_ + "write after finish");
  pending_ = data;
  data_cv_.notify_all();
  taken_cv_.wait(lock, [&] { return pending_.empty() || done_; });
  if (pending_.empty()) return;
  // gpg ended before taking all input: only a failure does that.
  pending_ = {};
  lock.unlock();
  if (worker_.joinable()) worker_.join();
  check_result();
  throw Error(what_ + "gpg stopped reading its input", kExitUnavailable);
}

/// The worker thread: the whole GPGME operation, then its verdict.
void GpgWriter::run() noexcept {
  gpgme_error_t err = operate();
  if (!err) err = result_problem();
  std::lock_guard lock(mu_);
  err_ = err;
  done_ = true;
  taken_cv_.notify_all();
}

gpgme_error_t GpgWriter::operate() {
  if (recipients_.empty()) {
    return gpgme_op_sign(ctx_.get(), in_.get(), out_.get(), GPGME_SIG_MODE_NORMAL);
  }
  std::vector<gpgme_key_t> recp;
  for (const auto& k : recipients_) recp.push_back(k.get());
  recp.push_back(nullptr);
  auto flags = static_cast<gpgme_encrypt_flags_t>(GPGME_ENCRYPT_ALWAYS_TRUST |
                                                  (no_compress_ ? GPGME_ENCRYPT_NO_COMPRESS : 0));
  return signer_ ? gpgme_op_encrypt_sign(ctx_.get(), recp.data(), flags, in_.get(), out_.get())
                 : gpgme_op_encrypt(ctx_.get(), recp.data(), flags, in_.get(), out_.get());
}

/// GPGME can "succeed" while skipping a recipient or signer it rejected.
gpgme_error_t GpgWriter::result_problem() {
  if (!recipients_.empty()) {
    gpgme_encrypt_result_t r = gpgme_op_encrypt_result(ctx_.get());
    if (r && r->invalid_recipients) return r->invalid_recipients->reason;
  }
  if (signer_) {
    gpgme_sign_result_t r = gpgme_op_sign_result(ctx_.get());
    if (r && r->invalid_signers) return r->invalid_signers->reason;
    if (!r || !r->signatures) return gpg_error(GPG_ERR_GENERAL);
  }
  return 0;
}

void GpgWriter::check_result() const {
  std::lock_guard lock(mu_);
  // The output's own failure (disk full, reader gone) is the root cause.
  if (output_error_) std::rethrow_exception(output_error_);
  if (!err_) return;
  std::string asked = refusal_.asked_for();
  if (!asked.empty()) {
    throw Error(what_ + "the secret key of " + asked +
                    " needs a passphrase, which unattended signing cannot give (" +
                    gpgme_strerror(err_) + ")",
                kExitConfig);
  }
  throw Error(what_ + (signer_ ? "signing" : "encryption") + " failed: " + gpgme_strerror(err_),
              kExitUnavailable);
}

gpgme_ssize_t GpgWriter::on_input(void* handle, void* buf, size_t size) {
  auto* self = static_cast<GpgWriter*>(handle);
  std::unique_lock lock(self->mu_);
  self->data_cv_.wait(lock,
                      [&] { return !self->pending_.empty() || self->closed_ || self->aborted_; });
  if (self->aborted_) {
    errno = ECANCELED;  // fails the operation at once
    return -1;
  }
  if (self->pending_.empty()) return 0;  // closed: end of the plaintext
  size_t n = std::min(size, self->pending_.size());
  std::memcpy(buf, self->pending_.data(), n);
  self->pending_ = self->pending_.subspan(n);
  if (self->pending_.empty()) self->taken_cv_.notify_all();
  return static_cast<gpgme_ssize_t>(n);
}

gpgme_ssize_t GpgWriter::on_output(void* handle, const void* buf, size_t size) {
  auto* self = static_cast<GpgWriter*>(handle);
  {
    std::lock_guard lock(self->mu_);
    if (self->aborted_) {
      errno = ECANCELED;
      return -1;
    }
  }
  try {
    self->inner_->write(std::span(static_cast<const std::byte*>(buf), size));
    return static_cast<gpgme_ssize_t>(size);
  } catch (...) {
    // Exceptions must not cross GPGME's C frames; finish() or write()
    // rethrows it in the caller's thread.
    std::lock_guard lock(self->mu_);
    self->output_error_ = std::current_exception();
    errno = EIO;
    return -1;
  }
}

}  // namespace

std::unique_ptr<Writer> make_gpg_writer(std::unique_ptr<Writer> inner, const EncodeOptions& opts) {
  if (!opts.openpgp()) throw Error(inner->describe() + ": OpenPGP: no recipient and no signer");
  return std::make_unique<GpgWriter>(std::move(inner), opts);
}

}  // namespace safespool
