// SPDX-License-Identifier: GPL-3.0-or-later
// Spawn tests: finding a command in PATH the way execvp does, and
// remembering it for a run (CommandPaths).
#include "safespool/spawn.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "safespool/error.hpp"
#include "test_util.hpp"

namespace safespool {
namespace {

namespace fs = std::filesystem;

class SpawnTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* path = std::getenv("PATH");
    saved_path_ = path ? path : "";
  }
  void TearDown() override { ::setenv("PATH", saved_path_.c_str(), 1); }
  /// DIR/sub/name, a script that appends `sub` to DIR/ran, with `mode`.
  fs::path script(const std::string& sub, const std::string& name, mode_t mode = 0755) {
    fs::create_directories(dir_ / sub);
    fs::path p = dir_ / sub / name;
    std::ofstream(p) << "#!/bin/sh\necho " << sub << " >> '" << (dir_ / "ran").string() << "'\n";
    ::chmod(p.c_str(), mode);
    return p;
  }
  void set_path(const std::vector<std::string>& subs) {
    std::string path;
    for (const auto& s : subs) path += (path.empty() ? "" : ":") + (dir_ / s).string();
    ::setenv("PATH", path.c_str(), 1);
  }
  std::string ran() {
    std::ifstream in(dir_ / "ran");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  int search_error(const std::string& name) {
    try {
      search_path(name);
    } catch (const SysError& e) {
      return e.err();
    }
    return 0;
  }

  test::TempDir tmp_{"spawn_test"};
  fs::path dir_ = tmp_.path;
  std::string saved_path_;
};

TEST_F(SpawnTest, SearchPathFindsTheFirstExecutableFileInPathOrder) {
  script("a", "cmd", 0644);                    // not executable: skipped
  fs::create_directories(dir_ / "b" / "cmd");  // a directory: skipped
  fs::path want = script("c", "cmd");
  script("d", "cmd");
  set_path({"missing", "a", "b", "c", "d"});
  EXPECT_EQ(search_path("cmd"), want.string());
  EXPECT_EQ(search_path("./cmd"), "./cmd") << "a name with a '/' is used as given";
  EXPECT_EQ(search_path("/no/such/file"), "/no/such/file");
}

TEST_F(SpawnTest, SearchPathFailsLikeExecvp) {
  script("a", "cmd", 0644);
  set_path({"a"});
  EXPECT_EQ(search_error("cmd"), EACCES) << "only a file we may not execute";
  EXPECT_EQ(search_error("other"), ENOENT);
  EXPECT_EQ(search_error(""), ENOENT);
  try {
    search_path("other");
  } catch (const SysError& e) {
    EXPECT_STREQ(e.what(), "cannot run 'other': No such file or directory");
  }
}

TEST_F(SpawnTest, EmptyPathEntryIsTheCurrentDirectory) {
  script("a", "cmd");
  ::setenv("PATH", ("/nonexistent::" + (dir_ / "b").string()).c_str(), 1);
  std::string cwd = fs::current_path();
  fs::current_path(dir_ / "a");
  std::string found = search_path("cmd");
  fs::current_path(cwd);
  EXPECT_EQ(found, "./cmd");
}

TEST_F(SpawnTest, CommandPathsSearchAgainWhenTheRememberedFileIsGone) {
  fs::path first = script("a", "cmd");
  script("b", "cmd");
  set_path({"a", "b"});
  CommandPaths paths;
  SpawnSpec spec;
  spec.argv = {"cmd"};
  EXPECT_TRUE(paths.spawn(spec).wait().success());
  EXPECT_TRUE(paths.spawn(spec).wait().success());
  fs::remove(first);  // uninstalled: the remembered file fails with ENOENT
  EXPECT_TRUE(paths.spawn(spec).wait().success());
  ::chmod((dir_ / "b" / "cmd").c_str(), 0644);  // then EACCES, and nothing else to find
  try {
    paths.spawn(spec);
    ADD_FAILURE() << "a file we may not execute ran";
  } catch (const SysError& e) {
    EXPECT_EQ(e.err(), EACCES) << e.what();
  }
  EXPECT_EQ(ran(), "a\na\nb\n");
}

TEST_F(SpawnTest, CommandPathsReportAMissingCommandAsSpawnDid) {
  set_path({"a"});
  CommandPaths paths;
  SpawnSpec spec;
  spec.argv = {"safespool-no-such-command"};
  try {
    paths.spawn(spec);
    FAIL() << "no error";
  } catch (const SysError& e) {
    EXPECT_EQ(e.err(), ENOENT);
    EXPECT_STREQ(e.what(), "cannot run 'safespool-no-such-command': No such file or directory");
  }
}

}  // namespace
}  // namespace safespool
