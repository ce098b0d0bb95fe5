// SPDX-License-Identifier: GPL-3.0-or-later
// The codec: byte-identity with fspl, and every way a header can be bad.
#include "safespool/packet.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "safespool/error.hpp"
#include "test_util.hpp"

using namespace safespool;

namespace {

using test::slurp;

std::span<const std::byte> bytes(const std::string& s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}

// Parses prefix+metadata from an in-memory packet; returns meta and header size.
std::pair<Meta, size_t> decode(const std::string& packet) {
  Prefix p = parse_prefix(bytes(packet).first(std::min(packet.size(), kPrefixSize)));
  if (packet.size() < kPrefixSize + p.meta_len) throw FormatError("truncated metadata");
  return {parse_metadata(bytes(packet).subspan(kPrefixSize, p.meta_len), p.meta_crc),
          kPrefixSize + p.meta_len};
}

Meta sample() {
  Meta m;
  m.seq = 42;
  m.ctime_secs = 1795963042;
  m.ctime_nanos = 652314844;
  m.kind = JobKind::Command;
  m.params = {"x", "y z", std::string("\xc3\xa9\xff", 3)};
  m.env = {{"A", "b"}, {"MULTI", "line1\nline2"}};
  return m;
}

std::string error_of(const std::string& packet) {
  try {
    decode(packet);
  } catch (const FormatError& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST(Packet, GoldenPacketsFromFsplReencodeByteForByte) {
  std::filesystem::path dir = std::filesystem::path(SAFESPOOL_FIXTURES) / "golden";
  int checked = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() != ".fspl") continue;
    std::string packet = slurp(e.path());
    auto [meta, header_size] = decode(packet);
    EXPECT_EQ(encode_header(meta), packet.substr(0, header_size)) << e.path();
    ++checked;
  }
  EXPECT_GE(checked, 3) << "expected golden packets made by fspl in " << dir;
}

TEST(Packet, RoundTripsEveryKind) {
  for (JobKind k : {JobKind::Command, JobKind::Nop, JobKind::Fail}) {
    Meta m = sample();
    m.kind = k;
    if (k != JobKind::Command) m.params.clear(), m.env.clear();
    EXPECT_EQ(decode(encode_header(m)).first, m);
  }
}

TEST(Packet, NegativeAndLargeValuesRoundTrip) {
  Meta m = sample();
  m.seq = UINT64_MAX;
  m.ctime_secs = -1000;
  EXPECT_EQ(decode(encode_header(m)).first, m);
}

TEST(Packet, EveryPrefixByteFlipIsRejected) {
  std::string good = encode_header(sample());
  for (size_t i = 0; i < kPrefixSize; ++i) {
    std::string bad = good;
    bad[i] ^= 0x01;
    EXPECT_NE(error_of(bad), "(no error)") << "flip at byte " << i;
  }
}

TEST(Packet, EveryMetadataByteFlipIsRejectedByTheCrc) {
  std::string good = encode_header(sample());
  for (size_t i = kPrefixSize; i < good.size(); ++i) {
    std::string bad = good;
    bad[i] ^= 0x20;
    EXPECT_EQ(error_of(bad), "metadata CRC mismatch") << "flip at byte " << i;
  }
}

TEST(Packet, ReasonsAreSpecific) {
  std::string good = encode_header(sample());
  EXPECT_EQ(error_of(good.substr(0, 10)), "truncated packet prefix (10 of 30 bytes)");
  std::string tag = good;
  tag[0] = 'X';
  EXPECT_EQ(error_of(tag), "not a packet (wrong tag)");
  std::string version = good;
  version[13] = 2;
  EXPECT_EQ(error_of(version), "unsupported packet version 2");
}

// A valid prefix CRC over an absurd metadata length must be refused before
// anything is allocated.
TEST(Packet, HugeMetadataLengthIsRefusedWithoutAllocating) {
  std::string p = encode_header(sample()).substr(0, 26);
  for (int i = 0; i < 8; ++i) p[14 + i] = i == 0 ? '\x80' : '\0';  // 2^63
  uint32_t crc = crc32(bytes(p));
  for (int i = 3; i >= 0; --i) p.push_back(static_cast<char>((crc >> (8 * i)) & 0xff));
  EXPECT_EQ(error_of(p), "metadata length 9223372036854775808 exceeds the 1 MiB limit");
}

// A string literal with embedded NULs, whole.
template <size_t N>
std::string S(const char (&a)[N]) {
  return std::string(a, N - 1);
}

std::string with_metadata(const std::string& meta) {
  Meta m;
  std::string p = encode_header(m).substr(0, 14);
  for (int i = 7; i >= 0; --i) p.push_back(static_cast<char>((meta.size() >> (8 * i)) & 0xff));
  uint32_t mcrc = crc32(bytes(meta));
  for (int i = 3; i >= 0; --i) p.push_back(static_cast<char>((mcrc >> (8 * i)) & 0xff));
  uint32_t pcrc = crc32(bytes(p));
  for (int i = 3; i >= 0; --i) p.push_back(static_cast<char>((pcrc >> (8 * i)) & 0xff));
  return p + meta;
}

TEST(Packet, WrongShapesAreFormatErrors) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {S(""), "malformed metadata: truncated MessagePack"},
      {S("\x90"), "malformed metadata: expected a map"},
      {S("\x81\xa3seq\xa1x"), "malformed metadata: expected an unsigned integer"},
      {S("\x81\xa3seq\x01"), "malformed metadata: missing seq, ctime or cmd_type"},
      {S("\x83\xa3seq\x01\xa5"
         "ctime\x92\x01\xce\x40\x00\x00\x00\xa8"
         "cmd_type\xa3NOP"),
       "ctime out of range"},
      {S("\x83\xa3seq\x01\xa5"
         "ctime\x92\xcf\x7f\xff\xff\xff\xff\xff\xff\xff\x00\xa8"
         "cmd_type\xa3NOP"),
       "ctime out of range"},
      {S("\x83\xa3seq\x01\xa5"
         "ctime\x92\x01\x00\xa8"
         "cmd_type\xa3Run"),
       "malformed metadata: unknown cmd_type \"Run\""},
      {S("\x83\xa3seq\x01\xa5"
         "ctime\x92\x01\x00\xa8"
         "cmd_type\x81\xa7"
         "Command\x82\xa6params\x91\x91\xcd\x01\x00\xa3"
         "env\x90"),
       "malformed metadata: byte value 256 out of range"},
      {S("\x83\xa3seq\x01\xa5"
         "ctime\x92\x01\x00\xa8"
         "cmd_type\xa3NOP\x00"),
       "malformed metadata: trailing bytes"},
      {S("\xdf\xff\xff\xff\xff"), "malformed metadata: length 4294967295 exceeds the data"},
  };
  for (const auto& [meta, want] : cases) EXPECT_EQ(error_of(with_metadata(meta)), want) << want;
}

