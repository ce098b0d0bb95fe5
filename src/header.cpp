// SPDX-License-Identifier: GPL-3.0-or-later
// Reading a packet header from a (possibly decoded) stream.
#include <array>
#include <vector>

#include "safespool/decode.hpp"
#include "safespool/error.hpp"
#include "safespool/packet.hpp"

namespace safespool {

Meta read_header(Reader& in, const std::string& name, std::string* raw) {
  auto fail = [&](const std::string& why) { return FormatError(name + ": " + why); };
  std::array<std::byte, kPrefixSize> prefix_bytes;
  size_t got = read_exact(in, prefix_bytes);
  if (got == 0) throw fail("empty input, not a packet");
  Prefix prefix;
  try {
    prefix = parse_prefix(std::span(prefix_bytes).first(got));
  } catch (const FormatError& e) {
    throw fail(e.what());
  }
  // Bounded by parse_prefix: at most kMaxMetadataSize.
  std::vector<std::byte> meta(prefix.meta_len);
  if (read_exact(in, meta) != meta.size())
    throw fail("truncated metadata (" + std::to_string(prefix.meta_len) + " bytes announced)");
  try {
    Meta m = parse_metadata(meta, prefix.meta_crc);
    if (raw) {
      raw->assign(reinterpret_cast<const char*>(prefix_bytes.data()), prefix_bytes.size());
      raw->append(reinterpret_cast<const char*>(meta.data()), meta.size());
    }
    return m;
  } catch (const FormatError& e) {
    throw fail(e.what());
  }
}

}  // namespace safespool
