// SPDX-License-Identifier: GPL-3.0-or-later
// The "safespool" metadata entry (see src/packet_ext.hpp).
#include "packet_ext.hpp"

#include <cctype>

#include "safespool/digest.hpp"
#include "safespool/error.hpp"

namespace safespool {
namespace {

[[noreturn]] void bad(const std::string& why) {
  throw FormatError("malformed metadata: \"safespool\" entry: " + why);
}

// ---- writing: fixed widths

void put_str(std::string& out, std::string_view s) {
  if (s.size() < 32) {
    out.push_back(static_cast<char>(0xa0 | s.size()));
  } else {
    out.push_back(static_cast<char>(0xd9));  // str 8: hashes (64) and longer keys
    out.push_back(static_cast<char>(s.size()));
  }
  out.append(s);
}

void put_u64(std::string& out, uint64_t v) {
  out.push_back(static_cast<char>(0xcf));
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

void put_header(std::string& out, uint8_t fix, size_t n) {
  out.push_back(static_cast<char>(fix | n));  // at most 15 entries here
}

// ---- reading

std::string read_hash(msgpack::Cursor& c, const char* what) {
  std::string h = c.read_str();
  if (h.size() != 64 || !is_sha256_hex(h)) bad(std::string(what) + " is not a SHA-256 in hex");
  for (char& ch : h) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return h;
}

void read_part(msgpack::Cursor& c, PartInfo& p) {
  if (c.read_array_header() != 2) bad("part is not [index, count]");
  p.index = c.read_uint();
  p.count = c.read_uint();
  if (p.count == 0 || p.count > kMaxParts || p.index == 0 || p.index > p.count)
    bad("part " + std::to_string(p.index) + " of " + std::to_string(p.count) + " is out of range");
}

void read_supersedes(msgpack::Cursor& c, Meta& m) {
  if (c.read_array_header() != 2) bad("supersedes is not [seq, sha256]");
  Supersedes s;
  s.seq = c.read_uint();
  s.sha256 = read_hash(c, "supersedes");
  m.supersedes = std::move(s);
}

// One key of the entry; unknown keys are skipped (later minor additions).
void read_entry(msgpack::Cursor& c, const std::string& key, Meta& m, PartInfo& p, unsigned& seen) {
  if (key == "v") {
    uint64_t v = c.read_uint();
    if (v != kExtensionVersion) bad("unsupported version " + std::to_string(v));
    seen |= 1;
  } else if (key == "part") {
    read_part(c, p);
    seen |= 2;
  } else if (key == "size") {
    p.size = c.read_uint();
    seen |= 4;
  } else if (key == "sha256") {
    p.sha256 = read_hash(c, "sha256");
    seen |= 8;
  } else if (key == "job") {
    p.job = read_hash(c, "job");
    seen |= 16;
  } else if (key == "supersedes") {
    read_supersedes(c, m);
  } else if (key == "receipt") {
    m.receipt = c.read_uint() == 1;
  } else {
    c.skip();
  }
}

}  // namespace

void read_extension(msgpack::Cursor& c, Meta& m) {
  PartInfo p;
  unsigned seen = 0;
  for (uint32_t n = c.read_map_header(); n > 0; --n) {
    std::string key = c.read_str();
    read_entry(c, key, m, p, seen);
  }
  if (!(seen & 1)) bad("no version");
  const unsigned part_keys = seen & (2 | 4 | 8 | 16);
  if (part_keys == (2 | 4 | 8 | 16))
    m.part = std::move(p);
  else if (part_keys != 0)
    bad("a part needs part, size, sha256 and job");
}

void append_extension(std::string& out, const Meta& m) {
  put_str(out, kExtensionKey);
  size_t entries = 1 + (m.part ? 4 : 0) + (m.supersedes ? 1 : 0) + (m.receipt ? 1 : 0);
  put_header(out, 0x80, entries);
  put_str(out, "v");
  put_u64(out, kExtensionVersion);
  if (m.part) {
    put_str(out, "part");
    put_header(out, 0x90, 2);
    put_u64(out, m.part->index);
    put_u64(out, m.part->count);
    put_str(out, "size");
    put_u64(out, m.part->size);
    put_str(out, "sha256");
    put_str(out, m.part->sha256);
    put_str(out, "job");
    put_str(out, m.part->job);
  }
  if (m.supersedes) {
    put_str(out, "supersedes");
    put_header(out, 0x90, 2);
    put_u64(out, m.supersedes->seq);
    put_str(out, m.supersedes->sha256);
  }
  if (m.receipt) {
    put_str(out, "receipt");
    put_u64(out, 1);
  }
}

void check_extension(const Meta& m) {
  if (m.part && m.kind != JobKind::Fail)
    throw FormatError("malformed metadata: a part of a split job must be a Fail packet");
  if (m.part && m.supersedes)
    throw FormatError("malformed metadata: a part cannot supersede (the job inside does)");
}

}  // namespace safespool
