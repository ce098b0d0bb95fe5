// SPDX-License-Identifier: GPL-3.0-or-later
// Renderings of a QueueStatus: text, JSON, Prometheus metrics.
#include <nlohmann/json.hpp>

#include "safespool/status.hpp"

namespace safespool {
namespace {

using nlohmann::ordered_json;

std::string range_text(const std::pair<uint64_t, uint64_t>& r) {
  return r.first == r.second ? std::to_string(r.first)
                             : std::to_string(r.first) + "-" + std::to_string(r.second);
}

std::string label(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
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
                      const std::vector<std::optional<Verdict>>& verdicts) {
  ordered_json j;
  j["queue"] = queuedir;
  auto list = ordered_json::array();
  for (size_t i = 0; i < jobs.size(); ++i) {
    const JobEntry& e = jobs[i];
    ordered_json h = header_json(e.meta);
    h["filename"] = e.filename;
    if (i < verdicts.size() && verdicts[i]) h["signer"] = verdict_json(*verdicts[i]);
    list.push_back(h);
  }
  j["jobs"] = list;
  auto bad = ordered_json::array();
  for (const auto& u : skipped) bad.push_back({{"filename", u.filename}, {"reason", u.reason}});
  j["skipped"] = bad;
  return dump(j);
}

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
  if (s.state == QueueStatus::State::Failing)
    out += "failing: job " + std::to_string(*s.record.failed_seq) + " (" + s.record.failed_file +
           ") failed: " + s.record.failed_reason + "\n";
  if (s.blocked)
    out += std::string("blocked (") + reason_name(s.blocked->reason) + "): " + s.blocked->summary +
           "\n";
  if (s.oldest_age_seconds)
    out += "oldest job age: " + std::to_string(*s.oldest_age_seconds) + " s\n";
  for (const auto& j : s.stale)
    out += "stale (seq below next): " + std::to_string(j.meta.seq) + " jobs/" + j.filename + "\n";
  for (const auto& u : s.unreadable) out += "unreadable: " + u.reason + "\n";
  for (const auto& f : s.abandoned_temp_files)
    out += "abandoned temporary file: jobs/" + f + " (a writer died; queue-process removes it)\n";
  out += s.lock_holder ? "processor running: pid " + std::to_string(s.lock_holder) + "\n"
                       : std::string("processor running: no\n");
  return out;
}

std::string status_json(const QueueStatus& s) {
  ordered_json j;
  j["queue"] = s.queuedir;
  j["state"] = state_name(s.state);
  j["next_seq"] = s.next_seq ? ordered_json(*s.next_seq) : ordered_json(nullptr);
  auto pending = ordered_json::array();
  for (const auto& p : s.pending)
    pending.push_back({{"seq", p.meta.seq}, {"filename", p.filename}});
  j["pending"] = pending;
  auto gaps = ordered_json::array();
  for (const auto& g : s.gaps) gaps.push_back({{"from", g.first}, {"to", g.second}});
  j["gaps"] = gaps;
  auto stale = ordered_json::array();
  for (const auto& p : s.stale) stale.push_back({{"seq", p.meta.seq}, {"filename", p.filename}});
  j["stale"] = stale;
  auto bad = ordered_json::array();
  for (const auto& u : s.unreadable)
    bad.push_back({{"filename", u.filename}, {"reason", u.reason}});
  j["unreadable"] = bad;
  j["oldest_job_age_seconds"] =
      s.oldest_age_seconds ? ordered_json(*s.oldest_age_seconds) : ordered_json(nullptr);
  j["lock_holder_pid"] = s.lock_holder ? ordered_json(s.lock_holder) : ordered_json(nullptr);
  auto stamp = [](std::optional<int64_t> t) { return t ? ordered_json(*t) : ordered_json(); };
  j["last_run"] = stamp(s.record.last_run);
  j["last_success"] = stamp(s.record.last_success);
  if (s.record.failed_seq)
    j["failed"] = {{"seq", *s.record.failed_seq},
                   {"filename", s.record.failed_file},
                   {"reason", s.record.failed_reason}};
  return dump(j);
}

std::string status_metrics(const QueueStatus& s) {
  std::string q = "{queue=\"" + label(s.queuedir) + "\"}";
  std::string out;
  auto metric = [&](const char* name, const char* type, const char* help,
                    const std::string& value) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
    out += std::string(name) + q + " " + value + "\n";
  };
  metric("safespool_last_run_timestamp_seconds", "gauge", "End of the last queue-process run.",
         std::to_string(s.record.last_run.value_or(0)));
  metric("safespool_last_success_timestamp_seconds", "gauge",
         "End of the last run in which no job failed.",
         std::to_string(s.record.last_success.value_or(0)));
  metric("safespool_jobs_processed", "gauge", "Jobs that succeeded in the last run.",
         std::to_string(s.record.jobs_ok));
  metric("safespool_jobs_failed", "gauge", "Jobs that failed in the last run.",
         std::to_string(s.record.jobs_failed));
  metric("safespool_bytes_delivered", "gauge",
         "Payload bytes delivered to consumers in the last run.", std::to_string(s.record.bytes));
  metric("safespool_queue_depth", "gauge", "Job files at or above the next sequence number.",
         std::to_string(s.pending.size()));
  metric("safespool_oldest_job_age_seconds", "gauge",
         "Age of the oldest waiting job (0 when none).",
         std::to_string(s.oldest_age_seconds.value_or(0)));
  uint64_t missing = 0;
  for (const auto& g : s.gaps) missing += g.second - g.first + 1;
  metric("safespool_gap_jobs", "gauge",
         "Sequence numbers missing between next and the highest job present.",
         std::to_string(missing));
  metric("safespool_stale_jobs", "gauge", "Job files below the next sequence number.",
         std::to_string(s.stale.size()));
  metric("safespool_unreadable_files", "gauge",
         "Files named like jobs that are not readable packets.",
         std::to_string(s.unreadable.size()));
  metric("safespool_blocked", "gauge", "1 when the next job keeps failing.",
         s.state == QueueStatus::State::Blocked ? "1" : "0");
  return out;
}

}  // namespace safespool
