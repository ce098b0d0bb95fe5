// SPDX-License-Identifier: GPL-3.0-or-later
// Seqfile locking and durability; queue init, write and scan on real dirs.
#include "safespool/queue.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "safespool/digest.hpp"
#include "safespool/error.hpp"
#include "safespool/huge_pages.hpp"
#include "safespool/ledger.hpp"
#include "safespool/ordering.hpp"
#include "safespool/seqfile.hpp"
#include "safespool/units.hpp"
#include "test_util.hpp"

using namespace safespool;
namespace fs = std::filesystem;

namespace {

using test::TempDir;

using test::slurp;
using test::spit;

std::string packet(uint64_t seq) {
  Meta m;
  m.seq = seq;
  m.ctime_secs = 1700000000;
  return encode_header(m) + "payload";
}

}  // namespace

TEST(SeqFile, CreatesStartsAtOneAndIncrementsDurably) {
  TempDir d;
  std::string path = d.path / "seq";
  {
    auto sf = SeqFile::try_open(path, true);
    ASSERT_TRUE(sf);
    EXPECT_EQ(sf->next(), 1u);
    EXPECT_EQ(sf->increment(), 1u);
    EXPECT_EQ(sf->increment(), 2u);
  }
  EXPECT_EQ(slurp(path), "3\n");
  EXPECT_FALSE(fs::exists(path + ".temp"));
}

TEST(SeqFile, APreparedValueChangesNothingUntilSetAndIsNeverLeftBehind) {
  TempDir d;
  std::string path = d.path / "seq";
  {
    auto sf = SeqFile::try_open(path, true);
    ASSERT_TRUE(sf);
    sf->prepare(2);
    EXPECT_EQ(slurp(path), "1\n");  // PATH unchanged until set()
    EXPECT_EQ(slurp(path + ".temp"), "2\n");
    struct stat prepared;
    ASSERT_EQ(::stat((path + ".temp").c_str(), &prepared), 0);
    EXPECT_EQ(sf->increment(), 1u);
    struct stat now;
    ASSERT_EQ(::stat(path.c_str(), &now), 0);
    EXPECT_EQ(now.st_ino, prepared.st_ino);  // renamed, not written again
    EXPECT_EQ(slurp(path), "2\n");
    // Exchanged where the file system can: the old number's inode waits
    // under PATH.temp for the next prepare().
    if (fs::exists(path + ".temp")) {
      EXPECT_EQ(slurp(path + ".temp"), "1\n");
    }
    struct stat left;
    bool exchanged = ::stat((path + ".temp").c_str(), &left) == 0;
    // A prepared value that is not the one set is not used.
    sf->prepare(7);
    struct stat seven;
    ASSERT_EQ(::stat((path + ".temp").c_str(), &seven), 0);
    if (exchanged) {
      EXPECT_EQ(seven.st_ino, left.st_ino) << "the left inode is reused";
    }
    sf->set(5);
    EXPECT_EQ(slurp(path), "5\n");
    EXPECT_EQ(sf->next(), 5u);
    // Prepared and never used (the job failed): removed with the lock,
    // and not by a moved-from SeqFile.
    sf->prepare(6);
    SeqFile moved = std::move(*sf);
    sf.reset();
    EXPECT_TRUE(fs::exists(path + ".temp"));
  }
  EXPECT_FALSE(fs::exists(path + ".temp"));
  EXPECT_EQ(slurp(path), "5\n");
}

// nextseq.temp left by another user (fspl run as root, say): a new file
// is made, as a rename would have, not one we may not write or own.
TEST(SeqFile, ATemporaryFileOfAnotherUserIsReplacedNotReused) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to make a file of another user";
  TempDir d;
  std::string path = d.path / "seq";
  auto sf = SeqFile::try_open(path, true);
  ASSERT_TRUE(sf);
  spit(path + ".temp", "9\n");
  ASSERT_EQ(::chown((path + ".temp").c_str(), 65534, 65534), 0);
  sf->prepare(2);
  struct stat st;
  ASSERT_EQ(::stat((path + ".temp").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 0u) << "the other user's file was reused";
  sf->set(2);
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 0u);
  EXPECT_EQ(slurp(path), "2\n");
}

