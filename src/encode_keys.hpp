// SPDX-License-Identifier: GPL-3.0-or-later
// Internal to the encoder: GPGME contexts that never prompt, and key
// resolution with reasons a person can act on.
//
// Shared by check_keys() (src/encode_keys.cpp) and the OpenPGP writer
// (src/encode_gpg.cpp), so both judge keys by the same rules.
#pragma once

#include <gpgme.h>

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <type_traits>

#include "gpgme_handles.hpp"
#include "safespool/encode.hpp"

namespace safespool::gpg {

/// Records that gpg asked for a passphrase (and refuses to give one).
/// Written by GPGME's callback on whatever thread runs the operation.
class PassphraseRefusal {
 public:
  /// The uid hint of the key gpg asked about; empty if it never asked.
  std::string asked_for() const {
    std::lock_guard lock(mu_);
    return asked_for_;
  }
  /// The gpgme_passphrase_cb_t to install with `this` as its hook.
  static gpgme_error_t callback(void* hook, const char* uid_hint, const char*, int, int);

 private:
  mutable std::mutex mu_;
  std::string asked_for_;
};

/// A binary, OpenPGP, loopback-pinentry context on `home` whose passphrase
/// requests go to `refusal`. Throws Error naming `what` (e.g. "OpenPGP")
/// when GPGME or gpg is unusable.
CtxPtr new_context(const std::optional<std::string>& home, PassphraseRefusal& refusal,
                   const std::string& what);

/// "GnuPG home H" or "the default GnuPG home", for messages.
std::string home_name(const std::optional<std::string>& home);

/// The one public key `spec` names, usable for encryption. Throws Error
/// (kExitConfig) "recipient 'SPEC': REASON" otherwise.
KeyPtr resolve_recipient(gpgme_ctx_t ctx, const std::string& spec,
                         const std::optional<std::string>& home);

/// The one secret key `spec` names, usable for signing. Throws Error
/// (kExitConfig) "signer 'SPEC': REASON" otherwise.
KeyPtr resolve_signer(gpgme_ctx_t ctx, const std::string& spec,
                      const std::optional<std::string>& home);

/// "FPR (First uid)" for messages.
std::string key_label(gpgme_key_t key);

/// check_keys() for the OpenPGP part of `opts`.
CheckedKeys check_openpgp_keys(const EncodeOptions& opts);

}  // namespace safespool::gpg
