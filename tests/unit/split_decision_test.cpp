// SPDX-License-Identifier: GPL-3.0-or-later
// The decision at a seq with split jobs and superseding packets
// (decision.hpp): one candidate per complete split job, missing parts
// named, copies of a part as twins, a part that does not belong as a
// conflict, a replacement accepted only for a packet the ledger says failed.
#include <gtest/gtest.h>

#include "safespool/decision.hpp"
#include "safespool/digest.hpp"
#include "safespool/split.hpp"
#include "test_util.hpp"

using namespace safespool;
namespace fs = std::filesystem;

namespace {

Meta command(uint64_t seq) {
  Meta m;
  m.seq = seq;
  m.ctime_secs = 1700000000;
  m.kind = JobKind::Command;
  return m;
}

/// Writes `job` + `payload` as envelope parts of at most `max` bytes into
/// the queue; returns the part names in order.
std::vector<std::string> put_parts(const test::TempQueue& q, const Meta& job,
                                   const std::string& payload, uint64_t max) {
  test::TempDir out;
  PartWriter w(job, out.str(), max);
  std::string stream = encode_header(job) + payload;
  w.write(std::as_bytes(std::span(stream.data(), stream.size())));
  w.finish();
  std::vector<std::string> names;
  for (const auto& p : w.publish()) {
    names.push_back(p.substr(p.rfind('/') + 1));
    test::spit(q.job(names.back()), test::slurp(p));
  }
  return names;
}

struct Decider {
  explicit Decider(const test::TempQueue& q) : q(q), ledger(q.path) {}
  Choice at(uint64_t seq, bool act = false) {
    ScanResult scan = q.queue().scan(DecodeOptions{}, ScanFor::Listing);
    JobList here;
    for (auto& j : scan.jobs)
      if (j.meta.seq == seq) here.push_back(std::move(j));
    DecisionRules rules{policy, key_ids, act, false, false};
    return choose(q.queue(), seq, here, DecodeOptions{}, rules, ledger);
  }
  void record(uint64_t seq, LedgerResult result, const std::string& sha256) {
    LedgerRecord r;
    r.seq = seq;
    r.result = result;
    r.sha256 = sha256;
    ledger.append(r);
  }
  const test::TempQueue& q;
  Ledger ledger;
  SignerPolicy policy;
  std::set<std::string> key_ids;
};

std::string sha_of(const test::TempQueue& q, const std::string& name) {
  return sha256_hex(test::slurp(q.job(name)));
}

}  // namespace

TEST(SplitDecision, MissingPartsAreNamedAndNothingRuns) {
  test::TempQueue q;
  auto names = put_parts(q, command(1), std::string(15000, 'z'), 5000);
  ASSERT_EQ(names.size(), 4u);
  fs::remove(q.job(names[2]));
  fs::remove(q.job(names[3]));
  Choice c = Decider(q).at(1);
  EXPECT_EQ(c.kind, Choice::Kind::Missing);
  ASSERT_EQ(c.missing_parts.size(), 1u);
  EXPECT_EQ(c.missing_parts[0], "job 1: parts 3, 4 of 4 missing");
}

TEST(SplitDecision, ACompleteSplitJobIsOneJobAndACopiedPartATwin) {
  test::TempQueue q;
  std::string payload(12000, 'y');
  auto names = put_parts(q, command(2), payload, 5000);
  test::spit(q.job("fspl-copy.fspl"), test::slurp(q.job(names[1])));
  Choice c = Decider(q).at(2, true);
  ASSERT_EQ(c.kind, Choice::Kind::Run);
  ASSERT_TRUE(c.job->split());
  ASSERT_EQ(c.job->files().size(), 3u);
  EXPECT_EQ(c.job->meta().kind, JobKind::Command);
  // Of the two files holding part 2, one was a twin and went.
  EXPECT_NE(fs::exists(q.job("fspl-copy.fspl")), fs::exists(q.job(names[1])));
  EXPECT_TRUE(fs::exists(q.job(c.job->files()[1])));
  std::string got;
  std::vector<std::byte> buf(4096);
  PayloadSource src = c.job->payload(false);
  ASSERT_NE(src.stream, nullptr);
  while (size_t n = src.stream->read(buf)) got.append(reinterpret_cast<const char*>(buf.data()), n);
  EXPECT_EQ(got, payload);
}

