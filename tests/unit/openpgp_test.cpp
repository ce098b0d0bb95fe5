// SPDX-License-Identifier: GPL-3.0-or-later
// The first packets of messages made by the real gpg.
#include "safespool/openpgp.hpp"

#include <gtest/gtest.h>

#include <regex>
#include <set>

#include "test_util.hpp"

using namespace safespool;
using test::keyring;
using Kind = openpgp::Announcement::Kind;

namespace {

class OpenPgpHead : public testing::Test {
 protected:
  /// `gpg OPTIONS` over a small payload; the message's bytes.
  test::Bytes make(const std::string& options) {
    test::spit(dir_ / "in", std::string(20000, 'p'));
    EXPECT_TRUE(test::run(keyring().gpg() + options + " -o " + (dir_ / "m") + " " + (dir_ / "in")));
    return test::slurp_bytes(dir_ / "m");
  }
  /// The key ids gpg --list-packets names on lines matching `what`.
  std::set<std::string> listed(const std::string& what) {
    std::string out =
        test::run_capture(keyring().gpg() + "--list-packets " + (dir_ / "m") + " 2>/dev/null");
    std::set<std::string> ids;
    std::regex re(what + ".*keyid ([0-9A-F]{16})");
    for (std::sregex_iterator it(out.begin(), out.end(), re), end; it != end; ++it)
      ids.insert((*it)[1]);
    return ids;
  }
  static std::set<std::string> as_set(const std::vector<std::string>& v) {
    return {v.begin(), v.end()};
  }
  test::TempDir dir_{"sspgp"};
};

}  // namespace

TEST_F(OpenPgpHead, ASignedMessageAnnouncesItsSignerBeforeTheData) {
  for (const char* compress : {"", "--compress-algo none ", "--compress-algo zlib "}) {
    auto m = make(std::string("-u sender@ ") + compress + "--sign");
    auto a = openpgp::announced_signers(std::span(m).first(std::min<size_t>(m.size(), 4096)));
    ASSERT_EQ(a.kind, Kind::Signers) << compress << a.why;
    EXPECT_EQ(as_set(a.key_ids), listed(":onepass_sig packet:")) << compress;
    EXPECT_EQ(a.key_ids.size(), 1u);
  }
}

TEST_F(OpenPgpHead, TheUnwrappedInsideOfAnEncryptedSignedMessageAnnouncesItsSigner) {
  make("-u other@ -r receiver@ --sign --encrypt");
  ASSERT_TRUE(test::run(keyring().gpg() + "--decrypt --unwrap -o " + (dir_ / "inner") + " " +
                        (dir_ / "m") + " 2>/dev/null"));
  auto inner = test::slurp_bytes(dir_ / "inner");
  auto a = openpgp::announced_signers(inner);
  ASSERT_EQ(a.kind, Kind::Signers) << a.why;
  EXPECT_EQ(a.key_ids, std::vector<std::string>{openpgp::key_id_of(keyring().other)});
}

TEST_F(OpenPgpHead, StoredAndCompressedOnlyMessagesAnnounceNoSignature) {
  for (const char* z : {"-z 0", "-z 6", "--compress-algo zlib -z 6"}) {
    auto m = make(std::string("--store ") + z);
    auto a = openpgp::announced_signers(m);
    EXPECT_EQ(a.kind, Kind::NoSignature) << z << ": " << a.why;
  }
}

TEST_F(OpenPgpHead, WhatCannotBeToldIsUnknownNeverASigner) {
  auto bz = make("-u sender@ --compress-algo bzip2 --sign");
  EXPECT_EQ(openpgp::announced_signers(bz).kind, Kind::Unknown);
  auto m = make("-u sender@ --sign");
  EXPECT_EQ(openpgp::announced_signers(std::span(m).first(3)).kind, Kind::Unknown);
  test::Bytes junk(100, std::byte{0xff});
  EXPECT_EQ(openpgp::announced_signers(junk).kind, Kind::Unknown);
  EXPECT_EQ(openpgp::announced_signers({}).kind, Kind::Unknown);
}

TEST_F(OpenPgpHead, AnEncryptedMessageNamesItsRecipientsWithoutAKey) {
  auto m = make("-r receiver@ -r other@ --encrypt");
  auto ids = openpgp::recipients(std::span(m).first(std::min<size_t>(m.size(), 1024)));
  EXPECT_EQ(as_set(ids), listed(":pubkey enc packet:"));
  EXPECT_EQ(ids.size(), 2u);
  auto signed_only = make("-u sender@ --sign");
  EXPECT_TRUE(openpgp::recipients(signed_only).empty());
}
