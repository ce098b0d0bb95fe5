// SPDX-License-Identifier: GPL-3.0-or-later
// What the unit tests share: a private temporary directory, files read and
// written whole, shell commands run or captured, waiting for a condition,
// and a throwaway GnuPG home made by the real gpg.
//
// Teardown never throws: a gpg-agent removes its own socket files while a
// directory is being deleted, and an exception from a destructor would
// abort the whole test program for a file that is already gone.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include "safespool/queue.hpp"

namespace safespool::test {

namespace fs = std::filesystem;
using Bytes = std::vector<std::byte>;

/// Removes `path` and everything below it, retrying once for entries that
/// come and go meanwhile (agent sockets). Never throws.
inline void remove_tree(const fs::path& path) noexcept {
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::error_code ec;
    fs::remove_all(path, ec);
    if (!ec || !fs::exists(path, ec)) return;
  }
}

/// A fresh directory under /tmp, removed with its contents by the
/// destructor. The name is short: gpg-agent puts sockets in GnuPG homes
/// made below it, and a socket path must fit in 108 bytes.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "sstest") {
    std::string tmpl = "/tmp/" + prefix + "-XXXXXX";
    if (!::mkdtemp(tmpl.data())) std::abort();  // nothing could run without it
    path = tmpl;
  }
  ~TempDir() { remove_tree(path); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string str() const { return path.string(); }
  /// The path of `name` inside the directory, as a string.
  std::string operator/(const std::string& name) const { return (path / name).string(); }

  fs::path path;  ///< the directory
};

/// A queue made by Queue::init in a TempDir of its own.
struct TempQueue {
  TempQueue() : path(dir.path / "q") { Queue::init(path, false); }
  Queue queue() const { return Queue(path); }
  fs::path job(const std::string& name) const { return path / "jobs" / name; }

  TempDir dir;
  fs::path path;  ///< the queue directory
};

/// The whole file as a string ("" when it cannot be read).
inline std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline Bytes as_bytes(std::string_view s) {
  auto p = reinterpret_cast<const std::byte*>(s.data());
  return Bytes(p, p + s.size());
}

/// The whole file as bytes.
inline Bytes slurp_bytes(const fs::path& p) { return as_bytes(slurp(p)); }

/// Replaces the file's content.
inline void spit(const fs::path& p, std::string_view content) {
  std::ofstream(p, std::ios::binary | std::ios::trunc)
      .write(content.data(), static_cast<std::streamsize>(content.size()));
}

inline void spit(const fs::path& p, const Bytes& content) {
  spit(p, std::string_view(reinterpret_cast<const char*>(content.data()), content.size()));
}

/// Runs `cmd` with /bin/sh and returns its standard output.
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

/// Polls `f` every 10 ms until it holds or `limit` has passed; returns its
/// last answer. For conditions another process makes true.
template <class F>
bool eventually(F f, std::chrono::milliseconds limit = std::chrono::milliseconds(5000)) {
  for (auto end = std::chrono::steady_clock::now() + limit; std::chrono::steady_clock::now() < end;
       std::this_thread::sleep_for(std::chrono::milliseconds(10)))
    if (f()) return true;
  return f();
}

// ---- the throwaway keyring
//
// Keys (all made by the real gpg, no passphrase unless noted):
//   sender    signs (the trusted signer)
//   receiver  is encrypted to
//   other     signs too, but is not trusted
//   locked    has a passphrase: unattended signing must refuse it
//   expired   expired in 2020 (made with a faked system time)

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

/// The shared keyring, made on the first call (a few seconds), removed with
/// its gpg-agent when the test program ends.
inline const Keyring& keyring() {
  static Keyring* k = [] {
    auto* r = new Keyring;
    char tmpl[] = "/tmp/sskey-XXXXXX";  // short: gpg-agent's socket lives here
    r->dir = ::mkdtemp(tmpl);
    r->home = r->dir + "/g";
    std::error_code ec;
    fs::create_directory(r->home, ec);
    fs::permissions(r->home, fs::perms::owner_all, ec);
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
      remove_tree(k->dir);
    });
    return r;
  }();
  return *k;
}

}  // namespace safespool::test
