// SPDX-License-Identifier: GPL-3.0-or-later
// The receiver's signer policy: which OpenPGP signatures make a job
// trusted.
//
// Decoding records signatures without judging them (decode.hpp). Whoever
// can write into the queue directory (a USB stick, a sync peer) can drop
// a packet in it, and encryption to the receiver's key proves nothing
// about the sender: anyone holding the public key can encrypt. A policy
// is an allowlist of primary-key fingerprints (--require-signer FPR,
// --trusted-signers FILE); a job is trusted only when at least one of its
// signatures is good (gpg status 0) and made by a listed key. gpg's web
// of trust is deliberately not consulted: the list is the trust.
//
// The verdict is only final after the decoded stream's finish(): GPGME
// reports signatures at the end. See docs/design/signing.md.
#pragma once

#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "safespool/decode.hpp"

namespace safespool {

/// The outcome of checking one job's signatures.
struct Verdict {
  /// A good signature by a listed key was found.
  bool trusted = false;
  /// The fingerprint the verdict is about (the trusted signer, or the
  /// signer that was rejected), or "none" when there was no signature.
  std::string signer = "none";
  /// Human reason, e.g. "no OpenPGP signature", "signer FPR is not a
  /// trusted signer", "good signature by trusted signer FPR".
  std::string reason;
};

/// Normalises a v4 fingerprint: spaces removed, upper case, exactly 40 hex
/// digits. Returns an empty string when `text` is not one.
std::string normalize_fingerprint(std::string_view text);

/// An allowlist of signers. Empty = no policy (every job runs, as in fspl).
class SignerPolicy {
 public:
  /// Adds one fingerprint (--require-signer). Throws UsageError naming
  /// the value when it is not a 40-hex-digit fingerprint.
  void require_signer(std::string_view fingerprint);

  /// Adds every fingerprint of a trusted-signers file (--trusted-signers):
  /// one per line, '#' starts a comment, blank lines allowed, spaces inside
  /// a fingerprint tolerated, case-insensitive. Throws SysError when the
  /// file cannot be read, Error (kExitConfig) "FILE:LINE: ..." for a bad
  /// line.
  void load_file(const std::string& path);

  /// load_file() on text already read; `name` is used in messages.
  void load_text(std::string_view text, const std::string& name);

  /// True when no signer was given: the caller applies no policy.
  bool empty() const { return allowed_.empty(); }

  /// The allowed fingerprints, normalised.
  const std::set<std::string>& fingerprints() const { return allowed_; }

  /// Judges a job's signatures (Reader::signatures() after finish()).
  /// Zero signatures -> untrusted, signer "none", "no OpenPGP signature".
  Verdict check(const std::vector<Signature>& signatures) const;

 private:
  std::set<std::string> allowed_;
};

}  // namespace safespool
