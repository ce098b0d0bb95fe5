// SPDX-License-Identifier: GPL-3.0-or-later
// Decode stages against the real tools: streams made by the `zstd` and
// `gpg` CLIs (in a throwaway GNUPGHOME), decoded by our readers.
#include "safespool/decode.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include "safespool/error.hpp"
#include "test_util.hpp"

namespace fs = std::filesystem;
using namespace safespool;
using namespace std::literals;
using Bytes = std::vector<std::byte>;
using Clock = std::chrono::steady_clock;

namespace {

using DecodeDir = test::TempDir;

void sh(const std::string& cmd) {
  int rc = std::system(cmd.c_str());
  ASSERT_EQ(rc, 0) << "command failed: " << cmd;
}

using test::run_capture;

Bytes slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::string s((std::istreambuf_iterator<char>(f)), {});
  return Bytes(reinterpret_cast<const std::byte*>(s.data()),
               reinterpret_cast<const std::byte*>(s.data()) + s.size());
}

void spit(const std::string& path, const Bytes& b) {
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

Bytes bytes(std::string_view s) {
  auto p = reinterpret_cast<const std::byte*>(s.data());
  return Bytes(p, p + s.size());
}

/// Something that looks like a packet: the tag, then text and noise.
Bytes fake_packet(size_t size, uint32_t seed = 1) {
  Bytes b = bytes("*FILESPOOLER\x00\x01"sv);
  for (uint32_t x = seed; b.size() < size;) {
    x = x * 1664525u + 1013904223u;
    b.push_back(std::byte((x >> 24) % 4 ? 'a' + (x >> 8) % 26 : x >> 16));
  }
  return b;
}

Fd open_ro(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  EXPECT_TRUE(fd) << path;
  return fd;
}

/// Reads to the end in odd-sized pieces, then finish().
Bytes drain(Reader& r, size_t piece = 3001) {
  Bytes out, buf(piece);
  while (size_t n = r.read(buf)) out.insert(out.end(), buf.begin(), buf.begin() + n);
  r.finish();
  return out;
}

/// DecodeOptions with `set` applied (designated initialisers warn).
template <class F>
DecodeOptions options(F&& set) {
  DecodeOptions o;
  set(o);
  return o;
}

Decoded open_path(const std::string& path, DecodeOptions opts = {}) {
  return open_decoded(open_ro(path), fs::path(path).filename(), opts);
}

/// Runs `f`, expecting E whose message contains every one of `parts`.
template <class E, class F>
void expect_error(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "no exception";
  } catch (const E& e) {
    if (std::getenv("DECODE_TEST_VERBOSE"))
      std::fprintf(stderr, "[%s] %s\n", typeid(e).name(), e.what());
    for (const auto& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos)
          << "'" << p << "' not in: " << e.what();
  }
}

}  // namespace

// ---------------------------------------------------------------- detection

TEST(DecodeDetect, Table) {
  struct Case {
    std::string head;
    Encoding want;
  };
  const Case cases[] = {
      {"*FILESPOOLER\x00\x01"s, Encoding::Packet},
      {"*FILESPOOLE", Encoding::Unknown},
      {"\x28\xB5\x2F\xFD\x04", Encoding::Zstd},
      {"\x50\x2A\x4D\x18", Encoding::Zstd},
      {"\x5F\x2A\x4D\x18", Encoding::Zstd},
      {"\x60\x2A\x4D\x18", Encoding::Unknown},
      {"\x28\xB5\x2F", Encoding::Unknown},
      {"\x85\x01\x0c", Encoding::OpenPgp},  // old format, tag 1 (PKESK)
      {"\xC1\x5e", Encoding::OpenPgp},      // new format, tag 1
      {"\x8C\x0d", Encoding::OpenPgp},      // old format, tag 3 (SKESK)
      {"\xC3\x0d", Encoding::OpenPgp},      // new format, tag 3
      {"\xA3\x01", Encoding::OpenPgp},      // old format, tag 8 (compressed)
      {"\x90\x0d", Encoding::OpenPgp},      // old format, tag 4 (one-pass sig)
      {"\xC2\x75", Encoding::OpenPgp},      // new format, tag 2 (signature)
      {"-----BEGIN PGP MESSAGE-----", Encoding::OpenPgp},
      {"-----BEGIN PG", Encoding::Unknown},
      {"\x99\x01\x0d", Encoding::Unknown},  // tag 6: a public key, not a message
      {"\xAC\x10", Encoding::OpenPgp},      // tag 11: literal data (an unwrapped unsigned message)
      {"\x05\x01", Encoding::Unknown},      // bit 7 clear
      {"\x1f\x8b\x08\x00"s, Encoding::Unknown},
      {"", Encoding::Unknown},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(detect_encoding(bytes(c.head)), c.want)
        << "head " << testing::PrintToString(c.head) << " gave "
        << encoding_name(detect_encoding(bytes(c.head)));
  }
}

