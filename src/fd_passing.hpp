// SPDX-License-Identifier: GPL-3.0-or-later
// Internal: one message with descriptors attached (SCM_RIGHTS), as the
// processor and its guard exchange them on their lifeline socket.
// Header-only: the guard links no project library.
#pragma once

#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <span>
#include <vector>

namespace safespool {

/// Sends `bytes` as one message on `sock` with `fds` attached, with
/// MSG_NOSIGNAL and `flags`, retrying EINTR. True when the whole message
/// went (false with errno set otherwise).
inline bool send_with_fds(int sock, std::span<const char> bytes, std::span<const int> fds,
                          int flags = 0) {
  iovec iov{const_cast<char*>(bytes.data()), bytes.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
  if (!fds.empty()) {
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  ssize_t n;
  do {
    n = ::sendmsg(sock, &msg, MSG_NOSIGNAL | flags);
  } while (n < 0 && errno == EINTR);
  return n == static_cast<ssize_t>(bytes.size());
}

}  // namespace safespool
