// SPDX-License-Identifier: GPL-3.0-or-later
// The signer policy: parsing the allowlist, judging signature lists, and
// judging real streams made by our Encoder and decoded by our readers.
#include "safespool/policy.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <functional>

#include "safespool/encode.hpp"
#include "safespool/error.hpp"
#include "test_util.hpp"

namespace fs = std::filesystem;
using namespace safespool;
using safespool::test::keyring;

namespace {

const std::string kAlice = "0123456789ABCDEF0123456789ABCDEF01234567";
const std::string kBob = "FEDCBA9876543210FEDCBA9876543210FEDCBA98";

Signature sig(const std::string& fpr, bool good) {
  return Signature{fpr, good, good ? "good signature" : "Bad signature"};
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

using test::TempDir;

}  // namespace

// ---------------------------------------------------------------- parsing

TEST(PolicyParse, FingerprintsAreNormalised) {
  EXPECT_EQ(normalize_fingerprint("0123 4567 89ab cdef 0123  4567 89AB CDEF 0123 4567"), kAlice);
  EXPECT_EQ(normalize_fingerprint(kAlice), kAlice);
  EXPECT_EQ(normalize_fingerprint(kAlice.substr(1)), "") << "39 digits";
  EXPECT_EQ(normalize_fingerprint(kAlice + "0"), "") << "41 digits";
  EXPECT_EQ(normalize_fingerprint("0x" + kAlice.substr(2)), "") << "not hex";
  EXPECT_EQ(normalize_fingerprint(""), "");
}

TEST(PolicyParse, TrustedSignersFileWithCommentsBlanksAndSpaces) {
  TempDir d;
  std::ofstream(d / "signers") << "# backup senders\n"
                                  "\n"
                                  "   0123 4567 89ab cdef 0123 4567 89ab cdef 0123 4567  # alice\n"
                                  "\t\n"
                                  "fedcba9876543210fedcba9876543210fedcba98";  // no final newline
  SignerPolicy p;
  EXPECT_TRUE(p.empty());
  p.load_file(d / "signers");
  EXPECT_FALSE(p.empty());
  EXPECT_EQ(p.fingerprints(), (std::set<std::string>{kAlice, kBob}));
}

TEST(PolicyParse, BadLineIsNamedByFileAndLine) {
  SignerPolicy p;
  std::string msg = error_of([&] { p.load_text("# ok\n" + kAlice + "\n\nDEADBEEF\n", "signers"); });
  EXPECT_NE(msg.find("signers:4: 'DEADBEEF' is not an OpenPGP v4 fingerprint"), std::string::npos)
      << msg;
  msg = error_of([&] { p.load_file("/nonexistent/signers"); });
  EXPECT_NE(msg.find("cannot open trusted signers file /nonexistent/signers"), std::string::npos)
      << msg;
  EXPECT_THROW(p.require_signer("alice"), UsageError);
  p.require_signer(" " + kBob + " ");
  EXPECT_EQ(p.fingerprints().count(kBob), 1u);
}

// ---------------------------------------------------------------- verdicts

TEST(PolicyCheck, GoodSignatureByListedKeyIsTrusted) {
  SignerPolicy p;
  p.require_signer(kAlice);
  Verdict v = p.check({sig(kBob, true), sig(kAlice, true)});
  EXPECT_TRUE(v.trusted) << v.reason;
  EXPECT_EQ(v.signer, kAlice);
  // Case does not matter on either side.
  std::string lower = kAlice;
  for (char& c : lower) c = static_cast<char>(std::tolower(c));
  EXPECT_TRUE(p.check({sig(lower, true)}).trusted);
}

TEST(PolicyCheck, UnlistedBadAndMissingSignaturesAreRejected) {
  SignerPolicy p;
  p.require_signer(kAlice);
  Verdict v = p.check({sig(kBob, true)});
  EXPECT_FALSE(v.trusted);
  EXPECT_EQ(v.signer, kBob);
  EXPECT_EQ(v.reason, "signer " + kBob + " is not a trusted signer");
  v = p.check({sig(kAlice, false)});
  EXPECT_FALSE(v.trusted) << "a bad signature by a listed key";
  EXPECT_NE(v.reason.find("is not valid: Bad signature"), std::string::npos) << v.reason;
  v = p.check({});
  EXPECT_FALSE(v.trusted);
  EXPECT_EQ(v.signer, "none");
  EXPECT_EQ(v.reason, "no OpenPGP signature");
}

// ---------------------------------------------------------------- real streams

/// Streams made by our Encoder with the shared test keyring.
class PolicyGpg : public testing::Test {
 protected:
  /// Encodes a short packet-like text with `o` into a file in d_ and
  /// returns its decoded stream (auto-detected, as queue-process does).
  Decoded encode_and_open(const EncodeOptions& o, const std::string& name = "fspl-j.fspl") {
    const std::string path = d_ / name;
    {
      Fd out(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
      Encoder e(out.get(), o, name);
      e.write(std::string_view("*FILESPOOLER and some payload bytes"));
      e.finish();
    }
    DecodeOptions dopts;
    dopts.gnupg_home = keyring().home;
    return open_decoded(Fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC)), name, dopts);
  }
  static std::vector<Signature> drain_signatures(Reader& r) {
    std::byte buf[4096];
    while (r.read(buf) > 0) {
    }
    r.finish();
    return r.signatures();
  }
  EncodeOptions opts(const std::string& signer) {
    EncodeOptions o;
    o.gnupg_home = keyring().home;
    o.zstd_level = 3;
    o.recipients = {keyring().receiver};
    if (!signer.empty()) o.signer = signer;
    return o;
  }
  SignerPolicy trusting_sender() {
    SignerPolicy p;
    p.require_signer(keyring().sender);
    return p;
  }
  TempDir d_;
};