TEST(DecodeDetect, OpenPgpEncryptedOrSignedOnly) {
  EXPECT_EQ(openpgp_encrypted(bytes("\x85\x01\x0c"sv)), true);
  EXPECT_EQ(openpgp_encrypted(bytes("\xC1\x5e"sv)), true);
  EXPECT_EQ(openpgp_encrypted(bytes("\x8C\x0d"sv)), true);
  EXPECT_EQ(openpgp_encrypted(bytes("\xA3\x01"sv)), false);
  EXPECT_EQ(openpgp_encrypted(bytes("\x90\x0d"sv)), false);
  EXPECT_EQ(openpgp_encrypted(bytes("-----BEGIN PGP MESSAGE-----\n\nhQEMA"sv)), true);
  EXPECT_EQ(openpgp_encrypted(bytes("-----BEGIN PGP MESSAGE-----\r\nComment: x\r\n\r\nowGb"sv)),
            false);
  EXPECT_EQ(openpgp_encrypted(bytes("-----BEGIN PGP MESSAGE-----\n"sv)), std::nullopt);
  EXPECT_EQ(openpgp_encrypted({}), std::nullopt);
}

TEST(DecodeDetect, Names) {
  EXPECT_STREQ(encoding_name(Encoding::Packet), "packet");
  EXPECT_STREQ(encoding_name(Encoding::Zstd), "zstd");
  EXPECT_STREQ(encoding_name(Encoding::OpenPgp), "OpenPGP");
  EXPECT_STREQ(encoding_name(Encoding::Unknown), "unknown");
}

// ---------------------------------------------------------------- plain

TEST(DecodePlain, RegularFileIsReadInPlaceWithoutReadAhead) {
  DecodeDir d;
  Bytes pkt = fake_packet(100000);
  spit(d / "fspl-a.fspl", pkt);
  Decoded dec = open_path(d / "fspl-a.fspl");
  ASSERT_TRUE(dec.plain());
  ASSERT_GE(dec.plain_fd, 0);
  EXPECT_EQ(::lseek(dec.plain_fd, 0, SEEK_CUR), 0) << "detection moved the offset";
  Bytes head(30);
  ASSERT_EQ(dec.reader->read(head), 30u);
  EXPECT_EQ(::lseek(dec.plain_fd, 0, SEEK_CUR), 30) << "the reader read ahead";
  EXPECT_TRUE(std::equal(head.begin(), head.end(), pkt.begin()));
}

TEST(DecodePlain, PipeKeepsPeekedBytesAndIsNotPlain) {
  Bytes pkt = fake_packet(20000);
  Pipe p = make_pipe();
  write_all(p.write.get(), pkt, "pipe");
  p.write.reset();
  Decoded dec = open_decoded(std::move(p.read), "stdin", {});
  EXPECT_FALSE(dec.plain()) << "a pipe must never become the consumer's stdin";
  EXPECT_EQ(dec.plain_fd, -1);
  EXPECT_EQ(drain(*dec.reader, 5), pkt);
}

TEST(DecodePlain, UnknownBytesNameFileShowHexAndSuggestDecoder) {
  DecodeDir d;
  spit(d / "fspl-g.fspl", bytes("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03 more"sv));
  expect_error<FormatError>([&] { open_path(d / "fspl-g.fspl"); },
                            {"fspl-g.fspl", "1f 8b 08 00", "--decoder"});
  spit(d / "empty.fspl", {});
  expect_error<FormatError>([&] { open_path(d / "empty.fspl"); }, {"empty.fspl", "empty"});
}

TEST(DecodePlain, ModeNoneAppliesNoStage) {
  DecodeDir d;
  spit(d / "p", fake_packet(5000));
  sh("zstd -q -c " + d / "p" + " > " + d / "p.zst");
  Decoded dec = open_path(d / "p.zst", options([](auto& o) { o.mode = DecodeMode::None; }));
  EXPECT_TRUE(dec.plain());
  EXPECT_EQ(drain(*dec.reader), slurp(d / "p.zst"));
}

// ---------------------------------------------------------------- zstd

/// Decodes `file` with an explicit zstd stage.
Bytes unzstd(const std::string& file) {
  auto r = make_zstd_reader(make_fd_reader(open_ro(file), fs::path(file).filename()));
  return drain(*r);
}

