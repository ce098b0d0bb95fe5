// SPDX-License-Identifier: GPL-3.0-or-later
#include "consumer_stdin.hpp"

#include <fcntl.h>
#include <unistd.h>

#include "safespool/error.hpp"
#include "safespool/relay.hpp"

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

}  // namespace safespool
