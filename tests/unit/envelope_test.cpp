// SPDX-License-Identifier: GPL-3.0-or-later
// The "safespool" metadata entry, envelope parts written by PartWriter and
// read back as one stream (split.hpp, parts.hpp).
#include <fcntl.h>
#include <gtest/gtest.h>

#include "safespool/digest.hpp"
#include "safespool/error.hpp"
#include "safespool/parts.hpp"
#include "safespool/split.hpp"
#include "test_util.hpp"

using namespace safespool;

namespace {

Meta job_meta(uint64_t seq) {
  Meta m;
  m.seq = seq;
  m.ctime_secs = 1700000000;
  m.ctime_nanos = 5;
  m.kind = JobKind::Command;
  m.params = {"p"};
  return m;
}

Meta parse(const std::string& header) {
  auto b = test::as_bytes(header);
  Prefix p = parse_prefix(std::span(b).first(kPrefixSize));
  return parse_metadata(std::span(b).subspan(kPrefixSize, p.meta_len), p.meta_crc);
}

PartInfo part(uint64_t index, uint64_t count) {
  return {index, count, 77, std::string(64, 'a'), std::string(64, 'b')};
}

/// `stream` written as parts of at most `max` bytes into `dir`; their paths.
std::vector<std::string> write_parts(const Meta& job, const std::string& stream,
                                     const std::string& dir, std::optional<uint64_t> max) {
  PartWriter w(job, dir, max);
  auto b = test::as_bytes(stream);
  for (size_t at = 0; at < b.size(); at += 1000)
    w.write(std::span(b).subspan(at, std::min<size_t>(1000, b.size() - at)));
  w.finish();
  return w.publish();
}

std::string random_text(size_t n) {
  std::string s(n, '\0');
  uint32_t x = 12345;
  for (char& c : s) c = static_cast<char>((x = x * 1103515245 + 12345) >> 24);
  return s;
}

/// Part files of `paths` copied into the queue, read as envelopes.
std::vector<PartFile> into_queue(const test::TempQueue& q, const std::vector<std::string>& paths) {
  std::vector<PartFile> out;
  for (const auto& p : paths) {
    std::string name = p.substr(p.rfind('/') + 1);
    test::spit(q.job(name), test::slurp(p));
    std::string header = test::slurp(p);
    out.push_back({name, *parse(header.substr(0, 4096)).part});
  }
  return out;
}

std::string read_all(Reader& r) {
  std::string out;
  std::vector<std::byte> buf(777);
  while (size_t n = r.read(buf)) out.append(reinterpret_cast<const char*>(buf.data()), n);
  r.finish();
  return out;
}

}  // namespace

TEST(Envelope, PlainPacketsKeepFsplsBytesAndTheEntryRoundTrips) {
  Meta plain = job_meta(3);
  std::string bytes = encode_header(plain);
  EXPECT_EQ(bytes.find("safespool"), std::string::npos);
  EXPECT_EQ(parse(bytes), plain);

  Meta m = job_meta(3);
  m.kind = JobKind::Fail;  // a Fail packet carries no params
  m.params.clear();
  m.part = part(2, 5);
  EXPECT_EQ(parse(encode_header(m)), m);
  Meta s = job_meta(9);
  s.supersedes = Supersedes{9, std::string(64, 'c')};
  EXPECT_EQ(parse(encode_header(s)), s);
  Meta r = job_meta(4);
  r.kind = JobKind::Fail;
  r.params.clear();
  r.receipt = true;
  EXPECT_EQ(parse(encode_header(r)), r);
}

TEST(Envelope, HeaderLengthDoesNotDependOnTheNumbers) {
  Meta a = job_meta(1), b = job_meta(1);
  a.kind = b.kind = JobKind::Fail;
  a.part = part(1, 1);
  a.part->size = 0;
  b.part = part(999999, 1000000);
  b.part->size = UINT64_MAX;
  EXPECT_EQ(encode_header(a).size(), encode_header(b).size());
  EXPECT_EQ(encode_header(a).size(), envelope_header_size(a));
  Meta tiny;  // the shortest a part's header can be
  tiny.seq = 0;
  tiny.kind = JobKind::Fail;
  tiny.part = part(1, 1);
  EXPECT_GE(encode_header(tiny).size(), kMinPartHeaderSize) << "listings would miss parts";
}

TEST(Envelope, BadEntriesAreFormatErrors) {
  Meta m = job_meta(1);
  m.part = part(1, 2);  // a part that is a Command: fspl would run it
  EXPECT_THROW(parse(encode_header(m)), FormatError);
  m.kind = JobKind::Fail;
  m.part = part(3, 2);
  EXPECT_THROW(parse(encode_header(m)), FormatError);
  m.part = part(1, 2);
  m.part->sha256 = std::string(64, 'x');
  EXPECT_THROW(parse(encode_header(m)), FormatError);
  m.part = part(1, 2);
  std::string h = encode_header(m);
  size_t v = h.find("\xa1v\xcf");
  ASSERT_NE(v, std::string::npos);
  h[v + 10] = 2;  // version 2
  EXPECT_THROW(parse(h), FormatError);
}