TEST(DecodeZstd, AutoDetectedSingleFrame) {
  DecodeDir d;
  Bytes pkt = fake_packet(1 << 20);
  spit(d / "p", pkt);
  sh("zstd -q -c " + d / "p" + " > " + d / "fspl-z.fspl");
  Decoded dec = open_path(d / "fspl-z.fspl");
  EXPECT_FALSE(dec.plain());
  EXPECT_EQ(dec.reader->describe(), "zstd < fspl-z.fspl");
  EXPECT_EQ(drain(*dec.reader), pkt);
}

TEST(DecodeZstd, ConcatenatedAndSkippableFrames) {
  DecodeDir d;
  Bytes pkt = fake_packet(300000);
  spit(d / "a", Bytes(pkt.begin(), pkt.begin() + 123457));
  spit(d / "b", Bytes(pkt.begin() + 123457, pkt.end()));
  Bytes skip = bytes("\x52\x2A\x4D\x18\x05\x00\x00\x00hello"sv);
  spit(d / "skip", skip);
  sh("cd " + d.str() +
     " && zstd -q -c a > z && cat skip >> z && zstd -q -c b >> z && cat skip >> z");
  EXPECT_EQ(unzstd(d / "z"), pkt);
  sh("cd " + d.str() + " && cat skip z > z2");  // a skippable frame first
  EXPECT_EQ(detect_encoding(slurp(d / "z2")), Encoding::Zstd);
  EXPECT_EQ(drain(*open_path(d / "z2").reader), pkt);
}

TEST(DecodeZstd, Long31Window) {
  DecodeDir d;
  Bytes pkt = fake_packet(400000);
  spit(d / "p", pkt);
  // From stdin the size is unknown, so the frame keeps its 2 GiB window.
  sh("zstd -q --long=31 -c < " + d / "p" + " > " + d / "z");
  Bytes z = slurp(d / "z");
  ASSERT_GT(z.size(), 6u);
  ASSERT_FALSE(std::to_integer<int>(z[4]) & 0x20) << "single-segment frame: no window";
  ASSERT_EQ(10 + (std::to_integer<int>(z[5]) >> 3), 31) << "frame window is not 2^31";
  EXPECT_EQ(unzstd(d / "z"), pkt);
}

TEST(DecodeZstd, TruncatedInputFailsAtTheEnd) {
  DecodeDir d;
  spit(d / "p", fake_packet(500000));
  sh("zstd -q -c " + d / "p" + " > " + d / "z");
  Bytes z = slurp(d / "z");
  spit(d / "fspl-t.fspl", Bytes(z.begin(), z.begin() + z.size() / 2));
  expect_error<FormatError>([&] { unzstd(d / "fspl-t.fspl"); },
                            {"fspl-t.fspl: zstd: truncated input"});
  spit(d / "fspl-e.fspl", {});
  expect_error<FormatError>([&] { unzstd(d / "fspl-e.fspl"); },
                            {"fspl-e.fspl: zstd: no zstd frame"});
}

TEST(DecodeZstd, CorruptionIsAFormatError) {
  DecodeDir d;
  spit(d / "p", fake_packet(500000));
  sh("zstd -q --check -c " + d / "p" + " > " + d / "z");
  Bytes z = slurp(d / "z");
  Bytes bad = z;
  bad.back() ^= std::byte{0x01};  // the frame checksum itself
  spit(d / "fspl-c.fspl", bad);
  expect_error<FormatError>([&] { unzstd(d / "fspl-c.fspl"); },
                            {"fspl-c.fspl: zstd: ", "checksum"});
  bad = z;
  bad[bad.size() / 2] ^= std::byte{0x40};
  spit(d / "fspl-m.fspl", bad);
  expect_error<FormatError>([&] { unzstd(d / "fspl-m.fspl"); }, {"fspl-m.fspl: zstd: "});
  bad = z;
  for (char c : std::string("trailing garbage")) bad.push_back(std::byte(c));
  spit(d / "fspl-g.fspl", bad);
  expect_error<FormatError>([&] { unzstd(d / "fspl-g.fspl"); }, {"fspl-g.fspl: zstd: "});
}

TEST(DecodeZstd, ConstantMemoryOn256MiB) {
  DecodeDir d;
  sh("head -c 268435456 /dev/zero | zstd -q -c > " + d / "z");
  rusage before{}, after{};
  ::getrusage(RUSAGE_SELF, &before);
  auto r = make_zstd_reader(make_fd_reader(open_ro(d / "z"), "z"));
  Bytes buf(1 << 16);
  uint64_t total = 0;
  while (size_t n = r->read(buf)) total += n;
  r->finish();
  ::getrusage(RUSAGE_SELF, &after);
  EXPECT_EQ(total, 268435456u);
  EXPECT_LT(after.ru_maxrss - before.ru_maxrss, 32 * 1024) << "peak RSS grew (KiB)";
}

