// Internal: GPGME handles as owned objects, and the one-time library
// initialisation, shared by the OpenPGP decoder and encoder.
#pragma once

#include <gpgme.h>

#include <memory>
#include <string>
#include <type_traits>

namespace safespool::gpg {

struct CtxDeleter {
  void operator()(gpgme_ctx_t c) const { gpgme_release(c); }
};
struct DataDeleter {
  void operator()(gpgme_data_t d) const { gpgme_data_release(d); }
};
struct KeyDeleter {
  void operator()(gpgme_key_t k) const { gpgme_key_unref(k); }
};
using CtxPtr = std::unique_ptr<std::remove_pointer_t<gpgme_ctx_t>, CtxDeleter>;
using DataPtr = std::unique_ptr<std::remove_pointer_t<gpgme_data_t>, DataDeleter>;
using KeyPtr = std::unique_ptr<std::remove_pointer_t<gpgme_key_t>, KeyDeleter>;

/// Runs gpgme_check_version once (required before any context is made) and
/// checks that gpg is usable; throws Error (exit 69) "WHAT: gpg is not
/// usable: ..." otherwise.
void init_gpgme(const std::string& what);

}  // namespace safespool::gpg
