// SPDX-License-Identifier: GPL-3.0-or-later
// The header index: used only for unchanged files, ignored on any doubt.
#include "safespool/index.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <thread>

#include "../../src/index_format.hpp"
#include "safespool/queue.hpp"
#include "test_util.hpp"

using namespace safespool;
namespace fs = std::filesystem;

namespace {

struct TempQueue : test::TempQueue {
  fs::path index() const { return path / HeaderIndex::kFileName; }
};

std::string packet(uint64_t seq) {
  Meta m;
  m.seq = seq;
  m.ctime_secs = 1700000000;
  return encode_header(m) + "payload";
}

using test::spit;

std::string name_of(int i) { return "fspl-" + std::to_string(1000 + i) + ".fspl"; }

// Rewrites the index as if the scan that wrote it had run a minute from
// now, so that files made a moment ago are not "racy" in it. `edit` may
// change the entries first.
void settle_index(const TempQueue& t, const std::function<void(JobList&)>& edit = {}) {
  DecodeOptions d;
  ScanResult r = t.queue().scan(d);
  if (edit) edit(r.jobs);
  struct stat st;
  ASSERT_EQ(::stat((t.path / "jobs").c_str(), &st), 0);
  std::vector<std::string> raw;
  for (const auto& j : r.jobs) raw.push_back(encode_header(j.meta));
  std::vector<HeaderIndex::Entry> entries;
  for (size_t i = 0; i < r.jobs.size(); ++i) {
    const auto& j = r.jobs[i];
    entries.push_back(
        {j.filename, j.id, j.meta.seq, j.meta.ctime_secs, j.meta.ctime_nanos, raw[i]});
  }
  HeaderIndex::save(t.path, *index_key(d), st, FsTime{::time(nullptr) + 60, 0}, entries);
}

std::map<std::string, JobEntry> scan_by_name(const TempQueue& t, ScanFor check = ScanFor::Listing) {
  std::map<std::string, JobEntry> out;
  for (auto& j : t.queue().scan(DecodeOptions{}, check).jobs) out.emplace(j.filename, j);
  return out;
}

}  // namespace

TEST(HeaderIndex, UnchangedFilesAreTakenFromTheIndex) {
  TempQueue t;
  for (int i = 1; i <= 3; ++i) spit(t.job(name_of(i)), packet(i));
  settle_index(t);
  for (auto check : {ScanFor::Listing, ScanFor::Summary, ScanFor::Processing}) {
    auto jobs = scan_by_name(t, check);
    ASSERT_EQ(jobs.size(), 3u);
    for (int i = 1; i <= 3; ++i) {
      EXPECT_TRUE(jobs.at(name_of(i)).from_index);
      EXPECT_EQ(jobs.at(name_of(i)).meta.seq, static_cast<uint64_t>(i));
      EXPECT_EQ(jobs.at(name_of(i)).meta.ctime_secs, 1700000000);
    }
  }
}

TEST(HeaderIndex, OnlyAFullListingParsesTheIndexedHeaders) {
  TempQueue t;
  Meta m;
  m.seq = 5;
  m.ctime_secs = 1700000001;
  m.ctime_nanos = 42;
  m.kind = JobKind::Command;
  m.params = {"echo", "hi"};
  m.env = {{"A", "b"}};
  spit(t.job(name_of(1)), encode_header(m) + "payload");
  settle_index(t);
  JobEntry full = scan_by_name(t, ScanFor::Listing).at(name_of(1));
  ASSERT_TRUE(full.from_index);
  EXPECT_EQ(full.meta, m);
  JobEntry summary = scan_by_name(t, ScanFor::Summary).at(name_of(1));
  ASSERT_TRUE(summary.from_index);
  EXPECT_EQ(summary.meta.seq, 5u);
  EXPECT_EQ(summary.meta.ctime_secs, 1700000001);
  EXPECT_EQ(summary.meta.ctime_nanos, 42u);
  EXPECT_TRUE(summary.meta.params.empty());
}

