// The header index file (see include/safespool/index.hpp).
//
// Layout, native byte order (a marker catches a foreign one):
//
//   8   "SSPLIDX1"
//   4   0x01020304 (byte order marker)
//   8   device of jobs/      8  inode of jobs/
//   8   wall-clock second the writing scan started
//   4   key length, then the key (how headers were decoded)
//   8   number of entries, then each entry:
//         4 name length, the name; 6 x 8 FileId;
//         4 header length, the header (prefix + metadata, as encode_header)
//   4   CRC-32 of everything before it
//
// Headers are stored in the packet format itself, so loading one goes
// through the same checked parser as reading a job file.
#include "safespool/index.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>
#include <zlib.h>

#include <cstring>
#include <ctime>

#include "safespool/error.hpp"
#include "safespool/fd.hpp"
#include "safespool/queue.hpp"

namespace safespool {
namespace {

constexpr char kMagic[8] = {'S', 'S', 'P', 'L', 'I', 'D', 'X', '1'};
constexpr uint32_t kByteOrder = 0x01020304;
constexpr size_t kMaxIndexBytes = size_t{1} << 31;

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

std::string read_whole(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) throw_errno("cannot open " + path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) throw_errno("cannot stat " + path);
  if (!S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) > kMaxIndexBytes)
    throw FormatError("not a regular file of a sane size");
  std::string data(static_cast<size_t>(st.st_size), '\0');
  data.resize(read_full(fd.get(), std::as_writable_bytes(std::span(data)), path));
  return data;
}

}  // namespace

FileId file_id(const struct stat& st) {
  return {static_cast<uint64_t>(st.st_ino), static_cast<uint64_t>(st.st_size),
          st.st_mtim.tv_sec, st.st_mtim.tv_nsec, st.st_ctim.tv_sec, st.st_ctim.tv_nsec};
}

std::optional<std::string> index_key(const DecodeOptions& decode) {
  if (decode.external) return std::nullopt;
  return "decode=" + std::to_string(static_cast<int>(decode.mode)) +
         ";depth=" + std::to_string(decode.max_depth);
}

HeaderIndex HeaderIndex::load(const std::string& queuedir, const std::string& key,
                              const struct stat& jobs_st) {
  std::string path = queuedir + "/" + kFileName;
  HeaderIndex idx;
  std::string data;
  try {
    data = read_whole(path);
  } catch (const SysError& e) {
    if (e.err() != ENOENT) spdlog::debug("ignoring {}: {}", path, e.what());
    return idx;
  } catch (const Error& e) {
    spdlog::debug("ignoring {}: {}", path, e.what());
    return idx;
  }
  try {
    if (data.size() < sizeof(uint32_t)) throw FormatError("truncated");
    uint32_t stored_crc;
    std::memcpy(&stored_crc, data.data() + data.size() - sizeof stored_crc, sizeof stored_crc);
    std::string_view body(data.data(), data.size() - sizeof stored_crc);
    if (checksum(body.data(), body.size()) != stored_crc) throw FormatError("checksum mismatch");
    Cursor in(body);
    if (in.take(sizeof kMagic) != std::string_view(kMagic, sizeof kMagic)) throw FormatError("not an index");
    if (in.get<uint32_t>() != kByteOrder) throw FormatError("foreign byte order");
    uint64_t dev = in.get<uint64_t>(), ino = in.get<uint64_t>();
    if (dev != jobs_st.st_dev || ino != jobs_st.st_ino)
      throw FormatError("written for another jobs/ directory");
    idx.written_at_ = in.get<int64_t>();
    if (in.bytes() != key) throw FormatError("written for other decoding options");
    uint64_t count = in.get<uint64_t>();
    // Each entry takes at least 4 + 48 + 4 bytes: no absurd reservation.
    if (count > in.left() / 56) throw FormatError("entry count beyond the file");
    idx.entries_.reserve(count);
    for (uint64_t i = 0; i < count; ++i) {
      std::string name(in.bytes());
      if (!is_job_name(name) || name.find('/') != std::string::npos) throw FormatError("bad entry name");
      Entry e;
      e.id.ino = in.get<uint64_t>();
      e.id.size = in.get<uint64_t>();
      e.id.mtime_sec = in.get<int64_t>();
      e.id.mtime_nsec = in.get<int64_t>();
      e.id.ctime_sec = in.get<int64_t>();
      e.id.ctime_nsec = in.get<int64_t>();
      e.meta = parse_stored_header(in.bytes());
      idx.entries_.insert_or_assign(std::move(name), std::move(e));
    }
    if (in.left() != 0) throw FormatError("trailing bytes");
  } catch (const Error& e) {
    spdlog::debug("ignoring {}: {}; every job file will be read", path, e.what());
    return HeaderIndex();
  }
  return idx;
}

const HeaderIndex::Entry* HeaderIndex::find(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) return nullptr;
  if (it->second.id.ctime_sec >= written_at_ - kRacySeconds) return nullptr;  // racy
  return &it->second;
}

void HeaderIndex::save(const std::string& queuedir, const std::string& key,
                       const struct stat& jobs_st, int64_t scan_started,
                       std::span<const JobEntry> jobs) {
  std::string out;
  out.reserve(64 + jobs.size() * 160);
  out.append(kMagic, sizeof kMagic);
  put_raw(out, kByteOrder);
  put_raw(out, static_cast<uint64_t>(jobs_st.st_dev));
  put_raw(out, static_cast<uint64_t>(jobs_st.st_ino));
  put_raw(out, scan_started);
  put_bytes(out, key);
  put_raw(out, static_cast<uint64_t>(jobs.size()));
  for (const auto& e : jobs) {
    put_bytes(out, e.filename);
    for (int64_t v : {static_cast<int64_t>(e.id.ino), static_cast<int64_t>(e.id.size), e.id.mtime_sec,
                      e.id.mtime_nsec, e.id.ctime_sec, e.id.ctime_nsec})
      put_raw(out, v);
    put_bytes(out, encode_header(e.meta));
  }
  put_raw(out, checksum(out.data(), out.size()));

  std::string path = queuedir + "/" + kFileName;
  // A name of our own: two writers never share a temporary file.
  std::string temp = path + ".tmp-" + gen_uuid();
  Fd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0666));
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

void HeaderIndex::discard(const std::string& queuedir) {
  std::string path = queuedir + "/" + kFileName;
  if (::unlink(path.c_str()) != 0 && errno != ENOENT)
    spdlog::debug("cannot remove {}: {}", path, std::strerror(errno));
}

}  // namespace safespool
