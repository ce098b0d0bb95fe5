// SPDX-License-Identifier: GPL-3.0-or-later
// queue-status --check: a QueueStatus as one line for Nagios, Icinga,
// Zabbix or Sensu, per the monitoring plugin API: a status word, a summary,
// then "|" and performance data `label=value[UOM];warn;crit;min;max`; the
// exit status is the status (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).
#include <algorithm>

#include "safespool/status.hpp"

namespace safespool {
namespace {

const char* word(int code) {
  switch (code) {
    case kCheckOk:
      return "OK";
    case kCheckWarning:
      return "WARNING";
    case kCheckCritical:
      return "CRITICAL";
  }
  return "UNKNOWN";
}

// The summary is one line and must not contain the "|" that starts the
// performance data.
std::string plugin_text(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '|') c = '/';
    if (static_cast<unsigned char>(c) < 0x20) c = ' ';
    out += c;
  }
  return out;
}

std::string seq_range(const JobList& jobs) {
  if (jobs.empty()) return "";
  uint64_t a = jobs.front().meta.seq, b = jobs.back().meta.seq;
  return a == b ? std::to_string(a) : std::to_string(a) + "-" + std::to_string(b);
}

std::string jobs_waiting(const QueueStatus& s) {
  size_t n = s.pending.size();
  if (n == 0) return "no jobs waiting";
  return std::to_string(n) + (n == 1 ? " job" : " jobs") + " waiting (" + seq_range(s.pending) +
         ")";
}

// What the state says, without the ages.
std::string state_text(const QueueStatus& s) {
  switch (s.state) {
    case QueueStatus::State::Blocked:
      return std::string("blocked (") + reason_name(s.blocked->reason) + "): " + s.blocked->summary;
    case QueueStatus::State::Failing:
      return "failing: job " + std::to_string(s.record.failed_seq.value_or(0)) + " (" +
             s.record.failed_file + ") failed: " + s.record.failed_reason;
    case QueueStatus::State::Waiting:
      return "waiting for " + std::to_string(s.next_seq.value_or(0)) + " (have " +
             seq_range(s.pending) + ")";
    case QueueStatus::State::Healthy:
      return "healthy, " + jobs_waiting(s);
  }
  return "?";
}

std::string threshold(const std::optional<int64_t>& t) {
  return t ? std::to_string(*t) : std::string();
}

std::string perfdata(const QueueStatus& s, const CheckThresholds& t, int64_t now) {
  std::string out = "jobs=" + std::to_string(s.pending.size()) + ";;;0";
  out += " oldest_age=" + std::to_string(std::max<int64_t>(0, s.oldest_age_seconds.value_or(0))) +
         "s;" + threshold(t.warn_age) + ";" + threshold(t.crit_age) + ";0";
  // "U": the plugin API's value for one that cannot be determined.
  out += " last_success_age=" +
         (s.record.last_success
              ? std::to_string(std::max<int64_t>(0, now - *s.record.last_success)) + "s"
              : std::string("U")) +
         ";;;0";
  return out;
}

}  // namespace

std::string age_text(int64_t seconds) {
  if (seconds < 0) seconds = 0;
  struct Unit {
    int64_t size;
    const char* name;
  };
  static constexpr Unit kUnits[] = {{86400, "d"}, {3600, "h"}, {60, "m"}, {1, "s"}};
  for (size_t i = 0; i < std::size(kUnits); ++i) {
    if (seconds < kUnits[i].size && i + 1 < std::size(kUnits)) continue;
    std::string out = std::to_string(seconds / kUnits[i].size) + kUnits[i].name;
    int64_t rest = seconds % kUnits[i].size;
    if (i + 1 < std::size(kUnits) && rest / kUnits[i + 1].size > 0)
      out += " " + std::to_string(rest / kUnits[i + 1].size) + kUnits[i + 1].name;
    return out;
  }
  return "0s";
}

CheckResult status_check(const QueueStatus& s, const CheckThresholds& t, int64_t now) {
  int code = kCheckOk;
  if (s.state == QueueStatus::State::Blocked || s.state == QueueStatus::State::Failing)
    code = kCheckCritical;
  std::string text = "queue " + s.queuedir + ": " + state_text(s);
  if (s.oldest_age_seconds && !s.pending.empty()) {
    int64_t age = *s.oldest_age_seconds;
    int age_code = t.crit_age && age >= *t.crit_age   ? kCheckCritical
                   : t.warn_age && age >= *t.warn_age ? kCheckWarning
                                                      : kCheckOk;
    code = std::max(code, age_code);
    if (age_code != kCheckOk || s.state == QueueStatus::State::Waiting)
      text += "; oldest packet arrived " + age_text(age) + " ago";
  }
  return {code, "SAFESPOOL " + std::string(word(code)) + " - " + plugin_text(text) + " | " +
                    perfdata(s, t, now)};
}

CheckResult check_unknown(const std::string& queuedir, const std::string& why) {
  return {kCheckUnknown,
          "SAFESPOOL UNKNOWN - queue " + plugin_text(queuedir) + ": " + plugin_text(why)};
}

}  // namespace safespool
