// SPDX-License-Identifier: GPL-3.0-or-later
// Reading the header index (see include/safespool/index.hpp; the bytes are
// described in src/index_format.hpp).
#include "safespool/index.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <string_view>
#include <utility>

#include "index_format.hpp"
#include "safespool/error.hpp"
#include "safespool/fd.hpp"
#include "safespool/queue.hpp"

namespace safespool {

using namespace index_format;

namespace {

Meta parse_stored_header(std::string_view h) {
  auto bytes = std::as_bytes(std::span(h.data(), h.size()));
  Prefix p = parse_prefix(bytes.first(std::min(bytes.size(), kPrefixSize)));
  if (bytes.size() != kPrefixSize + p.meta_len) throw FormatError("header length mismatch");
  return parse_metadata(bytes.subspan(kPrefixSize), p.meta_crc);
}

// `size` bytes at `offset`, without zero-filling a buffer first (it can be
// large). Throws FormatError when the file is shorter.
HugeBuffer read_at(int fd, uint64_t offset, size_t size, const std::string& path) {
  HugeBuffer data(size + 1);
  size_t got = 0;
  while (got < size) {
    ssize_t n = ::pread(fd, data.get() + got, size - got, static_cast<off_t>(offset + got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno("cannot read " + path);
    if (n == 0) throw FormatError("truncated");
    got += static_cast<size_t>(n);
  }
  return data;
}

// Where the parts of an index of `file_size` bytes are, from its trailer.
struct Layout {
  uint64_t entries_size = 0;
  uint64_t count = 0;
  uint32_t crc = 0;
};

Layout parse_trailer(std::string_view t, uint64_t file_size) {
  Cursor in(t);
  Layout l;
  l.entries_size = in.get<uint64_t>();
  l.count = in.get<uint64_t>();
  l.crc = in.get<uint32_t>();
  if (in.take(sizeof kEndMagic) != std::string_view(kEndMagic, sizeof kEndMagic))
    throw FormatError("not an index");
  if (l.entries_size < kFixed || l.entries_size > file_size - kTrailer ||
      l.entries_size > kMaxIndexBytes)
    throw FormatError("entries part beyond the file");
  // Each entry takes at least 4 + 10 + kRecordFields bytes.
  if (l.count > l.entries_size / (14 + kRecordFields))
    throw FormatError("entry count beyond the file");
  return l;
}

}  // namespace

FileId file_id(const struct stat& st) {
  return {static_cast<uint64_t>(st.st_ino),
          static_cast<uint64_t>(st.st_size),
          st.st_mtim.tv_sec,
          st.st_mtim.tv_nsec,
          st.st_ctim.tv_sec,
          st.st_ctim.tv_nsec};
}

std::optional<std::string> index_key(const DecodeOptions& decode) {
  if (decode.external) return std::nullopt;
  return "decode=" + std::to_string(static_cast<int>(decode.mode)) +
         ";depth=" + std::to_string(decode.max_depth);
}

void HeaderIndex::parse_entries(std::string_view part, uint32_t crc, const std::string& key,
                                const struct stat& jobs_st) {
  if (checksum(0, part) != crc) throw FormatError("checksum mismatch");
  Cursor in(part);
  if (in.take(sizeof kMagic) != std::string_view(kMagic, sizeof kMagic))
    throw FormatError("not an index");
  if (in.get<uint32_t>() != kByteOrder) throw FormatError("foreign byte order");
  uint64_t dev = in.get<uint64_t>(), ino = in.get<uint64_t>();
  if (dev != jobs_st.st_dev || ino != jobs_st.st_ino)
    throw FormatError("written for another jobs/ directory");
  trusted_before_.sec = in.get<int64_t>();
  trusted_before_.nsec = in.get<int64_t>();
  listed_.mtime.sec = in.get<int64_t>();
  listed_.mtime.nsec = in.get<int64_t>();
  listed_.ctime.sec = in.get<int64_t>();
  listed_.ctime.nsec = in.get<int64_t>();
  if (in.bytes() != key) throw FormatError("written for other decoding options");
  // Where each record starts; decoded when asked for (entry()). A name is
  // only ever compared with names readdir() gave, so a strange one in an
  // index that passed its checksum can do no harm.
  const char* const base = part.data();
  size_t at = in.pos();
  while (at < part.size()) {
    uint32_t len;
    if (part.size() - at < sizeof len) throw FormatError("truncated");
    std::memcpy(&len, base + at, sizeof len);
    if (part.size() - at - sizeof len < size_t{len} + kRecordFields) throw FormatError("truncated");
    records_.push_back(static_cast<uint32_t>(at));
    at += sizeof len + len + kRecordFields;
  }
}

void HeaderIndex::read_entries(const std::string& path, const std::string& key,
                               const struct stat& jobs_st) {
  file_ = Fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
  if (!file_) throw_errno("cannot open " + path);
  struct stat st;
  if (::fstat(file_.get(), &st) != 0) throw_errno("cannot stat " + path);
  if (!S_ISREG(st.st_mode)) throw FormatError("not a regular file");
  uint64_t file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < kFixed + kTrailer) throw FormatError("truncated");
  auto t = read_at(file_.get(), file_size - kTrailer, kTrailer, path);
  Layout l = parse_trailer(std::string_view(t.get(), kTrailer), file_size);
  data_ = read_at(file_.get(), 0, l.entries_size, path);
  data_size_ = l.entries_size;
  headers_at_ = l.entries_size;
  headers_size_ = file_size - kTrailer - l.entries_size;
  records_.reserve(l.count);
  parse_entries(std::string_view(data_.get(), data_size_), l.crc, key, jobs_st);
  if (records_.size() != l.count) throw FormatError("entry count mismatch");
}

HeaderIndex HeaderIndex::load(const std::string& queuedir, const std::string& key,
                              const struct stat& jobs_st) {
  std::string path = queuedir + "/" + kFileName;
  HeaderIndex idx;
  try {
    idx.read_entries(path, key, jobs_st);
  } catch (const SysError& e) {
    if (e.err() != ENOENT) spdlog::debug("ignoring {}: {}", path, e.what());
    return HeaderIndex();
  } catch (const Error& e) {
    spdlog::debug("ignoring {}: {}; every job file will be read", path, e.what());
    return HeaderIndex();
  }
  spdlog::debug("{}: {} entries", path, idx.size());
  return idx;
}

std::string_view HeaderIndex::header(const Entry& e) const {
  if (!headers_.get()) {
    if (headers_size_ > kMaxIndexBytes) throw FormatError("header index: headers part too large");
    try {
      headers_ = read_at(file_.get(), headers_at_, headers_size_, kFileName);
    } catch (const SysError& err) {
      throw FormatError(std::string("header index: ") + err.what());
    }
  }
  if (e.header_offset > headers_size_ || e.header_size > headers_size_ - e.header_offset)
    throw FormatError("header index: header out of bounds");
  return std::string_view(headers_.get() + e.header_offset, e.header_size);
}

std::string_view HeaderIndex::name_at(size_t pos) const {
  const char* p = data_.get() + records_[pos];
  uint32_t len;
  std::memcpy(&len, p, sizeof len);
  return std::string_view(p + sizeof len, len);
}

std::string_view HeaderIndex::record(size_t pos) const {
  std::string_view name = name_at(pos);
  return std::string_view(data_.get() + records_[pos], 4 + name.size() + kRecordFields);
}

HeaderIndex::Entry HeaderIndex::entry(size_t pos) const {
  Entry e;
  e.name = name_at(pos);
  // The fields follow the name (load() checked that they are there): 6 x 8
  // FileId, 8 seq, 8 + 4 ctime, 8 + 4 header offset and size.
  const char* p = e.name.data() + e.name.size();
  auto get = [&p](auto& field) {
    std::memcpy(&field, p, sizeof field);
    p += sizeof field;
  };
  for (auto* f : {&e.id.ino, &e.id.size}) get(*f);
  for (auto* f : {&e.id.mtime_sec, &e.id.mtime_nsec, &e.id.ctime_sec, &e.id.ctime_nsec}) get(*f);
  get(e.seq);
  get(e.ctime_secs);
  get(e.ctime_nanos);
  get(e.header_offset);
  get(e.header_size);
  return e;
}

Meta HeaderIndex::meta(const Entry& e) const {
  Meta m = parse_stored_header(header(e));
  if (m.seq != e.seq || m.ctime_secs != e.ctime_secs || m.ctime_nanos != e.ctime_nanos)
    throw FormatError("header index: entry and header disagree");
  return m;
}

size_t HeaderIndex::find(std::string_view name, Entry& hit) const {
  auto found = [&](size_t pos) {
    cursor_ = pos + 1;
    hit = entry(pos);
    return pos;
  };
  // The directory lists its names in the same order as when the index was
  // written, give or take the files added or removed since.
  for (size_t i = cursor_; i < records_.size() && i < cursor_ + 2; ++i) {
    if (name_at(i) == name) return found(i);
  }
  // Otherwise by hash: sorting 100,000 hashes is several times cheaper
  // than sorting the names, which share their first bytes.
  std::hash<std::string_view> hash;
  if (by_name_.empty() && !records_.empty()) {
    by_name_.reserve(records_.size());
    for (uint32_t i = 0; i < records_.size(); ++i) by_name_.push_back({hash(name_at(i)), i});
    std::sort(by_name_.begin(), by_name_.end());
  }
  const size_t h = hash(name);
  for (auto it =
           std::lower_bound(by_name_.begin(), by_name_.end(), std::pair<size_t, uint32_t>{h, 0});
       it != by_name_.end() && it->first == h; ++it) {
    if (name_at(it->second) == name) return found(it->second);
  }
  return npos;
}

void HeaderIndex::discard(const std::string& queuedir) {
  std::string path = queuedir + "/" + kFileName;
  if (::unlink(path.c_str()) != 0 && errno != ENOENT)
    spdlog::debug("cannot remove {}: {}", path, std::strerror(errno));
}

}  // namespace safespool
