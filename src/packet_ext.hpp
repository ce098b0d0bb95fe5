// SPDX-License-Identifier: GPL-3.0-or-later
// Internal: the "safespool" entry of packet metadata (docs/design/envelopes.md).
//
// fspl decodes metadata into a fixed struct and ignores keys it does not
// know, so SafeSpool's own facts about a packet (a part of a split job, a
// claim to supersede a failed packet, a receipt) travel under one extra
// key. Integers are written with their widest encoding and hashes as
// fixed-length strings: an envelope's header then has the same length
// whatever its numbers, so the sender can reserve it before it knows them.
#pragma once

#include <string>

#include "msgpack_reader.hpp"
#include "safespool/packet.hpp"

namespace safespool {

/// The metadata key.
inline constexpr char kExtensionKey[] = "safespool";
/// The version of the entry's format this code reads and writes.
inline constexpr uint64_t kExtensionVersion = 1;

/// Reads the value of the "safespool" key into `m`. Throws FormatError for
/// another version, a malformed entry or values out of range.
void read_extension(msgpack::Cursor& c, Meta& m);

/// Appends the key "safespool" and its value for `m` (which extended()).
void append_extension(std::string& out, const Meta& m);

/// Checks what the entry implies about the rest of the metadata (a part is
/// a Fail packet). Throws FormatError.
void check_extension(const Meta& m);

}  // namespace safespool