// An entry is used only when its file's ctime is strictly older than the
// bound the index was written with (the file system's clock when the scan
// that wrote it began reading): a change in the same tick could keep it.
TEST(HeaderIndex, AnEntryIsUsedOnlyWhenItsFileIsOlderThanTheIndexBound) {
  TempQueue t;
  spit(t.job(name_of(1)), packet(1));
  struct stat jobs_st, st;
  ASSERT_EQ(::stat((t.path / "jobs").c_str(), &jobs_st), 0);
  ASSERT_EQ(::stat(t.job(name_of(1)).c_str(), &st), 0);
  const std::string name = name_of(1), raw = packet(1).substr(0, packet(1).size() - 7);
  HeaderIndex::Entry e{name, file_id(st), 1, 1700000000, 0, raw};
  const FsTime ctime{st.st_ctim.tv_sec, st.st_ctim.tv_nsec};
  HeaderIndex::save(t.path, *index_key(DecodeOptions{}), jobs_st, ctime, {e});
  EXPECT_FALSE(scan_by_name(t).at(name_of(1)).from_index);
  HeaderIndex::save(t.path, *index_key(DecodeOptions{}), jobs_st, FsTime{ctime.sec, ctime.nsec + 1},
                    {e});
  EXPECT_TRUE(scan_by_name(t).at(name_of(1)).from_index);
}

// A freshly written queue is answered from the index by its second scan
// (the files were written a few clock ticks before the first one began).
TEST(HeaderIndex, TheSecondScanOfAFreshQueueUsesTheIndex) {
  TempQueue t;
  for (int i = 1; i <= 100; ++i) spit(t.job(name_of(i)), packet(i));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  auto first = scan_by_name(t);
  ASSERT_EQ(first.size(), 100u);
  for (auto& [name, j] : first) EXPECT_FALSE(j.from_index) << name;
  auto second = scan_by_name(t);
  ASSERT_EQ(second.size(), 100u);
  for (auto& [name, j] : second) EXPECT_TRUE(j.from_index) << name;
}

// However soon after a scan a file is rewritten in place (same inode,
// same size), the next scan sees what it holds now.
TEST(HeaderIndex, AFileRewrittenInPlaceRightAfterAScanIsNeverMissed) {
  TempQueue t;
  for (uint64_t round = 1; round <= 200; ++round) {
    spit(t.job(name_of(1)), packet(round));
    ASSERT_EQ(scan_by_name(t).at(name_of(1)).meta.seq, round);
    spit(t.job(name_of(1)), packet(round + 1000));
    for (auto check : {ScanFor::Listing, ScanFor::Processing})
      ASSERT_EQ(scan_by_name(t, check).at(name_of(1)).meta.seq, round + 1000) << round;
  }
}

TEST(HeaderIndex, AFileReplacedByRenameIsReadAgain) {
  TempQueue t;
  spit(t.job(name_of(1)), packet(1));
  settle_index(t);
  spit(t.path / "new", packet(9));
  fs::rename(t.path / "new", t.job(name_of(1)));
  // Each scan from the index as it was (the first one may rewrite it with
  // what it read, and the next would rightly use that).
  const std::string index = test::slurp(t.index());
  for (auto check : {ScanFor::Listing, ScanFor::Processing}) {
    spit(t.index(), index);
    auto j = scan_by_name(t, check).at(name_of(1));
    EXPECT_FALSE(j.from_index);
    EXPECT_EQ(j.meta.seq, 9u);
  }
}

// Every scan whose listing decides something: a listing, a summary, and
// the processor's scan with its window of the next few seqs.
struct Check {
  ScanFor purpose;
  uint64_t seq_below;
};
constexpr Check kDecidingScans[] = {{ScanFor::Listing, UINT64_MAX},
                                    {ScanFor::Summary, UINT64_MAX},
                                    {ScanFor::Processing, UINT64_MAX},
                                    {ScanFor::Processing, 4098}};

// Scans with each of kDecidingScans, each from the index as it is now (a
// scan that learns something may rewrite it).
template <typename F>
void for_each_deciding_scan(const TempQueue& t, F check) {
  const std::string index = test::slurp(t.index());
  ASSERT_FALSE(index.empty());
  for (const Check& c : kDecidingScans) {
    spit(t.index(), index);
    check(c);
  }
}

JobEntry scan_one(const TempQueue& t, const Check& c, const std::string& name) {
  for (auto& j : t.queue().scan(DecodeOptions{}, c.purpose, c.seq_below).jobs)
    if (j.filename == name) return j;
  ADD_FAILURE() << name << " not listed";
  return {};
}

