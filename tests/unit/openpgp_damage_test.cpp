// SPDX-License-Identifier: GPL-3.0-or-later
// A damaged OpenPGP message says what is wrong and where, not only GPGME's
// one word for it ("No data", "Decryption failed"). Real gpg, the shared
// throwaway keyring.
#include <fcntl.h>
#include <gtest/gtest.h>

#include <string>

#include "safespool/decode.hpp"
#include "safespool/error.hpp"
#include "test_util.hpp"

namespace safespool {
namespace {

/// The message the OpenPGP stage fails `file` with ("" when it does not).
std::string failure_of(const std::string& file) {
  auto r =
      make_gpg_reader(make_fd_reader(Fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC)), "fspl-x.fspl"),
                      test::keyring().home);
  try {
    std::byte buf[65536];
    while (r->read(buf) > 0) {
    }
    r->finish();
  } catch (const FormatError& e) {
    return e.what();
  }
  return "";
}

TEST(OpenPgpDamage, SaysWhatIsWrongAndWhere) {
  const auto& k = test::keyring();
  test::TempDir d("pgpdmg");
  ASSERT_TRUE(test::run("seq 1 100000 > " + d / "p"));
  ASSERT_TRUE(test::run(k.gpg() + "-z 6 -e -r receiver@example.invalid -o " + d / "e " + d / "p"));
  test::Bytes e = test::slurp_bytes(d / "e");
  ASSERT_GT(e.size(), 1000u);
  test::spit(d / "truncated", test::Bytes(e.begin(), e.begin() + e.size() * 2 / 3));
  test::Bytes tampered = e;
  tampered[e.size() / 2] ^= std::byte{0x55};
  test::spit(d / "tampered", tampered);
  test::spit(d / "cut", test::Bytes(e.begin(), e.begin() + 100));

  EXPECT_EQ(failure_of(d / "truncated"),
            "fspl-x.fspl: OpenPGP: damaged message: the encrypted data fails its integrity check "
            "(cut short or altered) (gpg: Decryption failed)");
  EXPECT_EQ(failure_of(d / "tampered"),
            "fspl-x.fspl: OpenPGP: damaged message: a bad or truncated packet inside the "
            "encrypted data (its compressed or literal data) (gpg: No data)");
  EXPECT_EQ(failure_of(d / "cut"),
            "fspl-x.fspl: OpenPGP: damaged message: a bad or truncated packet before any data (its "
            "outer layer) (gpg: No data)");
}

}  // namespace
}  // namespace safespool