TEST(DecodeZstd, StackDepthAndNonPacketContent) {
  DecodeDir d;
  Bytes pkt = fake_packet(10000);
  spit(d / "p", pkt);
  sh("cd " + d.str() + " && zstd -q -c p | zstd -q -c | zstd -q -c > z3");
  EXPECT_EQ(drain(*open_path(d / "z3").reader), pkt);
  expect_error<FormatError>([&] { open_path(d / "z3", options([](auto& o) { o.max_depth = 2; })); },
                            {"z3", "more than 2 encoding layers"});
  sh("cd " + d.str() + " && echo 'just some text' | zstd -q -c > fspl-x.fspl");
  expect_error<FormatError>([&] { open_path(d / "fspl-x.fspl"); },
                            {"fspl-x.fspl", "zstd <", "not a packet", "6a 75 73 74"});
}

TEST(DecodeZstd, ThroughAPipe) {
  DecodeDir d;
  Bytes pkt = fake_packet(30000);
  spit(d / "p", pkt);
  sh("zstd -q -c " + d / "p" + " > " + d / "z");
  Bytes z = slurp(d / "z");
  ASSERT_LT(z.size(), 60000u);
  Pipe p = make_pipe();
  write_all(p.write.get(), z, "pipe");
  p.write.reset();
  Decoded dec = open_decoded(std::move(p.read), "stdin", {});
  EXPECT_FALSE(dec.plain());
  EXPECT_EQ(drain(*dec.reader), pkt);
}

// ---------------------------------------------------------------- external

/// Any exited, unreaped child of this process? Other tests reap theirs.
bool has_zombie_child() {
  siginfo_t info{};
  return ::waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid != 0;
}

TEST(DecodeExternal, ZstdcatWithShellUnset) {
  ASSERT_FALSE(has_zombie_child()) << "an earlier test left a zombie";
  DecodeDir d;
  Bytes pkt = fake_packet(200000);
  spit(d / "p", pkt);
  sh("zstd -q -c " + d / "p" + " > " + d / "fspl-z.fspl");
  std::string saved = std::getenv("SHELL") ? std::getenv("SHELL") : "";
  ::unsetenv("SHELL");
  Decoded dec = open_path(d / "fspl-z.fspl", options([](auto& o) { o.external = "zstdcat"; }));
  if (!saved.empty()) ::setenv("SHELL", saved.c_str(), 1);
  EXPECT_FALSE(dec.plain());
  EXPECT_EQ(dec.reader->describe(), "decoder 'zstdcat' < fspl-z.fspl");
  EXPECT_EQ(drain(*dec.reader), pkt);
  EXPECT_FALSE(has_zombie_child()) << "the decoder was not reaped";
}

TEST(DecodeExternal, FailingDecoderFailsAtFinish) {
  DecodeDir d;
  spit(d / "fspl-f.fspl", fake_packet(100));
  auto r = make_external_reader(open_ro(d / "fspl-f.fspl"), "false", "fspl-f.fspl");
  Bytes buf(100);
  EXPECT_EQ(r->read(buf), 0u);
  expect_error<Error>([&] { r->finish(); }, {"fspl-f.fspl: decoder 'false' failed: exit status 1"});
  auto r2 = make_external_reader(open_ro(d / "fspl-f.fspl"), "cat; exit 3", "fspl-f.fspl");
  expect_error<Error>([&] { drain(*r2); }, {"failed: exit status 3"});
}

TEST(DecodeExternal, CancelUnblocksReadAndDestructorReaps) {
  DecodeDir d;
  spit(d / "j", fake_packet(100));
  auto r = make_external_reader(open_ro(d / "j"), "sleep 30; cat", "j");
  auto start = Clock::now();
  std::thread canceller([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    r->cancel();
  });
  Bytes buf(100);
  expect_error<Error>([&] { r->read(buf); }, {"cancelled"});
  canceller.join();
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(5));
  expect_error<Error>([&] { r->finish(); }, {"killed by signal 9"});

  auto r2 = make_external_reader(open_ro(d / "j"), "sleep 30", "j");
  start = Clock::now();
  r2.reset();
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(5));
  EXPECT_FALSE(has_zombie_child()) << "the destructor left a zombie";
}

// ---------------------------------------------------------------- OpenPGP

