// SPDX-License-Identifier: GPL-3.0-or-later
#include <gtest/gtest.h>

#include "safespool/error.hpp"

TEST(Error, SysErrorNamesContextAndReason) {
  safespool::SysError e("cannot open jobs/x", ENOENT);
  EXPECT_STREQ(e.what(), "cannot open jobs/x: No such file or directory");
  EXPECT_EQ(e.exit_code(), safespool::kExitNoInput);
}
