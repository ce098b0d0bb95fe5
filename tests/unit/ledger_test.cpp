// SPDX-License-Identifier: GPL-3.0-or-later
#include "safespool/ledger.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>

#include <thread>

#include "safespool/digest.hpp"
#include "safespool/job.hpp"
#include "test_util.hpp"

using namespace safespool;

namespace {

const std::string kH1(64, 'a');
const std::string kH2(64, 'b');

LedgerRecord rec(uint64_t seq, LedgerResult result, const std::string& hash = kH1) {
  LedgerRecord r;
  r.time = 1795963042;
  r.seq = seq;
  r.result = result;
  r.sha256 = hash;
  r.filename = "fspl-" + std::to_string(seq) + ".fspl";
  return r;
}

}  // namespace

TEST(Digest, Sha256OfAFileMatchesSha256sum) {
  test::TempDir d;
  std::string data(3 << 20, 'x');
  data += "tail";
  test::spit(d / "f", data);
  Fd fd(::open((d / "f").c_str(), O_RDONLY | O_CLOEXEC));
  std::string want = test::run_capture("sha256sum " + (d / "f") + " | cut -c1-64");
  EXPECT_EQ(sha256_file(fd.get(), "f") + "\n", want);
  EXPECT_EQ(sha256_hex(data), sha256_file(fd.get(), "f"));
  EXPECT_TRUE(is_sha256_hex(sha256_hex("")));
  EXPECT_FALSE(is_sha256_hex("abc"));
}

TEST(Digest, AFileDigestFedInOrderIsTheFilesSha256) {
  test::TempDir d;
  std::string data(5 << 20, 'y');
  for (size_t i = 0; i < data.size(); i += 4097) data[i] = static_cast<char>(i);
  test::spit(d / "f", data);
  Fd fd(::open((d / "f").c_str(), O_RDONLY | O_CLOEXEC));
  auto bytes = std::as_bytes(std::span(data));
  FileDigest part;
  part.feed(0, bytes.first(1000));
  part.feed(5000, bytes.subspan(5000, 10));  // not where it left off: ignored
  part.feed(1000, bytes.subspan(1000, 3000));
  EXPECT_EQ(part.finish(fd.get(), "f"), sha256_hex(data)) << "read the rest from 4000";
  FileDigest whole;
  whole.feed(0, bytes);
  EXPECT_EQ(whole.finish(fd.get(), "f"), sha256_hex(data));
  FileDigest none;
  EXPECT_EQ(none.finish(fd.get(), "f"), sha256_hex(data));
}

// Past its first MiB a digest hashes on a thread of its own, behind a
// bounded queue: the result is the same, in order, and a digest dropped
// half-fed or fed from two threads neither hangs nor races (TSan).
TEST(Digest, AFileDigestFedManyChunksHashesThemInOrder) {
  test::TempDir d;
  std::string data(9 << 20, 'z');
  for (size_t i = 0; i < data.size(); i += 1021) data[i] = static_cast<char>(i * 7);
  test::spit(d / "f", data);
  Fd fd(::open((d / "f").c_str(), O_RDONLY | O_CLOEXEC));
  auto bytes = std::as_bytes(std::span(data));
  FileDigest chunked;
  size_t at = 0;
  for (size_t n = 1; at + n <= 8 << 20; n = n * 3 % 200000 + 1) {
    chunked.feed(at, bytes.subspan(at, n));
    chunked.feed(at + 1, bytes.subspan(at + 1, 1));  // out of turn: ignored
    at += n;
  }
  EXPECT_EQ(chunked.finish(fd.get(), "f"), sha256_hex(data)) << "fed up to " << at;
  EXPECT_THROW(chunked.finish(fd.get(), "f"), Error);
  {
    FileDigest dropped;  // never finished: its worker must stop
    dropped.feed(0, bytes.first(4 << 20));
  }
  FileDigest shared;
  std::thread other([&] {
    for (size_t i = 0; i < 64; ++i) shared.feed(i << 16, bytes.subspan(i << 16, 1 << 16));
  });
  for (size_t i = 0; i < 64; ++i) shared.feed(i << 16, bytes.subspan(i << 16, 1 << 16));
  other.join();
  EXPECT_EQ(shared.finish(fd.get(), "f"), sha256_hex(data));
}