/// One throwaway GNUPGHOME for the suite: a key without passphrase that
/// signs with a subkey (so primary-fingerprint mapping is exercised), and a
/// key with a passphrase that unattended decryption must refuse.
class DecodeGpg : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new DecodeDir;
    home_ = *dir_ / "g";
    fs::create_directory(home_);
    fs::permissions(home_, fs::perms::owner_all);
    sh(gpg() + "--passphrase '' --quick-gen-key 'Test <t@example.invalid>' default default never");
    primary_ = fingerprints("t@example.invalid").at(0);
    sh(gpg() + "--passphrase '' --quick-add-key " + primary_ + " ed25519 sign never");
    signing_subkey_ = fingerprints("t@example.invalid").back();
    sh(gpg() +
       "--pinentry-mode loopback --passphrase secret --quick-gen-key "
       "'Locked <l@example.invalid>' default default never");
    // Forget any passphrase the agent cached while making the keys.
    sh("gpgconf --homedir " + home_ + " --kill gpg-agent");
  }
  static void TearDownTestSuite() {
    std::system(("gpgconf --homedir " + home_ + " --kill gpg-agent").c_str());
    delete dir_;
  }

  static std::string gpg() {
    return "gpg --homedir " + home_ + " --batch --yes --quiet --trust-model always ";
  }
  /// Fingerprints of the primary key and subkeys of `uid`, in order.
  static std::vector<std::string> fingerprints(const std::string& uid) {
    std::vector<std::string> out;
    std::istringstream in(run_capture(gpg() + "--with-colons --list-keys " + uid));
    for (std::string line; std::getline(in, line);) {
      if (line.rfind("fpr:", 0) == 0) out.push_back(line.substr(12, line.find(':', 12) - 12));
    }
    return out;
  }
  /// Encrypts `in` to `out` with extra gpg `flags` (e.g. "-s", "-a").
  static void encrypt(const std::string& in, const std::string& out, const std::string& flags,
                      const std::string& to = "t@example.invalid") {
    sh(gpg() + flags + " -u " + primary_ + " -e -r " + to + " -o " + out + " " + in);
  }
  static DecodeOptions opts() {
    DecodeOptions o;
    o.gnupg_home = home_;
    return o;
  }

  static inline DecodeDir* dir_;
  static inline std::string home_, primary_, signing_subkey_;
  DecodeDir d_;
};

TEST_F(DecodeGpg, SignedAndEncryptedRoundTripMapsSubkeyToPrimary) {
  Bytes pkt = fake_packet(700000);
  spit(d_ / "p", pkt);
  encrypt(d_ / "p", d_ / "fspl-s.fspl", "-s");
  ASSERT_NE(primary_, signing_subkey_);
  ASSERT_NE(run_capture(gpg() + "--status-fd 1 -d -o /dev/null " + d_ / "fspl-s.fspl 2>/dev/null")
                .find("VALIDSIG " + signing_subkey_),
            std::string::npos)
      << "gpg did not sign with the subkey: the mapping is not exercised";
  Decoded dec = open_path(d_ / "fspl-s.fspl", opts());
  EXPECT_EQ(dec.reader->describe(), "OpenPGP < fspl-s.fspl");
  EXPECT_EQ(drain(*dec.reader), pkt);
  auto sigs = dec.reader->signatures();
  ASSERT_EQ(sigs.size(), 1u);
  EXPECT_TRUE(sigs[0].good) << sigs[0].summary;
  EXPECT_EQ(sigs[0].fingerprint, primary_) << "subkey " << signing_subkey_;
}

TEST_F(DecodeGpg, ArmoredUnsignedHasNoSignatures) {
  Bytes pkt = fake_packet(50000);
  spit(d_ / "p", pkt);
  encrypt(d_ / "p", d_ / "a.asc", "-a");
  EXPECT_EQ(detect_encoding(slurp(d_ / "a.asc")), Encoding::OpenPgp);
  Decoded dec = open_path(d_ / "a.asc", opts());
  EXPECT_EQ(drain(*dec.reader), pkt);
  EXPECT_TRUE(dec.reader->signatures().empty());
}

TEST_F(DecodeGpg, ZstdInsideOpenPgpThroughAutoDetection) {
  Bytes pkt = fake_packet(400000);
  spit(d_ / "p", pkt);
  sh("zstd -q -c " + d_ / "p" + " > " + d_ / "p.zst");
  encrypt(d_ / "p.zst", d_ / "fspl-2.fspl", "-s");
  Decoded dec = open_path(d_ / "fspl-2.fspl", opts());
  EXPECT_FALSE(dec.plain());
  EXPECT_EQ(dec.reader->describe(), "zstd < OpenPGP < fspl-2.fspl");
  EXPECT_EQ(drain(*dec.reader, 65536), pkt);
  auto sigs = dec.reader->signatures();  // seen through the zstd stage
  ASSERT_EQ(sigs.size(), 1u);
  EXPECT_EQ(sigs[0].fingerprint, primary_);
}

