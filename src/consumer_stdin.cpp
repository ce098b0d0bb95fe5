// SPDX-License-Identifier: GPL-3.0-or-later
#include "consumer_stdin.hpp"

#include <fcntl.h>
#include <unistd.h>

#include "safespool/error.hpp"

namespace safespool {
namespace {

/// The payload's file offset, for counting what a plain-file consumer read.
uint64_t offset_of(int fd) {
  off_t off = ::lseek(fd, 0, SEEK_CUR);
  return off > 0 ? static_cast<uint64_t>(off) : 0;
}

}  // namespace

ConsumerStdin choose_stdin(const PayloadSource& payload, const HandoffOptions& opts) {
  ConsumerStdin in;
  if (payload.stream) {
    in.pipe = make_relay_pipe(opts.pipe_size, opts.job_name);
    in.fd = in.pipe.read.get();
  } else if (payload.file) {
    in.start_offset = offset_of(payload.file.get());
    in.fd = payload.file.get();
  } else {
    in.dev_null = Fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!in.dev_null) throw_errno("cannot open /dev/null");
    in.fd = in.dev_null.get();
  }
  return in;
}

std::function<uint64_t()> byte_counter(const PayloadSource& payload, const Relay* relay,
                                       uint64_t start_offset) {
  if (relay) return [relay] { return relay->bytes(); };
  if (payload.file)
    return [fd = payload.file.get(), start_offset] { return offset_of(fd) - start_offset; };
  return [] { return uint64_t{0}; };
}

}  // namespace safespool
