// SPDX-License-Identifier: GPL-3.0-or-later
// queue-import (see include/safespool/import.hpp).
#include "safespool/import.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <memory>

#include "safespool/digest.hpp"
#include "safespool/error.hpp"
#include "safespool/ledger.hpp"
#include "safespool/ordering.hpp"
#include "safespool/units.hpp"
#include "safespool/verify.hpp"

namespace safespool {
namespace {

// The packet files of `sources`; names a directory holds that are not
// job names go to `ignored`.
std::vector<std::string> list_sources(const std::vector<std::string>& sources,
                                      std::vector<std::string>& ignored) {
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
    while (dirent* e = ::readdir(d.get())) {
      std::string name = e->d_name;
      if (name == "." || name == "..") continue;
      (is_job_name(name) ? files : ignored).push_back(src + "/" + name);
    }
  }
  return files;
}

std::optional<uint64_t> next_seq(const Queue& q) {
  std::ifstream in(q.seqfile_path());
  std::string line;
  if (!in || !std::getline(in, line)) return std::nullopt;
  return parse_u64(line, "seqfile " + q.seqfile_path());
}

// A hint for the error most people meet first on a stick of encrypted packets.
std::string with_hint(const std::string& why, const ImportOptions& opts) {
  if (why.find("No secret key") == std::string::npos) return why;
  return why + " (the receiver's key is needed to read the header: give --gnupg-home" +
         (opts.decode.gnupg_home ? ", now " + *opts.decode.gnupg_home : std::string()) + ")";
}

/// One import: what it knows about the queue, and the report.
class Import {
 public:
  Import(const Queue& q, const ImportOptions& opts) : q_(q), opts_(opts), ledger_(q.dir()) {
    present_ = q.scan(opts.decode, ScanFor::Summary).jobs;
    next_ = next_seq(q);
    if (!opts.policy.empty()) key_ids_ = signer_key_ids(opts.policy, opts.decode.gnupg_home);
  }
  void one(const std::string& src);
  ImportReport report;

 private:
  Meta header(const std::string& src);
  bool in_jobs(uint64_t seq, const std::string& src) const;
  bool processed(const std::string& src, const Meta& meta);
  void remove_source(const std::string& src) const;

  const Queue& q_;
  const ImportOptions& opts_;
  Ledger ledger_;
  std::optional<LedgerView> view_;
  JobList present_;
  std::optional<uint64_t> next_;
  std::set<std::string> key_ids_;
};

// The header, and under a policy what the packet announces about its
// signer. A part of a split job announces nothing by itself: its job is
// judged once its parts are together in the queue.
Meta Import::header(const std::string& src) {
  Decoded dec = open_decoded(open_regular_file(src), src, opts_.decode);
  Meta meta = read_header(*dec.reader, src);
  if (!opts_.policy.empty() && !meta.part) {
    TrustedStream trusted(std::move(dec.reader), opts_.policy, src);
    trusted.check_announcement(key_ids_);
  }
  return meta;
}

// A byte-identical file with this seq is in jobs/.
bool Import::in_jobs(uint64_t seq, const std::string& src) const {
  for (const auto& j : present_) {
    if (j.meta.seq != seq) continue;
    try {
      if (same_bytes(open_regular_file(src), q_.open_job(j.filename),
                     src + " and jobs/" + j.filename))
        return true;
    } catch (const Error& e) {
      spdlog::debug("{}", e.what());
    }
  }
  return false;
}

// A part is processed when its job is (the ledger names a split job by
// the SHA-256 of its whole stream, which each part carries).
bool Import::processed(const std::string& src, const Meta& meta) {
  if (!view_) view_ = ledger_.read();
  if (meta.part) return view_->processed(meta.part->job);
  Fd fd = open_regular_file(src);
  return view_->processed(sha256_file(fd.get(), src));
}

void Import::remove_source(const std::string& src) const {
  if (!opts_.copy && ::unlink(src.c_str()) != 0)
    spdlog::warn("cannot remove {} after import: {}", src, std::strerror(errno));
}

void Import::one(const std::string& src) {
  Meta meta;
  try {
    meta = header(src);
  } catch (const Error& e) {
    report.failed.push_back({src, with_hint(e.what(), opts_), {}});
    return;
  }
  const uint64_t seq = meta.seq;
  if (in_jobs(seq, src)) {
    report.duplicates.push_back(src);
  } else if (processed(src, meta)) {
    report.processed.push_back(src);
  } else if (next_ && seq < *next_) {
    report.kept.push_back({src,
                           src + " has seq " + std::to_string(seq) + ", below nextseq " +
                               std::to_string(*next_) +
                               ", but the ledger has no record that it ran; left where it is",
                           {}});
    return;
  } else {
    Fd in = open_regular_file(src);
    std::string name = q_.write(in.get(), src);
    Meta meta;
    meta.seq = seq;
    present_.push_back({name, meta, {}, false});
    report.imported.push_back(src);
  }
  remove_source(src);
}

}  // namespace

ImportReport import_packets(const Queue& q, const std::vector<std::string>& sources,
                            const ImportOptions& opts) {
  q.check_exists();
  Import imp(q, opts);
  for (const auto& src : list_sources(sources, imp.report.ignored)) imp.one(src);
  return std::move(imp.report);
}

}  // namespace safespool
