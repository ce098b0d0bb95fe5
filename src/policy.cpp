// SPDX-License-Identifier: GPL-3.0-or-later
// The signer policy: parsing the allowlist and judging signatures.
//
// Fingerprints are compared in one canonical form (40 upper-case hex
// digits, no spaces), which is what gpg prints with --with-colons and
// what our OpenPGP stage reports after mapping a subkey to its primary.
#include "safespool/policy.hpp"

#include <fcntl.h>

#include <algorithm>
#include <cctype>

#include "safespool/error.hpp"
#include "safespool/fd.hpp"

namespace safespool {
namespace {

constexpr size_t kFingerprintDigits = 40;
/// A trusted-signers file is a short list; anything bigger is a mistake.
constexpr size_t kMaxFileSize = 1 << 20;

std::string trim(std::string_view s) {
  auto space = [](unsigned char c) { return std::isspace(c) != 0; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return std::string(s);
}

std::string read_small_file(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw_errno("cannot open trusted signers file " + path);
  std::string text(kMaxFileSize + 1, '\0');
  size_t n =
      read_full(fd.get(), std::as_writable_bytes(std::span(text)), "trusted signers file " + path);
  if (n > kMaxFileSize) {
    throw Error("trusted signers file " + path + ": larger than 1 MiB", kExitConfig);
  }
  text.resize(n);
  return text;
}

/// The first good signature, preferring a trusted one.
const Signature* best_good(const std::vector<Signature>& sigs,
                           const std::set<std::string>& allowed) {
  const Signature* good = nullptr;
  for (const auto& s : sigs) {
    if (!s.good) continue;
    if (allowed.count(normalize_fingerprint(s.fingerprint))) return &s;
    if (!good) good = &s;
  }
  return good;
}

}  // namespace

std::string normalize_fingerprint(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == ' ' || c == '\t') continue;
    if (!std::isxdigit(static_cast<unsigned char>(c))) return {};
    out.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  }
  return out.size() == kFingerprintDigits ? out : std::string();
}

void SignerPolicy::require_signer(std::string_view fingerprint) {
  std::string fpr = normalize_fingerprint(fingerprint);
  if (fpr.empty()) {
    throw UsageError("--require-signer '" + std::string(fingerprint) +
                     "': not an OpenPGP v4 fingerprint (40 hex digits)");
  }
  allowed_.insert(std::move(fpr));
}

void SignerPolicy::load_file(const std::string& path) { load_text(read_small_file(path), path); }

void SignerPolicy::load_text(std::string_view text, const std::string& name) {
  size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    size_t eol = std::min(text.find('\n'), text.size());
    std::string_view line = text.substr(0, eol);
    text.remove_prefix(std::min(eol + 1, text.size()));
    std::string content = trim(line.substr(0, line.find('#')));
    if (content.empty()) continue;
    std::string fpr = normalize_fingerprint(content);
    if (fpr.empty()) {
      throw Error(name + ":" + std::to_string(line_no) + ": '" + content +
                      "' is not an OpenPGP v4 fingerprint (40 hex digits)",
                  kExitConfig);
    }
    allowed_.insert(std::move(fpr));
  }
}

Verdict SignerPolicy::check(const std::vector<Signature>& signatures) const {
  Verdict v;
  if (signatures.empty()) {
    v.reason = "no OpenPGP signature";
    return v;
  }
  if (const Signature* s = best_good(signatures, allowed_)) {
    v.signer = s->fingerprint;
    v.trusted = allowed_.count(normalize_fingerprint(s->fingerprint)) > 0;
    v.reason = v.trusted ? "good signature by trusted signer " + s->fingerprint
                         : "signer " + s->fingerprint + " is not a trusted signer";
    return v;
  }
  const Signature& bad = signatures.front();
  v.signer = bad.fingerprint.empty() ? "unknown" : bad.fingerprint;
  v.reason = "signature by " + v.signer + " is not valid: " + bad.summary;
  return v;
}

}  // namespace safespool
