// SPDX-License-Identifier: GPL-3.0-or-later
// How a queue's state reaches an operator: the --check plugin line and its
// exit status, the Prometheus metrics, and the text report, for each state
// (built by hand here; the classification has tests of its own).
#include <gtest/gtest.h>

#include <sstream>

#include "safespool/status.hpp"

namespace safespool {
namespace {

constexpr int64_t kNow = 1'800'000'000;

JobEntry job(uint64_t seq) {
  JobEntry j;
  j.meta.seq = seq;
  j.filename = "fspl-" + std::to_string(seq) + ".fspl";
  return j;
}

QueueStatus healthy(size_t jobs = 0) {
  QueueStatus s;
  s.queuedir = "/srv/q";
  s.next_seq = 5;
  for (size_t i = 0; i < jobs; ++i) s.pending.push_back(job(5 + i));
  if (jobs) s.oldest_age_seconds = 30;
  s.record.last_run = kNow - 60;
  s.record.last_success = kNow - 60;
  return s;
}

QueueStatus blocked() {
  QueueStatus s = healthy();
  s.pending = {job(6)};
  s.oldest_age_seconds = 7300;
  s.gaps = {{5, 5}};
  s.state = QueueStatus::State::Blocked;
  s.blocked = Blocked{Blocked::Reason::Unreadable,
                      "jobs/fspl-x.fspl: OpenPGP: No secret key (encrypted to 0CAE768FAB833706)",
                      {"fspl-x.fspl"}};
  s.unreadable = {
      {"fspl-x.fspl", "jobs/fspl-x.fspl: OpenPGP: No secret key", {"0CAE768FAB833706"}}};
  return s;
}

QueueStatus failing() {
  QueueStatus s = healthy(2);
  s.state = QueueStatus::State::Failing;
  s.record.failed_seq = 5;
  s.record.failed_file = "fspl-5.fspl";
  s.record.failed_reason = "exit status 3";
  return s;
}

QueueStatus waiting(int64_t age) {
  QueueStatus s = healthy();
  s.pending = {job(7), job(8)};
  s.gaps = {{5, 6}};
  s.oldest_age_seconds = age;
  s.state = QueueStatus::State::Waiting;
  return s;
}

TEST(StatusCheck, HealthyIsOkWithPerformanceData) {
  CheckResult r = status_check(healthy(3), {}, kNow);
  EXPECT_EQ(r.code, kCheckOk);
  EXPECT_EQ(r.line,
            "SAFESPOOL OK - queue /srv/q: healthy, 3 jobs waiting (5-7) | jobs=3;;;0 "
            "oldest_age=30s;;;0 last_success_age=60s;;;0");
}

TEST(StatusCheck, BlockedAndFailingAreCritical) {
  CheckResult b = status_check(blocked(), {3600, 86400}, kNow);
  EXPECT_EQ(b.code, kCheckCritical);
  EXPECT_EQ(b.line,
            "SAFESPOOL CRITICAL - queue /srv/q: blocked (unreadable): jobs/fspl-x.fspl: OpenPGP: "
            "No secret key (encrypted to 0CAE768FAB833706); oldest packet arrived 2h 1m ago | "
            "jobs=1;;;0 oldest_age=7300s;3600;86400;0 last_success_age=60s;;;0");
  CheckResult f = status_check(failing(), {}, kNow);
  EXPECT_EQ(f.code, kCheckCritical);
  EXPECT_EQ(
      f.line.substr(0, f.line.find(" | ")),
      "SAFESPOOL CRITICAL - queue /srv/q: failing: job 5 (fspl-5.fspl) failed: exit status 3");
}

TEST(StatusCheck, WaitingIsJudgedByTheAgeOfTheOldestPacket) {
  CheckThresholds t{3600, 86400};
  EXPECT_EQ(status_check(waiting(60), t, kNow).code, kCheckOk);
  EXPECT_EQ(status_check(waiting(3600), t, kNow).code, kCheckWarning);
  CheckResult c = status_check(waiting(2 * 86400), t, kNow);
  EXPECT_EQ(c.code, kCheckCritical);
  EXPECT_EQ(c.line,
            "SAFESPOOL CRITICAL - queue /srv/q: waiting for 5 (have 7-8); oldest packet arrived 2d "
            "ago | jobs=2;;;0 oldest_age=172800s;3600;86400;0 last_success_age=60s;;;0");
  // Without thresholds a wait is normal (a sneakernet queue waits for trips).
  EXPECT_EQ(status_check(waiting(30 * 86400), {}, kNow).code, kCheckOk);
  // A healthy queue whose packets nobody processes ages too.
  EXPECT_EQ(status_check(healthy(1), {10, std::nullopt}, kNow).code, kCheckWarning);
}

TEST(StatusCheck, NeverSucceededIsUndeterminedNotZero) {
  QueueStatus s = healthy();
  s.record.last_success.reset();
  EXPECT_EQ(status_check(s, {}, kNow).line,
            "SAFESPOOL OK - queue /srv/q: healthy, no jobs waiting | jobs=0;;;0 oldest_age=0s;;;0 "
            "last_success_age=U;;;0");
}

TEST(StatusCheck, SummaryHasNoPipeOrNewline) {
  QueueStatus s = blocked();
  s.queuedir = "/srv/a|b";
  s.blocked->summary = "two\nlines | and a pipe";
  std::string line = status_check(s, {}, kNow).line;
  EXPECT_EQ(line.find('\n'), std::string::npos);
  EXPECT_EQ(line.find('|'), line.rfind('|')) << line;
  CheckResult u = check_unknown("/srv/q", "queue /srv/q does not exist (no jobs/ directory)");
  EXPECT_EQ(u.code, kCheckUnknown);
  EXPECT_EQ(u.line,
            "SAFESPOOL UNKNOWN - queue /srv/q: queue /srv/q does not exist (no jobs/ directory)");
}

TEST(StatusCheck, AgeText) {
  EXPECT_EQ(age_text(0), "0s");
  EXPECT_EQ(age_text(45), "45s");
  EXPECT_EQ(age_text(60), "1m");
  EXPECT_EQ(age_text(7300), "2h 1m");
  EXPECT_EQ(age_text(3 * 86400 + 4 * 3600 + 5), "3d 4h");
  EXPECT_EQ(age_text(-5), "0s");
}

// The sample lines of `text` that start with `name{`.
std::string samples(const std::string& text, const std::string& name) {
  std::istringstream in(text);
  std::string out;
  for (std::string line; std::getline(in, line);)
    if (line.rfind(name + "{", 0) == 0) out += line + "\n";
  return out;
}

TEST(StatusMetrics, BlockedHasAReasonAndFailingItsOwnGauge) {
  std::string m = status_metrics(blocked());
  EXPECT_EQ(samples(m, "safespool_blocked"),
            "safespool_blocked{queue=\"/srv/q\",reason=\"unreadable\"} 1\n");
  EXPECT_EQ(samples(m, "safespool_failing"), "safespool_failing{queue=\"/srv/q\"} 0\n");
  EXPECT_EQ(samples(m, "safespool_oldest_pending_age_seconds"),
            "safespool_oldest_pending_age_seconds{queue=\"/srv/q\"} 7300\n");
  std::string f = status_metrics(failing());
  EXPECT_EQ(samples(f, "safespool_blocked"), "safespool_blocked{queue=\"/srv/q\"} 0\n");
  EXPECT_EQ(samples(f, "safespool_failing"), "safespool_failing{queue=\"/srv/q\"} 1\n");
}

TEST(StatusMetrics, CountersAndTimestamps) {
  QueueStatus s = healthy();
  s.record.total_success = 10;
  s.record.total_failure = 2;
  s.record.total_rejected = 1;
  s.record.total_bytes = 12345;
  std::string m = status_metrics(s);
  EXPECT_EQ(samples(m, "safespool_jobs_total"),
            "safespool_jobs_total{queue=\"/srv/q\",result=\"success\"} 10\n"
            "safespool_jobs_total{queue=\"/srv/q\",result=\"failure\"} 2\n"
            "safespool_jobs_total{queue=\"/srv/q\",result=\"rejected\"} 1\n");
  EXPECT_NE(m.find("# TYPE safespool_jobs_total counter\n"), std::string::npos);
  EXPECT_EQ(samples(m, "safespool_bytes_total"), "safespool_bytes_total{queue=\"/srv/q\"} 12345\n");
  EXPECT_EQ(samples(m, "safespool_last_success_timestamp_seconds"),
            "safespool_last_success_timestamp_seconds{queue=\"/srv/q\"} " +
                std::to_string(kNow - 60) + "\n");
  s.record.last_success.reset();
  EXPECT_EQ(samples(status_metrics(s), "safespool_last_success_timestamp_seconds"), "")
      << "never is absent, not 0";
}

TEST(StatusMetrics, EverySampleCarriesTheQueueLabel) {
  QueueStatus s = blocked();
  s.queuedir = "/srv/\"odd\"\\q";
  std::istringstream in(status_metrics(s));
  int n = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    ++n;
    EXPECT_NE(line.find("{queue=\"/srv/\\\"odd\\\"\\\\q\""), std::string::npos) << line;
  }
  EXPECT_GT(n, 10);
}

TEST(StatusText, NamesTheRecipientsAndWhatToDo) {
  std::string t = format_status(blocked());
  EXPECT_NE(t.find("queue /srv/q: blocked\n"), std::string::npos) << t;
  EXPECT_NE(t.find("blocked (unreadable): jobs/fspl-x.fspl: OpenPGP: No secret key"),
            std::string::npos);
  EXPECT_NE(t.find("unreadable: jobs/fspl-x.fspl: OpenPGP: No secret key (encrypted to "
                   "0CAE768FAB833706)\n"),
            std::string::npos)
      << t;
  std::string f = format_status(failing());
  EXPECT_NE(f.find("to skip it: safespool queue-set-next -q /srv/q 6\n"), std::string::npos) << f;
}

}  // namespace
}  // namespace safespool
