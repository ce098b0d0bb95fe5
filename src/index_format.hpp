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
//     4   key length, then the key (how headers were decoded)
//     then each entry, in the order the scan listed the files:
//       4 name length, the name; 6 x 8 FileId; 8 seq, 8 + 4 ctime;
//       8 offset (in the headers part) and 4 size of its header
//   headers part: each header (prefix + metadata) as in a packet
//   trailer (28 bytes):
//     8   size of the entries part (where the headers part starts)
//     8   number of entries
//     4   CRC-32 of the entries part
//     8   "SSPLEND3"
//
// Headers are stored in the packet format itself and carry its two CRCs,
// so a header goes through the same checked parser as a job file's, and a
// processor, which needs only seq and ctime, never reads them.
#pragma once

#include <zlib.h>

#include <algorithm>
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
inline constexpr size_t kFixed = sizeof kMagic + 4 + 8 + 8 + 8 + 8;
inline constexpr size_t kTrailer = 8 + 8 + 4 + sizeof kEndMagic;
/// An entry's fixed-size fields after its name (see the layout above).
inline constexpr size_t kRecordFields = 6 * 8 + 8 + 8 + 4 + 8 + 4;
/// Where, after the name, an entry's header offset is.
inline constexpr size_t kHeaderOffsetAt = 6 * 8 + 8 + 8 + 4;

/// Continues the CRC-32 `crc` (0 to start) over `data`.
inline uint32_t checksum(uint32_t crc, std::string_view data) {
  uLong c = crc;
  while (!data.empty()) {
    uInt chunk = static_cast<uInt>(std::min<size_t>(data.size(), 1u << 30));
    c = ::crc32(c, reinterpret_cast<const Bytef*>(data.data()), chunk);
    data.remove_prefix(chunk);
  }
  return static_cast<uint32_t>(c);
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
                                const std::string& key) {
  std::string out(kMagic, sizeof kMagic);
  put_raw(out, kByteOrder);
  put_raw(out, static_cast<uint64_t>(jobs_st.st_dev));
  put_raw(out, static_cast<uint64_t>(jobs_st.st_ino));
  put_raw(out, trusted_before.sec);
  put_raw(out, trusted_before.nsec);
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