TEST(SplitDecision, APartThatDoesNotBelongIsAConflict) {
  test::TempQueue q;
  auto names = put_parts(q, command(3), std::string(9000, 'a'), 5000);
  test::TempQueue other;
  auto foreign = put_parts(other, command(3), std::string(9000, 'b'), 5000);
  // A copy of part 2 with one payload byte changed: same header, other bytes.
  std::string bytes = test::slurp(q.job(names[1]));
  bytes.back() ^= 1;
  test::spit(q.job("fspl-damaged.fspl"), bytes);
  Choice twin = Decider(q).at(3);
  EXPECT_EQ(twin.kind, Choice::Kind::Run) << "same header, other bytes: a damaged copy, ignored";
  test::spit(q.job("fspl-other.fspl"), test::slurp(other.job(foreign[0])));
  Choice c = Decider(q).at(3);
  ASSERT_EQ(c.kind, Choice::Kind::Blocked) << "a part of another job at the same seq";
  EXPECT_EQ(c.blocked->reason, Blocked::Reason::Conflict);
  ASSERT_EQ(c.missing_parts.size(), 1u);
  EXPECT_EQ(c.missing_parts[0], "job 3: part 2 of 2 missing");
}

TEST(Supersede, AcceptedOnlyForAPacketTheLedgerSaysFailedHere) {
  test::TempQueue q;
  Meta original = command(4);
  test::spit(q.job("fspl-orig.fspl"), encode_header(original) + "first try");
  std::string h = sha_of(q, "fspl-orig.fspl");
  Meta replacement = command(4);
  replacement.supersedes = Supersedes{4, h};
  put_parts(q, replacement, "resumed", 1 << 20);

  Decider d(q);
  Choice before = d.at(4);
  ASSERT_EQ(before.kind, Choice::Kind::Blocked) << "the original has not failed yet";
  EXPECT_EQ(before.blocked->reason, Blocked::Reason::Conflict);

  d.record(4, LedgerResult::Started, "");
  d.record(4, LedgerResult::Failure, h);
  Choice c = d.at(4);
  ASSERT_EQ(c.kind, Choice::Kind::Run);
  EXPECT_TRUE(c.job->meta().supersedes);
  ASSERT_EQ(c.replaces.size(), 1u);
  EXPECT_EQ(c.replaces[0].sha256, h);
  EXPECT_EQ(c.replaces[0].files, std::vector<std::string>{"fspl-orig.fspl"});

  d.record(4, LedgerResult::Success, h);  // the original succeeded after all
  EXPECT_EQ(d.at(4).kind, Choice::Kind::Blocked);
}

TEST(Supersede, AReplacementOfAReplacementAndOfAVanishedPacket) {
  test::TempQueue q;
  Decider d(q);
  std::string h1(64, '1'), h2;
  Meta r1 = command(5);
  r1.supersedes = Supersedes{5, h1};
  auto first = put_parts(q, r1, "resume 1", 1 << 20);
  d.record(5, LedgerResult::Failure, h1);  // the original failed; its file is gone
  Choice c = d.at(5);
  ASSERT_EQ(c.kind, Choice::Kind::Run);
  EXPECT_TRUE(c.replaces[0].files.empty());
  h2 = c.job->sha256();
  d.record(5, LedgerResult::Failure, h2);  // the first resume failed too
  Meta r2 = command(5);
  r2.supersedes = Supersedes{5, h2};
  auto second = put_parts(q, r2, "resume 2", 1 << 20);
  Choice c2 = d.at(5);
  ASSERT_EQ(c2.kind, Choice::Kind::Run);
  EXPECT_EQ(c2.job->files(), second);
  ASSERT_EQ(c2.replaces.size(), 2u);
}
