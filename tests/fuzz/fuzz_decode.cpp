// SPDX-License-Identifier: GPL-3.0-or-later
// libFuzzer target: encoding detection and the zstd stage feeding the
// header reader, as a queue scan would run them on a hostile job file.
//
// OpenPGP decoding runs gpg, a process per input, too slow to fuzz here;
// its detection is covered by detect_encoding on every input.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <span>

#include "safespool/decode.hpp"
#include "safespool/error.hpp"
#include "safespool/packet.hpp"

using namespace safespool;

namespace {

Fd memfd_with(const uint8_t* data, size_t size) {
  Fd fd(::memfd_create("fuzz", MFD_CLOEXEC));
  if (size) write_all(fd.get(), std::as_bytes(std::span(data, size)), "memfd");
  ::lseek(fd.get(), 0, SEEK_SET);
  return fd;
}

void drain(Reader& r) {
  std::byte buf[4096];
  size_t total = 0;
  while (size_t n = r.read(buf)) {
    total += n;
    if (total > (64u << 20)) return;  // a decompression bomb is not a bug
  }
  r.finish();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Encoding e = detect_encoding(std::as_bytes(std::span(data, size)));
  (void)encoding_name(e);
  if (e == Encoding::OpenPgp) return 0;
  try {
    DecodeOptions opts;
    opts.mode = e == Encoding::Zstd ? DecodeMode::Zstd : DecodeMode::Auto;
    Decoded d = open_decoded(memfd_with(data, size), "fuzz", opts);
    read_header(*d.reader, "fuzz");
    drain(*d.reader);
  } catch (const Error&) {
  }
  try {
    auto z = make_zstd_reader(make_fd_reader(memfd_with(data, size), "fuzz"));
    drain(*z);
  } catch (const Error&) {
  }
  return 0;
}
