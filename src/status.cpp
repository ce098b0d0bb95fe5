// SPDX-License-Identifier: GPL-3.0-or-later
#include "safespool/status.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "safespool/error.hpp"
#include "safespool/file_replace.hpp"
#include "safespool/seqfile.hpp"
#include "safespool/units.hpp"

namespace safespool {
namespace {

using nlohmann::ordered_json;

std::string record_path(const Queue& q) { return q.dir() + "/.safespool-status"; }

int64_t now_secs() { return now_ctime().first; }

// Gaps between `next` and the highest pending seq, as closed ranges.
std::vector<std::pair<uint64_t, uint64_t>> find_gaps(const JobList& pending, uint64_t next) {
  std::vector<std::pair<uint64_t, uint64_t>> gaps;
  uint64_t expected = next;
  for (const auto& j : pending) {
    if (j.meta.seq < expected) continue;  // a twin
    if (j.meta.seq > expected) gaps.emplace_back(expected, j.meta.seq - 1);
    expected = j.meta.seq + 1;
  }
  return gaps;
}

std::optional<uint64_t> read_next(const Queue& q) {
  std::ifstream in(q.seqfile_path());
  if (!in) return std::nullopt;
  std::string line;
  std::getline(in, line);
  return parse_u64(line, "seqfile " + q.seqfile_path());
}

}  // namespace

RunRecord read_run_record(const Queue& q) {
  RunRecord r;
  std::ifstream in(record_path(q));
  if (!in) return r;
  auto j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return r;
  // A field of the wrong type is ignored like a missing one: a damaged
  // record must never stop the queue (it is rewritten after the run).
  auto num = [&](const char* k, auto fallback) {
    auto it = j.find(k);
    return it != j.end() && it->is_number_integer() &&
                   (std::is_signed_v<decltype(fallback)> || it->is_number_unsigned())
               ? it->template get<decltype(fallback)>()
               : fallback;
  };
  auto text = [&](const char* k) {
    auto it = j.find(k);
    return it != j.end() && it->is_string() ? it->template get<std::string>() : std::string();
  };
  auto stamp = [&](const char* k) -> std::optional<int64_t> {
    int64_t v = num(k, int64_t{0});  // 0 was "never" in older records
    return v > 0 ? std::optional(v) : std::nullopt;
  };
  r.last_run = stamp("last_run");
  r.last_success = stamp("last_success");
  r.jobs_ok = num("jobs_ok", uint64_t{0});
  r.jobs_failed = num("jobs_failed", uint64_t{0});
  r.bytes = num("bytes", uint64_t{0});
  r.total_success = num("total_success", uint64_t{0});
  r.total_failure = num("total_failure", uint64_t{0});
  r.total_rejected = num("total_rejected", uint64_t{0});
  r.total_bytes = num("total_bytes", uint64_t{0});
  if (j.contains("failed_seq") && j["failed_seq"].is_number_unsigned())
    r.failed_seq = j["failed_seq"].get<uint64_t>();
  r.failed_file = text("failed_file");
  r.failed_reason = text("failed_reason");
  r.blocked_reported = text("blocked_reported");
  return r;
}

void write_run_record(const Queue& q, const RunRecord& r) {
  auto stamp = [](std::optional<int64_t> t) { return t ? ordered_json(*t) : ordered_json(); };
  ordered_json j = {{"last_run", stamp(r.last_run)},
                    {"last_success", stamp(r.last_success)},
                    {"jobs_ok", r.jobs_ok},
                    {"jobs_failed", r.jobs_failed},
                    {"bytes", r.bytes},
                    {"total_success", r.total_success},
                    {"total_failure", r.total_failure},
                    {"total_rejected", r.total_rejected},
                    {"total_bytes", r.total_bytes}};
  if (r.failed_seq) {
    j["failed_seq"] = *r.failed_seq;
    j["failed_file"] = r.failed_file;
    j["failed_reason"] = r.failed_reason;
  }
  if (!r.blocked_reported.empty()) j["blocked_reported"] = r.blocked_reported;
  // A temporary name of its own: two processes (a queue-process and a
  // queue-status --check, say) never trip over one fixed name.
  replace_file(record_path(q),
               j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
}

pid_t flock_holder(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return 0;
  std::ifstream locks("/proc/locks");
  std::string line;
  // "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"
  while (std::getline(locks, line)) {
    std::istringstream f(line);
    std::string id, type, adv, mode, dev;
    long pid = 0;
    if (!(f >> id >> type)) continue;
    if (type == "->") f >> type;  // a blocked waiter
    if (type != "FLOCK" || !(f >> adv >> mode >> pid >> dev)) continue;
    auto colon = dev.rfind(':');
    if (colon != std::string::npos && std::stoull(dev.substr(colon + 1)) == st.st_ino)
      return static_cast<pid_t>(pid);
  }
  return 0;
}

const char* state_name(QueueStatus::State s) {
  switch (s) {
    case QueueStatus::State::Healthy:
      return "healthy";
    case QueueStatus::State::Failing:
      return "failing";
    case QueueStatus::State::Waiting:
      return "waiting";
    case QueueStatus::State::Blocked:
      return "blocked";
  }
  return "?";
}

QueueStatus classify(const Queue& q, ScanResult scan, std::optional<uint64_t> next) {
  QueueStatus s;
  s.queuedir = q.dir();
  s.next_seq = next;
  s.unreadable = std::move(scan.skipped);
  uint64_t n = next.value_or(0);
  for (auto& j : scan.jobs) (j.meta.seq < n ? s.stale : s.pending).push_back(std::move(j));
  sort_by_seq(s.pending);
  sort_by_seq(s.stale);
  if (next) s.gaps = find_gaps(s.pending, n);
  for (const auto& j : s.pending) {
    int64_t age = now_secs() - j.meta.ctime_secs;
    if (!s.oldest_age_seconds || age > *s.oldest_age_seconds) s.oldest_age_seconds = age;
  }
  s.lock_holder = flock_holder(q.seqfile_path() + ".lock");
  s.record = read_run_record(q);
  bool next_present = !s.pending.empty() && s.pending.front().meta.seq == n;
  if (next && !s.pending.empty() && !next_present) s.state = QueueStatus::State::Waiting;
  if (next_present && s.record.failed_seq == n) s.state = QueueStatus::State::Failing;
  return s;
}

const char* reason_name(Blocked::Reason r) {
  switch (r) {
    case Blocked::Reason::Unreadable:
      return "unreadable";
    case Blocked::Reason::Conflict:
      return "conflict";
    case Blocked::Reason::Rejected:
      return "rejected";
    case Blocked::Reason::Exhausted:
      return "exhausted";
  }
  return "?";
}

QueueStatus queue_status(const Queue& q, const DecodeOptions& decode, const SignerPolicy&) {
  q.check_exists();
  return classify(q, q.scan(decode, ScanFor::Summary), read_next(q));
}

}  // namespace safespool