TEST_F(DecodeGpg, TruncatedAndTamperedMessagesFail) {
  spit(d_ / "p", fake_packet(300000));
  encrypt(d_ / "p", d_ / "e", "-s");
  Bytes e = slurp(d_ / "e");
  spit(d_ / "fspl-t.fspl", Bytes(e.begin(), e.begin() + e.size() * 2 / 3));
  expect_error<FormatError>([&] { drain(*open_path(d_ / "fspl-t.fspl", opts()).reader); },
                            {"fspl-t.fspl: OpenPGP: "});
  Bytes bad = e;
  bad[bad.size() / 2] ^= std::byte{0x10};
  spit(d_ / "fspl-x.fspl", bad);
  expect_error<FormatError>([&] { drain(*open_path(d_ / "fspl-x.fspl", opts()).reader); },
                            {"fspl-x.fspl: OpenPGP: "});
}

TEST_F(DecodeGpg, MissingSecretKeyIsAnError) {
  spit(d_ / "p", fake_packet(1000));
  encrypt(d_ / "p", d_ / "fspl-k.fspl", "");
  std::string empty = d_ / "h";
  fs::create_directory(empty);
  fs::permissions(empty, fs::perms::owner_all);
  DecodeOptions o;
  o.gnupg_home = empty;
  expect_error<Error>([&] { drain(*open_path(d_ / "fspl-k.fspl", o).reader); },
                      {"fspl-k.fspl: OpenPGP: ", "No secret key"});
  std::system(("gpgconf --homedir " + empty + " --kill gpg-agent").c_str());
}

TEST_F(DecodeGpg, PassphraseKeyIsAClearErrorNotAPrompt) {
  spit(d_ / "p", fake_packet(1000));
  encrypt(d_ / "p", d_ / "fspl-l.fspl", "", "l@example.invalid");
  auto start = Clock::now();
  expect_error<Error>([&] { drain(*open_path(d_ / "fspl-l.fspl", opts()).reader); },
                      {"fspl-l.fspl: OpenPGP: ", "passphrase"});
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(15));
}

TEST_F(DecodeGpg, CancelUnblocksAStalledRead) {
  spit(d_ / "p", fake_packet(2000000));
  encrypt(d_ / "p", d_ / "e", "-s");
  Bytes e = slurp(d_ / "e");
  Pipe p = make_pipe();
  // Part of the message, and the writer stays open: gpg waits for more.
  write_all(p.write.get(), std::span(e).first(32768), "pipe");
  auto r = make_gpg_reader(make_fd_reader(std::move(p.read), "stalled"), home_);
  auto start = Clock::now();
  Clock::duration cancel_took{};
  std::thread canceller([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    auto t = Clock::now();
    r->cancel();
    cancel_took = Clock::now() - t;
  });
  expect_error<Error>([&] { drain(*r, 1 << 20); }, {"stalled: OpenPGP: ", "cancelled"});
  canceller.join();
  EXPECT_GE(Clock::now() - start, std::chrono::milliseconds(250)) << "read did not block";
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(5));
  EXPECT_LT(cancel_took, std::chrono::seconds(5));
  r.reset();
}

TEST_F(DecodeGpg, SignedOnlyMessageNeedsAGoodSignature) {
  Bytes pkt = fake_packet(20000);
  spit(d_ / "p", pkt);
  for (std::string armor : {"", "-a "}) {
    sh(gpg() + armor + "-u " + primary_ + " -s -o " + d_ / "fspl-s.fspl " + d_ / "p");
    Decoded dec = open_path(d_ / "fspl-s.fspl", opts());
    EXPECT_EQ(drain(*dec.reader), pkt) << armor;
    auto sigs = dec.reader->signatures();
    ASSERT_EQ(sigs.size(), 1u) << armor;
    EXPECT_TRUE(sigs[0].good) << armor;
  }
  // No MDC protects a signed-only message: a signature we cannot check
  // (here: no public key) must fail the stream.
  std::string empty = d_ / "h";
  fs::create_directory(empty);
  fs::permissions(empty, fs::perms::owner_all);
  DecodeOptions o;
  o.gnupg_home = empty;
  expect_error<FormatError>([&] { drain(*open_path(d_ / "fspl-s.fspl", o).reader); },
                            {"fspl-s.fspl: OpenPGP: signed-only message without a good signature"});
  std::system(("gpgconf --homedir " + empty + " --kill gpg-agent").c_str());
}

/// Counts the bytes taken from the reader below it.
class CountingReader : public Reader {
 public:
  CountingReader(std::unique_ptr<Reader> inner, std::shared_ptr<std::atomic<size_t>> count)
      : inner_(std::move(inner)), count_(std::move(count)) {}
  size_t read(std::span<std::byte> buf) override {
    size_t n = inner_->read(buf);
    *count_ += n;
    return n;
  }
  void finish() override { inner_->finish(); }
  void cancel() override { inner_->cancel(); }
  std::string describe() const override { return inner_->describe(); }

