// SPDX-License-Identifier: GPL-3.0-or-later
// The receiver's half of split jobs: the parts in jobs/ that make one job,
// and the one stream they are read as.
//
// A split job is one job for everything that counts — one decision at its
// seq, one consumer, one ledger record, one hook call, one receipt — and
// its parts are files like any other in jobs/ (docs/design/envelopes.md).
// The decision groups the part files found at a seq by the job they
// belong to (the SHA-256 of the whole job stream each of them names): a
// group with every part present becomes one candidate, whose stream is
// the parts' payloads in order; a group with parts missing is named in
// status ("job 7: parts 3, 4 of 4 missing") and runs nothing.
//
// Nothing is reassembled on disk. Before the first byte of a part reaches
// anyone, the reader checks that part's file: the header it was chosen by,
// its payload size, and the SHA-256 of its payload. While the parts are
// read it hashes the whole stream, and a stream that does not hash to the
// job's SHA-256 fails before its end is reported, so a file changed while
// it was read never passes for a complete job (the hand-off closes the
// consumer's pipe cleanly only at a confirmed end).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "safespool/decode.hpp"
#include "safespool/digest.hpp"
#include "safespool/packet.hpp"
#include "safespool/queue.hpp"

namespace safespool {

/// A part file at a seq, with the envelope header it was read with.
struct PartFile {
  std::string filename;  ///< within jobs/
  PartInfo part;
};

/// The part files of one split job found at one seq.
struct PartSet {
  std::string job;  ///< SHA-256 of the whole job stream
  uint64_t count = 0;
  /// One file per part present, by part number.
  std::map<uint64_t, PartFile> parts;
  /// Further files that claim a part already held: (index, file).
  std::vector<PartFile> copies;
  /// Files that claim this job with another number of parts.
  std::vector<PartFile> strays;

  bool complete() const { return parts.size() == count; }
  /// The missing part numbers as ascending closed ranges.
  std::vector<std::pair<uint64_t, uint64_t>> missing() const;
  /// "job 7: parts 3, 4 of 4 missing" ("part 3 of 4", "parts 2-90 of 100").
  std::string missing_text(uint64_t seq) const;
  /// The parts in order (complete() only).
  std::vector<PartFile> ordered() const;
};

/// Groups the part files found at one seq by job.
class PartGroups {
 public:
  void add(const std::string& filename, const PartInfo& part);
  /// The groups, ordered by job hash.
  const std::map<std::string, PartSet>& sets() const { return sets_; }

 private:
  std::map<std::string, PartSet> sets_;
};

/// For a listing (entries with their whole header): each split job some of
/// whose parts are missing, "job 7: parts 3, 4 of 4 missing", by seq.
std::vector<std::string> missing_part_notes(const JobList& jobs);

/// Two part files of one seq that cannot both be right: why, and which.
struct PartConflict {
  std::string summary;
  std::vector<std::string> files;  ///< names within jobs/
};

/// Settles the further files that claim a part of `set` (found at `seq`):
/// the same bytes are a twin (removed when `remove_twins`); the same
/// header over other bytes is a damaged copy (the one whose payload
/// matches the header is kept in `set`); a different header, or another
/// number of parts, does not belong: a conflict.
std::optional<PartConflict> settle_copies(const Queue& q, uint64_t seq, PartSet& set,
                                          bool remove_twins);

/// True when the payload of the part file `p` has its header's size and
/// SHA-256 (reads it whole). Throws SysError / FormatError.
bool part_intact(const Queue& q, const PartFile& p);

/// The payloads of `parts` (complete, in order) as one stream, named
/// `name` in messages. Each part file is checked before its bytes are
/// served — its header and payload size when it is opened, its payload's
/// SHA-256 before any byte past the first kUncheckedHead bytes of the
/// first part, and before any byte of a later part — and the whole stream
/// against the job's SHA-256 before its end. The head of the first part is
/// served unchecked so that reading a job's header (a decision, a status)
/// does not read a part of a terabyte: whoever hands the stream on calls
/// confirm() first. Throws FormatError naming the part that does not match.
/// Thread-safe: an OpenPGP stage reads it on its worker thread while the
/// processor calls confirm().
class PartsReader : public Reader {
 public:
  static constexpr uint64_t kUncheckedHead = 1 << 20;

  PartsReader(const Queue& q, std::vector<PartFile> parts, std::string name);
  ~PartsReader() override;

  size_t read(std::span<std::byte> buf) override;
  void finish() override;
  std::string describe() const override { return name_; }

  /// From now on nothing is served unchecked: checks the part being read
  /// if it was not. Call before a consumer may see any byte. Throws
  /// FormatError; SysError; Error (exit 130) on an interrupt.
  void confirm();

 private:
  void open_next();
  void check_current();
  size_t end();

  std::mutex mutex_;  ///< guards everything below
  std::string queuedir_;
  std::vector<PartFile> parts_;
  std::string name_;
  size_t next_ = 0;
  Fd file_;
  uint64_t header_len_ = 0, at_ = 0, left_ = 0;
  bool checked_ = true, confirmed_ = false, ended_ = false;
  Sha256 job_hash_;
};

}  // namespace safespool