TEST(SeqFile, LockExcludesAnotherOpenAndFlockUsers) {
  TempDir d;
  std::string path = d.path / "seq";
  auto first = SeqFile::try_open(path, true);
  ASSERT_TRUE(first);
  EXPECT_FALSE(SeqFile::try_open(path, false));
  first.reset();
  // An flock holder (as fspl is) excludes us too.
  int fd = ::open((path + ".lock").c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_EQ(::flock(fd, LOCK_EX), 0);
  EXPECT_FALSE(SeqFile::try_open(path, false));
  ::close(fd);
  EXPECT_TRUE(SeqFile::try_open(path, false));
}

TEST(SeqFile, GarbageAndMissingLockAreErrors) {
  TempDir d;
  std::string path = d.path / "seq";
  EXPECT_THROW(SeqFile::try_open(path, false), Error);  // no lock file
  spit(path + ".lock", "");
  spit(path, "twelve\n");
  try {
    SeqFile::try_open(path, false);
    FAIL() << "no error for a non-numeric seqfile";
  } catch (const Error& e) {
    EXPECT_EQ(e.exit_code(), kExitDataErr);
    EXPECT_NE(std::string(e.what()).find("is not a number"), std::string::npos) << e.what();
  }
}

TEST(ParseU64, AcceptsNumbersOnly) {
  EXPECT_EQ(parse_u64(" 18446744073709551615\n", "x"), UINT64_MAX);
  EXPECT_THROW(parse_u64("18446744073709551616", "x"), UsageError);
  EXPECT_THROW(parse_u64("-1", "x"), UsageError);
  EXPECT_THROW(parse_u64("", "x"), UsageError);
  EXPECT_THROW(parse_u64("12a", "x"), UsageError);
}

TEST(Queue, InitCreatesLayoutAndRefusesExisting) {
  TempDir d;
  std::string q = d.path / "q";
  Queue::init(q, false);
  EXPECT_TRUE(fs::is_directory(q + "/jobs"));
  EXPECT_EQ(slurp(q + "/nextseq"), "1\n");
  EXPECT_TRUE(fs::exists(q + "/nextseq.lock"));
  EXPECT_THROW(Queue::init(q, false), SysError);
  std::string ao = d.path / "ao";
  Queue::init(ao, true);
  EXPECT_FALSE(fs::exists(ao + "/nextseq"));
  EXPECT_FALSE(fs::exists(ao + "/nextseq.lock"));
}

TEST(Queue, WriteLeavesOnlyAJobNamedFile) {
  TempDir d;
  std::string q = d.path / "q";
  Queue::init(q, false);
  spit(d.path / "in", packet(5));
  int fd = ::open((d.path / "in").c_str(), O_RDONLY | O_CLOEXEC);
  std::string name = Queue(q).write(fd);
  ::close(fd);
  EXPECT_TRUE(is_job_name(name)) << name;
  int files = 0;
  for (auto& e : fs::directory_iterator(q + "/jobs")) {
    ++files;
    EXPECT_EQ(e.path().filename(), name);
  }
  EXPECT_EQ(files, 1);
  EXPECT_EQ(slurp(q + "/jobs/" + name), packet(5));
}

TEST(Queue, ScanSkipsBadFilesWithReasonsAndNeverBlocks) {
  TempDir d;
  std::string q = d.path / "q";
  Queue::init(q, false);
  fs::path jobs = q + "/jobs";
  spit(jobs / "fspl-good.fspl", packet(1));
  spit(jobs / "fspl-bad.fspl", "garbage that is long enough to fill a prefix....");
  spit(jobs / "not-a-job.txt", packet(2));
  spit(d.path / "target.fspl", packet(3));
  fs::create_symlink(d.path / "target.fspl", jobs / "fspl-link.fspl");
  ASSERT_EQ(::mkfifo((jobs / "fspl-fifo.fspl").c_str(), 0600), 0);
  fs::create_directory(jobs / "fspl-dir.fspl");
  DecodeOptions plain;
  plain.mode = DecodeMode::None;
  ScanResult r = Queue(q).scan(plain);
  ASSERT_EQ(r.jobs.size(), 1u);
  EXPECT_EQ(r.jobs[0].filename, "fspl-good.fspl");
  std::map<std::string, std::string> why;
  for (auto& s : r.skipped) why[s.filename] = s.reason;
  EXPECT_EQ(why.size(), 4u);
  EXPECT_NE(why["fspl-bad.fspl"].find("not a packet"), std::string::npos) << why["fspl-bad.fspl"];
  EXPECT_NE(why["fspl-link.fspl"].find("symbolic link"), std::string::npos)
      << why["fspl-link.fspl"];
  EXPECT_NE(why["fspl-fifo.fspl"].find("not a regular file"), std::string::npos);
  EXPECT_NE(why["fspl-dir.fspl"].find("not a regular file"), std::string::npos);
}

TEST(Queue, SortBySeqMatchesAStableSort) {
  std::mt19937 rng(7);
  for (size_t n : {0, 1, 2, 3, 10, 1000}) {
    JobList jobs;
    for (size_t i = 0; i < n; ++i) {
      JobEntry j;
      j.filename = "fspl-" + std::to_string(i) + ".fspl";
      j.meta.seq = rng() % (n / 2 + 1);  // many equal seqs
      jobs.push_back(j);
    }
    JobList expected = jobs;
    std::stable_sort(expected.begin(), expected.end(),
                     [](const JobEntry& a, const JobEntry& b) { return a.meta.seq < b.meta.seq; });
    sort_by_seq(jobs);
    ASSERT_EQ(jobs.size(), expected.size());
    for (size_t i = 0; i < n; ++i) {
      EXPECT_EQ(jobs[i].filename, expected[i].filename) << "n " << n << " at " << i;
      EXPECT_EQ(jobs[i].meta.seq, expected[i].meta.seq);
    }
  }
}

TEST(Queue, UuidsAreVersion4) {
  std::string u = gen_uuid();
  ASSERT_EQ(u.size(), 36u);
  EXPECT_EQ(u[14], '4');
  EXPECT_NE(std::string("89ab").find(u[19]), std::string::npos);
  EXPECT_NE(gen_uuid(), u);
}

TEST(StaleFiles, DeletedAsDoneOnlyWhenTheLedgerSaysThatExactPacketCompleted) {
  test::TempQueue t;
  Queue q = t.queue();
  spit(t.job("fspl-done.fspl"), packet(5));
  spit(t.job("fspl-other.fspl"), packet(6) + "different bytes");
  spit(t.job("fspl-rerun.fspl"), packet(7));
  spit(t.job("fspl-next.fspl"), packet(9));
  auto hash = [&](const char* name) {
    Fd fd(::open(t.job(name).c_str(), O_RDONLY | O_CLOEXEC));
    return sha256_file(fd.get(), name);
  };
  Ledger ledger(t.path);
  auto record = [&](uint64_t seq, LedgerResult r, std::string sha) {
    LedgerRecord rec;
    rec.seq = seq;
    rec.result = r;
    rec.sha256 = std::move(sha);
    ledger.append(rec);
  };
  record(5, LedgerResult::Success, hash("fspl-done.fspl"));
  record(6, LedgerResult::Success, sha256_hex("another packet with seq 6"));
  record(7, LedgerResult::Success, hash("fspl-rerun.fspl"));
  record(7, LedgerResult::Started, "");  // a rerun started: the success is void
  JobList jobs = q.scan(DecodeOptions{}).jobs;
  tidy_stale(q, jobs, 8, StaleRules{}, DecodeOptions{}, ledger);
  EXPECT_FALSE(fs::exists(t.job("fspl-done.fspl")));
  EXPECT_TRUE(fs::exists(t.job("fspl-other.fspl"))) << "deleted on another packet's record";
  EXPECT_TRUE(fs::exists(t.job("fspl-rerun.fspl"))) << "a voided completion deleted a file";
  EXPECT_TRUE(fs::exists(t.job("fspl-next.fspl")));
  tidy_stale(q, jobs, 8, StaleRules{true, true}, DecodeOptions{}, ledger);
  EXPECT_TRUE(fs::exists(t.job("fspl-other.fspl"))) << "--never-delete deleted";
  tidy_stale(q, jobs, 8, StaleRules{false, true}, DecodeOptions{}, ledger);
  EXPECT_FALSE(fs::exists(t.job("fspl-other.fspl"))) << "--delete-stale kept a stale file";
  EXPECT_TRUE(fs::exists(t.job("fspl-next.fspl")));
}

TEST(HugePages, LargeAndSmallBlocksHoldTheirValuesAndGoBackWhereTheyCameFrom) {
  // Below and above kHugeAllocMin: operator new and mmap; growth moves
  // elements from one kind to the other (ASan checks the frees match).
  std::vector<uint64_t, HugePageAllocator<uint64_t>> v;
  for (uint64_t i = 0; i < 3 * kHugeAllocMin / sizeof(uint64_t); ++i) v.push_back(i * 7);
  for (uint64_t i = 0; i < v.size(); i += 4099) ASSERT_EQ(v[i], i * 7);
  v.clear();
  v.shrink_to_fit();
  HugeBuffer big(kHugeAllocMin + 1), small(16);
  big.get()[kHugeAllocMin] = 'x';
  small.get()[15] = 'y';
  HugeBuffer moved = std::move(big);
  EXPECT_EQ(big.get(), nullptr);
  EXPECT_EQ(moved.get()[kHugeAllocMin], 'x');
  EXPECT_EQ(moved.size(), kHugeAllocMin + 1);
  small = std::move(moved);
  EXPECT_EQ(small.get()[kHugeAllocMin], 'x');
}
