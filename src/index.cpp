// SPDX-License-Identifier: GPL-3.0-or-later
// The header index file (see include/safespool/index.hpp).
//
// Layout, native byte order (a marker catches a foreign one), in two
// parts: the entries, which a processor reads, and the headers, which
// listings read too.
//
//   8   "SSPLIDX2"
//   4   0x01020304 (byte order marker)
//   8   size of the entries part (from offset 0 up to its CRC)
//   8   device of jobs/      8  inode of jobs/
//   8   wall-clock second the writing scan started
//   4   key length, then the key (how headers were decoded)
//   8   number of entries, then each entry:
//         4 name length, the name; 6 x 8 FileId; 8 seq, 8 + 4 ctime;
//         8 offset and 4 size of its header in the headers part
//       in the order the scan listed the files (readdir order)
//   4   CRC-32 of the entries part
//   then the headers part: each header (prefix + metadata) as in a packet
//
// Headers are stored in the packet format itself and carry its two CRCs,
// so a header goes through the same checked parser as a job file's, and
// a processor, which needs only seq and ctime, never reads them.
#include "safespool/index.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <functional>
#include <string_view>
#include <utility>

#include "safespool/error.hpp"
#include "safespool/fd.hpp"
#include "safespool/queue.hpp"

namespace safespool {
namespace {

constexpr char kMagic[8] = {'S', 'S', 'P', 'L', 'I', 'D', 'X', '2'};
constexpr uint32_t kByteOrder = 0x01020304;
constexpr size_t kMaxIndexBytes = size_t{1} << 31;
/// An entry's fixed-size fields after its name (see the layout above).
constexpr size_t kRecordFields = 6 * 8 + 8 + 8 + 4 + 8 + 4;

uint32_t checksum(const char* data, size_t n) {
  uLong crc = ::crc32(0L, Z_NULL, 0);
  while (n > 0) {
    uInt chunk = static_cast<uInt>(std::min<size_t>(n, 1u << 30));
    crc = ::crc32(crc, reinterpret_cast<const Bytef*>(data), chunk);
    data += chunk;
    n -= chunk;
  }
  return static_cast<uint32_t>(crc);
}

template <typename T>
void put_raw(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}

void put_bytes(std::string& out, std::string_view s) {
  put_raw(out, static_cast<uint32_t>(s.size()));
  out.append(s);
}

// Bounds-checked reads over the loaded bytes; any overrun is corruption.
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

namespace {

constexpr size_t kFixed = sizeof kMagic + 4 + 8;  ///< magic, byte order, entries size

// The size of the entries part that the fixed fields at the start of an
// index of `file_size` bytes announce. Throws FormatError.
uint64_t entries_size(std::string_view fixed, uint64_t file_size) {
  if (file_size < kFixed) throw FormatError("truncated");
  Cursor head(fixed);
  if (head.take(sizeof kMagic) != std::string_view(kMagic, sizeof kMagic))
    throw FormatError("not an index");
  if (head.get<uint32_t>() != kByteOrder) throw FormatError("foreign byte order");
  uint64_t size = head.get<uint64_t>();
  if (size < kFixed || size > file_size - 4 || size > kMaxIndexBytes)
    throw FormatError("entries part beyond the file");
  return size;
}

}  // namespace

void HeaderIndex::parse_entries(std::string_view part, uint32_t stored_crc, const std::string& key,
                                const struct stat& jobs_st) {
  if (checksum(part.data(), part.size()) != stored_crc) throw FormatError("checksum mismatch");
  Cursor in(part);
  in.take(kFixed);
  uint64_t dev = in.get<uint64_t>(), ino = in.get<uint64_t>();
  if (dev != jobs_st.st_dev || ino != jobs_st.st_ino)
    throw FormatError("written for another jobs/ directory");
  written_at_ = in.get<int64_t>();
  if (in.bytes() != key) throw FormatError("written for other decoding options");
  uint64_t count = in.get<uint64_t>();
  // Each entry takes at least 4 + 48 + 20 + 12 bytes: no absurd reservation.
  if (count > in.left() / 84) throw FormatError("entry count beyond the file");
  records_.reserve(count);
  for (uint64_t i = 0; i < count; ++i) {
    // Checked here, decoded when asked for (entry()).
    records_.push_back(static_cast<uint32_t>(in.pos()));
    std::string_view name = in.bytes();
    if (!is_job_name(name) || name.find('/') != std::string::npos)
      throw FormatError("bad entry name");
    in.take(kRecordFields);
  }
  if (in.left() != 0) throw FormatError("trailing bytes");
}

void HeaderIndex::read_entries(const std::string& path, const std::string& key,
                               const struct stat& jobs_st) {
  file_ = Fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
  if (!file_) throw_errno("cannot open " + path);
  struct stat st;
  if (::fstat(file_.get(), &st) != 0) throw_errno("cannot stat " + path);
  if (!S_ISREG(st.st_mode)) throw FormatError("not a regular file");
  uint64_t file_size = static_cast<uint64_t>(st.st_size);
  auto fixed = read_at(file_.get(), 0, std::min<uint64_t>(kFixed, file_size), path);
  uint64_t size = entries_size(std::string_view(fixed.get(), kFixed), file_size);
  data_ = read_at(file_.get(), 0, size + 4, path);
  headers_at_ = size + 4;
  uint32_t stored_crc;
  std::memcpy(&stored_crc, data_.get() + size, sizeof stored_crc);
  parse_entries(std::string_view(data_.get(), size), stored_crc, key, jobs_st);
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
  return idx;
}

std::string_view HeaderIndex::header(const Entry& e) const {
  if (!headers_.get()) {
    struct stat st;
    if (::fstat(file_.get(), &st) != 0 || static_cast<uint64_t>(st.st_size) < headers_at_)
      throw FormatError("header index: headers part unreadable");
    size_t size = static_cast<size_t>(st.st_size - headers_at_);
    if (size > kMaxIndexBytes) throw FormatError("header index: headers part too large");
    headers_ = read_at(file_.get(), headers_at_, size, kFileName);
    headers_size_ = size;
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

HeaderIndex::Entry HeaderIndex::entry(size_t pos) const {
  Entry e;
  e.name = name_at(pos);
  // The fields follow the name, as load() checked them: 6 x 8 FileId,
  // 8 seq, 8 + 4 ctime, 8 + 4 header offset and size.
  Cursor in(std::string_view(e.name.data() + e.name.size(), kRecordFields));
  e.id.ino = in.get<uint64_t>();
  e.id.size = in.get<uint64_t>();
  e.id.mtime_sec = in.get<int64_t>();
  e.id.mtime_nsec = in.get<int64_t>();
  e.id.ctime_sec = in.get<int64_t>();
  e.id.ctime_nsec = in.get<int64_t>();
  e.seq = in.get<uint64_t>();
  e.ctime_secs = in.get<int64_t>();
  e.ctime_nanos = in.get<uint32_t>();
  e.header_offset = in.get<uint64_t>();
  e.header_size = in.get<uint32_t>();
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
    return hit.id.ctime_sec < written_at_ - kRacySeconds ? pos : npos;
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

void HeaderIndex::save(const std::string& queuedir, const std::string& key,
                       const struct stat& jobs_st, int64_t scan_started,
                       std::span<const Entry> entries, const HeaderIndex* source) {
  std::string out, headers;
  out.reserve(64 + entries.size() * 140);
  headers.reserve(entries.size() * 90);
  out.append(kMagic, sizeof kMagic);
  put_raw(out, kByteOrder);
  put_raw(out, uint64_t{0});  // the entries part's size, set below
  put_raw(out, static_cast<uint64_t>(jobs_st.st_dev));
  put_raw(out, static_cast<uint64_t>(jobs_st.st_ino));
  put_raw(out, scan_started);
  put_bytes(out, key);
  put_raw(out, static_cast<uint64_t>(entries.size()));
  for (const Entry& e : entries) {
    std::string_view h = e.header.empty() && source ? source->header(e) : e.header;
    put_bytes(out, e.name);
    for (int64_t v : {static_cast<int64_t>(e.id.ino), static_cast<int64_t>(e.id.size),
                      e.id.mtime_sec, e.id.mtime_nsec, e.id.ctime_sec, e.id.ctime_nsec})
      put_raw(out, v);
    put_raw(out, e.seq);
    put_raw(out, e.ctime_secs);
    put_raw(out, e.ctime_nanos);
    put_raw(out, static_cast<uint64_t>(headers.size()));
    put_raw(out, static_cast<uint32_t>(h.size()));
    headers.append(h);
  }
  uint64_t entries_size = out.size();
  std::memcpy(out.data() + sizeof kMagic + 4, &entries_size, sizeof entries_size);
  put_raw(out, checksum(out.data(), out.size()));
  out.append(headers);

  std::string path = queuedir + "/" + kFileName;
  // A name of our own: two writers never share a temporary file.
  std::string temp = path + ".tmp-" + gen_uuid();
  // Owner only: it holds the decrypted headers of encrypted packets.
  Fd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) throw_errno("cannot create " + temp);
  try {
    write_all(fd.get(), out, temp);
    fd.reset();
    if (::rename(temp.c_str(), path.c_str()) != 0) throw_errno("cannot rename " + temp);
  } catch (...) {
    ::unlink(temp.c_str());
    throw;
  }
}

void IndexUpdate::learn(std::string name, const FileId& id, const Meta& meta, std::string header) {
  const std::string& n = strings_.emplace_back(std::move(name));
  const std::string& h = strings_.emplace_back(std::move(header));
  order_.push_back(source_.size() + learnt_.size());
  learnt_.push_back({n, id, meta.seq, meta.ctime_secs, meta.ctime_nanos, h});
}

bool IndexUpdate::worth_saving() const {
  // Rewriting costs about as much as reading 1/64 of its headers from
  // their files (it is all written again).
  size_t read = learnt(), listed = order_.size();
  bool learnt_enough = encrypted_ > 0 || (read > 0 && read * 64 >= listed);
  return learnt_enough || gone() > std::max<size_t>(64, listed / 4);
}

void IndexUpdate::save(const std::string& queuedir, const std::string& key,
                       const struct stat& jobs_st, int64_t scan_started) const {
  std::vector<HeaderIndex::Entry> entries;
  entries.reserve(order_.size());
  for (size_t pos : order_)
    entries.push_back(pos < source_.size() ? source_.entry(pos) : learnt_[pos - source_.size()]);
  HeaderIndex::save(queuedir, key, jobs_st, scan_started, entries, &source_);
}

void HeaderIndex::discard(const std::string& queuedir) {
  std::string path = queuedir + "/" + kFileName;
  if (::unlink(path.c_str()) != 0 && errno != ENOENT)
    spdlog::debug("cannot remove {}: {}", path, std::strerror(errno));
}

}  // namespace safespool
