// SPDX-License-Identifier: GPL-3.0-or-later
// Decode stages: detection, the plain file stage, and the auto-detecting
// stack builder. The zstd, OpenPGP and external stages live in their own
// files; see docs/design/decoding.md.
//
// A plain packet in a regular file is the fast path: the file itself becomes
// the consumer's stdin, so detection must not move its offset (pread) and
// the reader must never read past what the header reader asks for.
#include "safespool/decode.hpp"

#include <fcntl.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "prefix_reader.hpp"
#include "safespool/digest.hpp"
#include "safespool/error.hpp"

namespace safespool {
namespace {

/// Bytes looked at to guess an encoding: the 12-byte packet tag and the
/// 15-byte armor line both fit.
constexpr size_t kPeekSize = 16;

bool starts_with(std::span<const std::byte> head, std::string_view s) {
  return head.size() >= s.size() && std::memcmp(head.data(), s.data(), s.size()) == 0;
}

bool is_zstd_magic(std::span<const std::byte> head) {
  if (head.size() < 4) return false;
  auto b = [&](size_t i) { return std::to_integer<uint8_t>(head[i]); };
  uint32_t le = b(0) | b(1) << 8 | b(2) << 16 | uint32_t(b(3)) << 24;
  return le == 0xFD2FB528u || (le & 0xFFFFFFF0u) == 0x184D2A50u;
}

/// The packet tag of an OpenPGP packet header byte (new or old format).
int openpgp_tag(uint8_t b) { return (b & 0x40) ? (b & 0x3f) : ((b >> 2) & 0x0f); }

bool is_openpgp_tag(uint8_t b) {
  if (!(b & 0x80)) return false;
  int tag = openpgp_tag(b);
  // PKESK, SKESK (encrypted), compressed, one-pass signature, signature,
  // literal data (what an encrypted, unsigned message unwraps to).
  return tag == 1 || tag == 3 || tag == 8 || tag == 4 || tag == 2 || tag == 11;
}

/// "1f 8b 08 00 ..." for messages.
std::string hex_head(std::span<const std::byte> head) {
  if (head.empty()) return "none, the stream is empty";
  std::string out;
  char buf[4];
  for (std::byte b : head) {
    std::snprintf(buf, sizeof buf, "%02x", std::to_integer<unsigned>(b));
    if (!out.empty()) out += ' ';
    out += buf;
  }
  if (head.size() >= kPeekSize) out += " ...";
  return out;
}

/// Reads a file descriptor. On anything but a regular file, a read may
/// block for ever (a stalled pipe), so it polls an eventfd that cancel()
/// signals.
class FdReader : public Reader {
 public:
  FdReader(Fd fd, std::string name, std::shared_ptr<FileDigest> digest)
      : fd_(std::move(fd)), name_(std::move(name)) {
    struct stat st {};
    if (::fstat(fd_.get(), &st) != 0) throw_errno("cannot stat " + name_);
    if (!S_ISREG(st.st_mode)) {
      cancel_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
      if (!cancel_) throw_errno("cannot create eventfd for " + name_);
    } else if (digest) {
      off_t at = ::lseek(fd_.get(), 0, SEEK_CUR);
      if (at < 0) throw_errno("cannot seek " + name_);
      digest_ = std::move(digest);
      at_ = static_cast<uint64_t>(at);
    }
  }

  size_t read(std::span<std::byte> buf) override {
    if (buf.empty()) return 0;
    for (;;) {
      if (cancel_) wait_readable();
      ssize_t n = ::read(fd_.get(), buf.data(), buf.size());
      if (n > 0 && digest_) {
        digest_->feed(at_, buf.first(static_cast<size_t>(n)));
        at_ += static_cast<uint64_t>(n);
      }
      if (n >= 0) return static_cast<size_t>(n);
      if (errno != EINTR && errno != EAGAIN) throw_errno("cannot read " + name_);
    }
  }

  void finish() override {}

  void cancel() override {
    cancelled_ = true;
    if (cancel_) {
      uint64_t one = 1;
      [[maybe_unused]] ssize_t n = ::write(cancel_.get(), &one, sizeof one);
    }
  }