 private:
  std::unique_ptr<Reader> inner_;
  std::shared_ptr<std::atomic<size_t>> count_;
};

/// Processes running `gpg ... --decrypt` on `home`, by /proc.
int gpg_decrypts_running(const std::string& home) {
  int n = 0;
  for (const auto& e : fs::directory_iterator("/proc")) {
    std::ifstream f(e.path() / "cmdline", std::ios::binary);
    std::string cmd((std::istreambuf_iterator<char>(f)), {});
    if (fs::path(cmd.substr(0, cmd.find('\0'))).filename() != "gpg") continue;
    if (cmd.find(home) != std::string::npos && cmd.find("--decrypt") != std::string::npos) ++n;
  }
  return n;
}

/// Children of this process (any thread) that are zombies.
int zombie_children() {
  int n = 0;
  for (const auto& t : fs::directory_iterator("/proc/self/task")) {
    std::ifstream kids(t.path() / "children");
    for (pid_t pid; kids >> pid;) {
      std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
      std::string line;
      std::getline(stat, line);
      size_t paren = line.rfind(')');
      if (paren != std::string::npos && line.size() > paren + 2 && line[paren + 2] == 'Z') ++n;
    }
  }
  return n;
}

// A queue scan reads only a packet's header and then drops the reader: gpg
// must stop there, not decrypt the rest, and the context it used must work
// for the next message.
TEST_F(DecodeGpg, DroppedReaderStopsGpgEarlyAndTheNextMessageDecodes) {
  Bytes pkt = fake_packet(16 << 20);
  spit(d_ / "p", pkt);
  encrypt(d_ / "p", d_ / "big", "-z 0");  // uncompressed: ciphertext ~ plaintext
  const size_t size = fs::file_size(d_ / "big");
  ASSERT_GT(size, size_t{16} << 20);
  for (int round = 0; round < 3; ++round) {
    auto count = std::make_shared<std::atomic<size_t>>(0);
    auto r = make_gpg_reader(
        std::make_unique<CountingReader>(make_fd_reader(open_ro(d_ / "big"), "big"), count), home_);
    Bytes head(4096);
    for (size_t got = 0; got < head.size();) {
      size_t n = r->read(std::span(head).subspan(got));
      ASSERT_GT(n, 0u);
      got += n;
    }
    EXPECT_TRUE(std::equal(head.begin(), head.end(), pkt.begin()));
    r.reset();
    // The ring, GPGME's buffers, two pipes and gpg's own buffers: a few
    // hundred KiB, nowhere near the whole message.
    EXPECT_LT(count->load(), size_t{4} << 20) << "round " << round << " of " << size;
  }
  EXPECT_EQ(zombie_children(), 0);
  // gpg sees its pipes closed and exits; wait for that rather than time it.
  for (int i = 0; i < 600 && gpg_decrypts_running(home_) > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(gpg_decrypts_running(home_), 0) << "gpg kept running after the reader was dropped";
  Decoded dec = open_path(d_ / "big", opts());
  EXPECT_EQ(drain(*dec.reader, 1 << 20), pkt);
}

/// What reading a whole stream gives: its bytes and signatures, or the
/// message of the error it ended with.
struct Outcome {
  Bytes bytes;
  std::vector<std::string> sigs;  ///< "fingerprint good summary"
  std::string error;
};

Outcome read_outcome(const std::function<Decoded()>& open) {
  Outcome o;
  try {
    Decoded dec = open();
    o.bytes = drain(*dec.reader, 7000);
    for (const auto& s : dec.reader->signatures()) {
      o.sigs.push_back(s.fingerprint + (s.good ? " good " : " bad ") + s.summary);
    }
  } catch (const Error& e) {
    o.error = e.what();
  }
  return o;
}

// Many small encrypted packets are decrypted by one gpg for a scan; their
// readers must give exactly what a reader of each file alone gives: the
// same bytes, signatures and errors, for good messages and bad ones.
TEST_F(DecodeGpg, BatchGivesWhatSingleReadersGive) {
  std::vector<std::string> names;
  auto add = [&](const std::string& name, size_t size, const std::string& how) {
    spit(d_ / "p", fake_packet(size, static_cast<uint32_t>(names.size() + 7)));
    if (how == "plain") {
      sh("cp " + d_ / "p" + " " + d_ / name);
    } else if (how == "zstd") {
      sh("zstd -q -c " + d_ / "p" + " > " + d_ / name);
    } else if (how == "zstd+gpg") {
      sh("zstd -q -c " + d_ / "p" + " > " + d_ / "p.zst");
      encrypt(d_ / "p.zst", d_ / name, "-s");
    } else if (how == "locked") {
      encrypt(d_ / "p", d_ / name, "", "l@example.invalid");
    } else if (how == "truncated") {
      encrypt(d_ / "p", d_ / "e", "-s");
      Bytes e = slurp(d_ / "e");
      spit(d_ / name, Bytes(e.begin(), e.begin() + e.size() * 2 / 3));
    } else {
      encrypt(d_ / "p", d_ / name, how);
    }
    names.push_back(name);
  };
  add("fspl-1.fspl", 600, "-s");
  add("fspl-2.fspl", 900, "");
  add("fspl-3.fspl", 5000, "zstd+gpg");
  add("fspl-4.fspl", 700, "plain");
  add("fspl-5.fspl", 800, "locked");
  add("fspl-6.fspl", 300000, "-s");  // batched; its plaintext outgrows the head
  add("fspl-7.fspl", 4000, "-s");
  add("fspl-8.fspl", 100000, "truncated");
  add("fspl-9.fspl", 700, "zstd");
  add("fspl-10.fspl", kBatchMaxFileSize + 1000, "-z 0");  // too big for the batch
  add("fspl-11.fspl", 1000, "");
  const Bytes last = fake_packet(1000, static_cast<uint32_t>(names.size() - 1 + 7));
  const size_t distinct = names.size();
  // More than one gpg run's worth (128), the same small message again.
  for (int i = 12; i < 135; ++i) {
    names.push_back("fspl-" + std::to_string(i) + ".fspl");
    fs::copy_file(d_ / "fspl-11.fspl", d_ / names.back());
  }

  // The batch itself: every small good message came out of it.
  std::vector<Fd> fds;
  std::vector<int> raw;
  for (const auto& n : names) {
    fds.push_back(open_ro(d_ / n));
    raw.push_back(fds.back().get());
  }
  auto heads = openpgp_heads(raw, home_, kBatchHeadBytes);
  ASSERT_EQ(heads.size(), names.size());
  for (size_t i : {0u, 1u, 2u, 5u, 6u, 10u, 11u, 133u}) {
    EXPECT_FALSE(heads[i].empty()) << names[i] << " was not decrypted by the batch";
  }
  EXPECT_EQ(heads[5].size(), kBatchHeadBytes);
  EXPECT_TRUE(heads[4].empty()) << "needs a passphrase";
  EXPECT_TRUE(heads[3].empty()) << "not OpenPGP";

  std::vector<BatchFile> files;
  for (const auto& n : names) files.push_back({open_ro(d_ / n), n});
  DecodeBatch batch(std::move(files), opts());
  ASSERT_EQ(batch.size(), names.size());
  for (size_t i = distinct; i < names.size(); ++i) {  // the copies: their heads only
    Decoded dec = batch.open(i);
    Bytes head(600);
    for (size_t got = 0; got < head.size();) {
      size_t n = dec.reader->read(std::span(head).subspan(got));
      ASSERT_GT(n, 0u) << names[i];
      got += n;
    }
    EXPECT_TRUE(std::equal(head.begin(), head.end(), last.begin())) << names[i];
  }
  for (size_t i = 0; i < distinct; ++i) {
    SCOPED_TRACE(names[i]);
    Outcome alone = read_outcome([&] { return open_path(d_ / names[i], opts()); });
    Outcome batched = read_outcome([&] { return batch.open(i); });
    EXPECT_EQ(batched.error, alone.error);
    EXPECT_EQ(batched.sigs, alone.sigs);
    EXPECT_TRUE(batched.bytes == alone.bytes);
  }
  EXPECT_EQ(zombie_children(), 0);
}

// A head that is not what gpg writes is caught when the reader goes past it.
TEST_F(DecodeGpg, HeadReaderChecksTheHeadAgainstGpg) {
  Bytes pkt = fake_packet(50000);
  spit(d_ / "p", pkt);
  encrypt(d_ / "p", d_ / "fspl-h.fspl", "");
  Bytes head(pkt.begin(), pkt.begin() + 1000);
  auto good = make_gpg_head_reader(open_ro(d_ / "fspl-h.fspl"), "fspl-h.fspl", head, home_);
  EXPECT_EQ(good->describe(), "OpenPGP < fspl-h.fspl");
  EXPECT_TRUE(drain(*good) == pkt);
  head[500] ^= std::byte{1};
  auto bad = make_gpg_head_reader(open_ro(d_ / "fspl-h.fspl"), "fspl-h.fspl", head, home_);
  expect_error<FormatError>([&] { drain(*bad); },
                            {"fspl-h.fspl: OpenPGP: the message changed while it was read"});
}
