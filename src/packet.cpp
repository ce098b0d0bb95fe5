// SPDX-License-Identifier: GPL-3.0-or-later
#include "safespool/packet.hpp"

#include <time.h>

#include <boost/crc.hpp>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>

#include "msgpack_reader.hpp"
#include "packet_ext.hpp"
#include "safespool/error.hpp"

namespace safespool {
namespace {

// Years 0..9999: what RFC 3339 can print and fspl's chrono can represent.
constexpr int64_t kMinCtime = -62167219200;
constexpr int64_t kMaxCtime = 253402300799;

uint64_t load_be(std::span<const std::byte> p, size_t off, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) v = (v << 8) | static_cast<uint8_t>(p[off + i]);
  return v;
}

void store_be(std::string& out, uint64_t v, size_t n) {
  for (size_t i = n; i > 0; --i) out.push_back(static_cast<char>((v >> (8 * (i - 1))) & 0xff));
}

nlohmann::ordered_json byte_array(const std::string& s) {
  auto a = nlohmann::ordered_json::array();
  for (unsigned char c : s) a.push_back(static_cast<unsigned>(c));
  return a;
}

nlohmann::ordered_json cmd_type_json(const Meta& m) {
  if (m.kind == JobKind::Nop) return "NOP";
  if (m.kind == JobKind::Fail) return "Fail";
  auto params = nlohmann::ordered_json::array();
  for (const auto& p : m.params) params.push_back(byte_array(p));
  auto env = nlohmann::ordered_json::array();
  for (const auto& [k, v] : m.env) env.push_back({byte_array(k), byte_array(v)});
  nlohmann::ordered_json data;
  data["params"] = params;
  data["env"] = env;
  nlohmann::ordered_json cmd;
  cmd["Command"] = data;
  return cmd;
}

}  // namespace

uint32_t crc32(std::span<const std::byte> data) {
  boost::crc_32_type crc;
  crc.process_bytes(data.data(), data.size());
  return crc.checksum();
}

std::string encode_header(const Meta& m) {
  nlohmann::ordered_json j;
  j["seq"] = m.seq;
  j["ctime"] = {m.ctime_secs, m.ctime_nanos};
  j["cmd_type"] = cmd_type_json(m);
  std::vector<uint8_t> packed = nlohmann::ordered_json::to_msgpack(j);
  std::string meta(packed.begin(), packed.end());
  if (m.extended()) {
    meta[0] = static_cast<char>(0x84);  // a fixmap of 3 entries becomes one of 4
    append_extension(meta, m);
  }

  std::string out(kPacketTag);
  store_be(out, 1, 2);
  store_be(out, meta.size(), 8);
  store_be(out, crc32(std::as_bytes(std::span(meta.data(), meta.size()))), 4);
  store_be(out, crc32(std::as_bytes(std::span(out.data(), out.size()))), 4);
  return out + meta;
}

Prefix parse_prefix(std::span<const std::byte> p) {
  constexpr size_t kTagLen = sizeof(kPacketTag) - 1;
  if (p.size() < kPrefixSize)
    throw FormatError("truncated packet prefix (" + std::to_string(p.size()) + " of 30 bytes)");
  if (std::memcmp(p.data(), kPacketTag, kTagLen) != 0)
    throw FormatError("not a packet (wrong tag)");
  uint64_t version = load_be(p, 12, 2);
  if (version != 1) throw FormatError("unsupported packet version " + std::to_string(version));
  if (load_be(p, 26, 4) != crc32(p.first(26))) throw FormatError("prefix CRC mismatch");
  Prefix out{load_be(p, 14, 8), static_cast<uint32_t>(load_be(p, 22, 4))};
  if (out.meta_len > kMaxMetadataSize)
    throw FormatError("metadata length " + std::to_string(out.meta_len) +
                      " exceeds the 1 MiB limit");
  return out;
}

