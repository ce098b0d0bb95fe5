// SPDX-License-Identifier: GPL-3.0-or-later
// A QueueStatus as Prometheus metrics, for node_exporter's textfile
// collector: names in base units with the application's prefix, counters
// ending in _total, the batch-job convention of a last-success timestamp,
// and a `queue` label on every sample so that one directory holds one file
// per queue. The names and what they mean are listed in docs/json.md.
//
// Metrics of the first release whose names broke those conventions are
// still written, marked deprecated in their help text, for one release.
#include "safespool/status.hpp"

namespace safespool {
namespace {

std::string label_value(const std::string& s) {
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

class Exposition {
 public:
  explicit Exposition(const std::string& queue) : queue_(label_value(queue)) {}

  /// A metric's HELP and TYPE lines.
  void family(const char* name, const char* type, const char* help) {
    out_ += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  }
  /// One sample, with the queue label and `extra` labels ("k=\"v\"").
  void sample(const char* name, uint64_t value, const std::string& extra = "") {
    sample_text(name, std::to_string(value), extra);
  }
  void sample_text(const char* name, const std::string& value, const std::string& extra = "") {
    out_ += std::string(name) + "{queue=\"" + queue_ + "\"" + (extra.empty() ? "" : ",") + extra +
            "} " + value + "\n";
  }
  /// A family with a single sample.
  void gauge(const char* name, const char* help, uint64_t value) {
    family(name, "gauge", help);
    sample(name, value);
  }
  std::string str() && { return std::move(out_); }

 private:
  std::string queue_;
  std::string out_;
};

void timestamps(Exposition& x, const RunRecord& r) {
  // Absent until it happened: 0 would read as "1970", and an alert on
  // time() - it would fire on a queue that never ran.
  x.family("safespool_last_success_timestamp_seconds", "gauge",
           "End of the last queue-process pass in which no job failed (absent: never).");
  if (r.last_success)
    x.sample_text("safespool_last_success_timestamp_seconds", std::to_string(*r.last_success));
  x.family("safespool_last_run_timestamp_seconds", "gauge",
           "End of the last queue-process pass (absent: never).");
  if (r.last_run)
    x.sample_text("safespool_last_run_timestamp_seconds", std::to_string(*r.last_run));
}

void states(Exposition& x, const QueueStatus& s) {
  x.family("safespool_blocked", "gauge",
           "1 when the queue cannot advance without an operator; the reason label says why.");
  if (s.blocked)
    x.sample("safespool_blocked", 1,
             std::string("reason=\"") + reason_name(s.blocked->reason) + "\"");
  else
    x.sample("safespool_blocked", 0);
  x.gauge("safespool_failing", "1 when the next job failed on its last run.",
          s.state == QueueStatus::State::Failing);
  x.gauge("safespool_waiting", "1 when the next job has not arrived but later ones have.",
          s.state == QueueStatus::State::Waiting);
}

void counters(Exposition& x, const RunRecord& r) {
  x.family("safespool_jobs_total", "counter", "Jobs run since the queue was made, by result.");
  x.sample("safespool_jobs_total", r.total_success, "result=\"success\"");
  x.sample("safespool_jobs_total", r.total_failure, "result=\"failure\"");
  x.sample("safespool_jobs_total", r.total_rejected, "result=\"rejected\"");
  x.family("safespool_bytes_total", "counter",
           "Payload bytes delivered to consumers since the queue was made.");
  x.sample("safespool_bytes_total", r.total_bytes);
}

void contents(Exposition& x, const QueueStatus& s) {
  uint64_t age = s.oldest_age_seconds && *s.oldest_age_seconds > 0 ? *s.oldest_age_seconds : 0;
  x.gauge("safespool_oldest_pending_age_seconds",
          "Since the oldest waiting packet arrived in jobs/ (0 when none waits).", age);
  x.gauge("safespool_queue_depth", "Job files at or above the next sequence number.",
          s.pending.size());
  uint64_t missing = 0;
  for (const auto& g : s.gaps) missing += g.second - g.first + 1;
  x.gauge("safespool_gap_jobs",
          "Sequence numbers missing between next and the highest job present.", missing);
  x.gauge("safespool_stale_jobs", "Job files below the next sequence number.", s.stale.size());
  x.gauge("safespool_unreadable_files", "Files named like jobs that are not readable packets.",
          s.unreadable.size());
  x.gauge("safespool_abandoned_temp_files",
          "Temporary files in jobs/ left by a killed queue-write or queue-import.",
          s.abandoned_temp_files.size());
}

// The first release's names, kept for one release (docs/json.md).
void deprecated(Exposition& x, const QueueStatus& s) {
  x.gauge("safespool_jobs_processed",
          "Deprecated, use safespool_jobs_total{result=\"success\"}: jobs that succeeded in the "
          "last pass.",
          s.record.jobs_ok);
  x.gauge("safespool_jobs_failed",
          "Deprecated, use safespool_jobs_total{result=\"failure\"}: jobs that failed in the last "
          "pass.",
          s.record.jobs_failed);
  x.gauge("safespool_bytes_delivered",
          "Deprecated, use safespool_bytes_total: payload bytes delivered in the last pass.",
          s.record.bytes);
  uint64_t age = s.oldest_age_seconds && *s.oldest_age_seconds > 0 ? *s.oldest_age_seconds : 0;
  x.gauge("safespool_oldest_job_age_seconds",
          "Deprecated, use safespool_oldest_pending_age_seconds.", age);
}

}  // namespace

std::string status_metrics(const QueueStatus& s) {
  Exposition x(s.queuedir);
  timestamps(x, s.record);
  states(x, s);
  counters(x, s.record);
  contents(x, s);
  deprecated(x, s);
  return std::move(x).str();
}

}  // namespace safespool
