// SPDX-License-Identifier: GPL-3.0-or-later
#include "safespool/ordering.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <sstream>

#include "safespool/error.hpp"
#include "safespool/seqfile.hpp"

namespace safespool {
namespace {

std::string done_path(const Queue& q) { return q.dir() + "/.safespool-done"; }

/// The length of one completion record line, and what a reader reads.
constexpr size_t kDoneRecordSize = 512;

}  // namespace

bool same_bytes(Fd a, Fd b, const std::string& what) {
  struct stat sa, sb;
  if (::fstat(a.get(), &sa) != 0 || ::fstat(b.get(), &sb) != 0) throw_errno("cannot stat " + what);
  if (sa.st_size != sb.st_size) return false;
  std::vector<std::byte> ba(1 << 16), bb(1 << 16);
  for (;;) {
    size_t na = read_full(a.get(), ba, what);
    size_t nb = read_full(b.get(), bb, what);
    if (na != nb || std::memcmp(ba.data(), bb.data(), na) != 0) return false;
    if (na == 0) return true;
  }
}

namespace {

bool same_stream(Reader& a, Reader& b) {
  std::vector<std::byte> ba(1 << 16), bb(1 << 16);
  for (;;) {
    size_t na = 0, nb = 0;
    while (na < ba.size() && (nb = a.read(std::span(ba).subspan(na)))) na += nb;
    size_t got = 0;
    while (got < na && (nb = b.read(std::span(bb).subspan(got, na - got)))) got += nb;
    if (got != na || std::memcmp(ba.data(), bb.data(), na) != 0) return false;
    if (na == 0) return b.read(bb) == 0;
  }
}

}  // namespace

bool same_packet(Fd a, const std::string& name_a, Fd b, const std::string& name_b,
                 const DecodeOptions& decode) {
  std::string what = name_a + " and " + name_b;
  Fd a2(::fcntl(a.get(), F_DUPFD_CLOEXEC, 3)), b2(::fcntl(b.get(), F_DUPFD_CLOEXEC, 3));
  if (!a2 || !b2) throw_errno("cannot compare " + what);
  if (same_bytes(std::move(a), std::move(b), what)) return true;
  // Stored differently (say plain and zstd): compare what they decode to.
  ::lseek(a2.get(), 0, SEEK_SET);
  ::lseek(b2.get(), 0, SEEK_SET);
  try {
    Decoded da = open_decoded(std::move(a2), name_a, decode),
            db = open_decoded(std::move(b2), name_b, decode);
    return same_stream(*da.reader, *db.reader);
  } catch (const Error&) {
    return false;  // one of them does not decode: not the same packet
  }
}

bool same_content(const Queue& q, const std::string& a, const std::string& b,
                  const DecodeOptions& decode) {
  return same_packet(q.open_job(a), "jobs/" + a, q.open_job(b), "jobs/" + b, decode);
}

void remove_job_file(const Queue& q, const std::string& filename) {
  std::string path = q.job_path(filename);
  spdlog::debug("deleting {}", path);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) throw_errno("cannot delete " + path);
}

JobList index_by_seq(const Queue& q, JobList jobs, uint64_t next, bool keep_files,
                     const DecodeOptions& decode) {
  std::erase_if(jobs, [next](const JobEntry& j) { return j.meta.seq < next; });
  sort_by_seq(jobs);  // stable: of two files with one seq, the first listed is kept
  JobList by_seq;
  by_seq.reserve(jobs.size());
  for (auto& j : jobs) {
    if (by_seq.empty() || by_seq.back().meta.seq != j.meta.seq) {
      by_seq.push_back(std::move(j));
      continue;
    }
    const std::string& first = by_seq.back().filename;
    if (!same_content(q, first, j.filename, decode))
      throw Error("two different job files have sequence " + std::to_string(j.meta.seq) +
                      ": jobs/" + first + " and jobs/" + j.filename,
                  kExitDataErr);
    spdlog::info("jobs/{} is a copy of jobs/{} (seq {}){}", j.filename, first, j.meta.seq,
                 keep_files ? "; ignoring it" : "; removing it");
    if (!keep_files) remove_job_file(q, j.filename);
  }
  return by_seq;
}

const JobEntry* find_seq(const JobList& by_seq, uint64_t seq) {
  auto it = std::lower_bound(by_seq.begin(), by_seq.end(), seq,
                             [](const JobEntry& j, uint64_t s) { return j.meta.seq < s; });
  return it != by_seq.end() && it->meta.seq == seq ? &*it : nullptr;
}

JobList stale_jobs(const JobList& jobs, uint64_t next) {
  JobList out;
  for (const auto& j : jobs)
    if (j.meta.seq < next) out.push_back(j);
  return out;
}

CompletionRecord::CompletionRecord(const Queue& q) : path_(done_path(q)) {}

void CompletionRecord::note(uint64_t seq, const std::string& filename) {
  // Every line the same length (job names are at most NAME_MAX bytes), so
  // a rewrite in place leaves nothing of a longer line behind.
  std::string line = std::to_string(seq) + " " + filename;
  line.resize(std::max(line.size(), kDoneRecordSize - 1), ' ');
  line += '\n';
  if (fd_) {
    if (::lseek(fd_.get(), 0, SEEK_SET) != 0) throw_errno("cannot write " + path_);
    return write_all(fd_.get(), line, path_);
  }
  std::string temp = path_ + ".temp";
  Fd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0666));
  if (!fd) throw_errno("cannot create " + temp);
  write_all(fd.get(), line, temp);
  if (::rename(temp.c_str(), path_.c_str()) != 0) throw_errno("cannot rename " + temp);
  fd_ = std::move(fd);
}

void finish_recorded_completion(const Queue& q, uint64_t next, const DecodeOptions& decode) {
  Fd fd(::open(done_path(q).c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return;
  std::string text(kDoneRecordSize, '\0');
  text.resize(read_full(fd.get(), std::as_writable_bytes(std::span(text)), done_path(q)));
  std::istringstream in(text);
  uint64_t seq = 0;
  std::string name;
  if (!(in >> seq >> name) || !is_job_name(name) || name.find('/') != std::string::npos) return;
  if (seq >= next) return;  // the advance did not happen: the job runs again
  try {
    Decoded dec = open_decoded(q.open_job(name), "jobs/" + name, decode);
    if (read_header(*dec.reader, "jobs/" + name).seq != seq) return;
  } catch (const Error&) {
    return;  // gone or unreadable: nothing of ours to finish
  }
  spdlog::info("removing jobs/{} (seq {}), completed by a run that stopped before deleting it",
               name, seq);
  remove_job_file(q, name);
}

}  // namespace safespool
