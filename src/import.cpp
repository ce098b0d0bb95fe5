// SPDX-License-Identifier: GPL-3.0-or-later
#include "safespool/import.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <memory>

#include "safespool/error.hpp"
#include "safespool/ordering.hpp"
#include "safespool/seqfile.hpp"
#include "safespool/units.hpp"

namespace safespool {
namespace {

Fd open_source(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY));
  if (!fd) throw_errno("cannot open " + path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode))
    throw Error(path + ": not a regular file", kExitDataErr);
  ::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) & ~O_NONBLOCK);
  return fd;
}

std::vector<std::string> list_sources(const std::vector<std::string>& sources) {
  std::vector<std::string> files;
  for (const auto& src : sources) {
    struct stat st;
    if (::stat(src.c_str(), &st) != 0) throw_errno("cannot read " + src);
    if (!S_ISDIR(st.st_mode)) {
      files.push_back(src);
      continue;
    }
    std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(src.c_str()), ::closedir);
    if (!d) throw_errno("cannot list " + src);
    while (dirent* e = ::readdir(d.get()))
      if (is_job_name(e->d_name)) files.push_back(src + "/" + e->d_name);
  }
  return files;
}

// Copies `src` into jobs/ durably; returns the job name it got.
std::string copy_in(const Queue& q, const std::string& src) {
  Fd in = open_source(src);
  return q.write(in.get());
}

// Whether a job with `seq` and the same bytes as `src` is already in jobs/.
bool already_queued(const Queue& q, const JobList& jobs, uint64_t seq, const std::string& src,
                    const DecodeOptions& decode) {
  for (const auto& j : jobs)
    if (j.meta.seq == seq &&
        same_packet(open_source(src), src, q.open_job(j.filename), j.filename, decode))
      return true;
  return false;
}

Meta header_only(uint64_t seq) {
  Meta m;
  m.seq = seq;
  return m;
}

std::optional<uint64_t> next_seq(const Queue& q) {
  std::ifstream in(q.seqfile_path());
  std::string line;
  if (!in || !std::getline(in, line)) return std::nullopt;
  return parse_u64(line, "seqfile " + q.seqfile_path());
}

}  // namespace

ImportReport import_packets(const Queue& q, const std::vector<std::string>& sources,
                            const ImportOptions& opts) {
  q.check_exists();
  ImportReport report;
  JobList present = q.scan(opts.decode, ScanFor::Summary).jobs;
  std::optional<uint64_t> next = next_seq(q);
  for (const auto& src : list_sources(sources)) {
    uint64_t seq;
    try {
      Decoded dec = open_decoded(open_source(src), src, opts.decode);
      seq = read_header(*dec.reader, src).seq;
    } catch (const Error& e) {
      report.failed.push_back({src, e.what(), {}});
      continue;
    }
    std::vector<std::string>* bucket = &report.imported;
    if (next && seq < *next)
      bucket = &report.processed;
    else if (already_queued(q, present, seq, src, opts.decode))
      bucket = &report.duplicates;
    else
      present.push_back({copy_in(q, src), header_only(seq), {}});
    bucket->push_back(src);
    if (!opts.copy && ::unlink(src.c_str()) != 0)
      spdlog::warn("cannot remove {} after import: {}", src, strerror(errno));
  }
  return report;
}

}  // namespace safespool