  std::string describe() const override { return name_; }

  std::optional<SourcePosition> position() const override {
    struct stat st {};
    if (cancel_ || ::fstat(fd_.get(), &st) != 0) return std::nullopt;  // not a regular file
    off_t at = ::lseek(fd_.get(), 0, SEEK_CUR);
    if (at < 0) return std::nullopt;
    return SourcePosition{static_cast<uint64_t>(at), static_cast<uint64_t>(st.st_size)};
  }

 private:
  void wait_readable() {
    pollfd p[2] = {{fd_.get(), POLLIN, 0}, {cancel_.get(), POLLIN, 0}};
    while (::poll(p, 2, -1) < 0) {
      if (errno != EINTR) throw_errno("cannot poll " + name_);
    }
    if (cancelled_) throw Error(name_ + ": reading was cancelled");
  }

  Fd fd_;
  std::string name_;
  Fd cancel_;
  std::atomic<bool> cancelled_{false};
  std::shared_ptr<FileDigest> digest_;  ///< regular files: fed what read() returns
  uint64_t at_ = 0;                     ///< the offset of the next read()
};

/// Peeks a regular file without moving its offset.
std::vector<std::byte> pread_head(int fd, const std::string& name) {
  off_t at = ::lseek(fd, 0, SEEK_CUR);
  if (at < 0) throw_errno("cannot seek " + name);
  std::vector<std::byte> head(kPeekSize);
  head.resize(read_full(fd, head, name, static_cast<uint64_t>(at)));
  return head;
}

bool is_regular(int fd, const std::string& name) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw_errno("cannot stat " + name);
  return S_ISREG(st.st_mode);
}

std::unique_ptr<Reader> apply_stage(Encoding e, std::unique_ptr<Reader> r,
                                    const DecodeOptions& opts) {
  if (e == Encoding::Zstd) return make_zstd_reader(std::move(r));
  return make_gpg_reader(std::move(r), opts.gnupg_home, opts.unwrap);
}

[[noreturn]] void throw_not_a_packet(const std::string& name, std::span<const std::byte> head,
                                     const Reader* stages) {
  if (!stages) {
    throw FormatError(name + ": not a packet (first bytes: " + hex_head(head) +
                      "); if it is encoded, try --decoder");
  }
  throw FormatError(name + ": decoded by " + stages->describe() +
                    " is not a packet (first bytes: " + hex_head(head) + ")");
}

/// Peeks the stream `r` (after `depth` stages) and keeps the peeked bytes
/// in front of it; throws when they are nothing we know.
std::unique_ptr<Reader> peek_layer(std::unique_ptr<Reader> r, const std::string& name,
                                   Encoding& e) {
  const Reader* stages = r.get();
  auto p = std::make_unique<PrefixReader>(std::move(r));
  std::span<const std::byte> head = p->peek(kPeekSize);
  e = detect_encoding(head);
  if (e == Encoding::Unknown) throw_not_a_packet(name, head, stages);
  return p;
}

/// Applies stages to `r`, whose next layer is `e`, until the packet tag
/// shows.
std::unique_ptr<Reader> peel(std::unique_ptr<Reader> r, Encoding e, int depth,
                             const std::string& name, const DecodeOptions& opts) {
  for (; e != Encoding::Packet; ++depth) {
    if (depth >= opts.max_depth) {
      throw FormatError(name + ": more than " + std::to_string(opts.max_depth) +
                        " encoding layers (next: " + encoding_name(e) + ")");
    }
    r = peek_layer(apply_stage(e, std::move(r), opts), name, e);
  }
  return r;
}

/// --decode auto: peel stages off until the packet tag shows.
Decoded open_auto(Fd file, const std::string& name, const DecodeOptions& opts,
                  std::shared_ptr<FileDigest> digest) {
  const int fd = file.get();
  std::unique_ptr<Reader> r = make_fd_reader(std::move(file), name, digest);
  Encoding e;
  if (!is_regular(fd, name)) {
    // A pipe: the peeked bytes are consumed and kept in front of it.
    auto p = std::make_unique<PrefixReader>(std::move(r));
    std::span<const std::byte> head = p->peek(kPeekSize);
    e = detect_encoding(head);
    if (e == Encoding::Unknown) throw_not_a_packet(name, head, nullptr);
    return Decoded{peel(std::move(p), e, 0, name, opts)};
  }
  std::vector<std::byte> head = pread_head(fd, name);
  e = detect_encoding(head);
  if (e == Encoding::Unknown) throw_not_a_packet(name, head, nullptr);
  if (e == Encoding::Packet) return Decoded{std::move(r), fd};
  return Decoded{peel(std::move(r), e, 0, name, opts)};
}

/// Whether a DecodeBatch decrypts `fd` with the others: a small regular
/// file that starts with an OpenPGP session key packet (binary: armor needs
/// more than the peeked bytes to tell).
bool batchable(int fd, const std::string& name) {
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return false;
  if (static_cast<uint64_t>(st.st_size) > kBatchMaxFileSize) return false;
  std::vector<std::byte> head = pread_head(fd, name);
  return detect_encoding(head) == Encoding::OpenPgp && openpgp_encrypted(head).value_or(false);
}

}  // namespace

