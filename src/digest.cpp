// SPDX-License-Identifier: GPL-3.0-or-later
#include "safespool/digest.hpp"

#include <openssl/evp.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <vector>

#include "safespool/error.hpp"

namespace safespool {

struct Sha256::State {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  ~State() { EVP_MD_CTX_free(ctx); }
};

Sha256::Sha256() : state_(std::make_unique<State>()) {
  if (!state_->ctx || EVP_DigestInit_ex(state_->ctx, EVP_sha256(), nullptr) != 1)
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

// Hashes the file from `at` to its end into `h`.
void hash_rest(Sha256& h, int fd, uint64_t at, const std::string& what) {
  std::vector<std::byte> buf(1 << 20);
  for (;;) {
    ssize_t n = ::pread(fd, buf.data(), buf.size(), static_cast<off_t>(at));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno("cannot read " + what);
    if (n == 0) return;
    h.update(std::span(buf).first(static_cast<size_t>(n)));
    at += static_cast<uint64_t>(n);
  }
}

}  // namespace

std::string sha256_file(int fd, const std::string& what) {
  Sha256 h;
  hash_rest(h, fd, 0, what);
  return h.hex();
}

void FileDigest::feed(uint64_t offset, std::span<const std::byte> data) {
  std::lock_guard lock(mu_);
  if (done_ || offset != at_) return;
  sha_.update(data);
  at_ += data.size();
}

std::string FileDigest::finish(int fd, const std::string& what) {
  std::lock_guard lock(mu_);
  if (done_) throw Error("the digest of " + what + " was already taken");
  done_ = true;
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
