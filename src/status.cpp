// SPDX-License-Identifier: GPL-3.0-or-later
#include "safespool/status.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "safespool/decision.hpp"
#include "safespool/error.hpp"
#include "safespool/file_replace.hpp"
#include "safespool/ledger.hpp"
#include "safespool/seqfile.hpp"
#include "safespool/units.hpp"
#include "safespool/verify.hpp"

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

namespace {

// The inventory of a scan: pending and stale jobs, gaps, ages, the lock.
QueueStatus inventory(const Queue& q, ScanResult scan, std::optional<uint64_t> next) {
  QueueStatus s;
  s.queuedir = q.dir();
  s.next_seq = next;
  s.unreadable = std::move(scan.skipped);
  uint64_t n = next.value_or(0);
  for (auto& j : scan.jobs) (j.meta.seq < n ? s.stale : s.pending).push_back(std::move(j));
  sort_by_seq(s.pending);
  sort_by_seq(s.stale);
  if (next) s.gaps = find_gaps(s.pending, n);
  // Measured from when each packet arrived here: its file's ctime.
  for (const auto& j : s.pending) {
    int64_t age = std::max<int64_t>(0, now_secs() - j.id.ctime_sec);
    if (!s.oldest_age_seconds || age > *s.oldest_age_seconds) s.oldest_age_seconds = age;
  }
  s.lock_holder = flock_holder(q.seqfile_path() + ".lock");
  s.record = read_run_record(q);
  s.abandoned_temp_files = q.abandoned_temp_files(0);
  return s;
}

std::span<const JobEntry> at_seq(const JobList& sorted, uint64_t seq) {
  auto lo = std::find_if(sorted.begin(), sorted.end(), [&](auto& j) { return j.meta.seq >= seq; });
  auto hi = std::find_if(lo, sorted.end(), [&](auto& j) { return j.meta.seq != seq; });
  return {lo, hi};
}

// The processor's decision at the next seq, taken without acting on it.
void decide(QueueStatus& s, const Queue& q, const DecodeOptions& decode,
            const SignerPolicy& policy) {
  const uint64_t next = *s.next_seq;
  std::set<std::string> key_ids;
  if (!policy.empty()) key_ids = signer_key_ids(policy, decode.gnupg_home);
  DecisionRules rules{policy, key_ids, false, true, false};
  Ledger ledger(q.dir());
  Choice c = choose(q, next, at_seq(s.pending, next), decode, rules, ledger);
  s.missing_parts = c.missing_parts;
  using State = QueueStatus::State;
  if (c.kind == Choice::Kind::Run) {
    bool failed = s.record.failed_seq == next && s.record.failed_file == c.filename;
    s.state = failed ? State::Failing : State::Healthy;
  } else if (c.kind == Choice::Kind::Blocked) {
    s.state = State::Blocked;
    s.blocked = std::move(c.blocked);
  } else if (auto b = why_missing(q, next, s.unreadable, ledger)) {
    s.state = State::Blocked;
    s.blocked = std::move(b);
  } else {
    s.state = s.pending.empty() ? State::Healthy : State::Waiting;
  }
}

}  // namespace

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

QueueStatus queue_status(const Queue& q, const DecodeOptions& decode, const SignerPolicy& policy) {
  q.check_exists();
  DecodeOptions d = decode;
  d.unwrap = !policy.empty();
  QueueStatus s = inventory(q, q.scan(d, ScanFor::Summary), read_next(q));
  if (s.next_seq) decide(s, q, d, policy);
  return s;
}

}  // namespace safespool
