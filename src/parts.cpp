// SPDX-License-Identifier: GPL-3.0-or-later
// Split jobs on the receiving side (see include/safespool/parts.hpp).
#include "safespool/parts.hpp"

#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>

#include "safespool/digest.hpp"
#include "safespool/error.hpp"
#include "safespool/ordering.hpp"
#include "safespool/signals.hpp"

namespace safespool {
namespace {

constexpr size_t kChunk = 1 << 20;

void pread_exact(int fd, std::span<std::byte> buf, uint64_t at, const std::string& what) {
  while (!buf.empty()) {
    ssize_t n = ::pread(fd, buf.data(), buf.size(), static_cast<off_t>(at));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno("cannot read " + what);
    if (n == 0) throw FormatError(what + ": truncated");
    buf = buf.subspan(static_cast<size_t>(n));
    at += static_cast<uint64_t>(n);
  }
}

/// The envelope header of an open part file and its length.
std::pair<Meta, uint64_t> read_envelope(int fd, const std::string& what) {
  std::array<std::byte, kPrefixSize> prefix;
  pread_exact(fd, prefix, 0, what);
  try {
    Prefix p = parse_prefix(prefix);
    std::vector<std::byte> meta(p.meta_len);
    pread_exact(fd, meta, kPrefixSize, what);
    return {parse_metadata(meta, p.meta_crc), kPrefixSize + p.meta_len};
  } catch (const FormatError& e) {
    throw FormatError(what + ": " + e.what());
  }
}

/// SHA-256 of the bytes of `fd` from `at` to its end, stopping on an interrupt.
std::string sha256_from(int fd, uint64_t at, const std::string& what) {
  Sha256 h;
  std::vector<std::byte> buf(kChunk);
  for (;;) {
    if (take_interrupt() || interrupted())
      throw Error(what + ": interrupted by a signal", kExitInterrupted);
    ssize_t n = ::pread(fd, buf.data(), buf.size(), static_cast<off_t>(at));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno("cannot read " + what);
    if (n == 0) return h.hex();
    h.update(std::span(buf).first(static_cast<size_t>(n)));
    at += static_cast<uint64_t>(n);
  }
}

std::string part_name(const PartFile& p) {
  return "jobs/" + p.filename + " (part " + std::to_string(p.part.index) + " of " +
         std::to_string(p.part.count) + ")";
}

}  // namespace

PartsReader::PartsReader(const Queue& q, std::vector<PartFile> parts, std::string name)
    : queuedir_(q.dir()), parts_(std::move(parts)), name_(std::move(name)) {
  if (parts_.empty()) throw Error(name_ + ": no parts");
}

PartsReader::~PartsReader() = default;

// A part file is opened when its first byte is asked for: the header it
// was chosen by and its payload's length are checked at once; its
// payload's SHA-256 now, or, for the head of the first part, before
// anything past it is served (check_current()).
void PartsReader::open_next() {
  const PartFile& p = parts_[next_];
  const std::string what = part_name(p);
  Fd fd = Queue(queuedir_).open_job(p.filename);
  auto [meta, header_len] = read_envelope(fd.get(), what);
  if (meta.part != p.part) throw FormatError(what + ": the file changed since it was chosen");
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) throw_errno("cannot stat " + what);
  uint64_t size = static_cast<uint64_t>(st.st_size);
  uint64_t payload = size - std::min(size, header_len);
  if (payload != p.part.size)
    throw FormatError(what + ": holds " + std::to_string(payload) +
                      " payload bytes, its header says " + std::to_string(p.part.size));
  file_ = std::move(fd);
  header_len_ = at_ = header_len;
  left_ = p.part.size;
  checked_ = false;
  ++next_;
  if (next_ > 1 || confirmed_) check_current();
}

void PartsReader::check_current() {
  const PartFile& p = parts_[next_ - 1];
  if (sha256_from(file_.get(), header_len_, part_name(p)) != p.part.sha256)
    throw FormatError(part_name(p) + ": its payload does not match its SHA-256");
  checked_ = true;
}

void PartsReader::confirm() {
  std::lock_guard lock(mutex_);
  confirmed_ = true;
  if (file_ && !checked_) check_current();
}

size_t PartsReader::end() {
  if (!ended_ && job_hash_.hex() != parts_.front().part.job)
    throw FormatError(name_ + ": the parts read do not hash to the job's SHA-256 (a file changed " +
                      "while it was read)");
  ended_ = true;
  return 0;
}

void PartsReader::finish() {
  std::lock_guard lock(mutex_);
  if (!ended_) throw Error(name_ + ": the stream was not read to its end");
}

