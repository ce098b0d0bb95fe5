// SPDX-License-Identifier: GPL-3.0-or-later
// The sender's outbox and its receipts (see include/safespool/outbox.hpp).
#include "safespool/outbox.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string_view>

#include "safespool/digest.hpp"
#include "safespool/error.hpp"

namespace safespool {
namespace {

using nlohmann::ordered_json;

std::vector<std::string> packet_names(const std::string& dir) {
  std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
  if (!d) throw_errno("cannot list " + dir);
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d.get()))
    if (is_job_name(e->d_name)) names.push_back(e->d_name);
  return names;
}

/// Whether a UUID (8-4-4-4-12 hex digits) starts at `at` in `name`.
bool uuid_at(const std::string& name, size_t at) {
  static constexpr std::string_view kShape = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
  if (name.size() < at + kShape.size()) return false;
  for (size_t i = 0; i < kShape.size(); ++i) {
    char c = name[at + i];
    if (kShape[i] == '-' ? c != '-' : !std::isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

/// "fspl-SEQ-UUID…": the seq prepare put in the name. Not in a name that
/// is only a UUID, whose first group may be all digits (fspl gen-filename).
std::optional<uint64_t> seq_from_name(const std::string& name) {
  size_t end = 5;
  while (end < name.size() && std::isdigit(static_cast<unsigned char>(name[end]))) ++end;
  if (end == 5 || end >= name.size() || name[end] != '-' || end - 5 > 19) return std::nullopt;
  if (!uuid_at(name, end + 1)) return std::nullopt;
  return std::stoull(name.substr(5, end - 5));
}

/// A plain header at the start of `fd` (a plain packet or an envelope), if any.
std::optional<Meta> plain_header(int fd) {
  std::array<std::byte, kPrefixSize> prefix;
  if (::pread(fd, prefix.data(), prefix.size(), 0) != static_cast<ssize_t>(prefix.size()))
    return std::nullopt;
  try {
    Prefix p = parse_prefix(prefix);
    std::vector<std::byte> meta(p.meta_len);
    if (::pread(fd, meta.data(), meta.size(), kPrefixSize) != static_cast<ssize_t>(meta.size()))
      return std::nullopt;
    return parse_metadata(meta, p.meta_crc);
  } catch (const FormatError&) {
    return std::nullopt;  // encoded: its header is the receiver's to read
  }
}

OutboxEntry identify(const std::string& dir, const std::string& name) {
  std::string path = dir + "/" + name;
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY));
  struct stat st;
  if (!fd || ::fstat(fd.get(), &st) != 0) throw_errno("cannot open " + path);
  if (!S_ISREG(st.st_mode)) throw Error(path + ": not a regular file", kExitDataErr);
  OutboxEntry e;
  e.filename = name;
  e.since = st.st_mtime;
  e.state = "pending";
  std::optional<Meta> meta = plain_header(fd.get());
  if (meta) e.seq = meta->seq;
  if (meta && meta->part) {
    e.part = meta->part;
    e.sha256 = meta->part->job;
  } else {
    e.sha256 = sha256_file(fd.get(), path);
  }
  return e;
}

const char* state_of(const std::string& result) {
  if (result == "success" || result == "superseded") return "acked";
  if (result == "failure" || result == "skipped" || result == "rejected") return "failed";
  return "pending";
}

// The latest receipt about each packet, and the waiting receipts that no
// later receipt from the same queue answered.
void sort_receipts(std::vector<ReceiptFile> files, std::map<std::string, Receipt>& latest,
                   std::vector<Receipt>& waiting) {
  std::stable_sort(files.begin(), files.end(), [](const ReceiptFile& a, const ReceiptFile& b) {
    return a.receipt.time < b.receipt.time;
  });
  std::map<std::pair<std::string, uint64_t>, Receipt> waits;
  for (auto& f : files) {
    Receipt& r = f.receipt;
    if (r.result == "waiting") {
      waits[{r.queue, r.seq}] = r;
      continue;
    }
    for (auto it = waits.begin(); it != waits.end();)
      it = it->first.first == r.queue && it->first.second <= r.seq ? waits.erase(it) : ++it;
    if (!r.sha256.empty()) latest[r.sha256] = r;
  }
  for (auto& [key, r] : waits) waiting.push_back(std::move(r));
}

std::string detail(const Receipt& r) {
  std::string out = r.result;
  if (r.exit_status) out += ", exit " + std::to_string(*r.exit_status);
  if (r.result != "success" && !r.reason.empty()) out += ": " + r.reason;
  return out;
}

ordered_json entry_json(const OutboxEntry& e) {
  ordered_json j = {
      {"filename", e.filename}, {"seq", e.seq ? ordered_json(*e.seq) : ordered_json()},
      {"sha256", e.sha256},     {"state", e.state},
      {"since", e.since},       {"since_rfc3339_utc", rfc3339_utc(e.since)}};
  if (e.part) j["part"] = {{"index", e.part->index}, {"count", e.part->count}};
  if (e.receipt) j["receipt"] = ordered_json::parse(receipt_json(*e.receipt));
  return j;
}

}  // namespace

