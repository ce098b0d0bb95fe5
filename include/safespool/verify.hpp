// SPDX-License-Identifier: GPL-3.0-or-later
// Enforcing a signer policy on the stream a job is read from.
//
// A packet under a policy succeeds only when its whole stream was read and
// its signature was good and made by a listed key (policy.hpp). gpg tells
// the signer only at the end, so the check has three moments:
//
//  1. at once: a stream with no OpenPGP layer cannot carry a signature;
//  2. before the first payload byte: what the message announces about its
//     signers (one-pass signature packets, openpgp.hpp) — no signature at
//     all, or only issuers whose key ids are not the policy's keys, is a
//     refusal before any consumer starts;
//  3. at the end of the stream, in finish(): the signatures gpg verified.
//     A consumer that stops reading early (zfs receive at its END record)
//     does not end the check: the rest is read and verified before the job
//     may count as done.
//
// A refusal is a FormatError "NAME: not trusted: REASON"; the processor
// turns it into a rejected job, whatever the consumer's exit status.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "safespool/decode.hpp"
#include "safespool/policy.hpp"

namespace safespool {

/// A job's decoded stream under a signer policy: finish() also requires
/// the policy to trust its signatures.
class TrustedStream : public ReaderLayer {
 public:
  /// Throws FormatError "NAME: not trusted: no OpenPGP signature ..." at
  /// once when `inner` has no OpenPGP layer.
  TrustedStream(std::unique_ptr<Reader> inner, const SignerPolicy& policy, std::string name);

  void finish() override;

  /// After the header was read: throws FormatError "NAME: not trusted:
  /// ..." when the message announces no signature, or only issuers not in
  /// `key_ids` (signer_key_ids()). Passes what it cannot tell.
  void check_announcement(const std::set<std::string>& key_ids) const;
  /// finish() passed: the whole stream was read and trusted.
  bool verified() const { return verified_; }
  /// The verdict of finish() (signer "none" until then).
  const Verdict& verdict() const { return verdict_; }

 private:
  const SignerPolicy& policy_;
  std::string name_;
  bool verified_ = false;
  Verdict verdict_;
};

/// The key ids (16 upper-case hex digits) that may sign for `policy`: each
/// listed primary key's and, when the key is in the keyring at
/// `gnupg_home`, each of its subkeys'. Asks gpg once per call.
std::set<std::string> signer_key_ids(const SignerPolicy& policy,
                                     const std::optional<std::string>& gnupg_home);

/// Reads `in` to its end and finish()es it, discarding the bytes. Stops
/// with Error (exit 130) when an interrupt arrives (signals.hpp).
void drain_and_verify(Reader& in);

/// Reads the rest of `in` (positioned after the header) and judges its
/// signatures; a stream that fails to decode is untrusted, with the
/// decoder's error as the reason. For queue-ls/queue-info under a policy.
Verdict judge_stream(Reader& in, const SignerPolicy& policy);

/// --verify-first: copies the rest of `in` into an unlinked temporary file
/// (O_TMPFILE) in `dir`, finish()es the stream, and returns the file
/// positioned at 0. Stops with FormatError "NAME: payload larger than ..."
/// past `max_bytes`, or when the filesystem would keep less than a reserve
/// free (a decompression bomb must not fill the queue's disk), and with
/// Error (exit 130) on an interrupt. Nothing is left on disk if anything
/// fails.
Fd spool_verified(Reader& in, const std::string& dir, std::optional<uint64_t> max_bytes);

}  // namespace safespool
