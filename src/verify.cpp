// SPDX-License-Identifier: GPL-3.0-or-later
// Enforcing a signer policy (see include/safespool/verify.hpp).
#include "safespool/verify.hpp"

#include <fcntl.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <thread>
#include <vector>

#include "gpgme_handles.hpp"
#include "safespool/error.hpp"
#include "safespool/signals.hpp"

namespace safespool {
namespace {

using Kind = openpgp::Announcement::Kind;

/// What --verify-first leaves free on the spool's filesystem: 1% of it,
/// at least 64 MiB.
uint64_t spool_reserve(const struct statvfs& fs) {
  uint64_t size = static_cast<uint64_t>(fs.f_blocks) * fs.f_frsize;
  return std::max<uint64_t>(size / 100, 64 << 20);
}

/// How much the spool may take: `max_bytes`, and no more than the
/// filesystem has free beyond its reserve.
uint64_t spool_bound(int fd, const std::string& dir, std::optional<uint64_t> max_bytes) {
  struct statvfs fs;
  if (::fstatvfs(fd, &fs) != 0) throw_errno("cannot measure the free space of " + dir);
  uint64_t avail = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
  uint64_t reserve = spool_reserve(fs);
  uint64_t room = avail > reserve ? avail - reserve : 0;
  return std::min(room, max_bytes.value_or(UINT64_MAX));
}

[[noreturn]] void throw_interrupted(const std::string& what) {
  throw Error(what + ": interrupted by a signal", kExitInterrupted);
}

void check_interrupt(const std::string& what) {
  if (take_interrupt() || interrupted()) throw_interrupted(what);
}

/// While alive, cancels `in` as soon as SIGTERM, SIGINT or SIGHUP arrives,
/// so that a read blocked in a stalled decoder returns at once. It only
/// looks at the signal: taking it stays the processor's business.
class CancelOnInterrupt {
 public:
  explicit CancelOnInterrupt(Reader& in) : stop_(::eventfd(0, EFD_CLOEXEC)) {
    if (interrupt_fd() < 0 || !stop_) return;
    thread_ = std::thread([this, &in] {
      pollfd p[2] = {{interrupt_fd(), POLLIN, 0}, {stop_.get(), POLLIN, 0}};
      while (::poll(p, 2, -1) < 0 && errno == EINTR) {
      }
      if (p[0].revents & POLLIN) {
        fired_ = true;
        in.cancel();
      }
    });
  }
  ~CancelOnInterrupt() {
    if (!thread_.joinable()) return;
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(stop_.get(), &one, sizeof one);
    thread_.join();
  }
  CancelOnInterrupt(const CancelOnInterrupt&) = delete;
  CancelOnInterrupt& operator=(const CancelOnInterrupt&) = delete;
  bool fired() const { return fired_; }

