// SPDX-License-Identifier: GPL-3.0-or-later
// Renderings of a QueueStatus for people and scripts (text, JSON), and of
// jobs for queue-ls/queue-info --json. Metrics: status_metrics.cpp; the
// plugin line of --check: status_check.cpp.
#include <nlohmann/json.hpp>

#include "safespool/status.hpp"

namespace safespool {
namespace {

using nlohmann::ordered_json;

std::string range_text(const std::pair<uint64_t, uint64_t>& r) {
  return r.first == r.second ? std::to_string(r.first)
                             : std::to_string(r.first) + "-" + std::to_string(r.second);
}

const char* kind_name(JobKind k) {
  switch (k) {
    case JobKind::Command:
      return "command";
    case JobKind::Nop:
      return "nop";
    case JobKind::Fail:
      return "fail";
  }
  return "?";
}

ordered_json header_json(const Meta& m) {
  ordered_json j = {{"seq", m.seq},
                    {"ctime_secs", m.ctime_secs},
                    {"ctime_nanos", m.ctime_nanos},
                    {"ctime_rfc3339_utc", rfc3339_utc(m.ctime_secs)},
                    {"kind", kind_name(m.kind)}};
  j["params"] = m.params;
  auto env = ordered_json::object();
  for (const auto& [k, v] : m.env) env[k] = v;
  j["env"] = env;
  return j;
}

ordered_json verdict_json(const Verdict& v) {
  return {{"fingerprint", v.signer}, {"trusted", v.trusted}, {"reason", v.reason}};
}

std::string dump(const ordered_json& j) {
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

}  // namespace

std::string job_json(const Meta& meta, const JobOrigin* origin, const Verdict* verdict) {
  ordered_json j = header_json(meta);
  if (verdict) j["signer"] = verdict_json(*verdict);
  if (origin) {
    j["filename"] = origin->filename;
    j["queuedir"] = origin->queuedir;
  }
  auto vars = ordered_json::object();
  for (const auto& [k, v] : job_env(meta, origin)) vars[k] = v;
  j["environment"] = vars;
  return dump(j);
}

std::string ledger_json(const std::string& queuedir, const std::vector<LedgerRecord>& records) {
  auto text = [](const std::string& s) { return s.empty() ? ordered_json() : ordered_json(s); };
  auto list = ordered_json::array();
  for (const auto& r : records) {
    list.push_back({{"time", r.time},
                    {"time_rfc3339_utc", rfc3339_utc(r.time)},
                    {"seq", r.seq},
                    {"result", result_name(r.result)},
                    {"sha256", text(r.sha256)},
                    {"exit_status", r.exit_status ? ordered_json(*r.exit_status) : ordered_json()},
                    {"signer", text(r.signer)},
                    {"filename", text(r.filename)},
                    {"kept", r.kept},
                    {"reason", text(r.reason)}});
  }
  ordered_json j;
  j["queue"] = queuedir;
  j["records"] = list;
  return dump(j);
}

std::string jobs_json(const std::string& queuedir, const JobList& jobs,
                      const std::vector<SkippedFile>& skipped,
                      const std::vector<std::optional<Verdict>>& verdicts,
                      const std::vector<std::string>& missing_parts) {
  ordered_json j;
  j["queue"] = queuedir;
  auto list = ordered_json::array();
  for (size_t i = 0; i < jobs.size(); ++i) {
    const JobEntry& e = jobs[i];
    ordered_json h = header_json(e.meta);
    h["filename"] = e.filename;
    if (e.meta.part)
      h["part"] = {
          {"index", e.meta.part->index}, {"count", e.meta.part->count}, {"job", e.meta.part->job}};
    if (i < verdicts.size() && verdicts[i]) h["signer"] = verdict_json(*verdicts[i]);
    list.push_back(h);
  }
  j["jobs"] = list;
  auto bad = ordered_json::array();
  for (const auto& u : skipped) bad.push_back({{"filename", u.filename}, {"reason", u.reason}});
  j["skipped"] = bad;
  if (!missing_parts.empty()) j["missing_parts"] = missing_parts;
  return dump(j);
}

namespace {

std::string unreadable_line(const SkippedFile& u) {
  std::string line = "unreadable: " + u.reason;
  if (!u.recipients.empty()) {
    line += " (encrypted to";
    for (const auto& r : u.recipients) line += " " + r;
    line += ")";
  }
  return line + "\n";
}

// What an operator can do about the state, with the commands to type.
std::string advice(const QueueStatus& s) {
  std::string q = s.queuedir;
  if (s.state == QueueStatus::State::Failing && s.record.failed_seq) {
    uint64_t n = *s.record.failed_seq;
    return "the next run retries it; to skip it: safespool queue-set-next -q " + q + " " +
           std::to_string(n + 1) + "\n";
  }
  if (!s.blocked) return "";
  switch (s.blocked->reason) {
    case Blocked::Reason::Unreadable:
      return "check the decoding options (--gnupg-home, -d) and the key the packet is encrypted "
             "to, or replace the file with a good copy\n";
    case Blocked::Reason::Conflict:
      return "compare them (safespool queue-info -q " + q +
             " -j SEQ, or the files) and remove the wrong one\n";
    case Blocked::Reason::Rejected:
      return "the signer policy refuses it: remove it, or send it again signed by a trusted "
             "key\n";
    case Blocked::Reason::Exhausted:
      return "the last sequence number has run: make a new queue\n";
  }
  return "";
}

}  // namespace

std::string format_status(const QueueStatus& s) {
  std::string out = "queue " + s.queuedir + ": " + state_name(s.state) + "\n";
  out += "next sequence: " +
         (s.next_seq ? std::to_string(*s.next_seq) : std::string("none (append-only queue)")) +
         "\n";
  out += "jobs waiting: " + std::to_string(s.pending.size());
  if (!s.pending.empty())
    out += " (" + std::to_string(s.pending.front().meta.seq) + "-" +
           std::to_string(s.pending.back().meta.seq) + ")";
  out += "\n";
  if (s.state == QueueStatus::State::Waiting)
    out += "waiting for " + std::to_string(*s.next_seq) + "; have " +
           std::to_string(s.pending.front().meta.seq) + "-" +
           std::to_string(s.pending.back().meta.seq) + "\n";
  for (const auto& g : s.gaps) out += "missing: " + range_text(g) + "\n";
  for (const auto& m : s.missing_parts) out += m + "\n";
  if (s.state == QueueStatus::State::Failing)
    out += "failing: job " + std::to_string(*s.record.failed_seq) + " (" + s.record.failed_file +
           ") failed: " + s.record.failed_reason + "\n";
  if (s.blocked)
    out += std::string("blocked (") + reason_name(s.blocked->reason) + "): " + s.blocked->summary +
           "\n";
  out += advice(s);
  if (s.oldest_age_seconds)
    out += "oldest job age: " + std::to_string(*s.oldest_age_seconds) + " s (arrived " +
           age_text(*s.oldest_age_seconds) + " ago)\n";
  for (const auto& j : s.stale)
    out += "stale (seq below next): " + std::to_string(j.meta.seq) + " jobs/" + j.filename + "\n";
  for (const auto& u : s.unreadable) out += unreadable_line(u);
  for (const auto& f : s.abandoned_temp_files)
    out += "abandoned temporary file: jobs/" + f + " (a writer died; queue-process removes it)\n";
  out += s.lock_holder ? "processor running: pid " + std::to_string(s.lock_holder) + "\n"
                       : std::string("processor running: no\n");
  return out;
}

namespace {

ordered_json seq_files(const JobList& jobs) {
  auto list = ordered_json::array();
  for (const auto& p : jobs) list.push_back({{"seq", p.meta.seq}, {"filename", p.filename}});
  return list;
}

ordered_json blocked_json(const std::optional<Blocked>& b) {
  if (!b) return nullptr;
  return {{"reason", reason_name(b->reason)}, {"summary", b->summary}, {"files", b->files}};
}

ordered_json totals_json(const RunRecord& r) {
  return {{"success", r.total_success},
          {"failure", r.total_failure},
          {"rejected", r.total_rejected},
          {"bytes", r.total_bytes}};
}

}  // namespace

std::string status_json(const QueueStatus& s) {
  auto opt = [](const auto& v) { return v ? ordered_json(*v) : ordered_json(nullptr); };
  ordered_json j;
  j["queue"] = s.queuedir;
  j["state"] = state_name(s.state);
  j["blocked"] = blocked_json(s.blocked);
  j["next_seq"] = opt(s.next_seq);
  j["pending"] = seq_files(s.pending);
  auto gaps = ordered_json::array();
  for (const auto& g : s.gaps) gaps.push_back({{"from", g.first}, {"to", g.second}});
  j["gaps"] = gaps;
  j["missing_parts"] = s.missing_parts;
  j["stale"] = seq_files(s.stale);
  auto bad = ordered_json::array();
  for (const auto& u : s.unreadable)
    bad.push_back({{"filename", u.filename}, {"reason", u.reason}, {"recipients", u.recipients}});
  j["unreadable"] = bad;
  j["abandoned_temp_files"] = s.abandoned_temp_files;
  j["oldest_job_age_seconds"] = opt(s.oldest_age_seconds);
  j["lock_holder_pid"] = s.lock_holder ? ordered_json(s.lock_holder) : ordered_json(nullptr);
  j["last_run"] = opt(s.record.last_run);
  j["last_success"] = opt(s.record.last_success);
  j["totals"] = totals_json(s.record);
  if (s.record.failed_seq)
    j["failed"] = {{"seq", *s.record.failed_seq},
                   {"filename", s.record.failed_file},
                   {"reason", s.record.failed_reason}};
  return dump(j);
}

}  // namespace safespool
