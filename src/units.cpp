// SPDX-License-Identifier: GPL-3.0-or-later
#include "safespool/units.hpp"

#include <cctype>
#include <cerrno>
#include <cstdlib>

#include "safespool/error.hpp"

namespace safespool {
namespace {

std::string trim(const std::string& text) {
  size_t b = text.find_first_not_of(" \t\r\n");
  size_t e = text.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? "" : text.substr(b, e - b + 1);
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// `digits` times `unit`, refusing an overflow.
uint64_t scaled(const std::string& digits, uint64_t unit, const std::string& text,
                const std::string& what) {
  uint64_t n = parse_u64(digits, what);
  if (n == 0) throw UsageError(what + ": \"" + text + "\" must be more than 0");
  if (n > UINT64_MAX / unit) throw UsageError(what + ": \"" + text + "\" is out of range");
  return n * unit;
}

// Splits "64K" into "64" and "k".
std::pair<std::string, std::string> number_and_unit(const std::string& text) {
  std::string t = trim(text);
  size_t end = 0;
  while (end < t.size() && std::isdigit(static_cast<unsigned char>(t[end]))) ++end;
  return {t.substr(0, end), lower(t.substr(end))};
}

}  // namespace

uint64_t parse_u64(const std::string& text, const std::string& what) {
  std::string t = trim(text);
  if (t.empty() || t.find_first_not_of("0123456789") != std::string::npos || t.size() > 20)
    throw UsageError(what + ": \"" + text + "\" is not a number");
  errno = 0;
  unsigned long long v = std::strtoull(t.c_str(), nullptr, 10);
  if (errno == ERANGE) throw UsageError(what + ": \"" + text + "\" is out of range");
  return v;
}

uint64_t parse_size(const std::string& text, const std::string& what) {
  auto [digits, unit] = number_and_unit(text);
  const std::string suffixes = "kmgt";
  uint64_t factor = 1;
  if (!unit.empty() && unit != "b") {
    size_t at = suffixes.find(unit[0]);
    std::string rest = unit.substr(1);
    if (at == std::string::npos || !(rest.empty() || rest == "b" || rest == "ib"))
      throw UsageError(what + ": \"" + text +
                       "\" is not a size (bytes, or a number with K, M, G or T)");
    factor = uint64_t{1} << (10 * (at + 1));
  }
  return scaled(digits, factor, text, what);
}

uint64_t parse_duration(const std::string& text, const std::string& what) {
  auto [digits, unit] = number_and_unit(text);
  uint64_t factor = 0;
  if (unit.empty() || unit == "s") factor = 1;
  if (unit == "m") factor = 60;
  if (unit == "h") factor = 3600;
  if (unit == "d") factor = 86400;
  if (factor == 0)
    throw UsageError(what + ": \"" + text +
                     "\" is not a duration (seconds, or a number with s, m, h or d)");
  return scaled(digits, factor, text, what);
}

}  // namespace safespool