TEST_F(PolicyGpg, TrustedSignerIsAccepted) {
  Decoded dec = encode_and_open(opts(keyring().sender));
  Verdict v = trusting_sender().check(drain_signatures(*dec.reader));
  EXPECT_TRUE(v.trusted) << v.reason;
  EXPECT_EQ(v.signer, keyring().sender);
}

TEST_F(PolicyGpg, UntrustedSignerIsRejectedByName) {
  Decoded dec = encode_and_open(opts(keyring().other));
  Verdict v = trusting_sender().check(drain_signatures(*dec.reader));
  EXPECT_FALSE(v.trusted);
  EXPECT_EQ(v.signer, keyring().other);
  EXPECT_NE(v.reason.find(keyring().other), std::string::npos) << v.reason;
}

TEST_F(PolicyGpg, UnsignedAndPlainStreamsAreRejected) {
  Decoded enc = encode_and_open(opts(""));  // encrypted, not signed
  EXPECT_EQ(trusting_sender().check(drain_signatures(*enc.reader)).reason, "no OpenPGP signature");
  EncodeOptions zstd_only;
  zstd_only.zstd_level = 3;
  Decoded z = encode_and_open(zstd_only, "fspl-z.fspl");
  EXPECT_EQ(z.reader->describe(), "zstd < fspl-z.fspl");
  Verdict v = trusting_sender().check(drain_signatures(*z.reader));
  EXPECT_FALSE(v.trusted);
  EXPECT_EQ(v.signer, "none");
}

TEST_F(PolicyGpg, TamperedStreamFailsToDecode) {
  const std::string name = "fspl-t.fspl";
  encode_and_open(opts(keyring().sender), name);
  std::fstream f(d_ / name, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(0, std::ios::end);
  const auto size = static_cast<std::streamoff>(f.tellg());
  char c;
  f.seekg(size - 30);
  f.get(c);
  f.seekp(size - 30);
  f.put(static_cast<char>(c ^ 0x20));
  f.close();
  DecodeOptions dopts;
  dopts.gnupg_home = keyring().home;
  Decoded dec = open_decoded(Fd(::open((d_ / name).c_str(), O_RDONLY | O_CLOEXEC)), name, dopts);
  std::string msg = error_of([&] { drain_signatures(*dec.reader); });
  EXPECT_NE(msg.find(name + ": "), std::string::npos) << msg;
  EXPECT_EQ(msg.find("(no error)"), std::string::npos) << "tampered stream decoded cleanly";
}
