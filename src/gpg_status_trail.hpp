// SPDX-License-Identifier: GPL-3.0-or-later
// Internal to the OpenPGP stage: what gpg's status lines say about a
// damaged message, so that an error names what is wrong and where.
//
// GPGME sums a failed decryption up in one code, and the same code covers
// different damage: "No data" is a bad packet header before the encrypted
// data (NODATA 3) as well as a broken compressed packet inside it (gpg
// dies after BEGIN_DECRYPTION without a status of its own); "Decryption
// failed" is an integrity check that failed (BADMDC: the encrypted data
// was cut short or altered). The status lines on the way tell them apart.
#pragma once

#include <cstdlib>
#include <cstring>
#include <string>

namespace safespool {

class GpgStatusTrail {
 public:
  /// Takes one status line (keyword and arguments).
  void note(const char* keyword, const char* args) {
    if (std::strcmp(keyword, "BEGIN_DECRYPTION") == 0) decrypting_ = true;
    if (std::strcmp(keyword, "END_DECRYPTION") == 0) ended_ = true;
    if (std::strcmp(keyword, "BADMDC") == 0) bad_mdc_ = true;
    if (std::strcmp(keyword, "NODATA") == 0 && args) nodata_ = std::atoi(args);
  }

  /// "damaged message: ... (gpg: WHAT)", or WHAT alone when the status
  /// lines say nothing more.
  std::string damage(const std::string& what) const {
    const char* where = place();
    if (!where) return what;
    return std::string("damaged message: ") + where + " (gpg: " + what + ")";
  }

 private:
  const char* place() const {
    if (bad_mdc_) return "the encrypted data fails its integrity check (cut short or altered)";
    if (decrypting_ && !ended_)
      return "a bad or truncated packet inside the encrypted data (its compressed or literal data)";
    if (nodata_ == 1) return "no OpenPGP data after the armor header";
    if (nodata_ == 4) return "a signature was expected but is missing";
    if (nodata_ == 2 || nodata_ == 3)
      return decrypting_ ? "a bad or truncated packet after the encrypted data"
                         : "a bad or truncated packet before any data (its outer layer)";
    return nullptr;
  }

  bool decrypting_ = false;  ///< BEGIN_DECRYPTION: the session key was found
  bool ended_ = false;       ///< END_DECRYPTION: gpg finished the encrypted data
  bool bad_mdc_ = false;     ///< BADMDC: the integrity check failed
  int nodata_ = 0;           ///< NODATA: 1 no armor data, 2 no packet, 3 bad packet, 4 no signature
};

}  // namespace safespool
