// SPDX-License-Identifier: GPL-3.0-or-later
// The sender's stack against the real tools: what Encoder writes must be
// read by the `zstd` and `gpg` CLIs, by fspl with a shell decoder, and by
// our own decode stages; key problems must be clear errors, found fast.
#include "safespool/encode.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <fstream>

#include "safespool/decode.hpp"
#include "safespool/error.hpp"
#include "safespool/packet.hpp"
#include "test_util.hpp"

namespace fs = std::filesystem;
using namespace safespool;
using safespool::test::keyring;
using safespool::test::run;
using safespool::test::run_capture;
using Bytes = std::vector<std::byte>;
using Clock = std::chrono::steady_clock;

namespace {

using test::TempDir;

/// Compressible but not trivial: random words, now and then a noise byte.
Bytes sample(size_t size, uint32_t seed = 7) {
  static const char* const kWords[] = {"zfs ",  "send ", "receive ",     "snapshot ",
                                       "pool/", "data ", "incremental ", "stream\n"};
  Bytes b;
  b.reserve(size + 16);
  for (uint32_t x = seed; b.size() < size;) {
    x = x * 1664525u + 1013904223u;
    if ((x >> 8) % 16 == 0) b.push_back(std::byte(x >> 24));
    for (const char* w = kWords[(x >> 16) % 8]; *w; ++w) b.push_back(std::byte(*w));
  }
  b.resize(size);
  return b;
}

Bytes slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::string s((std::istreambuf_iterator<char>(f)), {});
  auto p = reinterpret_cast<const std::byte*>(s.data());
  return Bytes(p, p + s.size());
}

Bytes as_bytes(const std::string& s) {
  auto p = reinterpret_cast<const std::byte*>(s.data());
  return Bytes(p, p + s.size());
}

/// Encodes `data` into `path`, in `chunk`-sized writes.
void encode_file(const std::string& path, const EncodeOptions& o, const Bytes& data,
                 size_t chunk = 65536) {
  Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  ASSERT_TRUE(fd) << path;
  Encoder enc(fd.get(), o, path);
  for (size_t off = 0; off < data.size(); off += chunk) {
    enc.write(std::span(data).subspan(off, std::min(chunk, data.size() - off)));
  }
  enc.finish();
}

Bytes drain(Reader& r) {
  Bytes out;
  std::byte buf[65536];
  while (size_t n = r.read(buf)) out.insert(out.end(), buf, buf + n);
  r.finish();
  return out;
}

EncodeOptions gpg_opts() {
  EncodeOptions o;
  o.gnupg_home = keyring().home;
  return o;
}

/// Runs `f`, expects an Error of type E whose message has every part.
template <typename E, typename F>
void expect_error(F f, std::vector<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "no exception; expected one mentioning " << parts.at(0);
  } catch (const E& e) {
    for (const auto& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos)
          << "message '" << e.what() << "' lacks '" << p << "'";
  }
}

}  // namespace

// ---------------------------------------------------------------- zstd only

TEST(EncodeZstd, ChecksummedFrameReadByZstdCliAndOurReader) {
  TempDir d;
  Bytes data = sample(3'000'000);
  EncodeOptions o;
  o.zstd_level = 3;
  encode_file(d / "out.zst", o, data, 10007);
  Bytes z = slurp(d / "out.zst");
  ASSERT_GE(z.size(), 6u);
  EXPECT_LT(z.size(), data.size() / 2) << "not compressed";
  EXPECT_EQ(detect_encoding(z), Encoding::Zstd);
  // Frame header descriptor, bit 2: content checksum present.
  EXPECT_NE(int(z[4]) & 0x04, 0) << "frame has no checksum";
  ASSERT_TRUE(run("zstd -q -d -c " + d / "out.zst" + " > " + d / "cli.out"));
  EXPECT_EQ(slurp(d / "cli.out"), data);
  Fd in(::open((d / "out.zst").c_str(), O_RDONLY | O_CLOEXEC));
  auto r = make_zstd_reader(make_fd_reader(std::move(in), "out.zst"));
  EXPECT_EQ(drain(*r), data);
}

TEST(EncodeZstd, ThreadedLevelAndEmptyInputRoundTrip) {
  TempDir d;
  Bytes data = sample(1'500'000, 3);
  EncodeOptions o;
  o.zstd_level = 10;  // libzstd's worker threads
  encode_file(d / "t.zst", o, data, 1 << 20);
  ASSERT_TRUE(run("zstd -q -d -c " + d / "t.zst" + " > " + d / "t.out"));
  EXPECT_EQ(slurp(d / "t.out"), data);
  encode_file(d / "e.zst", o, {});
  ASSERT_TRUE(run("zstd -q -t " + d / "e.zst")) << "an empty stream is still one frame";
}

