// SPDX-License-Identifier: GPL-3.0-or-later
// Decode stages: the byte streams between a job file and its header reader.
//
// A stored packet may be plain, zstd-compressed, OpenPGP-encrypted (and
// signed), any stack of those, or encoded by something only an external
// command understands. Each stage is a pull `Reader`; stages nest
// (OpenPGP -> zstd -> packet is the common stack). `--decode auto` looks at
// the first bytes of each layer to pick the next stage.
//
// EOF is a promise: libzstd and GPGME report corruption only at the end of
// the stream, after bad bytes were produced. So read() returning 0 means
// "no more bytes", and only finish() says "and they were all good". The
// hand-off closes the consumer's pipe cleanly only after finish() returned.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "safespool/fd.hpp"
#include "safespool/openpgp.hpp"

namespace safespool {

class FileDigest;

/// One OpenPGP signature found while decoding. Recorded, not judged: a
/// signer policy (an allowlist of fingerprints) is applied above this layer.
struct Signature {
  /// Fingerprint of the signing key's *primary* key when the key is in the
  /// keyring (a subkey signature is mapped to its primary); otherwise what
  /// gpg reported (subkey fingerprint or key id).
  std::string fingerprint;
  /// gpg's status was 0: the signature is cryptographically valid and made
  /// by a key in the keyring. Says nothing about trust.
  bool good = false;
  /// Human reason: "good signature", "bad signature", "no public key", ...
  std::string summary;
};

/// How far a stream has read the file at the bottom of its stack.
struct SourcePosition {
  uint64_t offset = 0;  ///< bytes of the file read so far
  uint64_t size = 0;    ///< the file's size now
};

/// A pull stream of bytes. Not thread-safe, except cancel() and position().
class Reader {
 public:
  virtual ~Reader() = default;
  /// Reads up to buf.size() bytes (at least 1 unless at the end); returns 0
  /// only at the end of the stream. Never reads ahead of what the caller
  /// asks from the *underlying file* when the stream is plain. Throws
  /// FormatError (corrupt input) or Error/SysError, naming the source.
  virtual size_t read(std::span<std::byte> buf) = 0;
  /// After read() returned 0: confirms the stream was complete and intact
  /// (zstd frame finished and checksummed, OpenPGP decryption and signature
  /// checks passed, external decoder exited 0). Throws otherwise.
  virtual void finish() = 0;
  /// Thread-safe: makes a read() blocked in another thread return soon
  /// (kills external decoders, aborts GPGME), and every read() that starts
  /// after it too: a cancel that comes just before a read is not lost.
  /// Later reads may throw.
  virtual void cancel() {}
  /// Short description of this stage and those below it, e.g. "zstd < file".
  virtual std::string describe() const = 0;
  /// The object at the bottom of the stack (the job file's name), for
  /// messages such as "fspl-x.fspl: zstd: truncated input".
  virtual std::string source() const { return describe(); }
  /// Signatures checked by this stage and those below it, innermost
  /// OpenPGP layer last. Complete only after finish() returned.
  virtual std::vector<Signature> signatures() const { return {}; }
  /// What the outermost OpenPGP layer that is not encrypted announced about
  /// its signers before its data (openpgp.hpp): known once the first byte
  /// was read through it; nullopt when no layer could tell (an encrypted
  /// message decrypted and verified in one stage hides it). A claim for
  /// refusing early, never proof of a signer.
  virtual std::optional<openpgp::Announcement> announcement() const { return std::nullopt; }
  /// Thread-safe: how far the stack has read its job file, for a progress
  /// display (the decoded size is not known ahead). nullopt when the file
  /// is not a regular file or a stage reads it out of our sight (an
  /// external decoder).
  virtual std::optional<SourcePosition> position() const { return std::nullopt; }
};

/// A stage on top of another stream: what it does not override is the
/// inner stream's (read, finish, cancel, describe, source, signatures,
/// announcement, position), with the same thread-safety.
class ReaderLayer : public Reader {
 public:
  explicit ReaderLayer(std::unique_ptr<Reader> inner) : inner_(std::move(inner)) {}
  size_t read(std::span<std::byte> buf) override { return inner_->read(buf); }
  void finish() override { inner_->finish(); }
  void cancel() override { inner_->cancel(); }
  std::string describe() const override { return inner_->describe(); }
  std::string source() const override { return inner_->source(); }
  std::vector<Signature> signatures() const override { return inner_->signatures(); }
  std::optional<openpgp::Announcement> announcement() const override {
    return inner_->announcement();
  }
  std::optional<SourcePosition> position() const override { return inner_->position(); }

