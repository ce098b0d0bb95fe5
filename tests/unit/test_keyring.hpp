// SPDX-License-Identifier: GPL-3.0-or-later
// A throwaway GnuPG home shared by the encoder and policy tests, made on
// first use (so test runs that skip these suites pay nothing) and removed,
// with its gpg-agent, when the test program ends.
//
// Keys (all made by the real gpg, no passphrase unless noted):
//   sender    signs (the trusted signer)
//   receiver  is encrypted to
//   other     signs too, but is not trusted
//   locked    has a passphrase: unattended signing must refuse it
//   expired   expired in 2020 (made with a faked system time)
#pragma once

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

namespace safespool::testing_keys {

inline std::string run_capture(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  char buf[4096];
  for (size_t n; p && (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  if (p) ::pclose(p);
  return out;
}

/// Runs `cmd` with /bin/sh; false (and a message on stderr) if it failed.
inline bool run(const std::string& cmd) {
  int rc = std::system(cmd.c_str());
  if (rc != 0) std::fprintf(stderr, "command failed (%d): %s\n", rc, cmd.c_str());
  return rc == 0;
}

struct Keyring {
  std::string dir;                                       ///< removed at exit
  std::string home;                                      ///< the GNUPGHOME
  std::string sender, receiver, other, locked, expired;  ///< primary fingerprints

  /// "gpg --homedir HOME --batch ..." for shell commands.
  std::string gpg() const {
    return "gpg --homedir " + home + " --batch --yes --quiet --trust-model always ";
  }

  /// Primary fingerprint of the only key whose uid contains `uid`.
  std::string fingerprint(const std::string& uid) const {
    std::istringstream in(run_capture(gpg() + "--with-colons --list-keys '" + uid + "'"));
    for (std::string line; std::getline(in, line);) {
      if (line.rfind("fpr:", 0) == 0) return line.substr(12, line.find(':', 12) - 12);
    }
    return {};
  }

  /// `algo` "default" is RSA-3072 (slow to make, ~1.5 s); "future-default"
  /// is ed25519/cv25519 (instant).
  void make(const std::string& name, const std::string& algo,
            const std::string& extra = "--passphrase ''",
            const std::string& expiry = "never") const {
    if (!run(gpg() + extra + " --quick-gen-key '" + name + " <" + name + "@example.invalid>' " +
             algo + " default " + expiry + " 2>/dev/null")) {
      std::abort();  // every test using the keyring would fail confusingly
    }
  }
};

/// The shared keyring, made on the first call (a few seconds).
inline const Keyring& keyring() {
  static Keyring* k = [] {
    auto* r = new Keyring;
    char tmpl[] = "/tmp/sskey-XXXXXX";  // short: gpg-agent's socket lives here
    r->dir = ::mkdtemp(tmpl);
    r->home = r->dir + "/g";
    std::filesystem::create_directory(r->home);
    std::filesystem::permissions(r->home, std::filesystem::perms::owner_all);
    // gpg's defaults for the main pair; ed25519 elsewhere, which is fast
    // and covers the other signature algorithm.
    r->make("sender", "default");
    r->make("receiver", "default");
    r->make("other", "future-default");
    r->make("locked", "future-default", "--pinentry-mode loopback --passphrase secret");
    r->make("expired", "future-default", "--passphrase '' --faked-system-time 20200101T000000!",
            "1d");
    r->sender = r->fingerprint("sender@");
    r->receiver = r->fingerprint("receiver@");
    r->other = r->fingerprint("other@");
    r->locked = r->fingerprint("locked@");
    r->expired = r->fingerprint("expired@");
    // Forget any passphrase the agent cached while making the keys.
    run("gpgconf --homedir " + r->home + " --kill gpg-agent");
    std::atexit(+[] {
      std::system(("gpgconf --homedir " + k->home + " --kill gpg-agent").c_str());
      std::filesystem::remove_all(k->dir);
    });
    return r;
  }();
  return *k;
}

}  // namespace safespool::testing_keys