TEST(Envelope, PartsAreAtMostTheSizeAskedAndReadBackAsTheStream) {
  test::TempQueue q;
  test::TempDir out;
  Meta job = job_meta(7);
  std::string stream = encode_header(job) + random_text(20000);
  auto paths = write_parts(job, stream, out.str(), 6000);
  ASSERT_EQ(paths.size(), 4u);
  EXPECT_NE(paths[1].find("fspl-7-"), std::string::npos);
  EXPECT_NE(paths[1].find("-part-2-of-4.fspl"), std::string::npos);
  for (const auto& p : paths) EXPECT_LE(test::slurp(p).size(), 6000u);
  auto parts = into_queue(q, paths);
  EXPECT_EQ(parts[0].part.job, sha256_hex(stream));
  auto r = std::make_unique<PartsReader>(q.queue(), parts, "split job 7");
  EXPECT_EQ(read_all(*r), stream);
  EXPECT_TRUE(part_intact(q.queue(), parts[2]));
}

TEST(Envelope, AChangedPartIsRefusedBeforeAnyOfItsBytesIsServed) {
  test::TempQueue q;
  test::TempDir out;
  Meta job = job_meta(2);
  std::string stream = encode_header(job) + random_text(12000);
  auto parts = into_queue(q, write_parts(job, stream, out.str(), 5000));
  std::string bytes = test::slurp(q.job(parts[1].filename));
  bytes[bytes.size() - 1] ^= 1;
  test::spit(q.job(parts[1].filename), bytes);
  EXPECT_FALSE(part_intact(q.queue(), parts[1]));
  auto r = std::make_unique<PartsReader>(q.queue(), parts, "split job 2");
  std::string served;
  std::vector<std::byte> buf(100);
  try {
    while (size_t n = r->read(buf)) served.append(reinterpret_cast<const char*>(buf.data()), n);
    FAIL() << "the changed part was served";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("does not match its SHA-256"), std::string::npos);
  }
  EXPECT_EQ(served.size(), parts[0].part.size) << "only part 1 went out";
}

TEST(Envelope, OneLargePartWithoutALimitAndMissingPartsNamed) {
  test::TempDir out;
  Meta job = job_meta(5);
  EXPECT_EQ(write_parts(job, encode_header(job) + "x", out.str(), std::nullopt).size(), 1u);
  EXPECT_THROW(PartWriter(job, out.str(), 100), UsageError);
  PartGroups g;
  PartInfo p = part(1, 4);
  g.add("a", p);
  p.index = 2;
  g.add("b", p);
  g.add("c", p);
  const PartSet& s = g.sets().begin()->second;
  EXPECT_FALSE(s.complete());
  EXPECT_EQ(s.copies.size(), 1u);
  EXPECT_EQ(s.missing_text(7), "job 7: parts 3, 4 of 4 missing");
  PartGroups wide;
  PartInfo w = part(1, 100);
  wide.add("a", w);
  EXPECT_EQ(wide.sets().begin()->second.missing_text(8), "job 8: parts 2-100 of 100 missing");
}

TEST(Envelope, TheFirstPartsHeadIsServedForTheHeaderAndCheckedBeforeAnythingElse) {
  test::TempQueue q;
  test::TempDir out;
  Meta job = job_meta(9);
  std::string stream = encode_header(job) + random_text(5 << 20);
  auto parts = into_queue(q, write_parts(job, stream, out.str(), 3 << 20));
  ASSERT_EQ(parts.size(), 2u);
  std::string bytes = test::slurp(q.job(parts[0].filename));
  bytes[bytes.size() - 1] ^= 1;  // the end of part 1, past its head
  test::spit(q.job(parts[0].filename), bytes);
  std::vector<std::byte> buf(4096);
  {
    PartsReader r(q.queue(), parts, "split job 9");
    EXPECT_EQ(r.read(buf), buf.size()) << "the head, for the header, without reading the part";
    EXPECT_THROW(r.confirm(), FormatError) << "checked before a consumer sees anything";
  }
  PartsReader r(q.queue(), parts, "split job 9");
  uint64_t served = 0;
  try {
    while (size_t n = r.read(buf)) served += n;
    FAIL() << "the changed part was served whole";
  } catch (const FormatError&) {
  }
  EXPECT_LE(served, PartsReader::kUncheckedHead) << "nothing past the head went unchecked";
}