OutboxReport outbox_status(const std::string& outbox, const std::string& receipts,
                           const DecodeOptions& decode, const SignerPolicy& policy) {
  OutboxReport report;
  std::map<std::string, Receipt> latest;
  sort_receipts(read_receipts(receipts, decode, policy, report.bad), latest, report.waiting);
  for (const auto& name : packet_names(outbox)) {
    try {
      OutboxEntry e = identify(outbox, name);
      if (auto it = latest.find(e.sha256); it != latest.end()) {
        if (!e.seq) e.seq = it->second.seq;  // an encoded packet's seq, from its receipt
        e.receipt = it->second;
        e.state = state_of(it->second.result);
        e.since = it->second.time;
      }
      if (!e.seq) e.seq = seq_from_name(name);
      report.entries.push_back(std::move(e));
    } catch (const Error& err) {
      report.bad.push_back({name, err.what(), {}});
    }
  }
  std::sort(report.entries.begin(), report.entries.end(), [](const auto& a, const auto& b) {
    return std::pair(a.seq.value_or(UINT64_MAX), a.filename) <
           std::pair(b.seq.value_or(UINT64_MAX), b.filename);
  });
  return report;
}

std::vector<std::string> outbox_prune(const OutboxReport& report, const std::string& outbox) {
  std::vector<std::string> pruned;
  for (const auto& e : report.entries) {
    if (e.state != "acked") continue;
    std::string path = outbox + "/" + e.filename;
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) throw_errno("cannot delete " + path);
    pruned.push_back(e.filename);
  }
  return pruned;
}

std::string outbox_text(const OutboxReport& report) {
  std::string out;
  for (const auto& e : report.entries) {
    char head[96];
    std::snprintf(head, sizeof head, "%-8s seq %-6s since %s  ", e.state.c_str(),
                  e.seq ? std::to_string(*e.seq).c_str() : "?", rfc3339_utc(e.since).c_str());
    out += head + e.filename;
    if (e.part)
      out +=
          " (part " + std::to_string(e.part->index) + " of " + std::to_string(e.part->count) + ")";
    if (e.receipt) out += "  " + detail(*e.receipt);
    out += "\n";
  }
  for (const auto& w : report.waiting)
    out += "waiting  " + w.queue + (w.host.empty() ? "" : " on " + w.host) + " waits for " +
           std::to_string(w.seq) + " since " + rfc3339_utc(w.waiting_since.value_or(w.time)) +
           " (receipt of " + rfc3339_utc(w.time) + ")\n";
  return out;
}

std::string outbox_json(const OutboxReport& report, const std::vector<std::string>& pruned) {
  ordered_json j;
  auto list = ordered_json::array();
  for (const auto& e : report.entries) list.push_back(entry_json(e));
  j["packets"] = list;
  auto waits = ordered_json::array();
  for (const auto& w : report.waiting) waits.push_back(ordered_json::parse(receipt_json(w)));
  j["waiting"] = waits;
  auto bad = ordered_json::array();
  for (const auto& b : report.bad) bad.push_back({{"filename", b.filename}, {"reason", b.reason}});
  j["unusable"] = bad;
  j["pruned"] = pruned;
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

}  // namespace safespool
