// SPDX-License-Identifier: GPL-3.0-or-later
// Internal: GPGME handles as owned objects, the one-time library
// initialisation, and a pool of decryption contexts, shared by the OpenPGP
// decoder and encoder.
#pragma once

#include <gpgme.h>

#include <memory>
#include <optional>
#include <string>
#include <type_traits>

namespace safespool::gpg {

struct CtxDeleter {
  void operator()(gpgme_ctx_t c) const { gpgme_release(c); }
};
struct DataDeleter {
  void operator()(gpgme_data_t d) const { gpgme_data_release(d); }
};
struct KeyDeleter {
  void operator()(gpgme_key_t k) const { gpgme_key_unref(k); }
};
using CtxPtr = std::unique_ptr<std::remove_pointer_t<gpgme_ctx_t>, CtxDeleter>;
using DataPtr = std::unique_ptr<std::remove_pointer_t<gpgme_data_t>, DataDeleter>;
using KeyPtr = std::unique_ptr<std::remove_pointer_t<gpgme_key_t>, KeyDeleter>;

/// Runs gpgme_check_version once (required before any context is made) and
/// checks that gpg is usable; throws Error (exit 69) "WHAT: gpg is not
/// usable: ..." otherwise.
void init_gpgme(const std::string& what);

/// A new OpenPGP context on `home` (nullopt: gpg's default home): binary,
/// not text mode, loopback pinentry (the owner installs a passphrase
/// callback). Throws Error "WHAT: ..." when GPGME or gpg is unusable (exit
/// 69 from init_gpgme(), `exit_code` when setting up the context fails).
CtxPtr basic_context(const std::optional<std::string>& home, const std::string& what,
                     int exit_code);

/// The gpg program GPGME runs (from gpgconf), for running it directly.
/// Throws as init_gpgme() does.
std::string gpg_program(const std::string& what);

/// A GPGME context borrowed from a per-process pool; it goes back when the
/// lease ends. Setting a context's GnuPG home runs `gpg --version` (GPGME
/// re-reads the engine version each time), so a fresh context per packet
/// would start two gpg processes per packet where one does the work.
///
/// Every leased context is binary, OpenPGP, loopback pinentry, offline (no
/// dirmngr: nothing is fetched from the network while decoding) and
/// full-status (the status callback sees every status line). The borrower
/// installs its own passphrase and status callbacks; they are removed when
/// the lease ends. Not for concurrent use: one operation at a time, and the
/// borrower must have finished (or cancelled and waited for) its operation
/// before the lease ends.
class CtxLease {
 public:
  CtxLease() = default;
  CtxLease(CtxPtr ctx, std::optional<std::string> home)
      : ctx_(std::move(ctx)), home_(std::move(home)) {}
  CtxLease(CtxLease&&) noexcept = default;
  CtxLease& operator=(CtxLease&& other) noexcept {
    if (this != &other) {
      give_back();
      ctx_ = std::move(other.ctx_);
      home_ = std::move(other.home_);
    }
    return *this;
  }
  ~CtxLease() { give_back(); }

  gpgme_ctx_t get() const { return ctx_.get(); }

 private:
  void give_back() noexcept;

  CtxPtr ctx_;
  std::optional<std::string> home_;
};

/// A context on `home` (nullopt: gpg's default home) from the pool, made if
/// none is idle. Throws Error "WHAT: ..." when GPGME or gpg is unusable.
CtxLease lease_context(const std::optional<std::string>& home, const std::string& what);

}  // namespace safespool::gpg
