// SPDX-License-Identifier: GPL-3.0-or-later
// Encoding: the sender's half of decode.hpp.
//
// A packet leaves the sender as a stack of push `Writer`s, always in the
// order compress, then sign+encrypt: bytes -> zstd (libzstd, checksummed
// frame) -> OpenPGP (GPGME, binary, not armored) -> the output fd. The
// result is standard: `zstd -d`, `gpg -d`, `fspl --decoder 'gpg -d |
// zstdcat'` and our own `open_decoded()` all read it. Memory is constant:
// libzstd's window and one output buffer; GPGME runs on a worker thread
// that takes each write()'s bytes directly (a rendezvous, no queue).
//
// Unattended by design: every key is resolved before the first payload
// byte (check_keys), and a signing key that needs a passphrase is an error,
// never a prompt: loopback pinentry with a passphrase callback that refuses.
// See docs/design/signing.md.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace safespool {

/// What the sender applies to a packet. All empty: the bytes pass through.
struct EncodeOptions {
  /// zstd level (ZSTD_minCLevel()..ZSTD_maxCLevel(), 0 = libzstd's default
  /// 3); nullopt = no compression. Levels >= 10 use libzstd's worker
  /// threads when the library has them.
  std::optional<int> zstd_level;
  /// Keys to encrypt to: fingerprints (best), key ids, or anything gpg
  /// accepts that matches exactly one key. Empty = no encryption.
  std::vector<std::string> recipients;
  /// Key to sign with (a secret key usable without a passphrase); nullopt =
  /// unsigned. With a signer and no recipients the message is signed only.
  std::optional<std::string> signer;
  /// GnuPG home; nullopt = the user's default ($GNUPGHOME or ~/.gnupg).
  std::optional<std::string> gnupg_home;

  /// True when an OpenPGP stage is needed.
  bool openpgp() const { return !recipients.empty() || signer.has_value(); }
};

/// The keys check_keys() found, as primary-key fingerprints.
struct CheckedKeys {
  std::vector<std::string> recipients;  ///< same order as EncodeOptions::recipients
  std::optional<std::string> signer;
};

/// Resolves every recipient (exactly one public key, not revoked, expired,
/// disabled or invalid, with a valid encryption subkey) and the signer
/// (a secret key with a valid signing subkey, proven usable without a
/// passphrase by signing a few bytes) without reading any payload: call it
/// before consuming a sequence number. Also checks zstd_level's range.
/// Throws Error (kExitConfig) naming the key and the reason, e.g.
/// "recipient 'x@example.org': no matching public key in GnuPG home /h";
/// UsageError for a zstd level out of range; Error (kExitUnavailable) when
/// gpg cannot run. Never prompts, never waits for a pinentry.
CheckedKeys check_keys(const EncodeOptions& opts);

/// Everything an Encoder with `opts` could refuse, checked before a
/// sequence number is consumed: the zstd level's range, and check_keys()
/// when OpenPGP is asked for. Throws as check_keys() does.
void check_encoding(const EncodeOptions& opts);

/// A push stream of bytes: one encoding stage writing into the next.
class Writer {
 public:
  virtual ~Writer() = default;
  /// Encodes `data` into the stage below. Throws Error/SysError naming the
  /// output, including a failure of a stage below found meanwhile.
  virtual void write(std::span<const std::byte> data) = 0;
  /// Ends the stream (zstd frame end, OpenPGP trailer), waits for the
  /// stages below and finishes them. Throws on any failure; after a throw
  /// the output is incomplete. Call at most once; no write() after it.
  virtual void finish() = 0;
  /// Short description outermost-first, e.g. "zstd > OpenPGP > out.fspl".
  virtual std::string describe() const = 0;
};

/// Writes to `fd` (not owned: it must outlive the writer), blocking, as
/// write_all does; `name` names the output in messages.
std::unique_ptr<Writer> make_fd_writer(int fd, std::string name);
/// Compresses into `inner` with one checksummed zstd frame at `level`.
/// Throws UsageError when `level` is out of range.
std::unique_ptr<Writer> make_zstd_writer(std::unique_ptr<Writer> inner, int level);
/// Encrypts to opts.recipients and/or signs with opts.signer into `inner`
/// (binary OpenPGP). Resolves the keys as check_keys() does, without the
/// test signature. Throws Error if a key is unusable or gpg cannot start.
std::unique_ptr<Writer> make_gpg_writer(std::unique_ptr<Writer> inner, const EncodeOptions& opts);

/// The whole sender stack for one output: bytes written to it are
/// compressed (if opts.zstd_level) and then signed and/or encrypted (if
/// opts.openpgp()) into `fd`. Abandoning an Encoder without finish()
/// stops GPGME and leaves a truncated output, which the caller discards.
class Encoder {
 public:
  /// `fd` is not owned and must outlive the Encoder; `name` names it in
  /// messages ("stdout", "jobs/.tmp-…"). Throws as make_gpg_writer().
  Encoder(int fd, const EncodeOptions& opts, std::string name);
  /// The same stack over `out`, the bottom stage (a file split into
  /// parts, a copy kept aside): it receives the encoded bytes.
  Encoder(std::unique_ptr<Writer> out, const EncodeOptions& opts);

  /// Encodes `data`. Throws Error/SysError naming the output.
  void write(std::span<const std::byte> data);
  /// Text convenience (headers built by encode_header()).
  void write(std::string_view data);
  /// Ends every stage and waits for gpg; throws on any failure. The output
  /// is complete and verifiable only when this returned.
  void finish();
  /// "zstd > OpenPGP > stdout", or just the output's name.
  std::string describe() const;

 private:
  std::unique_ptr<Writer> top_;
  bool finished_ = false;
};

}  // namespace safespool
