// SPDX-License-Identifier: GPL-3.0-or-later
// Receipts written and read back, signed or not, and the outbox they
// describe (receipt.hpp, outbox.hpp).
#include "safespool/receipt.hpp"

#include <gtest/gtest.h>

#include "safespool/digest.hpp"
#include "safespool/error.hpp"
#include "safespool/outbox.hpp"
#include "test_util.hpp"

using namespace safespool;
namespace fs = std::filesystem;

namespace {

Receipt receipt(uint64_t seq, const std::string& sha256, const std::string& result, int64_t time) {
  Receipt r;
  r.queue = "/var/spool/safespool/backup";
  r.host = "receiver";
  r.seq = seq;
  r.sha256 = sha256;
  r.result = result;
  r.time = time;
  return r;
}

/// A plain packet of `seq` in `dir` as prepare --outbox names it; its hash.
std::string outbox_packet(const test::TempDir& dir, uint64_t seq, const std::string& payload) {
  Meta m;
  m.seq = seq;
  m.kind = JobKind::Command;
  std::string bytes = encode_header(m) + payload;
  test::spit(dir / ("fspl-" + std::to_string(seq) + "-x.fspl"), bytes);
  return sha256_hex(bytes);
}

}  // namespace

TEST(Receipt, DocumentRoundTripsAndBoundsItsTexts) {
  Receipt r = receipt(41, std::string(64, 'a'), "failure", 1700000000);
  r.exit_status = 1;
  r.reason = "exit status 1";
  r.note = "receive_resume_token=1-abc\n";
  r.stderr_tail = std::string(10000, 'e') + "END";
  Receipt back = parse_receipt(receipt_json(r));
  EXPECT_EQ(back.seq, 41u);
  EXPECT_EQ(back.result, "failure");
  EXPECT_EQ(back.exit_status, 1);
  EXPECT_EQ(back.note, r.note);
  EXPECT_EQ(back.stderr_tail.size(), kReceiptTextMax);
  EXPECT_TRUE(back.stderr_tail.ends_with("END")) << "the tail is kept, not the head";
  EXPECT_THROW(parse_receipt("{\"version\": 2, \"seq\": 1}"), FormatError);
  EXPECT_THROW(parse_receipt("not json"), FormatError);
}

TEST(Receipt, SignedReceiptsCountOnlyUnderAPolicyThatTrustsTheirSigner) {
  const auto& k = test::keyring();
  test::TempDir dir;
  EncodeOptions enc;
  enc.signer = k.sender;
  enc.gnupg_home = k.home;
  enc.zstd_level = 3;
  write_receipt(dir.str(), receipt(1, std::string(64, 'a'), "success", 10), enc);
  write_receipt(dir.str(), receipt(2, std::string(64, 'b'), "failure", 11), EncodeOptions{});
  DecodeOptions d;
  d.gnupg_home = k.home;
  std::vector<SkippedFile> bad;
  EXPECT_EQ(read_receipts(dir.str(), d, SignerPolicy(), bad).size(), 2u);
  EXPECT_TRUE(bad.empty());
  SignerPolicy trust_sender;
  trust_sender.require_signer(k.sender);
  auto trusted = read_receipts(dir.str(), d, trust_sender, bad);
  ASSERT_EQ(trusted.size(), 1u);
  EXPECT_EQ(trusted[0].receipt.seq, 1u);
  EXPECT_EQ(bad.size(), 1u) << "the unsigned one";
  SignerPolicy trust_other;
  trust_other.require_signer(k.other);
  bad.clear();
  EXPECT_TRUE(read_receipts(dir.str(), d, trust_other, bad).empty());
  EXPECT_EQ(bad.size(), 2u);
}

TEST(Outbox, AckedFailedPendingAndOnlyAckedArePruned) {
  test::TempDir outbox, receipts;
  std::string h1 = outbox_packet(outbox, 1, "one");
  std::string h2 = outbox_packet(outbox, 2, "two");
  std::string h3 = outbox_packet(outbox, 3, "three");
  std::string h4 = outbox_packet(outbox, 4, "four");
  write_receipt(receipts.str(), receipt(1, h1, "success", 100), {});
  write_receipt(receipts.str(), receipt(2, h2, "failure", 101), {});
  write_receipt(receipts.str(), receipt(4, h4, "failure", 102), {});
  write_receipt(receipts.str(), receipt(4, h4, "success", 103), {});  // a retry worked
  Receipt wait = receipt(3, "", "waiting", 104);
  wait.waiting_since = 50;
  write_receipt(receipts.str(), wait, {});
  OutboxReport r = outbox_status(outbox.str(), receipts.str(), {}, {});
  ASSERT_EQ(r.entries.size(), 4u);
  EXPECT_EQ(r.entries[0].state, "acked");
  EXPECT_EQ(r.entries[0].since, 100);
  EXPECT_EQ(r.entries[1].state, "failed");
  EXPECT_EQ(r.entries[2].state, "pending");
  EXPECT_EQ(r.entries[3].state, "acked");
  ASSERT_EQ(r.waiting.size(), 1u);
  EXPECT_NE(outbox_text(r).find("waits for 3 since"), std::string::npos);
  auto pruned = outbox_prune(r, outbox.str());
  EXPECT_EQ(pruned.size(), 2u);
  EXPECT_FALSE(fs::exists(outbox / "fspl-1-x.fspl"));
  EXPECT_TRUE(fs::exists(outbox / "fspl-2-x.fspl")) << "failed stays";
  EXPECT_TRUE(fs::exists(outbox / "fspl-3-x.fspl")) << "pending stays";
  write_receipt(receipts.str(), receipt(3, h3, "success", 105), {});
  EXPECT_TRUE(outbox_status(outbox.str(), receipts.str(), {}, {}).waiting.empty())
      << "seq 3 ran: the waiting receipt is answered";
}

// An encoded packet's seq is not in a header we can read: its receipt says
// it, else a name prepare made ("fspl-SEQ-UUID"), never the first group of
// a UUID name that happens to be all digits.
TEST(Outbox, AnEncodedPacketsSeqComesFromItsReceiptNotFromAUuid) {
  test::TempDir outbox, receipts;
  const std::string uuid_name = "fspl-85869889-20cf-48ed-9bf2-e8a17401a447.fspl";
  const std::string seq_name = "fspl-7-20cf4889-20cf-48ed-9bf2-e8a17401a447.fspl";
  test::spit(outbox / uuid_name, "encoded, as far as we can tell: one");
  test::spit(outbox / seq_name, "encoded, as far as we can tell: two");
  OutboxReport r = outbox_status(outbox.str(), receipts.str(), {}, {});
  ASSERT_EQ(r.entries.size(), 2u);
  EXPECT_EQ(r.entries[0].seq, std::optional<uint64_t>(7)) << r.entries[0].filename;
  EXPECT_EQ(r.entries[1].seq, std::nullopt) << r.entries[1].filename;
  write_receipt(receipts.str(),
                receipt(1, sha256_hex("encoded, as far as we can tell: one"), "failure", 100), {});
  r = outbox_status(outbox.str(), receipts.str(), {}, {});
  ASSERT_EQ(r.entries.size(), 2u);
  EXPECT_EQ(r.entries[0].filename, uuid_name);
  EXPECT_EQ(r.entries[0].seq, std::optional<uint64_t>(1));
  EXPECT_EQ(r.entries[0].state, "failed");
}
