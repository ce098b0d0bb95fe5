// SPDX-License-Identifier: GPL-3.0-or-later
#include "safespool/error.hpp"

#include <cerrno>
#include <cstring>

namespace safespool {

SysError::SysError(const std::string& context, int err)
    : Error(context + ": " + std::strerror(err), exit_code_for_errno(err)), err_(err) {}

void throw_errno(const std::string& context) { throw SysError(context, errno); }

int exit_code_for_errno(int err) {
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return kExitNoInput;
    case EACCES:
    case EPERM:
      return kExitNoPerm;
    case EIO:
    case ENOSPC:
    case EDQUOT:
    case EROFS:
      return kExitIoErr;
    default:
      return kExitOsErr;
  }
}

}  // namespace safespool
