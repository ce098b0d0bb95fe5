// SPDX-License-Identifier: GPL-3.0-or-later
// The processed ledger (see include/safespool/ledger.hpp).
#include "safespool/ledger.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>

#include "safespool/digest.hpp"
#include "safespool/error.hpp"

namespace safespool {
namespace {

constexpr std::array kResults = {
    std::pair{LedgerResult::Started, "started"},
    std::pair{LedgerResult::Success, "success"},
    std::pair{LedgerResult::Failure, "failure"},
    std::pair{LedgerResult::Skipped, "skipped"},
    std::pair{LedgerResult::Rejected, "rejected"},
    std::pair{LedgerResult::Superseded, "superseded"},
};
constexpr size_t kFields = 10;
constexpr size_t kMaxReason = 512;

std::string field(std::string_view s) {
  if (s.empty()) return "-";
  std::string out(s.substr(0, kMaxReason));
  for (char& c : out)
    if (c == '\t' || c == '\n' || c == '\r') c = ' ';
  return out;
}

std::string unfield(std::string_view s) { return s == "-" ? std::string() : std::string(s); }

template <typename T>
bool number(std::string_view s, T& out) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && end == s.data() + s.size();
}

bool parse_result(std::string_view s, LedgerResult& out) {
  for (auto [r, name] : kResults) {
    if (s == name) {
      out = r;
      return true;
    }
  }
  return false;
}

// Splits on tabs; false unless there are exactly kFields fields.
bool split(std::string_view line, std::array<std::string_view, kFields>& f) {
  for (size_t n = 0; n < kFields; ++n) {
    size_t tab = line.find('\t');
    bool last = n + 1 == kFields;
    if ((tab == std::string_view::npos) != last) return false;
    f[n] = line.substr(0, tab);
    if (!last) line.remove_prefix(tab + 1);
  }
  return true;
}

void read_lines(const std::string& path, std::vector<LedgerRecord>& out) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) {
    if (errno == ENOENT) return;
    throw_errno("cannot open " + path);
  }
  std::string text;
  std::vector<std::byte> buf(1 << 16);
  while (size_t n = read_full(fd.get(), buf, path))
    text.append(reinterpret_cast<const char*>(buf.data()), n);
  std::string_view rest(text);
  while (!rest.empty()) {
    size_t nl = rest.find('\n');
    if (nl == std::string_view::npos) break;  // torn by a crash
    if (auto r = parse_record(rest.substr(0, nl))) out.push_back(std::move(*r));
    rest.remove_prefix(nl + 1);
  }
}

}  // namespace

const char* result_name(LedgerResult r) {
  for (auto [value, name] : kResults)
    if (value == r) return name;
  return "?";
}

std::string format_record(const LedgerRecord& r) {
  std::string line = "1\t" + std::to_string(r.time) + "\t" + std::to_string(r.seq) + "\t" +
                     result_name(r.result) + "\t" + field(r.sha256) + "\t" +
                     (r.exit_status ? std::to_string(*r.exit_status) : "-") + "\t" +
                     field(r.signer) + "\t" + field(r.filename) + "\t" + (r.kept ? "kept" : "-") +
                     "\t" + field(r.reason);
  return line + "\n";
}

std::optional<LedgerRecord> parse_record(std::string_view line) {
  std::array<std::string_view, kFields> f;
  if (!split(line, f) || f[0] != "1") return std::nullopt;
  LedgerRecord r;
  if (!number(f[1], r.time) || !number(f[2], r.seq) || !parse_result(f[3], r.result))
    return std::nullopt;
  r.sha256 = unfield(f[4]);
  if (!r.sha256.empty() && !is_sha256_hex(r.sha256)) return std::nullopt;
  if (f[5] != "-") {
    int status = 0;
    if (!number(f[5], status)) return std::nullopt;
    r.exit_status = status;
  }
  r.signer = unfield(f[6]);
  r.filename = unfield(f[7]);
  if (f[8] != "-" && f[8] != "kept") return std::nullopt;
  r.kept = f[8] == "kept";
  r.reason = unfield(f[9]);
  return r;
}

const LedgerRecord* LedgerView::last_for_seq(uint64_t seq) const {
  for (auto it = records_.rbegin(); it != records_.rend(); ++it)
    if (it->seq == seq) return &*it;
  return nullptr;
}

const LedgerRecord* LedgerView::last_for_hash(std::string_view sha256) const {
  for (auto it = records_.rbegin(); it != records_.rend(); ++it)
    if (it->sha256 == sha256) return &*it;
  return nullptr;
}

bool LedgerView::completed(uint64_t seq, std::string_view sha256) const {
  const LedgerRecord* r = last_for_seq(seq);
  return r && r->result == LedgerResult::Success && !r->kept && r->sha256 == sha256;
}

bool LedgerView::processed(std::string_view sha256) const {
  const LedgerRecord* r = last_for_hash(sha256);
  return r && (r->result == LedgerResult::Success || r->result == LedgerResult::Skipped ||
               r->result == LedgerResult::Superseded);
}

Ledger::Ledger(std::string queuedir) : path_(std::move(queuedir) + "/" + kFileName) {}

void Ledger::open_for_append() {
  struct stat st;
  if (::stat(path_.c_str(), &st) == 0 && static_cast<uint64_t>(st.st_size) >= kRotateBytes &&
      ::rename(path_.c_str(), (path_ + ".1").c_str()) != 0)
    throw_errno("cannot rotate " + path_);
  fd_.reset(::open(path_.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644));
  if (!fd_) throw_errno("cannot open " + path_);
  // A line torn by a crash must not swallow the next record.
  off_t end = ::lseek(fd_.get(), 0, SEEK_END);
  char last = '\n';
  if (end > 0 && ::pread(fd_.get(), &last, 1, end - 1) == 1 && last != '\n')
    write_all(fd_.get(), "\n", path_);
}

void Ledger::append(const LedgerRecord& r) {
  if (!fd_) open_for_append();
  write_all(fd_.get(), format_record(r), path_);
}

LedgerView Ledger::read() const {
  std::vector<LedgerRecord> records;
  read_lines(path_ + ".1", records);
  read_lines(path_, records);
  return LedgerView(std::move(records));
}

}  // namespace safespool