size_t PartsReader::read(std::span<std::byte> buf) {
  if (buf.empty()) return 0;
  std::lock_guard lock(mutex_);
  while (left_ == 0) {
    if (file_ && !checked_) check_current();  // served whole before its check: check it now
    file_.reset();
    if (ended_ || next_ == parts_.size()) return end();
    open_next();
  }
  size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), left_));
  const uint64_t served = at_ - header_len_;
  if (!checked_ && served + want > kUncheckedHead) check_current();
  for (;;) {
    ssize_t n = ::pread(file_.get(), buf.data(), want, static_cast<off_t>(at_));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno("cannot read " + part_name(parts_[next_ - 1]));
    if (n == 0) throw FormatError(part_name(parts_[next_ - 1]) + ": truncated while it was read");
    auto got = buf.first(static_cast<size_t>(n));
    job_hash_.update(got);
    at_ += got.size();
    left_ -= got.size();
    return got.size();
  }
}

namespace {

std::string ranges_text(const std::vector<std::pair<uint64_t, uint64_t>>& ranges) {
  std::string out;
  for (auto [a, b] : ranges) {
    auto add = [&](const std::string& s) { out += (out.empty() ? "" : ", ") + s; };
    if (b - a >= 2)
      add(std::to_string(a) + "-" + std::to_string(b));
    else
      for (uint64_t i = a; i <= b; ++i) add(std::to_string(i));
  }
  return out;
}

}  // namespace

std::vector<std::pair<uint64_t, uint64_t>> PartSet::missing() const {
  std::vector<std::pair<uint64_t, uint64_t>> out;
  uint64_t expected = 1;
  for (const auto& [index, file] : parts) {
    if (index > expected) out.emplace_back(expected, index - 1);
    expected = index + 1;
  }
  if (expected <= count) out.emplace_back(expected, count);
  return out;
}

std::string PartSet::missing_text(uint64_t seq) const {
  auto gaps = missing();
  size_t n = 0;
  for (auto [a, b] : gaps) n += b - a + 1;
  return "job " + std::to_string(seq) + ": " + (n == 1 ? "part " : "parts ") + ranges_text(gaps) +
         " of " + std::to_string(count) + " missing";
}

std::vector<PartFile> PartSet::ordered() const {
  std::vector<PartFile> out;
  for (const auto& [index, file] : parts) out.push_back(file);
  return out;
}

void PartGroups::add(const std::string& filename, const PartInfo& part) {
  PartSet& s = sets_[part.job];
  if (s.count == 0) {
    s.job = part.job;
    s.count = part.count;
  }
  PartFile f{filename, part};
  if (part.count != s.count)
    s.strays.push_back(std::move(f));
  else if (!s.parts.count(part.index))
    s.parts.emplace(part.index, std::move(f));
  else
    s.copies.push_back(std::move(f));
}

std::vector<std::string> missing_part_notes(const JobList& jobs) {
  std::map<uint64_t, PartGroups> by_seq;
  for (const auto& j : jobs)
    if (j.meta.part) by_seq[j.meta.seq].add(j.filename, *j.meta.part);
  std::vector<std::string> notes;
  for (const auto& [seq, groups] : by_seq)
    for (const auto& [job, set] : groups.sets())
      if (!set.complete() && set.strays.empty()) notes.push_back(set.missing_text(seq));
  return notes;
}

std::optional<PartConflict> settle_copies(const Queue& q, uint64_t seq, PartSet& set,
                                          bool remove_twins) {
  const std::string job = "split job " + std::to_string(seq);
  if (!set.strays.empty()) {
    const PartFile& a = set.parts.begin()->second;
    const PartFile& b = set.strays.front();
    return PartConflict{"a file claims to be part of " + job + " with " +
                            std::to_string(b.part.count) + " parts, others with " +
                            std::to_string(set.count) + ": jobs/" + a.filename + " and jobs/" +
                            b.filename,
                        {a.filename, b.filename}};
  }
  for (const PartFile& copy : set.copies) {
    PartFile& held = set.parts.at(copy.part.index);
    if (held.part != copy.part)
      return PartConflict{"two different files claim part " + std::to_string(copy.part.index) +
                              " of " + job + ": jobs/" + held.filename + " and jobs/" +
                              copy.filename,
                          {held.filename, copy.filename}};
    if (same_bytes(q.open_job(held.filename), q.open_job(copy.filename), "jobs/" + copy.filename)) {
      spdlog::info("jobs/{} is a copy of jobs/{} (part {} of {}){}", copy.filename, held.filename,
                   copy.part.index, job, remove_twins ? "; removing it" : "");
      if (remove_twins) remove_job_file(q, copy.filename);
    } else if (part_intact(q, copy)) {
      spdlog::warn("jobs/{} does not match its header; using jobs/{}", held.filename,
                   copy.filename);
      held = copy;
    } else {
      spdlog::warn("jobs/{} does not match its header; using jobs/{}", copy.filename,
                   held.filename);
    }
  }
  return std::nullopt;
}

bool part_intact(const Queue& q, const PartFile& p) {
  Fd fd = q.open_job(p.filename);
  auto [meta, header_len] = read_envelope(fd.get(), part_name(p));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) throw_errno("cannot stat jobs/" + p.filename);
  return meta.part == p.part && static_cast<uint64_t>(st.st_size) == header_len + p.part.size &&
         sha256_from(fd.get(), header_len, part_name(p)) == p.part.sha256;
}

}  // namespace safespool