size_t read_exact(Reader& in, std::span<std::byte> buf) {
  size_t got = 0;
  while (got < buf.size()) {
    size_t n = in.read(buf.subspan(got));
    if (n == 0) break;
    got += n;
  }
  return got;
}

std::span<const std::byte> PrefixReader::peek(size_t n) {
  const size_t held = prefix_.size();
  if (held < n) {
    prefix_.resize(n);
    prefix_.resize(held + read_exact(*inner_, std::span(prefix_).subspan(held)));
  }
  return std::span(prefix_).subspan(pos_);
}

size_t PrefixReader::read(std::span<std::byte> buf) {
  if (pos_ < prefix_.size() && !buf.empty()) {
    size_t n = std::min(buf.size(), prefix_.size() - pos_);
    std::memcpy(buf.data(), prefix_.data() + pos_, n);
    pos_ += n;
    if (pos_ == prefix_.size()) {  // all served: its memory can go
      prefix_ = {};
      pos_ = 0;
    }
    return n;
  }
  return inner_->read(buf);
}

Encoding detect_encoding(std::span<const std::byte> head) {
  if (starts_with(head, "*FILESPOOLER")) return Encoding::Packet;
  if (is_zstd_magic(head)) return Encoding::Zstd;
  if (starts_with(head, "-----BEGIN PGP ")) return Encoding::OpenPgp;
  if (!head.empty() && is_openpgp_tag(std::to_integer<uint8_t>(head[0]))) return Encoding::OpenPgp;
  return Encoding::Unknown;
}

std::optional<bool> openpgp_encrypted(std::span<const std::byte> head) {
  std::string_view s(reinterpret_cast<const char*>(head.data()), head.size());
  if (!starts_with(head, "-----BEGIN PGP ")) {
    if (s.empty()) return std::nullopt;
    return openpgp_tag(std::to_integer<uint8_t>(head[0])) == 1 ||
           openpgp_tag(std::to_integer<uint8_t>(head[0])) == 3;
  }
  // Armor: header lines, an empty line, then base64 of the binary message.
  size_t body = s.find("\n\n");
  size_t crlf = s.find("\r\n\r\n");
  if (crlf != std::string_view::npos && crlf < body)
    body = crlf + 4;
  else if (body != std::string_view::npos)
    body += 2;
  if (body == std::string_view::npos || s.size() < body + 2) return std::nullopt;
  constexpr std::string_view kB64 =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t hi = kB64.find(s[body]), lo = kB64.find(s[body + 1]);
  if (hi == std::string_view::npos || lo == std::string_view::npos) return false;
  uint8_t first = static_cast<uint8_t>(hi << 2 | lo >> 4);
  return openpgp_tag(first) == 1 || openpgp_tag(first) == 3;
}

const char* encoding_name(Encoding e) {
  switch (e) {
    case Encoding::Packet:
      return "packet";
    case Encoding::Zstd:
      return "zstd";
    case Encoding::OpenPgp:
      return "OpenPGP";
    case Encoding::Unknown:
      break;
  }
  return "unknown";
}

