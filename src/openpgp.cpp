// SPDX-License-Identifier: GPL-3.0-or-later
// Reading the first packets of an OpenPGP message (see openpgp.hpp).
//
// Packet framing (RFC 4880 4.2): an old-format header is one byte (bit 7
// set, bit 6 clear, tag in bits 5-2, length type in bits 1-0: 1, 2 or 4
// length bytes, or 3 for "until the end"); a new-format one is one byte
// (bits 7 and 6 set, tag in bits 5-0) and a length of 1, 2 or 5 bytes, or
// a partial length (a power of two) for the first chunk of a streamed body.
#include "safespool/openpgp.hpp"

#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <optional>

namespace safespool::openpgp {
namespace {

using Bytes = std::span<const std::byte>;

constexpr int kTagPkesk = 1;
constexpr int kTagSignature = 2;
constexpr int kTagOnePass = 4;
constexpr int kTagCompressed = 8;
constexpr int kTagMarker = 10;
constexpr int kTagLiteral = 11;
/// Decompressed bytes looked at: one-pass packets are 15 bytes each.
constexpr size_t kInflateMax = 4096;

uint8_t at(Bytes b, size_t i) { return std::to_integer<uint8_t>(b[i]); }

struct Header {
  int tag = 0;
  size_t header_len = 0;
  size_t body_len = 0;  ///< of the body, or of its first chunk when partial
  bool to_end = false;  ///< old format, indeterminate length
};

/// The header at the start of `b`; nullopt when incomplete or malformed.
std::optional<Header> parse_header(Bytes b) {
  if (b.empty() || !(at(b, 0) & 0x80)) return std::nullopt;
  Header h;
  uint8_t c = at(b, 0);
  if (!(c & 0x40)) {  // old format
    h.tag = (c >> 2) & 0x0f;
    int type = c & 3;
    if (type == 3) return h.header_len = 1, h.to_end = true, h;
    size_t n = size_t{1} << type;
    if (b.size() < 1 + n) return std::nullopt;
    for (size_t i = 0; i < n; ++i) h.body_len = h.body_len << 8 | at(b, 1 + i);
    h.header_len = 1 + n;
    return h;
  }
  h.tag = c & 0x3f;
  if (b.size() < 2) return std::nullopt;
  uint8_t l0 = at(b, 1);
  if (l0 < 192) return h.header_len = 2, h.body_len = l0, h;
  if (l0 < 224) {
    if (b.size() < 3) return std::nullopt;
    return h.header_len = 3, h.body_len = ((l0 - 192) << 8) + at(b, 2) + 192, h;
  }
  if (l0 == 255) {
    if (b.size() < 6) return std::nullopt;
    h.body_len = size_t{at(b, 2)} << 24 | size_t{at(b, 3)} << 16 | at(b, 4) << 8 | at(b, 5);
    return h.header_len = 6, h;
  }
  return h.header_len = 2, h.body_len = size_t{1} << (l0 & 0x1f), h;  // partial
}

std::string hex_id(Bytes b) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (std::byte x : b) {
    out.push_back(kHex[std::to_integer<uint8_t>(x) >> 4]);
    out.push_back(kHex[std::to_integer<uint8_t>(x) & 15]);
  }
  return out;
}

/// The issuer key id of a signature packet body (v3, or a v4 issuer /
/// issuer-fingerprint subpacket); "" when it names none.
std::string signature_issuer(Bytes body) {
  if (body.size() >= 15 && at(body, 0) == 3) return hex_id(body.subspan(7, 8));
  if (body.size() < 6 || at(body, 0) != 4) return {};
  size_t pos = 4;
  for (int area = 0; area < 2 && pos + 2 <= body.size(); ++area) {
    size_t len = size_t{at(body, pos)} << 8 | at(body, pos + 1);
    pos += 2;
    Bytes sub = body.subspan(pos, std::min(len, body.size() - pos));
    for (size_t i = 0; i < sub.size();) {
      size_t n = at(sub, i), hl = 1;
      if (n >= 192 && n < 255 && i + 1 < sub.size())
        n = ((n - 192) << 8) + at(sub, i + 1) + 192, hl = 2;
      if (n == 255) break;  // five-octet lengths: no issuer is that long
      if (n == 0 || i + hl + n > sub.size()) break;
      uint8_t type = at(sub, i + hl) & 0x7f;
      Bytes data = sub.subspan(i + hl + 1, n - 1);
      if (type == 16 && data.size() == 8) return hex_id(data);
      if (type == 33 && data.size() == 21) return hex_id(data.subspan(13, 8));
      i += hl + n;
    }
    pos += len;
  }
  return {};
}

/// The first `kInflateMax` bytes of a compressed packet's body, or nullopt.
std::optional<std::vector<std::byte>> inflate_start(Bytes body, std::string& why) {
  if (body.empty()) return why = "compressed packet cut short", std::nullopt;
  int algo = at(body, 0);
  Bytes data = body.subspan(1);
  if (algo == 0) return std::vector<std::byte>(data.begin(), data.end());
  if (algo != 1 && algo != 2)
    return why = "compression algorithm " + std::to_string(algo), std::nullopt;
  z_stream z{};
  if (inflateInit2(&z, algo == 1 ? -15 : 15) != Z_OK) return why = "zlib", std::nullopt;
  std::vector<std::byte> out(kInflateMax);
  z.next_in = reinterpret_cast<Bytef*>(const_cast<std::byte*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  int rc = inflate(&z, Z_SYNC_FLUSH);
  out.resize(out.size() - z.avail_out);
  inflateEnd(&z);
  if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR)
    return why = "compressed data is corrupt", std::nullopt;
  return out;
}

Announcement unknown(std::string why) { return {Announcement::Kind::Unknown, {}, std::move(why)}; }

Announcement walk(Bytes b, int depth) {
  Announcement a{Announcement::Kind::Signers, {}, {}};
  while (!b.empty()) {
    auto h = parse_header(b);
    if (!h) return unknown("not an OpenPGP packet, or cut short");
    Bytes body = b.subspan(h->header_len);
    if (!h->to_end) body = body.first(std::min(h->body_len, body.size()));
    if (h->tag == kTagLiteral) {
      if (a.key_ids.empty()) a.kind = Announcement::Kind::NoSignature;
      return a;
    }
    if (h->tag == kTagOnePass) {
      if (body.size() < 13 || at(body, 0) != 3) return unknown("an unknown one-pass signature");
      a.key_ids.push_back(hex_id(body.subspan(4, 8)));
    } else if (h->tag == kTagSignature) {
      std::string issuer = signature_issuer(body);
      a.key_ids.push_back(issuer.empty() ? std::string(16, '0') : issuer);
    } else if (h->tag == kTagCompressed) {
      if (!a.key_ids.empty()) return a;
      if (depth > 1) return unknown("compressed packets nested too deep");
      std::string why;
      auto inner = inflate_start(body, why);
      if (!inner) return unknown(why);
      return walk(*inner, depth + 1);
    } else if (h->tag != kTagMarker) {
      return unknown("packet type " + std::to_string(h->tag) + " before the literal data");
    }
    if (h->to_end || h->header_len + h->body_len > b.size()) break;
    b = b.subspan(h->header_len + h->body_len);
  }
  return a.key_ids.empty() ? unknown("the message ends before its literal data") : a;
}

}  // namespace

std::vector<std::string> recipients(std::span<const std::byte> head) {
  std::vector<std::string> out;
  for (Bytes b = head; !b.empty();) {
    auto h = parse_header(b);
    if (!h || h->to_end || h->tag != kTagPkesk) break;
    Bytes body = b.subspan(h->header_len);
    if (body.size() < 9 || h->body_len < 9) break;
    if (at(body, 0) == 3) out.push_back(hex_id(body.subspan(1, 8)));
    if (h->header_len + h->body_len > b.size()) break;
    b = b.subspan(h->header_len + h->body_len);
  }
  return out;
}

Announcement announced_signers(std::span<const std::byte> head) { return walk(head, 0); }

std::string key_id_of(const std::string& fingerprint) {
  std::string id = fingerprint.size() >= 16 ? fingerprint.substr(fingerprint.size() - 16) : "";
  std::transform(id.begin(), id.end(), id.begin(), [](unsigned char c) { return std::toupper(c); });
  return id;
}

}  // namespace safespool::openpgp