 protected:
  std::unique_ptr<Reader> inner_;
};

/// Reads from `in` until `buf` is full or the stream ends; returns the
/// number of bytes read (less than buf.size() only at the end). Throws
/// what in.read() throws.
size_t read_exact(Reader& in, std::span<std::byte> buf);

/// What the first bytes of a stream look like.
enum class Encoding { Packet, Zstd, OpenPgp, Unknown };

/// Pure guess from the first bytes (give at least 16 when available):
/// "*FILESPOOLER" -> Packet, 28 B5 2F FD or a skippable frame 5? 2A 4D 18
/// -> Zstd, a plausible OpenPGP packet tag (1, 3, 8, 4, 2 with bit 7 set)
/// or "-----BEGIN PGP " -> OpenPgp. A guess: confirmed only by decoding.
Encoding detect_encoding(std::span<const std::byte> head);

/// For a stream detect_encoding() calls OpenPgp (binary or armored): true
/// when it starts with a session-key packet (an encrypted message), false
/// when it is signed only; nullopt when `head` is too short to tell (armor
/// needs its header lines and the first 4 base64 characters).
std::optional<bool> openpgp_encrypted(std::span<const std::byte> head);

/// Name for messages: "packet", "zstd", "OpenPGP", "unknown".
const char* encoding_name(Encoding e);

/// Which stages to apply (the --decode option).
enum class DecodeMode { Auto, None, Zstd, Gpg };

/// How to open a job's decoded stream.
struct DecodeOptions {
  DecodeMode mode = DecodeMode::Auto;
  /// -d/--decoder: a shell command (run as `$SHELL -c CMD`, stdin = the job
  /// file) whose stdout is the packet. When set, `mode` is not consulted.
  std::optional<std::string> external;
  /// GnuPG home for OpenPGP stages; nullopt = the user's default.
  std::optional<std::string> gnupg_home;
  /// Largest number of stacked stages auto-detection will open.
  int max_depth = 4;
  /// OpenPGP: decrypt without verifying (gpg --unwrap) and verify the inner
  /// signed message in a stage of its own, so that its one-pass signatures
  /// are seen before its data (announcement()). A signer policy asks for
  /// it; it costs a second gpg per packet.
  bool unwrap = false;
};

/// A decoded stream of a job file.
struct Decoded {
  std::unique_ptr<Reader> reader;
  /// The job file itself, when no stage was applied and it is a regular
  /// file: `reader` reads it directly, so once the header was read through
  /// it the offset is exactly at the first payload byte and the file can be
  /// the consumer's stdin. -1 otherwise. Owned by `reader`.
  int plain_fd = -1;
  bool plain() const { return plain_fd >= 0; }
};

/// Opens `file` (positioned at its start; a regular file or a pipe) named
/// `name` in messages, applying the stages `opts` asks for. Detection peeks
/// with pread() on regular files, so a plain packet is read from offset 0.
/// Throws FormatError "NAME: not a packet (first bytes: 1f 8b 08 ...); if
/// it is encoded, try --decoder" when auto-detection finds nothing it knows.
/// With `digest`, the bytes the stages read from the file are fed to it
/// as they pass (the stream shares it): the packet's hash without a
/// second read of what the job reads anyway.
Decoded open_decoded(Fd file, const std::string& name, const DecodeOptions& opts,
                     std::shared_ptr<FileDigest> digest = nullptr);

/// open_decoded() for a stream that is not a file (the payloads of a
/// split job's parts, in order): the stages `opts` asks for on top of
/// `stream`, named `name` in messages. An external decoder reads a file
/// or pipe, not a stream: with opts.external this throws FormatError.
Decoded open_decoded(std::unique_ptr<Reader> stream, const std::string& name,
                     const DecodeOptions& opts);

/// Individual stages, for tests and for explicit stacks.
std::unique_ptr<Reader> make_fd_reader(Fd fd, std::string name,
                                       std::shared_ptr<FileDigest> digest = nullptr);
std::unique_ptr<Reader> make_zstd_reader(std::unique_ptr<Reader> inner);
std::unique_ptr<Reader> make_gpg_reader(std::unique_ptr<Reader> inner,
                                        const std::optional<std::string>& gnupg_home,
                                        bool unwrap = false);
/// Runs `$SHELL -c command` (SHELL unset: /bin/sh) with stdin = `input`.
std::unique_ptr<Reader> make_external_reader(Fd input, const std::string& command,
                                             std::string name);

// ---- many files at once, for their headers (a queue scan)
//
// GPGME runs one gpg per message, and on a queue of small encrypted
// packets starting gpg is nearly all the cost of a scan. The batch below
// decrypts the first bytes of many messages with one gpg, and hands out
// streams that behave exactly like open_decoded()'s (same bytes, same
// errors, same verdict from finish()): past those first bytes, or when gpg
// could not decrypt a message, a reader continues with a GPGME reader of
// its own, which first checks the bytes already served.

/// Files up to this size are decrypted in a batch; larger ones alone, so
/// that a scan never decrypts much more than a header.
inline constexpr size_t kBatchMaxFileSize = 1 << 20;
/// Plaintext kept per batched file: a usual header, even behind a zstd
/// block of up to 64 KiB.
inline constexpr size_t kBatchHeadBytes = 64 << 10;

/// Decrypts the start of many OpenPGP messages with one `gpg
/// --decrypt-files` per 128. For each of `files` (open regular files; their
/// offsets do not move): up to `limit` bytes of what gpg wrote for it,
/// fewer or none when it is shorter or gpg failed on it. Unchecked: a hint
/// for make_gpg_head_reader(), never a verdict. Stops early, leaving the
/// rest empty, when an interrupt is pending (signals.hpp). Throws Error
/// when gpg cannot be run at all.
std::vector<std::vector<std::byte>> openpgp_heads(std::span<const int> files,
                                                  const std::optional<std::string>& gnupg_home,
                                                  size_t limit);

/// The OpenPGP stage on `file` (named `name`), serving `head` first: read
/// past it, it continues with make_gpg_reader()'s output, after checking
/// that this starts with the bytes already served (FormatError "NAME:
/// OpenPGP: the message changed while it was read" otherwise).
std::unique_ptr<Reader> make_gpg_head_reader(Fd file, std::string name, std::vector<std::byte> head,
                                             const std::optional<std::string>& gnupg_home);

/// One job file for a DecodeBatch: open, positioned at its start.
struct BatchFile {
  Fd file;
  std::string name;
};

/// open_decoded() for many files, to read their headers (a queue scan).
/// Encrypted binary OpenPGP files of at most kBatchMaxFileSize bytes (auto
/// or gpg mode) get their first kBatchHeadBytes from one openpgp_heads()
/// call when the batch is made; open() then builds each stream on demand,
/// so only the heads (small) are held for the files not opened yet. Give
/// it a bounded number of files (a few hundred): each holds an open fd.
class DecodeBatch {
 public:
  DecodeBatch(std::vector<BatchFile> files, DecodeOptions opts);
  size_t size() const { return files_.size(); }
  /// How many files are encrypted (decrypted in the batch): reading their
  /// headers again costs a gpg run, reading a plain or zstd one almost nothing.
  size_t encrypted() const { return encrypted_; }
  /// open_decoded() of file i, starting from its head when it has one.
  /// Once per file. Throws what open_decoded() throws.
  Decoded open(size_t i);

 private:
  std::vector<BatchFile> files_;
  std::vector<std::optional<std::vector<std::byte>>> heads_;  ///< nullopt: not batched
  DecodeOptions opts_;
  size_t encrypted_ = 0;
};

}  // namespace safespool
