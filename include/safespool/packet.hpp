// SPDX-License-Identifier: GPL-3.0-or-later
// The packet wire format, byte-compatible with Filespooler (fspl) 1.2.2.
//
// A packet is a 30-byte prefix, then MessagePack metadata, then the
// payload up to EOF:
//
//   12  "*FILESPOOLER"
//    2  version, big-endian u16, = 1
//    8  metadata length, big-endian u64 (we refuse more than 1 MiB)
//    4  CRC-32 (zlib polynomial) of the metadata, big-endian
//    4  CRC-32 of the preceding 26 bytes, big-endian
//
// Metadata is a map {seq: u64, ctime: [i64 secs, u32 nanos], cmd_type},
// cmd_type being "NOP", "Fail" or {"Command": {params: [bytes...],
// env: [[key, value]...]}}, each byte string an array of small ints (what
// rmp-serde makes of a Rust Vec<u8>). Keys are written in that order
// (nlohmann::ordered_json reproduces fspl's bytes exactly).
//
// A packet is untrusted input: the codec validates in order (length, tag,
// version, prefix CRC, metadata bound, metadata CRC, shape) and bounds
// every length before allocating. These are pure functions over bytes;
// reading files is the caller's business.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace safespool {

class Reader;

inline constexpr size_t kPrefixSize = 30;
inline constexpr uint64_t kMaxMetadataSize = 1 << 20;
inline constexpr char kPacketTag[] = "*FILESPOOLER";
inline constexpr char kEnvPrefix[] = "FSPL_SET_";

/// What a packet asks for.
enum class JobKind { Command, Nop, Fail };

/// A part of a split job (the packet is an envelope: its payload is a
/// piece of the job's stream). See docs/design/envelopes.md.
struct PartInfo {
  uint64_t index = 1;  ///< 1..count
  uint64_t count = 1;
  uint64_t size = 0;   ///< bytes of this part's payload
  std::string sha256;  ///< of this part's payload, 64 lower-case hex digits
  std::string job;     ///< SHA-256 of the whole job stream (all payloads in order)
  bool operator==(const PartInfo&) const = default;
};

/// A packet's claim to replace the packet of `seq` whose file had this hash.
struct Supersedes {
  uint64_t seq = 0;
  std::string sha256;  ///< 64 lower-case hex digits
  bool operator==(const Supersedes&) const = default;
};

/// Most parts one job may be split into.
inline constexpr uint64_t kMaxParts = 1000000;
/// No header (prefix and metadata) of a part of a split job is shorter:
/// a listing need read only headers at least this long to find parts.
inline constexpr size_t kMinPartHeaderSize = 256;

/// The decoded metadata of one packet.
struct Meta {
  uint64_t seq = 1;
  int64_t ctime_secs = 0;
  uint32_t ctime_nanos = 0;
  JobKind kind = JobKind::Nop;
  std::vector<std::string> params;                       ///< byte strings
  std::vector<std::pair<std::string, std::string>> env;  ///< keys without FSPL_SET_
  std::optional<PartInfo> part;                          ///< an envelope: a part of a split job
  std::optional<Supersedes> supersedes;                  ///< replaces a failed packet
  bool receipt = false;  ///< a receipt for the sender (docs/design/receipts.md)

  /// True when the "safespool" key is present (any of the three above).
  bool extended() const { return part || supersedes || receipt; }
  bool operator==(const Meta&) const = default;
};

/// Fields of a validated prefix.
struct Prefix {
  uint64_t meta_len = 0;
  uint32_t meta_crc = 0;
};

/// The CRC-32 both checksums use.
uint32_t crc32(std::span<const std::byte> data);

/// Prefix + metadata bytes for `meta` (the payload follows them). The
/// "safespool" entry uses fixed-width integers, so the length of an
/// envelope's header does not depend on its part numbers, sizes or hashes.
std::string encode_header(const Meta& meta);

/// Validates the 30-byte prefix. Throws FormatError with the reason
/// ("not a packet (wrong tag)", "unsupported version 2", "prefix CRC
/// mismatch", "metadata length N exceeds the 1 MiB limit").
Prefix parse_prefix(std::span<const std::byte> prefix);

/// Checks the CRC, then decodes the metadata. Throws FormatError.
Meta parse_metadata(std::span<const std::byte> metadata, uint32_t expected_crc);

/// Reads exactly the prefix and metadata from `in` (nothing more) and
/// decodes them; `raw`, when given, receives those bytes. Throws
/// FormatError "NAME: reason" (truncated input included) or whatever `in`
/// throws.
Meta read_header(Reader& in, const std::string& name, std::string* raw = nullptr);

/// Where a job file sits, for the FSPL_JOB_* variables.
struct JobOrigin {
  std::string filename;  ///< name within jobs/
  std::string queuedir;  ///< the queue directory as given with -q
};

/// The environment a consumer gets (and queue-info/stdin-info print), in
/// fspl's order: FSPL_SEQ, FSPL_CTIME_*, FSPL_JOB_FILENAME/QUEUEDIR/FULLPATH
/// (for a job file: `origin`; null for a packet on stdin), FSPL_PARAM_n,
/// FSPL_SET_x.
std::vector<std::pair<std::string, std::string>> job_env(const Meta& meta, const JobOrigin* origin);

/// "2022-05-08T00:38:31Z" (seconds precision, as fspl prints).
std::string rfc3339_utc(int64_t secs);
/// "2022-05-07T19:38:31-05:00" in the local time zone.
std::string rfc3339_local(int64_t secs);

/// The current time as (secs, nanos).
std::pair<int64_t, uint32_t> now_ctime();

}  // namespace safespool
