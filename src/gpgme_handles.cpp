#include "gpgme_handles.hpp"

#include <mutex>

#include "safespool/error.hpp"

namespace safespool::gpg {

void init_gpgme(const std::string& what) {
  static std::once_flag once;
  static gpgme_error_t engine_err = 0;
  std::call_once(once, [] {
    gpgme_check_version(nullptr);
    engine_err = gpgme_engine_check_version(GPGME_PROTOCOL_OpenPGP);
  });
  if (engine_err) throw Error(what + ": gpg is not usable: " + gpgme_strerror(engine_err), kExitUnavailable);
}

}  // namespace safespool::gpg
