// SPDX-License-Identifier: GPL-3.0-or-later
// Scratch directories: reclaimed once their owner is dead, never before.
#include "../../src/scratch_dir.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "test_util.hpp"

namespace safespool {
namespace {

namespace fs = std::filesystem;

class ScratchDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* old = std::getenv("TMPDIR");
    old_ = old ? old : "";
    ::setenv("TMPDIR", tmp_.path.c_str(), 1);
  }
  void TearDown() override {
    if (old_.empty())
      ::unsetenv("TMPDIR");
    else
      ::setenv("TMPDIR", old_.c_str(), 1);
  }
  /// A directory made by a process that then dies without removing it.
  fs::path left_by_a_dead_process() {
    fs::path made = tmp_.path / "made";
    pid_t pid = ::fork();
    if (pid == 0) {
      auto* d = new ScratchDir("sstest");  // never destroyed: as if SIGKILLed
      test::spit(made, d->path());
      ::_exit(0);
    }
    int st;
    ::waitpid(pid, &st, 0);
    return test::slurp(made);
  }
  size_t count(const std::string& prefix) {
    size_t n = 0;
    for (const auto& e : fs::directory_iterator(tmp_.path))
      n += e.path().filename().string().rfind(prefix, 0) == 0;
    return n;
  }

  test::TempDir tmp_{"scratch"};
  std::string old_;
};

TEST_F(ScratchDirTest, ReclaimsWhatADeadProcessLeftAndNeverALiveOnes) {
  fs::path dead = left_by_a_dead_process();
  ASSERT_TRUE(fs::is_directory(dead)) << dead;
  test::spit(dead / "x", "leftover");
  ScratchDir live("sstest");
  EXPECT_EQ(ScratchDir::reclaim("sstest"), 1);
  EXPECT_FALSE(fs::exists(dead));
  EXPECT_TRUE(fs::is_directory(live.path())) << "a live process's directory was taken";
  EXPECT_EQ(ScratchDir::reclaim("sstest"), 0);
}

TEST_F(ScratchDirTest, AnUnnamedDirectoryIsTakenOnlyWhenOld) {
  fs::path pending = tmp_.path / "sstest.new-abcdef";
  fs::create_directory(pending);  // as if its maker died before it locked it
  EXPECT_EQ(ScratchDir::reclaim("sstest"), 0) << "a fresh one may be about to be locked";
  EXPECT_TRUE(fs::exists(pending));
  EXPECT_EQ(ScratchDir::reclaim("sstest", std::chrono::seconds(0)), 1);
  EXPECT_FALSE(fs::exists(pending));
  EXPECT_EQ(count("sstest"), 0u);
}

}  // namespace
}  // namespace safespool