std::unique_ptr<Reader> make_fd_reader(Fd fd, std::string name,
                                       std::shared_ptr<FileDigest> digest) {
  return std::make_unique<FdReader>(std::move(fd), std::move(name), std::move(digest));
}

Decoded open_decoded(Fd file, const std::string& name, const DecodeOptions& opts,
                     std::shared_ptr<FileDigest> digest) {
  if (opts.external) return Decoded{make_external_reader(std::move(file), *opts.external, name)};
  switch (opts.mode) {
    case DecodeMode::Auto:
      return open_auto(std::move(file), name, opts, digest);
    case DecodeMode::Zstd:
      return Decoded{make_zstd_reader(make_fd_reader(std::move(file), name, digest))};
    case DecodeMode::Gpg:
      return Decoded{make_gpg_reader(make_fd_reader(std::move(file), name, digest), opts.gnupg_home,
                                     opts.unwrap)};
    case DecodeMode::None:
      break;
  }
  // Only a regular file can be the consumer's stdin: a pipe would be one
  // that another process writes into (see the hand-off invariant).
  const int fd = file.get();
  const bool regular = is_regular(fd, name);
  return Decoded{make_fd_reader(std::move(file), name, digest), regular ? fd : -1};
}

Decoded open_decoded(std::unique_ptr<Reader> stream, const std::string& name,
                     const DecodeOptions& opts) {
  if (opts.external)
    throw FormatError(name + ": a split job is decoded by the built-in stages, not by --decoder");
  switch (opts.mode) {
    case DecodeMode::Auto: {
      Encoding e = Encoding::Unknown;
      std::unique_ptr<Reader> r = peek_layer(std::move(stream), name, e);
      return Decoded{peel(std::move(r), e, 0, name, opts)};
    }
    case DecodeMode::Zstd:
      return Decoded{make_zstd_reader(std::move(stream))};
    case DecodeMode::Gpg:
      return Decoded{make_gpg_reader(std::move(stream), opts.gnupg_home, opts.unwrap)};
    case DecodeMode::None:
      break;
  }
  return Decoded{std::move(stream)};
}

DecodeBatch::DecodeBatch(std::vector<BatchFile> files, DecodeOptions opts)
    : files_(std::move(files)), heads_(files_.size()), opts_(std::move(opts)) {
  std::vector<size_t> batched;
  std::vector<int> fds;
  if (!opts_.external && (opts_.mode == DecodeMode::Auto || opts_.mode == DecodeMode::Gpg)) {
    for (size_t i = 0; i < files_.size(); ++i) {
      try {
        if (!batchable(files_[i].file.get(), files_[i].name)) continue;
      } catch (const Error&) {
        continue;  // open() says what is wrong
      }
      batched.push_back(i);
      fds.push_back(files_[i].file.get());
    }
  }
  encrypted_ = fds.size();
  if (fds.empty()) return;
  try {
    auto heads = openpgp_heads(fds, opts_.gnupg_home, kBatchHeadBytes);
    for (size_t b = 0; b < batched.size(); ++b) heads_[batched[b]] = std::move(heads[b]);
  } catch (const Error& e) {
    // Each file on its own then; their readers report what is wrong.
    spdlog::debug("OpenPGP batch decryption not used: {}", e.what());
  }
}

Decoded DecodeBatch::open(size_t i) {
  auto& [file, name] = files_.at(i);
  if (!file) throw Error(name + ": opened twice from a batch");
  if (!heads_[i]) return open_decoded(std::move(file), name, opts_);
  auto r = make_gpg_head_reader(std::move(file), name, std::move(*heads_[i]), opts_.gnupg_home);
  heads_[i].reset();
  if (opts_.mode == DecodeMode::Auto) {
    Encoding e = Encoding::Unknown;
    r = peek_layer(std::move(r), name, e);
    r = peel(std::move(r), e, 1, name, opts_);
  }
  return Decoded{std::move(r)};
}

}  // namespace safespool
