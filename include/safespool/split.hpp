// SPDX-License-Identifier: GPL-3.0-or-later
// Where prepare's packet goes when it is not (only) standard output: a
// directory, an outbox copy, or the parts of an envelope.
//
// A job too large for one medium is split: the whole job stream (the
// packet as it would have been, compressed, signed and encrypted as
// asked) is cut into pieces, and each piece travels as the payload of an
// envelope packet (docs/design/envelopes.md) — a plain Filespooler packet
// with the job's seq, cmd_type "Fail" and a "safespool" entry saying
// which part it is, how long it is, the SHA-256 of its payload and the
// SHA-256 of the whole stream. Encoding the whole stream first and
// splitting the encoded bytes keeps one signature over the whole job.
//
// The headers are written last: the number of parts and the hashes are
// known only at the end of the input, which may be a pipe from `zfs send`.
// Each part is written after a hole the size of its header (an envelope
// header has a fixed length), then the headers are written into the holes
// and each file is synced and renamed to its packet name, so a part file
// under a packet's name is always complete. Memory is constant; the input
// is read once and each byte written once.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "safespool/digest.hpp"
#include "safespool/encode.hpp"
#include "safespool/fd.hpp"
#include "safespool/packet.hpp"

namespace safespool {

/// Smallest --split SIZE: a part must hold its header and some payload.
inline constexpr uint64_t kMinPartFileSize = 4096;

/// "fspl-SEQ-UUID.fspl": the name prepare gives a packet in a directory.
std::string packet_filename(uint64_t seq, const std::string& uuid);
/// "fspl-SEQ-UUID-part-I-of-N.fspl": the name of a part.
std::string part_filename(uint64_t seq, const std::string& uuid, uint64_t index, uint64_t count);

/// The length of every envelope header made for `job` (its seq and ctime).
uint64_t envelope_header_size(const Meta& job);

/// The bottom stage of an Encoder that writes the job stream as envelope
/// parts of at most `max_file_size` bytes each (nullopt: one part) into
/// temporary files in `dir`. Nothing appears under a packet's name before
/// publish(); the destructor removes whatever was not published.
class PartWriter : public Writer {
 public:
  /// `job`: seq and ctime of the job (the envelopes carry them). Throws
  /// UsageError when `max_file_size` leaves no room for a payload.
  PartWriter(const Meta& job, std::string dir, std::optional<uint64_t> max_file_size);
  ~PartWriter() override;

  void write(std::span<const std::byte> data) override;
  /// Writes every header into its place and syncs every part.
  void finish() override;
  std::string describe() const override;

  /// After finish(): renames the parts to part_filename() (or, for a
  /// single part, packet_filename()) in `dir`, syncs the directory, and
  /// returns their paths in order. Throws SysError.
  std::vector<std::string> publish();
  /// After finish(): copies each part, in order, to `fd`.
  void copy_to(int fd, const std::string& what) const;
  /// SHA-256 of the whole job stream (after finish()).
  const std::string& job_sha256() const { return job_sha256_; }

 private:
  struct Part {
    std::string temp;
    uint64_t size = 0;
    std::string sha256;
  };
  void start_part();
  void end_part();

  Meta job_;
  std::string dir_;
  uint64_t header_size_ = 0;
  uint64_t capacity_ = 0;  ///< payload bytes per part
  std::string uuid_;
  std::vector<Part> parts_;
  Fd current_;
  Sha256 part_hash_, job_hash_;
  std::string job_sha256_;
  bool published_ = false;
};

/// A packet file being written into a directory under a temporary name:
/// the bottom stage of an Encoder (--output-dir), or a copy of what goes
/// to standard output (--outbox). commit() syncs it and gives it its name.
class FileWriter : public Writer {
 public:
  /// Creates `dir`/.NAME.tmp-… for the final `dir`/NAME. Throws SysError.
  FileWriter(const std::string& dir, const std::string& name);
  ~FileWriter() override;
  void write(std::span<const std::byte> data) override;
  void finish() override {}
  std::string describe() const override { return path_; }
  /// Syncs the file, renames it to its name and syncs the directory.
  /// Returns the path. Throws SysError.
  std::string commit();

 private:
  std::string path_, temp_;
  Fd fd_;
  bool done_ = false;
};

/// Writes everything to each of `outs` in turn (standard output and an
/// outbox copy). finish() finishes each.
std::unique_ptr<Writer> make_tee_writer(std::vector<Writer*> outs, std::string name);

/// Copies the file `from` to `dir`/`name` (temporary name, sync, rename,
/// directory sync): an outbox copy of a part. Returns the new path.
std::string copy_into(const std::string& from, const std::string& dir, const std::string& name);

}  // namespace safespool