TEST(EncodeZstd, LevelOutOfRangeIsAUsageError) {
  EncodeOptions o;
  o.zstd_level = 99;
  expect_error<UsageError>([&] { check_keys(o); }, {"zstd level 99 is out of range"});
  expect_error<UsageError>([&] { Encoder(1, o, "stdout"); }, {"zstd level 99"});
}

TEST(EncodePlain, NoOptionsPassesBytesThrough) {
  TempDir d;
  Bytes data = sample(100'000);
  EXPECT_TRUE(check_keys(EncodeOptions{}).recipients.empty());
  encode_file(d / "p", EncodeOptions{}, data, 999);
  EXPECT_EQ(slurp(d / "p"), data);
  Fd fd(::open("/dev/null", O_WRONLY | O_CLOEXEC));
  Encoder e(fd.get(), EncodeOptions{}, "null");
  e.finish();
  expect_error<Error>([&] { e.write(std::string_view("x")); }, {"null: write after finish"});
}

// ---------------------------------------------------------------- OpenPGP

TEST(EncodeGpg, CompressedSignedEncryptedReadByGpgZstdFsplAndUs) {
  TempDir d;
  const auto& k = keyring();
  Meta meta;
  meta.seq = 1;
  meta.kind = JobKind::Command;
  meta.params = {"cat"};
  Bytes payload = sample(2'000'000, 11);
  Bytes pkt = as_bytes(encode_header(meta));
  pkt.insert(pkt.end(), payload.begin(), payload.end());
  EncodeOptions o = gpg_opts();
  o.zstd_level = 3;
  o.recipients = {k.receiver};
  o.signer = k.sender;
  CheckedKeys keys = check_keys(o);
  EXPECT_EQ(keys.recipients, std::vector<std::string>{k.receiver});
  EXPECT_EQ(keys.signer, k.sender);
  ASSERT_TRUE(run("fspl queue-init -q " + d / "q"));
  const std::string job = d / "q/jobs/fspl-enc.fspl";
  encode_file(job, o, pkt, 65536);
  Bytes enc = slurp(job);
  EXPECT_EQ(detect_encoding(enc), Encoding::OpenPgp);
  EXPECT_EQ(openpgp_encrypted(enc), std::optional<bool>(true));

  // The real CLIs: gpg decrypts and verifies, zstd decompresses.
  std::string status = run_capture(k.gpg() + "--status-fd 3 -d -o " + d / "plain.zst " + job +
                                   " 3>&1 1>/dev/null 2>/dev/null");
  EXPECT_NE(status.find("VALIDSIG " + k.sender), std::string::npos) << status;
  ASSERT_TRUE(run("zstd -q -d -c " + d / "plain.zst" + " > " + d / "plain"));
  EXPECT_EQ(slurp(d / "plain"), pkt);

  // fspl reads it with a shell decoder.
  ASSERT_TRUE(run("GNUPGHOME=" + k.home + " fspl queue-payload -q " + d / "q" +
                  " -j 1 -d 'gpg -q --batch -d 2>/dev/null | zstdcat' > " + d / "payload"));
  EXPECT_EQ(slurp(d / "payload"), payload);

  // And so do we, with the signer's primary fingerprint.
  DecodeOptions dopts;
  dopts.gnupg_home = k.home;
  Decoded dec = open_decoded(Fd(::open(job.c_str(), O_RDONLY | O_CLOEXEC)), "fspl-enc.fspl", dopts);
  EXPECT_EQ(dec.reader->describe(), "zstd < OpenPGP < fspl-enc.fspl");
  EXPECT_EQ(drain(*dec.reader), pkt);
  auto sigs = dec.reader->signatures();
  ASSERT_EQ(sigs.size(), 1u);
  EXPECT_TRUE(sigs[0].good) << sigs[0].summary;
  EXPECT_EQ(sigs[0].fingerprint, k.sender);
}

TEST(EncodeGpg, EncryptOnlyCarriesNoSignature) {
  TempDir d;
  Bytes data = sample(300'000, 5);
  EncodeOptions o = gpg_opts();
  o.recipients = {"receiver@example.invalid"};
  encode_file(d / "e.gpg", o, data, 4096);
  ASSERT_TRUE(run(keyring().gpg() + "-d -o " + d / "e.out " + d / "e.gpg 2>/dev/null"));
  EXPECT_EQ(slurp(d / "e.out"), data);
  auto r = make_gpg_reader(
      make_fd_reader(Fd(::open((d / "e.gpg").c_str(), O_RDONLY | O_CLOEXEC)), "e.gpg"),
      keyring().home);
  EXPECT_EQ(drain(*r), data);
  EXPECT_TRUE(r->signatures().empty()) << "gpg signed with a default key";
}

TEST(EncodeGpg, SignOnlyMessageVerifiesWithGpgAndUs) {
  TempDir d;
  Bytes data = sample(200'000, 9);
  EncodeOptions o = gpg_opts();
  o.signer = keyring().sender;
  encode_file(d / "s.gpg", o, data, 1);  // byte by byte: small writes are gathered
  Bytes s = slurp(d / "s.gpg");
  EXPECT_EQ(openpgp_encrypted(s), std::optional<bool>(false));
  ASSERT_TRUE(run(keyring().gpg() + "-d -o " + d / "s.out " + d / "s.gpg 2>/dev/null"));
  EXPECT_EQ(slurp(d / "s.out"), data);
  auto r = make_gpg_reader(make_fd_reader(Fd(::open((d / "s.gpg").c_str(), O_RDONLY)), "s"),
                           keyring().home);
  EXPECT_EQ(drain(*r), data);
  auto sigs = r->signatures();
  ASSERT_EQ(sigs.size(), 1u);
  EXPECT_TRUE(sigs[0].good);
  EXPECT_EQ(sigs[0].fingerprint, keyring().sender);
}

TEST(EncodeGpg, OutputFailureIsReportedNamingTheOutput) {
  EncodeOptions o = gpg_opts();
  o.zstd_level = 1;
  o.recipients = {keyring().receiver};
  Fd full(::open("/dev/full", O_WRONLY | O_CLOEXEC));
  ASSERT_TRUE(full);
  Bytes data = sample(1'000'000);
  expect_error<SysError>(
      [&] {
        Encoder e(full.get(), o, "/dev/full");
        for (int i = 0; i < 4; ++i) e.write(data);
        e.finish();
      },
      {"cannot write /dev/full", "No space left"});
}

TEST(EncodeGpg, AbandonedEncoderStopsPromptly) {
  EncodeOptions o = gpg_opts();
  o.recipients = {keyring().receiver};
  o.signer = keyring().sender;
  Fd null(::open("/dev/null", O_WRONLY | O_CLOEXEC));
  auto start = Clock::now();
  {
    Encoder e(null.get(), o, "null");
    e.write(sample(100'000));
  }  // no finish(): the destructor must stop gpg, not wait for EOF
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(10));
}

// ---------------------------------------------------------------- key checks

TEST(EncodeKeys, UnknownRecipientIsNamed) {
  EncodeOptions o = gpg_opts();
  o.recipients = {keyring().receiver, "nobody@example.invalid"};
  expect_error<Error>([&] { check_keys(o); }, {"recipient 'nobody@example.invalid'",
                                               "no matching public key", keyring().home});
  expect_error<Error>([&] { Encoder(1, o, "stdout"); }, {"nobody@example.invalid"});
}

TEST(EncodeKeys, AmbiguousRecipientAsksForAFingerprint) {
  EncodeOptions o = gpg_opts();
  o.recipients = {"example.invalid"};
  expect_error<Error>([&] { check_keys(o); }, {"recipient 'example.invalid' is ambiguous",
                                               keyring().sender, "give a fingerprint"});
}

TEST(EncodeKeys, ExpiredRecipientAndSignerAreRefused) {
  EncodeOptions o = gpg_opts();
  o.recipients = {keyring().expired};
  expect_error<Error>([&] { check_keys(o); },
                      {"recipient '" + keyring().expired + "'", "has expired"});
  o.recipients.clear();
  o.signer = keyring().expired;
  expect_error<Error>([&] { check_keys(o); }, {"signer '", "has expired"});
}

TEST(EncodeKeys, PassphraseSignerIsAClearErrorNotAPrompt) {
  EncodeOptions o = gpg_opts();
  o.signer = keyring().locked;
  auto start = Clock::now();
  try {
    check_keys(o);
    ADD_FAILURE() << "a passphrase-protected signer was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("signer '" + keyring().locked + "'"), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("needs a passphrase"), std::string::npos) << e.what();
    EXPECT_EQ(e.exit_code(), kExitConfig);
  }
  // A caller that skipped check_keys() gets the same refusal from finish().
  Fd null(::open("/dev/null", O_WRONLY | O_CLOEXEC));
  expect_error<Error>(
      [&] {
        Encoder e(null.get(), o, "null");
        e.write(std::string_view("payload"));
        e.finish();
      },
      {"null: OpenPGP: ", "needs a passphrase"});
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(15));
}

TEST(EncodeKeys, MissingSecretKeyAndGoodKeys) {
  EncodeOptions o = gpg_opts();
  o.signer = "nobody@example.invalid";
  expect_error<Error>([&] { check_keys(o); },
                      {"signer 'nobody@example.invalid'", "no matching secret key"});
  o.signer = "other@example.invalid";
  o.recipients = {"sender@example.invalid", keyring().receiver};
  CheckedKeys k = check_keys(o);
  EXPECT_EQ(k.signer, keyring().other);
  EXPECT_EQ(k.recipients, (std::vector<std::string>{keyring().sender, keyring().receiver}));
}
