// SPDX-License-Identifier: GPL-3.0-or-later
// A job: one packet opened to run, its header read from its bytes now.
//
// Whatever a scan, the header index or a record said about a file, what
// runs is what this open finds: the header is read again through the
// decode stages, and the consumer gets exactly the rest of this stream —
// or, for a plain packet, the same open file positioned at its first
// payload byte, or, with --verify-first, a private file holding the
// verified payload. `payload()` is the one place that choice is made.
//
// A split job (parts.hpp) is one Job too: its stream is its parts'
// payloads in order, decoded like the stream of a job file, and its
// header is the one inside that stream, which must carry the parts' seq.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "safespool/decode.hpp"
#include "safespool/handoff.hpp"
#include "safespool/packet.hpp"
#include "safespool/parts.hpp"
#include "safespool/policy.hpp"
#include "safespool/queue.hpp"
#include "safespool/verify.hpp"

namespace safespool {

class Job {
 public:
  /// Opens jobs/`filename` of `q` and reads its header. Throws what
  /// Queue::open_job, open_decoded and read_header throw.
  static Job open(const Queue& q, const std::string& filename, const DecodeOptions& decode);
  /// The packet on standard input (stdin-process).
  static Job from_stdin(const DecodeOptions& decode);
  /// The split job whose `parts` (complete, in order, their envelope
  /// headers read at `seq`) are in jobs/ of `q`: reads the header inside
  /// their stream. Throws FormatError when it cannot be decoded, is itself
  /// a part, or carries another seq; what PartsReader throws.
  static Job open_split(const Queue& q, uint64_t seq, std::vector<PartFile> parts,
                        const DecodeOptions& decode);

  Job(Job&&) noexcept;
  Job& operator=(Job&&) noexcept;
  ~Job();

  const Meta& meta() const { return meta_; }
  /// "jobs/NAME" or "standard input", for messages.
  const std::string& name() const { return name_; }
  /// Where the file sits (FSPL_JOB_*); null for standard input.
  const JobOrigin* origin() const { return origin_ ? &*origin_ : nullptr; }
  /// The decoded stream, positioned after the header.
  Reader& stream() { return *dec_.reader; }

  /// Puts `policy` on the stream (verify.hpp): throws FormatError "NAME:
  /// not trusted: ..." when the packet cannot carry a signature, or
  /// announces no trusted signer (`key_ids`: signer_key_ids()).
  void require(const SignerPolicy& policy, const std::set<std::string>& key_ids);
  /// True when a policy was put on the stream and the whole stream was
  /// read and trusted.
  bool verified() const { return trusted_ && trusted_->verified(); }
  /// The policy's verdict once verified (signer "none" before).
  Verdict verdict() const { return trusted_ ? trusted_->verdict() : Verdict{}; }
  /// Reads and verifies what the stream still holds (a consumer stopped
  /// reading early), or, when the stream can no longer be read (it was
  /// cancelled), the whole packet again from its file. Throws FormatError
  /// "not trusted" / a decoding error, Error (exit 130) on an interrupt.
  void verify_rest(const SignerPolicy& policy, const std::set<std::string>& key_ids);

  /// --verify-first: decodes and verifies the whole payload into an
  /// unlinked file in `dir` now; the consumer then reads that file. Throws
  /// as spool_verified() does.
  void spool(const std::string& dir, std::optional<uint64_t> max_bytes);

  /// What the consumer's stdin is made of: the spooled file, the job file
  /// itself at its first payload byte (plain), or the decoded stream;
  /// nothing with `ignore` (--ignore-payload).
  PayloadSource payload(bool ignore);

  /// SHA-256 of the job file's bytes (computed once; "" for standard
  /// input): hashed as the decoding stages read them, the rest (what a
  /// plain packet's consumer read itself, what nobody read) read when
  /// asked. For a split job, the hash of its whole stream (the parts'
  /// payloads in order, which the stream checks before its end). Throws
  /// SysError.
  const std::string& sha256();

  /// A new decoded stream of the same packet from its start (to compare
  /// it with another); `parts`, when given, receives a split job's
  /// PartsReader in it. Throws what opening it throws.
  Decoded open_again(PartsReader** parts = nullptr) const;

  /// A split job: checks now the part its header was read from, so that
  /// no byte a consumer may see is unchecked (PartsReader::confirm()).
  /// Nothing for other jobs. Throws FormatError, or Error (exit 130) on an
  /// interrupt.
  void check_parts();

  /// True for a split job.
  bool split() const { return !parts_.empty(); }
  /// The files in jobs/ this job is made of: its file, or each part in
  /// order (none for standard input).
  std::vector<std::string> files() const;

 private:
  Job() = default;

  Decoded dec_;
  Meta meta_;
  std::string name_;
  std::optional<JobOrigin> origin_;
  DecodeOptions decode_;
  Fd file_;                           ///< the job file, for hashing and verifying again (-1: stdin)
  Fd spooled_;                        ///< --verify-first: the verified payload
  TrustedStream* trusted_ = nullptr;  ///< within dec_.reader, under a policy
  /// Fed the job file's bytes as the stages read them (job.cpp: sha256());
  /// shared with the readers, whose threads (GPGME's) may outlive a Job's
  /// other members while it is destroyed or assigned.
  std::shared_ptr<FileDigest> digest_;
  std::string sha256_;
  std::string queuedir_;                 ///< where the parts are (split jobs)
  std::vector<PartFile> parts_;          ///< split jobs: the parts, in order
  PartsReader* parts_reader_ = nullptr;  ///< at the bottom of dec_ (split jobs)
};

}  // namespace safespool