namespace {

void read_command(msgpack::Cursor& c, Meta& m) {
  m.kind = JobKind::Command;
  bool have_params = false, have_env = false;
  for (uint32_t n = c.read_map_header(); n > 0; --n) {
    std::string key = c.read_str();
    if (key == "params") {
      for (uint32_t i = c.read_array_header(); i > 0; --i) m.params.push_back(c.read_bytes());
      have_params = true;
    } else if (key == "env") {
      for (uint32_t i = c.read_array_header(); i > 0; --i) {
        if (c.read_array_header() != 2)
          throw FormatError("malformed metadata: env entry is not a pair");
        std::string k = c.read_bytes();
        m.env.emplace_back(std::move(k), c.read_bytes());
      }
      have_env = true;
    } else {
      c.skip();
    }
  }
  if (!have_params || !have_env)
    throw FormatError("malformed metadata: Command lacks params or env");
}

void read_cmd_type(msgpack::Cursor& c, Meta& m) {
  if (c.peek() == msgpack::Type::Str) {
    std::string s = c.read_str();
    if (s == "NOP")
      m.kind = JobKind::Nop;
    else if (s == "Fail")
      m.kind = JobKind::Fail;
    else
      throw FormatError("malformed metadata: unknown cmd_type \"" + s + "\"");
    return;
  }
  if (c.read_map_header() != 1)
    throw FormatError("malformed metadata: cmd_type map must have one entry");
  std::string variant = c.read_str();
  if (variant != "Command")
    throw FormatError("malformed metadata: unknown cmd_type \"" + variant + "\"");
  read_command(c, m);
}

void read_ctime(msgpack::Cursor& c, Meta& m) {
  if (c.read_array_header() != 2) throw FormatError("malformed metadata: ctime is not a pair");
  m.ctime_secs = c.read_int();
  uint64_t nanos = c.read_uint();
  if (nanos >= 1000000000 || m.ctime_secs < kMinCtime || m.ctime_secs > kMaxCtime)
    throw FormatError("ctime out of range");
  m.ctime_nanos = static_cast<uint32_t>(nanos);
}

}  // namespace

Meta parse_metadata(std::span<const std::byte> data, uint32_t expected_crc) {
  if (crc32(data) != expected_crc) throw FormatError("metadata CRC mismatch");
  msgpack::Cursor c(data);
  Meta m;
  unsigned seen = 0;
  for (uint32_t n = c.read_map_header(); n > 0; --n) {
    std::string key = c.read_str();
    if (key == "seq") {
      m.seq = c.read_uint();
      seen |= 1;
    } else if (key == "ctime") {
      read_ctime(c, m);
      seen |= 2;
    } else if (key == "cmd_type") {
      read_cmd_type(c, m);
      seen |= 4;
    } else if (key == kExtensionKey) {
      read_extension(c, m);
    } else {
      c.skip();
    }
  }
  if (seen != 7) throw FormatError("malformed metadata: missing seq, ctime or cmd_type");
  if (!c.at_end()) throw FormatError("malformed metadata: trailing bytes");
  check_extension(m);
  return m;
}

std::vector<std::pair<std::string, std::string>> job_env(const Meta& m, const JobOrigin* origin) {
  std::vector<std::pair<std::string, std::string>> env = {
      {"FSPL_SEQ", std::to_string(m.seq)},
      {"FSPL_CTIME_SECS", std::to_string(m.ctime_secs)},
      {"FSPL_CTIME_NANOS", std::to_string(m.ctime_nanos)},
      {"FSPL_CTIME_RFC3339_UTC", rfc3339_utc(m.ctime_secs)},
      {"FSPL_CTIME_RFC3339_LOCAL", rfc3339_local(m.ctime_secs)},
  };
  if (origin) {
    env.emplace_back("FSPL_JOB_FILENAME", origin->filename);
    env.emplace_back("FSPL_JOB_QUEUEDIR", origin->queuedir);
    env.emplace_back("FSPL_JOB_FULLPATH", origin->queuedir + "/jobs/" + origin->filename);
  }
  for (size_t i = 0; i < m.params.size(); ++i)
    env.emplace_back("FSPL_PARAM_" + std::to_string(i + 1), m.params[i]);
  for (const auto& [k, v] : m.env) env.emplace_back(kEnvPrefix + k, v);
  return env;
}

namespace {

// "YYYY-MM-DDTHH:MM:SS" as fspl (chrono) writes it: the year zero-padded
// to four digits, with a sign outside 0..9999.
std::string format_tm(const struct tm& tm) {
  long year = tm.tm_year + 1900L;
  char buf[64];
  const char* sign = year < 0 ? "-" : year > 9999 ? "+" : "";
  snprintf(buf, sizeof buf, "%s%04ld-%02d-%02dT%02d:%02d:%02d", sign, year < 0 ? -year : year,
           tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buf;
}

}  // namespace

std::string rfc3339_utc(int64_t secs) {
  time_t t = static_cast<time_t>(secs);
  struct tm tm;
  gmtime_r(&t, &tm);
  return format_tm(tm) + "Z";
}

std::string rfc3339_local(int64_t secs) {
  time_t t = static_cast<time_t>(secs);
  struct tm tm;
  localtime_r(&t, &tm);
  int off = static_cast<int>(tm.tm_gmtoff / 60);  // minutes east of UTC
  char zone[16];
  snprintf(zone, sizeof zone, "%c%02d:%02d", off < 0 ? '-' : '+', std::abs(off) / 60,
           std::abs(off) % 60);
  return format_tm(tm) + zone;
}

std::pair<int64_t, uint32_t> now_ctime() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return {ts.tv_sec, static_cast<uint32_t>(ts.tv_nsec)};
}

}  // namespace safespool