// The ledger's hash of a job is the hash of its file, however much of it
// the stages read before it was asked for (they feed it as they read).
TEST(Digest, AJobsHashIsItsFilesWhateverWasRead) {
  test::TempQueue q;
  Meta m;
  m.seq = 1;
  m.ctime_secs = 1700000000;
  m.kind = JobKind::Command;
  std::string payload(300000, 'x');
  for (size_t i = 0; i < payload.size(); i += 7) payload[i] = static_cast<char>('a' + i % 26);
  const std::string plain = (q.dir.path / "plain").string();
  test::spit(plain, encode_header(m) + payload);
  ASSERT_TRUE(test::run("zstd -q -c " + plain + " > " + q.job("fspl-1.fspl").string()));
  ASSERT_TRUE(test::run("cp " + plain + " " + q.job("fspl-2.fspl").string()));
  for (std::string name : {"fspl-1.fspl", "fspl-2.fspl"}) {
    for (size_t read : {size_t(0), size_t(1000), payload.size()}) {
      Job job = Job::open(q.queue(), name, DecodeOptions{});
      PayloadSource src = job.payload(false);
      std::vector<std::byte> buf(read);
      size_t got = src.stream ? read_exact(*src.stream, buf)
                              : static_cast<size_t>(::read(src.file.get(), buf.data(), read));
      EXPECT_EQ(got, read);
      Fd file(::open(q.job(name).c_str(), O_RDONLY | O_CLOEXEC));
      EXPECT_EQ(job.sha256(), sha256_file(file.get(), name)) << name << " after " << read;
    }
  }
}

TEST(Ledger, RecordsRoundTripAndOddTextStaysOnOneLine) {
  LedgerRecord r = rec(7, LedgerResult::Failure);
  r.exit_status = 3;
  r.signer = "0123456789ABCDEF0123456789ABCDEF01234567";
  r.reason = "exit status 3\nsecond\tline";
  std::string line = format_record(r);
  ASSERT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1);
  auto back = parse_record(std::string_view(line).substr(0, line.size() - 1));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->seq, 7u);
  EXPECT_EQ(back->result, LedgerResult::Failure);
  EXPECT_EQ(back->exit_status, 3);
  EXPECT_EQ(back->signer, r.signer);
  EXPECT_EQ(back->reason, "exit status 3 second line");
  EXPECT_FALSE(parse_record("1\t17\t2\tsuccess"));                   // torn
  EXPECT_FALSE(parse_record("2\t1\t2\tsuccess\t-\t-\t-\t-\t-\t-"));  // foreign version
}

TEST(Ledger, ALaterAttemptVoidsACompletion) {
  test::TempQueue q;
  Ledger l(q.path);
  l.append(rec(1, LedgerResult::Started, ""));
  l.append(rec(1, LedgerResult::Success));
  EXPECT_TRUE(l.read().completed(1, kH1));
  EXPECT_FALSE(l.read().completed(1, kH2)) << "another packet with the same seq";
  LedgerRecord kept = rec(2, LedgerResult::Success);
  kept.kept = true;
  l.append(kept);
  EXPECT_FALSE(l.read().completed(2, kH1)) << "a file kept on purpose counts as done";
  EXPECT_TRUE(l.read().processed(kH1));
  l.append(rec(1, LedgerResult::Started, ""));
  EXPECT_FALSE(l.read().completed(1, kH1)) << "a rerun started: the success no longer stands";
  l.append(rec(1, LedgerResult::Failure));
  EXPECT_FALSE(l.read().completed(1, kH1));
  EXPECT_FALSE(l.read().processed(kH1));
  l.append(rec(1, LedgerResult::Skipped));
  EXPECT_TRUE(l.read().processed(kH1));
}

TEST(Ledger, ATornLastLineIsIgnoredAndDoesNotSwallowTheNextRecord) {
  test::TempQueue q;
  { Ledger(q.path).append(rec(1, LedgerResult::Success)); }
  std::string path = (q.path / Ledger::kFileName).string();
  std::string text = test::slurp(path);
  test::spit(path, text + "1\t1795963043\t2\tsucc");  // a crash mid-write
  Ledger l(q.path);
  EXPECT_EQ(l.read().records().size(), 1u);
  l.append(rec(3, LedgerResult::Success, kH2));
  auto v = l.read();
  ASSERT_EQ(v.records().size(), 2u);
  EXPECT_EQ(v.records()[1].seq, 3u);
}

TEST(Ledger, RotatesPastItsBoundAndStillAnswersFromTheOldGeneration) {
  test::TempQueue q;
  std::string path = (q.path / Ledger::kFileName).string();
  std::string big;
  LedgerRecord filler = rec(1, LedgerResult::Success);
  std::string line = format_record(filler);
  while (big.size() < Ledger::kRotateBytes) big += line;
  test::spit(path, big);
  Ledger l(q.path);
  l.append(rec(2, LedgerResult::Success, kH2));
  EXPECT_LT(test::slurp(path).size(), 1024u) << "not rotated";
  EXPECT_TRUE(std::filesystem::exists(path + ".1"));
  auto v = l.read();
  EXPECT_TRUE(v.completed(1, kH1));
  EXPECT_TRUE(v.completed(2, kH2));
}
