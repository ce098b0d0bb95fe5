// SPDX-License-Identifier: GPL-3.0-or-later
#include "gpgme_handles.hpp"

#include <deque>
#include <mutex>
#include <utility>

#include "safespool/error.hpp"

namespace safespool::gpg {
namespace {

/// Idle contexts kept, all homes together: enough for the few readers a
/// process runs at once; more only holds memory.
constexpr size_t kMaxIdle = 8;

struct Pool {
  std::mutex mu;
  std::deque<std::pair<std::optional<std::string>, CtxPtr>> idle;  ///< oldest first
};

/// Never destroyed: a context may be returned while the process exits.
Pool& pool() {
  static Pool* p = new Pool;
  return *p;
}

void check(gpgme_error_t err, const std::string& what, int exit_code = kExitSoftware) {
  if (err) throw Error(what + ": " + gpgme_strerror(err), exit_code);
}

CtxPtr make_context(const std::optional<std::string>& home, const std::string& what) {
  CtxPtr ctx = basic_context(home, what, kExitSoftware);
  // --disable-dirmngr: a gpg.conf with auto-key-retrieve must not make an
  // unattended decoder wait on a key server.
  gpgme_set_offline(ctx.get(), 1);
  // VALIDSIG names the primary key of a signing subkey; without the full
  // status each signature would need a key listing (one more gpg).
  check(gpgme_set_ctx_flag(ctx.get(), "full-status", "1"), what + ": full-status");
  return ctx;
}

}  // namespace

CtxPtr basic_context(const std::optional<std::string>& home, const std::string& what,
                     int exit_code) {
  init_gpgme(what);
  gpgme_ctx_t c = nullptr;
  check(gpgme_new(&c), what + ": cannot create a GPGME context", exit_code);
  CtxPtr ctx(c);
  if (home) {
    check(gpgme_ctx_set_engine_info(ctx.get(), GPGME_PROTOCOL_OpenPGP, nullptr, home->c_str()),
          what + ": cannot use GnuPG home " + *home, exit_code);
  }
  check(gpgme_set_protocol(ctx.get(), GPGME_PROTOCOL_OpenPGP), what + ": OpenPGP protocol",
        exit_code);
  check(gpgme_set_pinentry_mode(ctx.get(), GPGME_PINENTRY_MODE_LOOPBACK),
        what + ": loopback pinentry", exit_code);
  gpgme_set_armor(ctx.get(), 0);
  gpgme_set_textmode(ctx.get(), 0);
  return ctx;
}

void init_gpgme(const std::string& what) {
  static std::once_flag once;
  static gpgme_error_t engine_err = 0;
  std::call_once(once, [] {
    gpgme_check_version(nullptr);
    engine_err = gpgme_engine_check_version(GPGME_PROTOCOL_OpenPGP);
  });
  if (engine_err)
    throw Error(what + ": gpg is not usable: " + gpgme_strerror(engine_err), kExitUnavailable);
}

std::string gpg_program(const std::string& what) {
  init_gpgme(what);
  gpgme_engine_info_t info = nullptr;
  check(gpgme_get_engine_info(&info), what + ": GPGME engine information");
  for (; info; info = info->next) {
    if (info->protocol == GPGME_PROTOCOL_OpenPGP && info->file_name) return info->file_name;
  }
  throw Error(what + ": gpg is not usable: GPGME knows no OpenPGP engine", kExitUnavailable);
}

CtxLease lease_context(const std::optional<std::string>& home, const std::string& what) {
  {
    Pool& p = pool();
    std::lock_guard lock(p.mu);
    for (auto it = p.idle.rbegin(); it != p.idle.rend(); ++it) {
      if (it->first == home) {
        CtxPtr ctx = std::move(it->second);
        p.idle.erase(std::next(it).base());
        return CtxLease(std::move(ctx), home);
      }
    }
  }
  return CtxLease(make_context(home, what), home);
}

void CtxLease::give_back() noexcept {
  if (!ctx_) return;
  gpgme_set_passphrase_cb(ctx_.get(), nullptr, nullptr);
  gpgme_set_status_cb(ctx_.get(), nullptr, nullptr);
  try {
    Pool& p = pool();
    std::lock_guard lock(p.mu);
    p.idle.emplace_back(std::move(home_), std::move(ctx_));
    if (p.idle.size() > kMaxIdle) p.idle.pop_front();
  } catch (...) {
    // Out of memory: the context is simply released (ctx_ still owns it).
  }
  ctx_.reset();
}

}  // namespace safespool::gpg
