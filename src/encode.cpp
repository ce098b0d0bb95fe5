// SPDX-License-Identifier: GPL-3.0-or-later
// The sender's stack: the fd stage, the zstd stage, and the Encoder that
// stacks them with the OpenPGP stage (src/encode_gpg.cpp).
//
// zstd writes one frame with a content checksum, so the receiver's "EOF is
// a promise" has something to check. ZSTD_compressStream2 keeps memory
// constant: the window plus one ZSTD_CStreamOutSize() buffer, emitted to
// the stage below whenever libzstd fills it.
#include "safespool/encode.hpp"

#include <zstd.h>

#include <algorithm>
#include <thread>

#include "encode_keys.hpp"
#include "safespool/error.hpp"
#include "safespool/fd.hpp"

namespace safespool {
namespace {

/// From this level on, compression is slow enough to use worker threads.
constexpr int kThreadedLevel = 10;
/// libzstd's threads beyond this rarely pay for their memory.
constexpr unsigned kMaxWorkers = 8;

class FdWriter : public Writer {
 public:
  FdWriter(int fd, std::string name) : fd_(fd), name_(std::move(name)) {}
  void write(std::span<const std::byte> data) override { write_all(fd_, data, name_); }
  void finish() override {}
  std::string describe() const override { return name_; }

 private:
  int fd_;
  std::string name_;
};

struct CCtxDeleter {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};

class ZstdWriter : public Writer {
 public:
  ZstdWriter(std::unique_ptr<Writer> inner, int level)
      : inner_(std::move(inner)), cctx_(ZSTD_createCCtx()), out_buf_(ZSTD_CStreamOutSize()) {
    if (!cctx_) fail("cannot allocate a compression context");
    check(ZSTD_CCtx_setParameter(cctx_.get(), ZSTD_c_compressionLevel, level));
    check(ZSTD_CCtx_setParameter(cctx_.get(), ZSTD_c_checksumFlag, 1));
    if (level >= kThreadedLevel) {
      unsigned n = std::clamp(std::thread::hardware_concurrency(), 1u, kMaxWorkers);
      // An error here only means libzstd was built without threads.
      (void)ZSTD_CCtx_setParameter(cctx_.get(), ZSTD_c_nbWorkers, static_cast<int>(n));
    }
  }

  void write(std::span<const std::byte> data) override {
    ZSTD_inBuffer in{data.data(), data.size(), 0};
    while (in.pos < in.size) compress(in, ZSTD_e_continue);
  }

  void finish() override {
    ZSTD_inBuffer in{nullptr, 0, 0};
    while (compress(in, ZSTD_e_end) != 0) {
    }
    inner_->finish();
  }

  std::string describe() const override { return "zstd > " + inner_->describe(); }

 private:
  /// One ZSTD_compressStream2 call; emits what it produced. Returns its
  /// hint (0 at ZSTD_e_end = the frame is complete).
  size_t compress(ZSTD_inBuffer& in, ZSTD_EndDirective mode) {
    ZSTD_outBuffer out{out_buf_.data(), out_buf_.size(), 0};
    size_t ret = ZSTD_compressStream2(cctx_.get(), &out, &in, mode);
    check(ret);
    if (out.pos > 0) inner_->write(std::span(out_buf_).first(out.pos));
    return ret;
  }

  void check(size_t ret) const {
    if (ZSTD_isError(ret)) fail(ZSTD_getErrorName(ret));
  }
  [[noreturn]] void fail(const std::string& why) const {
    throw Error(inner_->describe() + ": zstd: " + why);
  }

  std::unique_ptr<Writer> inner_;
  std::unique_ptr<ZSTD_CCtx, CCtxDeleter> cctx_;
  std::vector<std::byte> out_buf_;
};

/// Levels libzstd accepts; negative ones are its fast modes.
void check_zstd_level(int level) {
  if (level < ZSTD_minCLevel() || level > ZSTD_maxCLevel()) {
    throw UsageError("zstd level " + std::to_string(level) + " is out of range " +
                     std::to_string(ZSTD_minCLevel()) + ".." + std::to_string(ZSTD_maxCLevel()));
  }
}

}  // namespace

std::unique_ptr<Writer> make_fd_writer(int fd, std::string name) {
  return std::make_unique<FdWriter>(fd, std::move(name));
}

void check_encoding(const EncodeOptions& opts) {
  if (opts.zstd_level) check_zstd_level(*opts.zstd_level);
  if (opts.openpgp()) check_keys(opts);
}

std::unique_ptr<Writer> make_zstd_writer(std::unique_ptr<Writer> inner, int level) {
  check_zstd_level(level);
  return std::make_unique<ZstdWriter>(std::move(inner), level);
}

CheckedKeys check_keys(const EncodeOptions& opts) {
  if (opts.zstd_level) check_zstd_level(*opts.zstd_level);
  if (!opts.openpgp()) return {};
  return gpg::check_openpgp_keys(opts);
}

Encoder::Encoder(int fd, const EncodeOptions& opts, std::string name)
    : Encoder(make_fd_writer(fd, std::move(name)), opts) {}

Encoder::Encoder(std::unique_ptr<Writer> out, const EncodeOptions& opts) {
  // Built inside out: the output, then OpenPGP, then zstd on top, so that
  // bytes are compressed before they are encrypted.
  top_ = std::move(out);
  if (opts.openpgp()) top_ = make_gpg_writer(std::move(top_), opts);
  if (opts.zstd_level) top_ = make_zstd_writer(std::move(top_), *opts.zstd_level);
}

void Encoder::write(std::span<const std::byte> data) {
  if (finished_) throw Error(top_->describe() + ": write after finish");
  top_->write(data);
}

void Encoder::write(std::string_view data) {
  write(std::as_bytes(std::span(data.data(), data.size())));
}

void Encoder::finish() {
  if (finished_) throw Error(top_->describe() + ": finish called twice");
  finished_ = true;
  top_->finish();
}

std::string Encoder::describe() const { return top_->describe(); }

}  // namespace safespool
