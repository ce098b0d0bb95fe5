// SPDX-License-Identifier: GPL-3.0-or-later
// libFuzzer target: the packet codec on arbitrary bytes.
//
// Whatever the bytes, parsing either throws FormatError or yields metadata
// that re-encodes to a header parsing back to the same metadata.
#include <cstdint>
#include <cstdlib>
#include <span>

#include "safespool/error.hpp"
#include "safespool/packet.hpp"

using namespace safespool;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto in = std::as_bytes(std::span(data, size));
  try {
    Prefix p = parse_prefix(in.first(std::min(size, kPrefixSize)));
    if (size < kPrefixSize + p.meta_len) return 0;
    Meta m = parse_metadata(in.subspan(kPrefixSize, p.meta_len), p.meta_crc);
    std::string again = encode_header(m);
    auto b = std::as_bytes(std::span(again.data(), again.size()));
    Prefix q = parse_prefix(b.first(kPrefixSize));
    if (!(parse_metadata(b.subspan(kPrefixSize, q.meta_len), q.meta_crc) == m)) std::abort();
  } catch (const FormatError&) {
  }
  // The raw metadata parser on its own, without the CRC gate in front.
  if (size > 0) {
    try {
      parse_metadata(in, crc32(in));
    } catch (const FormatError&) {
    }
  }
  return 0;
}
