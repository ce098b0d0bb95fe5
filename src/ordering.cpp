// SPDX-License-Identifier: GPL-3.0-or-later
// Twins, conflicts and stale files (see include/safespool/ordering.hpp).
#include "safespool/ordering.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <optional>

#include "safespool/error.hpp"
#include "safespool/job.hpp"
#include "safespool/verify.hpp"

namespace safespool {
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

// One side of a comparison: its decoded stream, under the policy if any.
// nullopt when it does not decode (or cannot carry a signature).
std::unique_ptr<Reader> open_side(Fd fd, const std::string& name, const DecodeOptions& decode,
                                  const SignerPolicy& policy) {
  ::lseek(fd.get(), 0, SEEK_SET);
  try {
    Decoded d = open_decoded(std::move(fd), name, decode);
    if (policy.empty()) return std::move(d.reader);
    return std::make_unique<TrustedStream>(std::move(d.reader), policy, name);
  } catch (const Error& e) {
    spdlog::debug("{}", e.what());
    return nullptr;
  }
}

void drain_quietly(Reader& r) {
  std::vector<std::byte> buf(1 << 16);
  try {
    while (r.read(buf) > 0) {
    }
  } catch (const Error&) {
    // finishes() says what is wrong
  }
}

// Finishes a fully read side; false when it is not intact (or not trusted).
bool finishes(Reader& r) {
  try {
    std::byte b;
    if (r.read(std::span(&b, 1)) != 0) return false;
    r.finish();
    return true;
  } catch (const Error& e) {
    spdlog::info("{}", e.what());
    return false;
  }
}

Sameness compare_streams(Reader* a, Reader* b) {
  if (!a) return Sameness::FirstBad;
  if (!b) return Sameness::SecondBad;
  bool same = false;
  try {
    same = same_stream(*a, *b);
  } catch (const Error& e) {
    spdlog::info("{}", e.what());
  }
  if (!same) {
    // Differing streams: which one is bad, if either, still matters.
    drain_quietly(*a);
    drain_quietly(*b);
  }
  if (!finishes(*a)) return Sameness::FirstBad;
  if (!finishes(*b)) return Sameness::SecondBad;
  return same ? Sameness::Same : Sameness::Different;
}

}  // namespace

bool same_bytes(Fd a, Fd b, const std::string& what) {
  struct stat sa, sb;
  if (::fstat(a.get(), &sa) != 0 || ::fstat(b.get(), &sb) != 0) throw_errno("cannot stat " + what);
  if (sa.st_size != sb.st_size) return false;
  std::vector<std::byte> ba(1 << 16), bb(1 << 16);
  for (off_t at = 0;;) {
    ssize_t na = ::pread(a.get(), ba.data(), ba.size(), at);
    ssize_t nb = ::pread(b.get(), bb.data(), bb.size(), at);
    if (na < 0 || nb < 0) throw_errno("cannot read " + what);
    if (na != nb || std::memcmp(ba.data(), bb.data(), static_cast<size_t>(na)) != 0) return false;
    if (na == 0) return true;
    at += na;
  }
}

Sameness compare_packets(Fd a, const std::string& name_a, Fd b, const std::string& name_b,
                         const DecodeOptions& decode, const SignerPolicy& policy) {
  std::string what = name_a + " and " + name_b;
  Fd a2(::fcntl(a.get(), F_DUPFD_CLOEXEC, 3)), b2(::fcntl(b.get(), F_DUPFD_CLOEXEC, 3));
  if (!a2 || !b2) throw_errno("cannot compare " + what);
  // The same bytes are the same packet, with the same signature: nothing
  // to verify to call them twins.
  if (same_bytes(std::move(a), std::move(b), what)) return Sameness::Same;
  auto ra = open_side(std::move(a2), name_a, decode, policy);
  auto rb = open_side(std::move(b2), name_b, decode, policy);
  return compare_streams(ra.get(), rb.get());
}

Sameness compare_decoded(Decoded a, const std::string& name_a, Decoded b, const std::string& name_b,
                         const SignerPolicy& policy) {
  auto police = [&](Decoded& d, const std::string& name) -> std::unique_ptr<Reader> {
    if (policy.empty()) return std::move(d.reader);
    try {
      return std::make_unique<TrustedStream>(std::move(d.reader), policy, name);
    } catch (const Error& e) {
      spdlog::debug("{}", e.what());
      return nullptr;
    }
  };
  auto ra = police(a, name_a);
  auto rb = police(b, name_b);
  return compare_streams(ra.get(), rb.get());
}

bool same_packet(Fd a, const std::string& name_a, Fd b, const std::string& name_b,
                 const DecodeOptions& decode) {
  return compare_packets(std::move(a), name_a, std::move(b), name_b, decode, SignerPolicy()) ==
         Sameness::Same;
}

void remove_job_file(const Queue& q, const std::string& filename) {
  std::string path = q.job_path(filename);
  spdlog::debug("deleting {}", path);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) throw_errno("cannot delete " + path);
}

namespace {

// The header seq the file holds now and the hash the ledger knows it by
// (its own, or for a part its job's); nullopt when it cannot be read.
std::optional<std::pair<uint64_t, std::string>> read_now(const Queue& q, const std::string& name,
                                                         const DecodeOptions& decode, bool hash) {
  try {
    Job job = Job::open(q, name, decode);
    // A part is known to the ledger by its job's hash.
    if (const auto& part = job.meta().part) return std::pair{job.meta().seq, part->job};
    return std::pair{job.meta().seq, hash ? job.sha256() : std::string()};
  } catch (const Error& e) {
    spdlog::debug("{}", e.what());
    return std::nullopt;
  }
}

}  // namespace

void tidy_stale(const Queue& q, const JobList& jobs, uint64_t next, const StaleRules& rules,
                const DecodeOptions& decode, const Ledger& ledger) {
  if (rules.keep_files) return;
  std::optional<LedgerView> view;
  size_t kept = 0;
  for (const auto& j : jobs) {
    if (j.meta.seq >= next) continue;
    if (!view) view = ledger.read();
    const LedgerRecord* last = view->last_for_seq(j.meta.seq);
    bool maybe_done = last && last->result == LedgerResult::Success;
    auto now = read_now(q, j.filename, decode, maybe_done);
    if (!now || now->first >= next) continue;  // not what the scan said: leave it
    if (maybe_done && view->completed(now->first, now->second)) {
      spdlog::info("removing jobs/{} (seq {}): the ledger says it completed", j.filename,
                   now->first);
    } else if (rules.delete_stale) {
      spdlog::info("removing stale jobs/{} (seq {} < next {})", j.filename, now->first, next);
    } else {
      ++kept;
      spdlog::debug("keeping stale jobs/{} (seq {} < next {}): not recorded as completed",
                    j.filename, now->first, next);
      continue;
    }
    remove_job_file(q, j.filename);
  }
  if (kept)
    spdlog::debug("{} stale job file(s) below sequence {}; --delete-stale removes them", kept,
                  next);
}

}  // namespace safespool
