// SPDX-License-Identifier: GPL-3.0-or-later
#include "safespool/digest.hpp"

#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <memory>
#include <new>
#include <system_error>

#include "safespool/error.hpp"

namespace safespool {

struct Sha256::State {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  ~State() { EVP_MD_CTX_free(ctx); }
};

namespace {

/// SHA-256, looked up once: EVP_sha256() makes every EVP_DigestInit_ex
/// look the algorithm up among OpenSSL's providers again, which costs more
/// than hashing a small packet.
const EVP_MD* sha256_md() {
  static EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  return md;
}

}  // namespace

Sha256::Sha256() : state_(std::make_unique<State>()) {
  const EVP_MD* md = sha256_md();
  if (!state_->ctx || !md || EVP_DigestInit_ex(state_->ctx, md, nullptr) != 1)
    throw Error("cannot start a SHA-256 digest");
}

Sha256::~Sha256() = default;
Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;

void Sha256::update(std::span<const std::byte> data) {
  if (!data.empty() && EVP_DigestUpdate(state_->ctx, data.data(), data.size()) != 1)
    throw Error("cannot compute a SHA-256 digest");
}

void Sha256::update(std::string_view data) {
  update(std::as_bytes(std::span(data.data(), data.size())));
}

std::string Sha256::hex() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(state_->ctx, md, &len) != 1)
    throw Error("cannot compute a SHA-256 digest");
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * len);
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(kHex[md[i] >> 4]);
    out.push_back(kHex[md[i] & 15]);
  }
  return out;
}

namespace {

constexpr size_t kMaxReadBytes = 1 << 20;

// Hashes the file from `at` to its end into `h`. The buffer is as large as
// what is left (often nothing: the payload was hashed as it was read), at
// most 1 MiB, and not cleared: a packet's cost must not be a megabyte's.
void hash_rest(Sha256& h, int fd, uint64_t at, const std::string& what) {
  struct stat st {};
  uint64_t left = ::fstat(fd, &st) == 0 && static_cast<uint64_t>(st.st_size) > at
                      ? static_cast<uint64_t>(st.st_size) - at
                      : 0;
  size_t size = static_cast<size_t>(std::clamp<uint64_t>(left, 4096, kMaxReadBytes));
  auto buf = std::make_unique_for_overwrite<std::byte[]>(size);
  for (;;) {
    ssize_t n = ::pread(fd, buf.get(), size, static_cast<off_t>(at));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno("cannot read " + what);
    if (n == 0) return;
    h.update(std::span(buf.get(), static_cast<size_t>(n)));
    at += static_cast<uint64_t>(n);
  }
}

}  // namespace

std::string sha256_file(int fd, const std::string& what) {
  Sha256 h;
  hash_rest(h, fd, 0, what);
  return h.hex();
}

namespace {

/// Fed bytes up to this are hashed at once, by the feeder.
constexpr uint64_t kHashInPlaceBytes = 1 << 20;
/// Copies that may wait for the worker.
constexpr size_t kMaxQueuedBytes = 512 << 10;

}  // namespace

FileDigest::~FileDigest() { stop_worker(); }

void FileDigest::feed(uint64_t offset, std::span<const std::byte> data) {
  std::unique_lock lock(mu_);
  if (done_ || offset != at_ || data.empty()) return;
  // at_ moves only once the bytes are hashed or queued: after a failure
  // here, finish() reads them from the file instead of leaving a hole.
  if (!worker_.joinable() && !no_worker_ && at_ + data.size() > kHashInPlaceBytes) {
    try {
      worker_ = std::thread([this] { hash_queued(); });
    } catch (const std::system_error&) {
      no_worker_ = true;
    }
  }
  if (!worker_.joinable()) {
    sha_.update(data);
    at_ += data.size();
    return;
  }
  changed_.wait(lock, [&] { return queued_ < kMaxQueuedBytes || failed_; });
  // Another feeder may have taken this turn while we waited.
  if (failed_ || done_ || offset != at_) return;  // a failure: finish() says it
  std::vector<std::byte> copy;
  if (!spare_.empty()) {
    copy = std::move(spare_.back());
    spare_.pop_back();
  }
  copy.assign(data.begin(), data.end());
  queue_.push_back(std::move(copy));
  at_ += data.size();
  queued_ += data.size();
  changed_.notify_all();
}

/// The worker: hashes the copies in the order they came, until stopped
/// with nothing left.
void FileDigest::hash_queued() {
  std::unique_lock lock(mu_);
  for (;;) {
    changed_.wait(lock, [&] { return !queue_.empty() || stopping_; });
    if (queue_.empty()) return;
    std::vector<std::byte> block = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    std::exception_ptr error;
    try {
      sha_.update(block);
    } catch (...) {
      error = std::current_exception();
    }
    lock.lock();
    queued_ -= block.size();
    try {
      spare_.push_back(std::move(block));
    } catch (const std::bad_alloc&) {
      // Not kept for reuse: the next feed allocates.
    }
    changed_.notify_all();
    if (error) {
      failed_ = error;
      return;
    }
  }
}

void FileDigest::stop_worker() {
  if (!worker_.joinable()) return;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  changed_.notify_all();
  worker_.join();
}

std::string FileDigest::finish(int fd, const std::string& what) {
  {
    std::lock_guard lock(mu_);
    if (done_) throw Error("the digest of " + what + " was already taken");
    done_ = true;  // feed() takes nothing more
  }
  stop_worker();  // everything queued is hashed
  if (failed_) std::rethrow_exception(failed_);
  hash_rest(sha_, fd, at_, what);
  return sha_.hex();
}

std::string sha256_hex(std::string_view data) {
  Sha256 h;
  h.update(data);
  return h.hex();
}

bool is_sha256_hex(std::string_view text) {
  if (text.size() != 64) return false;
  for (char c : text)
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
  return true;
}

}  // namespace safespool
