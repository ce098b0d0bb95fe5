// SPDX-License-Identifier: GPL-3.0-or-later
// The zstd stage: libzstd streaming decompression in constant memory.
//
// One input buffer (ZSTD_DStreamInSize, ~128 KiB) and the frame's window
// are all we hold. Concatenated frames decode as concatenated output and
// skippable frames are skipped, as the zstd CLI does. Corruption shows up
// late: a checksum mismatch only at the end of its frame, after the bad
// bytes were produced, and truncation only at the end of the input. So the
// stream is "good" only once read() returned 0 without throwing.
#include <zstd.h>

#include <memory>
#include <mutex>

#include "safespool/decode.hpp"
#include "safespool/error.hpp"

namespace safespool {
namespace {

/// `zstd --long=31` writes frames with a 2 GiB window; libzstd refuses
/// anything above 2^27 by default ("Frame requires too much memory").
constexpr int kWindowLogMax = 31;

/// A context that grew beyond this (a large window) is not kept as the
/// spare: it would hold that memory for the rest of the run.
constexpr size_t kSpareMaxBytes = 1 << 20;

struct DCtxDeleter {
  void operator()(ZSTD_DCtx* d) const { ZSTD_freeDCtx(d); }
};
using DCtxPtr = std::unique_ptr<ZSTD_DCtx, DCtxDeleter>;

/// One spare decompression context, reused from packet to packet: creating
/// and freeing one costs more than decoding a small packet.
class SpareDCtx {
 public:
  DCtxPtr take() {
    std::lock_guard lock(mu_);
    return spare_ ? std::move(spare_) : DCtxPtr(ZSTD_createDCtx());
  }
  void give(DCtxPtr d) {
    if (!d || ZSTD_isError(ZSTD_DCtx_reset(d.get(), ZSTD_reset_session_and_parameters)) ||
        ZSTD_sizeof_DCtx(d.get()) > kSpareMaxBytes)
      return;
    std::lock_guard lock(mu_);
    if (!spare_) spare_ = std::move(d);
  }

 private:
  std::mutex mu_;
  DCtxPtr spare_;
};

SpareDCtx& spare_dctx() {
  static auto* spare = new SpareDCtx;  // never destroyed: readers may outlive statics
  return *spare;
}

class ZstdReader : public ReaderLayer {
 public:
  explicit ZstdReader(std::unique_ptr<Reader> inner)
      : ReaderLayer(std::move(inner)),
        dctx_(spare_dctx().take()),
        in_size_(ZSTD_DStreamInSize()),
        in_buf_(new std::byte[in_size_]) {
    if (!dctx_) throw Error(inner_->source() + ": zstd: cannot allocate a decompression context");
    check(ZSTD_DCtx_setParameter(dctx_.get(), ZSTD_d_windowLogMax, kWindowLogMax));
  }

  ~ZstdReader() override { spare_dctx().give(std::move(dctx_)); }

  size_t read(std::span<std::byte> buf) override {
    if (buf.empty() || done_) return 0;
    for (;;) {
      // Refill only when libzstd has nothing left to flush from a full
      // output buffer; otherwise the next call drains it.
      if (in_.pos == in_.size && !inner_eof_ && !pending_) refill();
      ZSTD_outBuffer out{buf.data(), buf.size(), 0};
      const size_t before = in_.pos;
      const size_t ret = ZSTD_decompressStream(dctx_.get(), &out, &in_);
      check(ret);
      // A call that moved nothing says nothing: at a frame boundary it
      // returns the next header's size, which is not truncation.
      if (in_.pos > before || out.pos > 0) last_ = ret;
      if (in_.pos > before) fed_ = true;
      pending_ = out.pos == out.size;
      if (out.pos > 0) return out.pos;
      if (in_.pos == in_.size && inner_eof_) return end_of_input();
    }
  }

  void finish() override {
    if (!done_) fail("finish() before the end of the stream");
    inner_->finish();
  }

  std::string describe() const override { return "zstd < " + inner_->describe(); }

 private:
  void refill() {
    size_t n = inner_->read(std::span(in_buf_.get(), in_size_));
    in_ = ZSTD_inBuffer{in_buf_.get(), n, 0};
    if (n == 0) inner_eof_ = true;
  }

  /// EOF is a promise: only a complete last frame ends the stream.
  size_t end_of_input() {
    if (!fed_) fail("no zstd frame (empty input)");
    if (last_ != 0) fail("truncated input");
    done_ = true;
    return 0;
  }

  void check(size_t ret) const {
    if (ZSTD_isError(ret)) fail(ZSTD_getErrorName(ret));
  }

  [[noreturn]] void fail(const std::string& why) const {
    throw FormatError(inner_->source() + ": zstd: " + why);
  }

  DCtxPtr dctx_;
  size_t in_size_;
  std::unique_ptr<std::byte[]> in_buf_;  ///< not zeroed: only what is read is touched
  ZSTD_inBuffer in_{nullptr, 0, 0};
  size_t last_ = 0;  ///< last ZSTD_decompressStream hint; 0 = frame complete
  bool inner_eof_ = false;
  bool pending_ = false;  ///< output was full: libzstd may hold more bytes
  bool fed_ = false;      ///< some input was consumed (at least one frame)
  bool done_ = false;
};

}  // namespace

std::unique_ptr<Reader> make_zstd_reader(std::unique_ptr<Reader> inner) {
  return std::make_unique<ZstdReader>(std::move(inner));
}

}  // namespace safespool