TEST(Packet, UnknownKeysAreIgnoredAsFsplDoes) {
  std::string meta =
      S("\x84\xa5"
        "extra\x92\x01\x02\xa3seq\x07\xa5"
        "ctime\x92\x01\x00\xa8"
        "cmd_type\xa4"
        "Fail");
  Meta m = decode(with_metadata(meta)).first;
  EXPECT_EQ(m.seq, 7u);
  EXPECT_EQ(m.kind, JobKind::Fail);
}

TEST(Packet, JobEnvMatchesFsplOrder) {
  setenv("TZ", "UTC", 1);
  tzset();
  JobOrigin origin{"fspl-x.fspl", "q"};
  auto env = job_env(sample(), &origin);
  std::vector<std::string> keys;
  for (auto& kv : env) keys.push_back(kv.first + "=" + kv.second);
  std::vector<std::string> want = {"FSPL_SEQ=42",
                                   "FSPL_CTIME_SECS=1795963042",
                                   "FSPL_CTIME_NANOS=652314844",
                                   "FSPL_CTIME_RFC3339_UTC=2026-11-29T14:37:22Z",
                                   "FSPL_CTIME_RFC3339_LOCAL=2026-11-29T14:37:22+00:00",
                                   "FSPL_JOB_FILENAME=fspl-x.fspl",
                                   "FSPL_JOB_QUEUEDIR=q",
                                   "FSPL_JOB_FULLPATH=q/jobs/fspl-x.fspl",
                                   "FSPL_PARAM_1=x",
                                   "FSPL_PARAM_2=y z",
                                   std::string("FSPL_PARAM_3=\xc3\xa9\xff", 16),
                                   "FSPL_SET_A=b",
                                   "FSPL_SET_MULTI=line1\nline2"};
  EXPECT_EQ(keys, want);
}

TEST(Rfc3339, YearsArePaddedToFourDigitsAsFsplWritesThem) {
  // fspl 1.2.2 prints 0005-05-24T03:06:40Z for this ctime (checked with
  // `fspl stdin-info`); strftime's %Y would print "5-05-24...".
  EXPECT_EQ(rfc3339_utc(-61997000000), "0005-05-24T03:06:40Z");
  EXPECT_EQ(rfc3339_utc(1700000000), "2023-11-14T22:13:20Z");
  EXPECT_EQ(rfc3339_utc(253402300799), "9999-12-31T23:59:59Z");
}
