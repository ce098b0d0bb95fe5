// SPDX-License-Identifier: GPL-3.0-or-later
// Key resolution for the sender, and check_keys()' OpenPGP half.
//
// A sender runs from cron: a key problem must surface before a sequence
// number is consumed and before any payload byte is read, with a message
// that names the key and what is wrong with it. A signing key that needs a
// passphrase is found by signing a few bytes with a passphrase callback
// that refuses (loopback pinentry, so gpg-agent never starts a pinentry).
#include "encode_keys.hpp"

#include <vector>

#include "safespool/error.hpp"

namespace safespool::gpg {
namespace {

void check(gpgme_error_t err, const std::string& what) {
  if (err) throw Error(what + ": " + gpgme_strerror(err), kExitUnavailable);
}

/// Every key `spec` matches (secret keys when `secret`).
std::vector<KeyPtr> list_keys(gpgme_ctx_t ctx, const std::string& spec, bool secret,
                              const std::string& who) {
  // An empty pattern would list the whole keyring.
  if (spec.empty()) throw Error(who + ": empty key name", kExitConfig);
  gpgme_error_t err = gpgme_op_keylist_start(ctx, spec.c_str(), secret ? 1 : 0);
  std::vector<KeyPtr> keys;
  while (!err) {
    gpgme_key_t k = nullptr;
    err = gpgme_op_keylist_next(ctx, &k);
    if (!err) keys.emplace_back(k);
  }
  gpgme_op_keylist_end(ctx);
  if (gpgme_err_code(err) != GPG_ERR_EOF) check(err, who + ": cannot list keys");
  return keys;
}

/// The only key `spec` matches; "no matching" or "ambiguous" otherwise.
KeyPtr the_one_key(gpgme_ctx_t ctx, const std::string& spec, bool secret,
                   const std::optional<std::string>& home, const std::string& who) {
  std::vector<KeyPtr> keys = list_keys(ctx, spec, secret, who);
  if (keys.empty()) {
    throw Error(
        who + ": no matching " + (secret ? "secret" : "public") + " key in " + home_name(home),
        kExitConfig);
  }
  if (keys.size() > 1) {
    std::string all;
    for (const auto& k : keys) all += (all.empty() ? "" : ", ") + key_label(k.get());
    throw Error(who + " is ambiguous in " + home_name(home) + ": it matches " + all +
                    "; give a fingerprint",
                kExitConfig);
  }
  return std::move(keys.front());
}

/// Why the key as a whole is unusable, or empty.
std::string key_problem(gpgme_key_t k) {
  if (k->revoked) return "is revoked";
  if (k->expired) return "has expired";
  if (k->disabled) return "is disabled";
  if (k->invalid) return "is invalid";
  return {};
}

/// A subkey that is valid now and can encrypt (or sign, with its secret).
bool has_usable_subkey(gpgme_key_t k, bool encrypt) {
  for (gpgme_subkey_t s = k->subkeys; s; s = s->next) {
    if (s->revoked || s->expired || s->disabled || s->invalid) continue;
    if (encrypt ? s->can_encrypt : (s->can_sign && s->secret)) return true;
  }
  return false;
}

/// Signs a few bytes with `key`: the only proof that no passphrase (or
/// smartcard PIN) is needed. Throws Error naming `who`.
void test_sign(const std::optional<std::string>& home, gpgme_key_t key, const std::string& who) {
  PassphraseRefusal refusal;
  CtxPtr ctx = new_context(home, refusal, who);
  check(gpgme_signers_add(ctx.get(), key), who + ": cannot use the key");
  static const char kProbe[] = "safespool: signing key check";
  gpgme_data_t in = nullptr, out = nullptr;
  check(gpgme_data_new_from_mem(&in, kProbe, sizeof kProbe - 1, 0), who + ": data");
  DataPtr in_owner(in);
  check(gpgme_data_new(&out), who + ": data");
  DataPtr out_owner(out);
  gpgme_error_t err = gpgme_op_sign(ctx.get(), in, out, GPGME_SIG_MODE_DETACH);
  gpgme_sign_result_t res = gpgme_op_sign_result(ctx.get());
  if (!err && res && res->invalid_signers) err = res->invalid_signers->reason;
  if (!err && (!res || !res->signatures)) err = gpg_error(GPG_ERR_GENERAL);
  if (!err) return;
  const std::string label = "key " + key_label(key);
  if (!refusal.asked_for().empty()) {
    throw Error(who + ": " + label + " needs a passphrase, which unattended signing cannot give (" +
                    gpgme_strerror(err) + "); use a key without one",
                kExitConfig);
  }
  throw Error(who + ": " + label + " cannot sign: " + gpgme_strerror(err), kExitConfig);
}

}  // namespace

gpgme_error_t PassphraseRefusal::callback(void* hook, const char* uid_hint, const char*, int, int) {
  auto* self = static_cast<PassphraseRefusal*>(hook);
  std::lock_guard lock(self->mu_);
  self->asked_for_ = uid_hint && *uid_hint ? uid_hint : "a secret key";
  return gpg_error(GPG_ERR_NO_PASSPHRASE);
}

CtxPtr new_context(const std::optional<std::string>& home, PassphraseRefusal& refusal,
                   const std::string& what) {
  CtxPtr ctx = basic_context(home, what, kExitUnavailable);
  gpgme_set_passphrase_cb(ctx.get(), &PassphraseRefusal::callback, &refusal);
  return ctx;
}

std::string home_name(const std::optional<std::string>& home) {
  return home ? "GnuPG home " + *home : "the default GnuPG home";
}

std::string key_label(gpgme_key_t key) {
  std::string label = key->fpr ? key->fpr : "(no fingerprint)";
  if (key->uids && key->uids->uid) label += std::string(" (") + key->uids->uid + ")";
  return label;
}

KeyPtr resolve_recipient(gpgme_ctx_t ctx, const std::string& spec,
                         const std::optional<std::string>& home) {
  const std::string who = "recipient '" + spec + "'";
  KeyPtr key = the_one_key(ctx, spec, false, home, who);
  std::string problem = key_problem(key.get());
  if (problem.empty() && !has_usable_subkey(key.get(), true)) {
    problem = "has no valid encryption subkey";
  }
  if (!problem.empty()) {
    throw Error(who + ": key " + key_label(key.get()) + " " + problem, kExitConfig);
  }
  return key;
}

KeyPtr resolve_signer(gpgme_ctx_t ctx, const std::string& spec,
                      const std::optional<std::string>& home) {
  const std::string who = "signer '" + spec + "'";
  KeyPtr key = the_one_key(ctx, spec, true, home, who);
  std::string problem = key_problem(key.get());
  if (problem.empty() && !has_usable_subkey(key.get(), false)) {
    problem = "has no valid signing subkey with its secret part";
  }
  if (!problem.empty()) {
    throw Error(who + ": key " + key_label(key.get()) + " " + problem, kExitConfig);
  }
  return key;
}

CheckedKeys check_openpgp_keys(const EncodeOptions& opts) {
  PassphraseRefusal refusal;
  CtxPtr ctx = new_context(opts.gnupg_home, refusal, "OpenPGP key check");
  CheckedKeys out;
  for (const auto& spec : opts.recipients) {
    out.recipients.push_back(resolve_recipient(ctx.get(), spec, opts.gnupg_home)->fpr);
  }
  if (opts.signer) {
    KeyPtr key = resolve_signer(ctx.get(), *opts.signer, opts.gnupg_home);
    test_sign(opts.gnupg_home, key.get(), "signer '" + *opts.signer + "'");
    out.signer = key->fpr;
  }
  return out;
}

}  // namespace safespool::gpg
