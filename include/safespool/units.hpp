// SPDX-License-Identifier: GPL-3.0-or-later
// Numbers as people type them on a command line or in a file: plain
// decimals, sizes with binary suffixes, durations with a unit.
//
// Each parser takes the whole text (surrounding whitespace allowed) or
// throws UsageError naming `what` (the option or file) and the text, so
// "--split 10X" fails before anything is done.
#pragma once

#include <cstdint>
#include <string>

namespace safespool {

/// A decimal u64: "42". Throws UsageError when it is not one or overflows.
uint64_t parse_u64(const std::string& text, const std::string& what);

/// A size in bytes: "1048576", or a number with a binary suffix K, M, G
/// or T (case-insensitive, an optional "iB"/"B" after it): "64K" = 65536,
/// "1.5G" is refused (whole numbers only). Must be > 0.
uint64_t parse_size(const std::string& text, const std::string& what);

/// A duration in seconds: "90", or a number with a unit s, m, h or d:
/// "15m" = 900. Must be > 0.
uint64_t parse_duration(const std::string& text, const std::string& what);

}  // namespace safespool