TEST(HeaderIndex, AFileRewrittenInPlaceIsReadAgainByEveryScan) {
  TempQueue t;
  spit(t.job(name_of(1)), packet(1));
  settle_index(t);
  spit(t.job(name_of(1)), packet(2));  // same inode, same size
  for_each_deciding_scan(t, [&](const Check& c) {
    JobEntry j = scan_one(t, c, name_of(1));
    EXPECT_FALSE(j.from_index) << static_cast<int>(c.purpose) << " below " << c.seq_below;
    EXPECT_EQ(j.meta.seq, 2u) << static_cast<int>(c.purpose) << " below " << c.seq_below;
  });
}

// A sender that reuses one upload name: job 1 ran and was deleted, then
// the next packet was written to a temporary file and renamed in under
// the same name, and ext4 gave it the inode number just freed.
TEST(HeaderIndex, ANameReusedWithAFreedInodeNumberIsReadAgainByEveryScan) {
  TempQueue t;
  spit(t.job(name_of(1)), packet(1));
  settle_index(t);
  const FileId old_id = scan_one(t, kDecidingScans[0], name_of(1)).id;
  fs::remove(t.job(name_of(1)));
  spit(t.path / "upload.tmp", packet(2));  // same size as the old one
  fs::rename(t.path / "upload.tmp", t.job(name_of(1)));
  struct stat st;
  ASSERT_EQ(::stat(t.job(name_of(1)).c_str(), &st), 0);
  if (st.st_ino != old_id.ino) {
    // Another file system: make the index name the new inode number, as
    // ext4's reuse does.
    settle_index(t, [&](JobList& jobs) {
      jobs[0].id = old_id;
      jobs[0].id.ino = st.st_ino;
      jobs[0].meta.seq = 1;
    });
  }
  for_each_deciding_scan(t, [&](const Check& c) {
    JobEntry j = scan_one(t, c, name_of(1));
    EXPECT_FALSE(j.from_index) << static_cast<int>(c.purpose) << " below " << c.seq_below;
    EXPECT_EQ(j.meta.seq, 2u) << static_cast<int>(c.purpose) << " below " << c.seq_below;
  });
}

// What the processor's windowed scan may trust (ScanFor::Processing): a
// file the index places beyond the window is counted on its inode number
// alone, so a job may hide there; a Listing scan finds it.
TEST(HeaderIndex, BeyondItsWindowTheProcessorCountsByInodeAndAListingConfirms) {
  TempQueue t;
  spit(t.job(name_of(1)), packet(5000));
  settle_index(t);
  spit(t.job(name_of(1)), packet(2));  // same inode, same size
  ScanResult r = t.queue().scan(DecodeOptions{}, ScanFor::Processing, 4098);
  EXPECT_TRUE(r.jobs.empty());
  EXPECT_EQ(r.beyond, 1u);
  JobEntry j = scan_one(t, kDecidingScans[0], name_of(1));
  EXPECT_EQ(j.meta.seq, 2u);
}

