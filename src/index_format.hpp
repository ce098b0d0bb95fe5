// SPDX-License-Identifier: GPL-3.0-or-later
// The bytes of queuedir/.safespool-index, shared by its reader (index.cpp)
// and its writers (index_writer.cpp).
//
// Native byte order (a marker catches a foreign one), in three parts: the
// entries, which every scan reads; the headers, which only full listings
// read; a trailer that says where the parts are. The trailer comes last so
// that entries and headers can be written as a scan learns them, each
// stream to its own file, and joined at the end.
//
//   entries part, from offset 0:
//     8   "SSPLIDX3"
//     4   0x01020304 (byte order marker)
//     8   device of jobs/      8  inode of jobs/
//     8 + 8  trusted_before: entries whose ctime is not older are racy
//     8 + 8, 8 + 8  mtime and ctime of jobs/ when the scan listed it, if the
//            entries are exactly the job files it held then (else zeros)
//     4   key length, then the key (how headers were decoded)
//     then each entry, in the order the scan listed the files:
//       4 name length, the name; 6 x 8 FileId; 8 seq, 8 + 4 ctime;
//       8 offset (in the headers part) and 4 size of its header
//   headers part: each header (prefix + metadata) as in a packet
//   trailer (28 bytes):
//     8   size of the entries part (where the headers part starts)
//     8   number of entries
//     4   CRC-32C of the entries part
//     8   "SSPLEND3"
//
// Headers are stored in the packet format itself and carry its two CRCs,
// so a header goes through the same checked parser as a job file's, and a
// processor, which needs only seq and ctime, never reads them.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "safespool/error.hpp"
#include "safespool/index.hpp"

namespace safespool::index_format {

inline constexpr char kMagic[8] = {'S', 'S', 'P', 'L', 'I', 'D', 'X', '3'};
inline constexpr char kEndMagic[8] = {'S', 'S', 'P', 'L', 'E', 'N', 'D', '3'};
inline constexpr uint32_t kByteOrder = 0x01020304;
inline constexpr size_t kMaxIndexBytes = size_t{1} << 31;
/// The fixed fields of the entries part, before the key.
inline constexpr size_t kFixed = sizeof kMagic + 4 + 8 + 8 + 8 + 8 + 4 * 8;
inline constexpr size_t kTrailer = 8 + 8 + 4 + sizeof kEndMagic;
/// An entry's fixed-size fields after its name (see the layout above).
inline constexpr size_t kRecordFields = 6 * 8 + 8 + 8 + 4 + 8 + 4;
/// Where, after the name, an entry's header offset is.
inline constexpr size_t kHeaderOffsetAt = 6 * 8 + 8 + 8 + 4;

/// CRC-32C (Castagnoli), bytewise: the fallback where the CPU has no
/// instruction for it.
inline uint32_t crc32c_bytes(uint32_t c, const unsigned char* p, size_t n) {
  static constexpr auto kTable = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t v = i;
      for (int k = 0; k < 8; ++k) v = (v >> 1) ^ (0x82F63B78u & (0u - (v & 1u)));
      t[i] = v;
    }
    return t;
  }();
  while (n--) c = (c >> 8) ^ kTable[(c ^ *p++) & 0xff];
  return c;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) inline uint32_t crc32c_sse42(uint32_t c, const unsigned char* p,
                                                               size_t n) {
  uint64_t c64 = c;
  for (; n >= 8; n -= 8, p += 8) {
    uint64_t v;
    std::memcpy(&v, p, sizeof v);
    c64 = __builtin_ia32_crc32di(c64, v);
  }
  return crc32c_bytes(static_cast<uint32_t>(c64), p, n);
}
#endif

/// Continues the CRC-32C `crc` (0 to start) over `data`. The index is
/// checksummed whole on every load: the CPU's CRC-32C instruction does 13
/// MB in about a millisecond, zlib's CRC-32 takes ten times as long.
inline uint32_t checksum(uint32_t crc, std::string_view data) {
  auto p = reinterpret_cast<const unsigned char*>(data.data());
  uint32_t c = ~crc;
#if defined(__x86_64__)
  static const bool hw = __builtin_cpu_supports("sse4.2");
  if (hw) return ~crc32c_sse42(c, p, data.size());
#endif
  return ~crc32c_bytes(c, p, data.size());
}

template <typename T>
void put_raw(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}

inline void put_bytes(std::string& out, std::string_view s) {
  put_raw(out, static_cast<uint32_t>(s.size()));
  out.append(s);
}

/// The fixed fields and key that open an entries part.
inline std::string entries_head(const struct stat& jobs_st, FsTime trusted_before,
                                const DirState& listed, const std::string& key) {
  std::string out(kMagic, sizeof kMagic);
  put_raw(out, kByteOrder);
  put_raw(out, static_cast<uint64_t>(jobs_st.st_dev));
  put_raw(out, static_cast<uint64_t>(jobs_st.st_ino));
  for (int64_t v : {trusted_before.sec, trusted_before.nsec, listed.mtime.sec, listed.mtime.nsec,
                    listed.ctime.sec, listed.ctime.nsec})
    put_raw(out, v);
  put_bytes(out, key);
  return out;
}

/// Appends the record of `e`, its header at `header_offset`, to `out`.
inline void put_record(std::string& out, const HeaderIndex::Entry& e, uint64_t header_offset,
                       uint32_t header_size) {
  put_bytes(out, e.name);
  for (int64_t v : {static_cast<int64_t>(e.id.ino), static_cast<int64_t>(e.id.size), e.id.mtime_sec,
                    e.id.mtime_nsec, e.id.ctime_sec, e.id.ctime_nsec})
    put_raw(out, v);
  put_raw(out, e.seq);
  put_raw(out, e.ctime_secs);
  put_raw(out, e.ctime_nanos);
  put_raw(out, header_offset);
  put_raw(out, header_size);
}

/// The trailer of an index whose entries part is `entries_size` bytes.
inline std::string trailer(uint64_t entries_size, uint64_t count, uint32_t crc) {
  std::string out;
  put_raw(out, entries_size);
  put_raw(out, count);
  put_raw(out, crc);
  out.append(kEndMagic, sizeof kEndMagic);
  return out;
}

/// Bounds-checked reads over loaded bytes; any overrun is corruption.
class Cursor {
 public:
  explicit Cursor(std::string_view data) : data_(data) {}
  template <typename T>
  T get() {
    T v;
    std::memcpy(&v, take(sizeof v).data(), sizeof v);
    return v;
  }
  std::string_view bytes() { return take(get<uint32_t>()); }
  std::string_view take(size_t n) {
    if (n > data_.size() - pos_) throw FormatError("truncated");
    std::string_view s = data_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  size_t left() const { return data_.size() - pos_; }
  size_t pos() const { return pos_; }

 private:
  std::string_view data_;
  size_t pos_ = 0;
};

}  // namespace safespool::index_format