 private:
  Fd stop_;
  std::atomic<bool> fired_{false};
  std::thread thread_;
};

/// Reads all of `in` into `sink` (bytes, count), stopping with Error (exit
/// 130) on an interrupt, even one that arrives while a read is blocked.
template <class Sink>
void read_all(Reader& in, Sink&& sink) {
  CancelOnInterrupt watch(in);
  std::vector<std::byte> buf(1 << 20);
  try {
    while (size_t n = in.read(buf)) {
      check_interrupt(in.source());
      sink(std::span(buf).first(n));
    }
  } catch (const Error& e) {
    if (watch.fired() || interrupted()) throw_interrupted(in.source());
    throw;
  }
  if (watch.fired()) throw_interrupted(in.source());
}

std::string too_large(const Reader& in, uint64_t bound, bool disk) {
  return in.source() + ": payload larger than " + std::to_string(bound) + " bytes, " +
         (disk ? "the free space --verify-first may use on its filesystem"
               : "the --max-payload bound") +
         "; spooling stopped";
}

}  // namespace

TrustedStream::TrustedStream(std::unique_ptr<Reader> inner, const SignerPolicy& policy,
                             std::string name)
    : ReaderLayer(std::move(inner)), policy_(policy), name_(std::move(name)) {
  // The stage names come from the decoders' describe(): "OpenPGP < ...".
  if (inner_->describe().find("OpenPGP") == std::string::npos)
    throw FormatError(name_ +
                      ": not trusted: no OpenPGP signature (the packet is not an OpenPGP message)");
}

void TrustedStream::finish() {
  inner_->finish();
  verdict_ = policy_.check(inner_->signatures());
  if (!verdict_.trusted) throw FormatError(name_ + ": not trusted: " + verdict_.reason);
  verified_ = true;
  spdlog::info("{}: {}", name_, verdict_.reason);
}

void TrustedStream::check_announcement(const std::set<std::string>& key_ids) const {
  auto said = inner_->announcement();
  if (!said || said->kind == Kind::Unknown) return;  // known only at the end
  if (said->kind == Kind::NoSignature)
    throw FormatError(name_ +
                      ": not trusted: no OpenPGP signature (the message announces none before "
                      "its data)");
  for (const auto& id : said->key_ids) {
    if (key_ids.count(id) || id == std::string(16, '0')) return;  // checked at the end
  }
  std::string ids;
  for (const auto& id : said->key_ids) ids += (ids.empty() ? "" : ", ") + id;
  throw FormatError(name_ + ": not trusted: signed by key id " + ids +
                    ", which is not a trusted signer's (announced before the data)");
}

std::set<std::string> signer_key_ids(const SignerPolicy& policy,
                                     const std::optional<std::string>& gnupg_home) {
  std::set<std::string> ids;
  gpg::CtxPtr ctx;
  for (const auto& fpr : policy.fingerprints()) {
    ids.insert(openpgp::key_id_of(fpr));
    try {
      if (!ctx) ctx = gpg::basic_context(gnupg_home, "signer policy", kExitConfig);
      gpgme_key_t k = nullptr;
      if (gpgme_get_key(ctx.get(), fpr.c_str(), &k, 0) != 0 || !k) continue;
      gpg::KeyPtr key(k);
      for (gpgme_subkey_t sub = key->subkeys; sub; sub = sub->next)
        if (sub->fpr) ids.insert(openpgp::key_id_of(sub->fpr));
    } catch (const Error& e) {
      // Without the keyring only primary keys are known early; the end of
      // the stream still decides.
      spdlog::debug("cannot list the subkeys of {}: {}", fpr, e.what());
    }
  }
  return ids;
}

void drain_and_verify(Reader& in) {
  read_all(in, [](std::span<std::byte>) {});
  in.finish();
}

Verdict judge_stream(Reader& in, const SignerPolicy& policy) {
  try {
    drain_and_verify(in);
  } catch (const Error& e) {
    Verdict v = policy.check(in.signatures());
    v.trusted = false;
    v.reason = e.what();
    return v;
  }
  return policy.check(in.signatures());
}

Fd spool_verified(Reader& in, const std::string& dir, std::optional<uint64_t> max_bytes) {
  Fd fd(::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
  if (!fd)
    throw_errno("cannot create a temporary file in " + dir + " (--verify-first needs O_TMPFILE)");
  const uint64_t bound = spool_bound(fd.get(), dir, max_bytes);
  const bool disk_bound = !max_bytes || bound < *max_bytes;
  uint64_t total = 0;
  read_all(in, [&](std::span<std::byte> data) {
    total += data.size();
    if (total > bound) throw FormatError(too_large(in, bound, disk_bound));
    try {
      write_all(fd.get(), data, "temporary file in " + dir);
    } catch (const SysError& e) {
      if (e.err() == ENOSPC || e.err() == EDQUOT) throw FormatError(too_large(in, total, true));
      throw;
    }
  });
  in.finish();
  if (::lseek(fd.get(), 0, SEEK_SET) != 0) throw_errno("cannot rewind temporary file in " + dir);
  return fd;
}

}  // namespace safespool