// The index holds decrypted headers (params, FSPL_SET_ values) of
// encrypted packets: no one but the queue's owner may read it, whatever
// the umask.
TEST(HeaderIndex, OnlyItsOwnerMayReadIt) {
  TempQueue t;
  spit(t.job(name_of(1)), packet(1));
  mode_t old_umask = ::umask(0);
  t.queue().scan(DecodeOptions{});
  ::umask(old_umask);
  struct stat st;
  ASSERT_EQ(::stat(t.index().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

// A writer killed while it wrote the index leaves its temporary file: the
// next writer removes it once it is old and no live writer holds it.
TEST(HeaderIndex, TemporaryFilesOfKilledWritersAreRemoved) {
  TempQueue t;
  spit(t.job(name_of(1)), packet(1));
  const fs::path left = t.path / (std::string(HeaderIndex::kFileName) + ".tmp-left");
  const fs::path held = t.path / (std::string(HeaderIndex::kFileName) + ".tmp-held");
  const fs::path fresh = t.path / (std::string(HeaderIndex::kFileName) + ".tmp-fresh");
  for (const auto& p : {left, held, fresh}) spit(p, "partial");
  auto an_hour_ago = fs::file_time_type::clock::now() - std::chrono::hours(1);
  fs::last_write_time(left, an_hour_ago);
  fs::last_write_time(held, an_hour_ago);
  Fd lock(::open(held.c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_EQ(::flock(lock.get(), LOCK_EX), 0);
  t.queue().scan(DecodeOptions{});  // learns one file: writes the index
  EXPECT_TRUE(fs::exists(t.index()));
  EXPECT_FALSE(fs::exists(left));
  EXPECT_TRUE(fs::exists(held));   // a live writer's
  EXPECT_TRUE(fs::exists(fresh));  // perhaps one being created
}

// An index written by a scan that listed all of jobs/ stands in for
// readdir() while jobs/ is unchanged; any file added, removed or renamed
// in changes jobs/, and a file rewritten in place is found by its
// identity.
TEST(HeaderIndex, AnUnchangedDirectoryIsListedFromTheIndexAndEveryChangeIsSeen) {
  TempQueue t;
  for (int i = 1; i <= 3; ++i) spit(t.job(name_of(i)), packet(i));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  scan_by_name(t);  // writes the index, with the state of jobs/
  auto seqs = [&](ScanFor purpose) {
    std::map<std::string, uint64_t> out;
    for (auto& [name, j] : scan_by_name(t, purpose)) out[name] = j.meta.seq;
    return out;
  };
  using Seqs = std::map<std::string, uint64_t>;
  for (auto purpose : {ScanFor::Listing, ScanFor::Processing})
    EXPECT_EQ(seqs(purpose), (Seqs{{name_of(1), 1}, {name_of(2), 2}, {name_of(3), 3}}));
  spit(t.job(name_of(4)), packet(4));
  EXPECT_EQ(seqs(ScanFor::Processing).size(), 4u);
  fs::remove(t.job(name_of(4)));
  EXPECT_EQ(seqs(ScanFor::Processing).size(), 3u);
  spit(t.job(name_of(2)), packet(5));  // in place
  EXPECT_EQ(seqs(ScanFor::Processing).at(name_of(2)), 5u);
  spit(t.path / "upload.tmp", packet(6));
  fs::rename(t.path / "upload.tmp", t.job(name_of(3)));
  EXPECT_EQ(seqs(ScanFor::Summary).at(name_of(3)), 6u);
  EXPECT_EQ(seqs(ScanFor::Processing).at(name_of(3)), 6u);
}

// A temporary file in jobs/ (a queue-write or queue-import that died) is
// seen by every scan — an index never stands in for readdir() while one is
// there — and the processor's pass removes it once it is old and unheld,
// from the names its own scan gave: no second listing of jobs/.
TEST(HeaderIndex, ATemporaryFileInJobsIsSeenByEveryScanUntilRemoved) {
  TempQueue t;
  for (int i = 1; i <= 3; ++i) spit(t.job(name_of(i)), packet(i));
  const fs::path dead = t.job("tmp-dead.tmp"), live = t.job("tmp-live.tmp");
  spit(dead, "partial");
  spit(live, "partial");
  auto an_hour_ago = fs::file_time_type::clock::now() - std::chrono::hours(1);
  fs::last_write_time(dead, an_hour_ago);
  fs::last_write_time(live, an_hour_ago);
  Fd lock(::open(live.c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_EQ(::flock(lock.get(), LOCK_EX), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  using Names = std::vector<std::string>;
  auto temp_files = [&](ScanFor purpose) {
    Names names = t.queue().scan(DecodeOptions{}, purpose).temp_files;
    std::sort(names.begin(), names.end());
    return names;
  };
  EXPECT_EQ(temp_files(ScanFor::Listing), (Names{"tmp-dead.tmp", "tmp-live.tmp"}));
  EXPECT_TRUE(fs::exists(t.index()));
  EXPECT_EQ(temp_files(ScanFor::Processing), (Names{"tmp-dead.tmp", "tmp-live.tmp"}))
      << "jobs/ is unchanged, and yet the index must not stand in for it";
  t.queue().remove_abandoned_temp_files(temp_files(ScanFor::Processing));
  EXPECT_FALSE(fs::exists(dead));
  EXPECT_TRUE(fs::exists(live));  // a live writer's
  t.queue().remove_abandoned_temp_files({"../nextseq", "fspl-1.fspl", "tmp-../../nextseq.tmp"});
  EXPECT_TRUE(fs::exists(t.path / "nextseq"));
  EXPECT_TRUE(fs::exists(t.job(name_of(1))));
  lock.reset();
  fs::remove(live);
  fs::create_directory(t.job("tmp-dir.tmp"));  // not a writer's: neither counted nor removed
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(temp_files(ScanFor::Listing), Names{});
  EXPECT_EQ(temp_files(ScanFor::Processing), Names{});
  EXPECT_TRUE(fs::is_directory(t.job("tmp-dir.tmp")));
}

TEST(HeaderIndex, RemovedFilesAreNotListed) {
  TempQueue t;
  for (int i = 1; i <= 3; ++i) spit(t.job(name_of(i)), packet(i));
  settle_index(t);
  fs::remove(t.job(name_of(2)));
  auto jobs = scan_by_name(t, ScanFor::Processing);
  EXPECT_EQ(jobs.size(), 2u);
  EXPECT_FALSE(jobs.count(name_of(2)));
}

TEST(HeaderIndex, AFewNewFilesAreReadWithoutRewritingABigIndex) {
  TempQueue t;
  constexpr int kOld = 200;
  for (int i = 1; i <= kOld; ++i) spit(t.job(name_of(i)), packet(i));
  settle_index(t);
  auto index_bytes = [&] {
    std::ifstream in(t.index(), std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  const std::string settled = index_bytes();
  // 2 new files in 202: fewer than 1/64, read again by every scan instead.
  for (int i = kOld + 1; i <= kOld + 2; ++i) spit(t.job(name_of(i)), packet(i));
  for (int round = 0; round < 2; ++round) {
    auto jobs = scan_by_name(t);
    ASSERT_EQ(jobs.size(), kOld + 2u);
    EXPECT_TRUE(jobs.at(name_of(1)).from_index);
    for (int i = kOld + 1; i <= kOld + 2; ++i) {
      EXPECT_FALSE(jobs.at(name_of(i)).from_index);
      EXPECT_EQ(jobs.at(name_of(i)).meta.seq, static_cast<uint64_t>(i));
    }
    EXPECT_EQ(index_bytes(), settled) << "round " << round;
  }
  // 6 in 206: now the index learns them.
  for (int i = kOld + 3; i <= kOld + 6; ++i) spit(t.job(name_of(i)), packet(i));
  EXPECT_EQ(scan_by_name(t).size(), kOld + 6u);
  EXPECT_NE(index_bytes(), settled);
  // The rewritten index holds every file, the old ones with the headers
  // carried over from the index it replaced (meta() parses each header
  // and checks it against its entry). Its entries are racy, so a scan
  // would not use them yet: read it directly.
  struct stat jobs_st;
  ASSERT_EQ(::stat((t.path / "jobs").c_str(), &jobs_st), 0);
  HeaderIndex idx = HeaderIndex::load(t.path, *index_key(DecodeOptions{}), jobs_st);
  ASSERT_EQ(idx.size(), kOld + 6u);
  std::map<std::string, uint64_t> seqs;
  for (size_t pos = 0; pos < idx.size(); ++pos) {
    HeaderIndex::Entry e = idx.entry(pos);
    Meta m = idx.meta(e);
    EXPECT_EQ(m.seq, e.seq);
    EXPECT_EQ(m.ctime_secs, 1700000000);
    seqs[std::string(e.name)] = m.seq;
  }
  for (int i = 1; i <= kOld + 6; ++i) EXPECT_EQ(seqs[name_of(i)], static_cast<uint64_t>(i)) << i;
}

TEST(HeaderIndex, ACorruptOrTruncatedIndexIsIgnoredAndRewritten) {
  for (int damage : {0, 1, 2, 3}) {
    TempQueue t;
    for (int i = 1; i <= 3; ++i) spit(t.job(name_of(i)), packet(i));
    settle_index(t);
    std::string bytes;
    {
      std::ifstream in(t.index(), std::ios::binary);
      bytes.assign(std::istreambuf_iterator<char>(in), {});
    }
    ASSERT_GT(bytes.size(), 100u);
    if (damage == 0) bytes[bytes.size() / 2] ^= 0x40;  // a flipped bit
    if (damage == 1) bytes.resize(bytes.size() / 2);   // cut short
    if (damage == 3)
      bytes.erase(bytes.size() - 28 - 5, 5);            // the last header cut (before the trailer)
    if (damage == 2) bytes.assign(bytes.size(), '\0');  // a crash's zeroes
    spit(t.index(), bytes);
    auto jobs = scan_by_name(t);
    ASSERT_EQ(jobs.size(), 3u) << "damage " << damage;
    for (int i = 1; i <= 3; ++i) {
      // A cut header is read from its file; the others carry their own CRCs.
      if (damage != 3) {
        EXPECT_FALSE(jobs.at(name_of(i)).from_index) << "damage " << damage;
      }
      EXPECT_EQ(jobs.at(name_of(i)).meta.seq, static_cast<uint64_t>(i));
    }
    if (damage == 3) {
      int read_again = 0;
      for (auto& [name, j] : jobs) read_again += !j.from_index;
      EXPECT_EQ(read_again, 1);
    }
    // The scan wrote a sound index again: settled, it is used.
    settle_index(t);
    EXPECT_TRUE(scan_by_name(t).at(name_of(1)).from_index);
  }
}

TEST(HeaderIndex, AnIndexCopiedWithTheQueueIsNotTrusted) {
  TempQueue t;
  spit(t.job(name_of(1)), packet(1));
  settle_index(t);
  TempQueue copy;
  test::remove_tree(copy.path);
  fs::copy(t.path, copy.path, fs::copy_options::recursive);
  auto j = scan_by_name(copy).at(name_of(1));
  EXPECT_FALSE(j.from_index);  // other inodes: it says nothing about them
  EXPECT_EQ(j.meta.seq, 1u);
}

TEST(HeaderIndex, OtherDecodingOptionsDoNotShareIt) {
  TempQueue t;
  spit(t.job(name_of(1)), packet(1));
  settle_index(t);
  DecodeOptions none;
  none.mode = DecodeMode::None;
  ScanResult r = t.queue().scan(none);
  ASSERT_EQ(r.jobs.size(), 1u);
  EXPECT_FALSE(r.jobs[0].from_index);
}

TEST(HeaderIndex, AnExternalDecoderIsNeverIndexed) {
  TempQueue t;
  spit(t.job(name_of(1)), packet(1));
  DecodeOptions ext;
  ext.external = "cat";
  ScanResult r = t.queue().scan(ext);
  ASSERT_EQ(r.jobs.size(), 1u);
  EXPECT_EQ(r.jobs[0].meta.seq, 1u);
  EXPECT_FALSE(fs::exists(t.index()));
}

TEST(HeaderIndex, ScansRacingWithWritersAlwaysSeeTrueHeaders) {
  TempQueue t;
  constexpr int kFiles = 60;
  std::atomic<bool> stop{false};
  std::atomic<int> wrong{0};
  auto scanner = [&] {
    while (!stop) {
      for (const auto& j : t.queue().scan(DecodeOptions{}).jobs)
        if (j.filename != name_of(static_cast<int>(j.meta.seq))) ++wrong;
    }
  };
  std::thread a(scanner), b(scanner);
  for (int i = 1; i <= kFiles; ++i) {
    // Complete under a temporary name, then renamed: the queue's contract.
    spit(t.path / "tmp", packet(static_cast<uint64_t>(i)));
    fs::rename(t.path / "tmp", t.job(name_of(i)));
    if (i % 3 == 0) fs::remove(t.job(name_of(i - 1)));
  }
  stop = true;
  a.join();
  b.join();
  EXPECT_EQ(wrong, 0);
  auto jobs = scan_by_name(t);
  EXPECT_EQ(jobs.size(), static_cast<size_t>(kFiles - kFiles / 3));
}

TEST(HeaderIndex, ItsChecksumIsTheStandardCrc32cWithOrWithoutTheCpuInstruction) {
  const std::string check = "123456789";  // the standard check value
  EXPECT_EQ(index_format::checksum(0, check), 0xE3069283u);
  auto p = reinterpret_cast<const unsigned char*>(check.data());
  EXPECT_EQ(~index_format::crc32c_bytes(~0u, p, check.size()), 0xE3069283u);
  std::string big(100003, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7 + 3);
  uint32_t whole = index_format::checksum(0, big);
  uint32_t parts =
      index_format::checksum(index_format::checksum(0, big.substr(0, 4097)), big.substr(4097));
  EXPECT_EQ(whole, parts);
  auto b = reinterpret_cast<const unsigned char*>(big.data());
  EXPECT_EQ(whole, ~index_format::crc32c_bytes(~0u, b, big.size()));
}
