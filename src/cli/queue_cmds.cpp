// SPDX-License-Identifier: GPL-3.0-or-later
// queue-init, queue-write, queue-ls, queue-info, queue-payload,
// queue-get-next, queue-set-next.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>

#include "common.hpp"
#include "safespool/error.hpp"
#include "safespool/import.hpp"
#include "safespool/job.hpp"
#include "safespool/ledger.hpp"
#include "safespool/parts.hpp"
#include "safespool/queue.hpp"
#include "safespool/seqfile.hpp"
#include "safespool/status.hpp"
#include "safespool/units.hpp"
#include "safespool/verify.hpp"

namespace safespool::cli {
namespace {

struct QueueArgs {
  std::string queuedir;
  DecodeFlags decode;
  std::string job;
  std::string id;
  bool append_only = false;
  bool json = false;
  bool copy = false;
  std::vector<std::string> sources;
  PolicyFlags policy_flags;
  bool check = false;
  std::string warn_age, crit_age;
};

// Under a policy, the verdict on one job (its whole stream is decoded).
std::optional<Verdict> judge_job(const Queue& q, const JobEntry& j, const DecodeOptions& d,
                                 const SignerPolicy& policy) {
  if (policy.empty()) return std::nullopt;
  try {
    Job job = Job::open(q, j.filename, d);
    return judge_stream(job.stream(), policy);
  } catch (const Error& e) {
    Verdict v;
    v.reason = e.what();
    return v;
  }
}

CLI::App* add_queuedir(CLI::App* sub, QueueArgs& a) {
  sub->add_option("-q,--queuedir", a.queuedir, "Path to the queue directory")->required();
  return sub;
}

SeqFile lock_queue(const Queue& q) {
  q.check_exists();
  auto sf = SeqFile::try_open(q.seqfile_path(), false);
  if (!sf) throw Error("queue " + q.dir() + " is locked by another process", kExitTempFail);
  return std::move(*sf);
}

ScanResult scan_sorted(const Queue& q, const DecodeOptions& d, ScanFor purpose) {
  q.check_exists();
  ScanResult scan = q.scan(d, purpose);
  scan.warn_skipped(q.dir());
  sort_by_seq(scan.jobs);
  return scan;
}

// queue-ls's text listing holds only what it prints: 100,000 jobs are a
// few MB, not a JobEntry each.
class TextListing {
 public:
  void add(const JobEntry& j) {
    rows_.push_back({j.meta.seq, j.meta.ctime_secs, names_.size(), j.filename.size()});
    names_ += j.filename;
    if (j.meta.part) parts_.push_back(j);
  }
  // The lines, in seq order (scan order among equal seqs), as fspl
  // prints them: "%-20s %-27s filename".
  void write(int fd) {
    std::stable_sort(rows_.begin(), rows_.end(),
                     [](const Row& a, const Row& b) { return a.seq < b.seq; });
    char line[128];
    snprintf(line, sizeof line, "%-20s %-27s filename\n", "ID", "creation timestamp");
    std::string out = line, when;
    int64_t when_secs = 0;
    for (size_t i = 0; i < rows_.size(); ++i) {
      const Row& r = rows_[i];
      if (i == 0 || r.secs != when_secs) when = rfc3339_local(when_secs = r.secs);
      pad_to(out, std::to_string(r.seq), 20);
      pad_to(out, when, 27);
      out.append(names_, r.name_at, r.name_size) += '\n';
      if (out.size() >= 64 * 1024) {
        write_all(fd, out, "standard output");
        out.clear();
      }
    }
    for (const auto& m : missing_part_notes(parts_)) out += m + "\n";
    write_all(fd, out, "standard output");
  }

 private:
  struct Row {
    uint64_t seq;
    int64_t secs;
    size_t name_at, name_size;
  };
  static void pad_to(std::string& out, const std::string& s, size_t width) {
    out += s;
    out.append(s.size() < width ? width - s.size() : 0, ' ') += ' ';
  }
  std::vector<Row> rows_;
  std::string names_;
  JobList parts_;  ///< the parts of split jobs, for the missing ones
};

int run_ls_text(const Queue& q, const DecodeOptions& d) {
  q.check_exists();
  TextListing listing;
  ScanResult scan = q.scan(d, ScanFor::Summary, UINT64_MAX, [&](JobEntry&& j) { listing.add(j); });
  scan.warn_skipped(q.dir());
  listing.write(1);
  return kExitOk;
}

int run_ls(const QueueArgs& a) {
  Queue q(a.queuedir);
  DecodeOptions d = a.decode.finish();
  SignerPolicy policy = a.policy_flags.build();
  if (!a.json && policy.empty()) return run_ls_text(q, d);
  // The text listing shows seq, ctime and the name: the rest of an
  // indexed header is not needed (but a part's, see ScanFor::Summary).
  ScanResult scan = scan_sorted(q, d, a.json ? ScanFor::Listing : ScanFor::Summary);
  const auto& jobs = scan.jobs;
  std::vector<std::string> missing = missing_part_notes(jobs);
  std::vector<std::optional<Verdict>> verdicts;  // empty without a policy
  if (!policy.empty()) {
    verdicts.reserve(jobs.size());
    for (const auto& j : jobs) verdicts.push_back(judge_job(q, j, d, policy));
  }
  if (a.json) {
    write_all(1, jobs_json(q.dir(), jobs, scan.skipped, verdicts, missing), "standard output");
    return kExitOk;
  }
  char line[128];
  snprintf(line, sizeof line, "%-20s %-27s filename\n", "ID", "creation timestamp");
  std::string out = line;
  for (size_t i = 0; i < jobs.size(); ++i) {
    const JobEntry& j = jobs[i];
    snprintf(line, sizeof line, "%-20llu %-27s ", static_cast<unsigned long long>(j.meta.seq),
             rfc3339_local(j.meta.ctime_secs).c_str());
    out += line;
    out += j.filename;
    if (i < verdicts.size() && verdicts[i])
      out += "  signer " + verdicts[i]->signer +
             (verdicts[i]->trusted ? " (trusted)" : " (NOT trusted)");
    out += '\n';
    if (out.size() >= 64 * 1024) {
      write_all(1, out, "standard output");
      out.clear();
    }
  }
  for (const auto& m : missing) out += m + "\n";
  write_all(1, out, "standard output");
  return kExitOk;
}

// The one job with sequence `id`; a missing or ambiguous id is an error.
JobEntry find_job(const Queue& q, const DecodeOptions& d, const std::string& id_text) {
  uint64_t id = parse_u64(id_text, "--job");
  JobList found;
  for (auto& j : scan_sorted(q, d, ScanFor::Listing).jobs)
    if (j.meta.seq == id) found.push_back(std::move(j));
  if (found.empty()) throw Error("job " + id_text + " not found in queue " + q.dir(), kExitNoInput);
  if (found.size() > 1)
    throw Error("job " + id_text + " is in two files: jobs/" + found[0].filename + " and jobs/" +
                    found[1].filename,
                kExitDataErr);
  return std::move(found.front());
}

int run_info(const QueueArgs& a) {
  Queue q(a.queuedir);
  DecodeOptions d = a.decode.finish();
  JobEntry j = find_job(q, d, a.job);
  JobOrigin origin{j.filename, q.dir()};
  std::optional<Verdict> v = judge_job(q, j, d, a.policy_flags.build());
  if (a.json) {
    write_all(1, job_json(j.meta, &origin, v ? &*v : nullptr), "standard output");
    return kExitOk;
  }
  print_env(job_env(j.meta, &origin));
  if (v) print_env(signer_lines(*v));
  return kExitOk;
}

// Under a policy the payload is still streamed, and an untrusted one ends
// in exit 65 after it, as a consumer would be stopped before EOF.
int run_payload(const QueueArgs& a) {
  Queue q(a.queuedir);
  DecodeOptions d = a.decode.finish();
  SignerPolicy policy = a.policy_flags.build();
  JobEntry j = find_job(q, d, a.job);
  Job job = Job::open(q, j.filename, d);
  if (!policy.empty()) job.require(policy, signer_key_ids(policy, d.gnupg_home));
  copy_payload_to_stdout(job.stream());
  return kExitOk;
}

// --check: one plugin line; whatever keeps the queue from being read
// (missing, permission denied, a bad threshold) is UNKNOWN, exit 3.
int run_check(const QueueArgs& a) {
  CheckResult r;
  try {
    CheckThresholds t;
    if (!a.warn_age.empty())
      t.warn_age = static_cast<int64_t>(parse_duration(a.warn_age, "--warn-age"));
    if (!a.crit_age.empty())
      t.crit_age = static_cast<int64_t>(parse_duration(a.crit_age, "--crit-age"));
    if (t.warn_age && t.crit_age && *t.warn_age > *t.crit_age)
      throw UsageError("--warn-age must not be longer than --crit-age");
    QueueStatus s = queue_status(Queue(a.queuedir), a.decode.finish(), a.policy_flags.build());
    r = status_check(s, t, now_ctime().first);
  } catch (const std::exception& e) {
    r = check_unknown(a.queuedir, e.what());
  }
  write_all(1, r.line + "\n", "standard output");
  return r.code;
}

// Exit status: 0 healthy, 1 failing, 2 waiting on a gap, 3 blocked.
int run_status(const QueueArgs& a) {
  if (a.check) return run_check(a);
  if (!a.warn_age.empty() || !a.crit_age.empty())
    throw UsageError("--warn-age and --crit-age go with --check");
  QueueStatus s = queue_status(Queue(a.queuedir), a.decode.finish(), a.policy_flags.build());
  write_all(1, a.json ? status_json(s) : format_status(s), "standard output");
  switch (s.state) {
    case QueueStatus::State::Healthy:
      return kExitOk;
    case QueueStatus::State::Failing:
      return kExitFailing;
    case QueueStatus::State::Waiting:
      return kExitWaiting;
    case QueueStatus::State::Blocked:
      return kExitBlocked;
  }
  return kExitOk;
}

// The ledger, oldest record first.
int run_ledger(const QueueArgs& a) {
  Queue q(a.queuedir);
  q.check_exists();
  LedgerView v = Ledger(q.dir()).read();
  if (a.json) return write_all(1, ledger_json(q.dir(), v.records()), "standard output"), kExitOk;
  std::string out;
  char line[160];
  snprintf(line, sizeof line, "%-20s %-20s %-10s %-4s %-16s %s\n", "time", "seq", "result", "exit",
           "sha256", "file  signer  reason");
  out = line;
  for (const auto& r : v.records()) {
    snprintf(line, sizeof line, "%-20s %-20llu %-10s %-4s %-16s ", rfc3339_utc(r.time).c_str(),
             static_cast<unsigned long long>(r.seq), result_name(r.result),
             r.exit_status ? std::to_string(*r.exit_status).c_str() : "-",
             r.sha256.empty() ? "-" : r.sha256.substr(0, 16).c_str());
    out += line + r.filename + (r.kept ? " (kept)" : "") +
           (r.signer.empty() ? "" : "  signer " + r.signer) +
           (r.reason.empty() ? "" : "  " + r.reason) + "\n";
  }
  write_all(1, out, "standard output");
  return kExitOk;
}

int run_import(const QueueArgs& a) {
  ImportOptions o;
  o.copy = a.copy;
  o.decode = a.decode.finish();
  o.policy = a.policy_flags.build();
  ImportReport r = import_packets(Queue(a.queuedir), a.sources, o);
  const char* removed = a.copy ? "" : "; removed";
  for (const auto& f : r.imported) spdlog::info("imported {}{}", f, removed);
  for (const auto& f : r.duplicates)
    spdlog::info("{}: the same bytes are already in the queue{}", f, removed);
  for (const auto& f : r.processed)
    spdlog::info("{}: the ledger says it was processed{}", f, removed);
  for (const auto& f : r.kept) spdlog::warn("not imported: {}", f.reason);
  for (const auto& f : r.failed) spdlog::error("not imported: {}", f.reason);
  if (!r.ignored.empty())
    spdlog::warn("ignored {} file(s) not named fspl-*.fspl, e.g. {}", r.ignored.size(),
                 r.ignored.front());
  std::string summary = "imported " + std::to_string(r.imported.size()) + ", already queued " +
                        std::to_string(r.duplicates.size()) + ", already processed " +
                        std::to_string(r.processed.size()) + ", left for an operator " +
                        std::to_string(r.kept.size()) + ", failed " +
                        std::to_string(r.failed.size()) + ", ignored " +
                        std::to_string(r.ignored.size()) + "\n";
  write_all(1, summary, "standard output");
  return r.failed.empty() ? kExitOk : kExitDataErr;
}

void add_job_cmd(CLI::App& app, Action& action, const char* name, const char* help,
                 int (*run)(const QueueArgs&)) {
  auto a = std::make_shared<QueueArgs>();
  auto* sub = add_queuedir(app.add_subcommand(name, help), *a);
  a->decode.add_to(sub);
  if (std::string(name) == "queue-info")
    sub->add_flag("--json", a->json, "Print one JSON document");
  a->policy_flags.add_to(sub);
  sub->add_option("-j,--job", a->job, "The job ID (sequence number)")->required();
  sub->callback([&action, a, run] { action = [a, run] { return run(*a); }; });
}

// queue-init, queue-write, queue-get-next, queue-set-next.
void add_admin_cmds(CLI::App& app, Action& action, const std::shared_ptr<QueueArgs>& a) {
  auto* init = add_queuedir(app.add_subcommand("queue-init", "Initialize a queue"), *a);
  init->add_flag("--append-only", a->append_only, "Create a write-only queue (no seqfile)");
  init->callback([&action, a] {
    action = [a] {
      Queue::init(a->queuedir, a->append_only);
      return kExitOk;
    };
  });

  auto* write =
      add_queuedir(app.add_subcommand("queue-write", "Save a packet from stdin to a queue"), *a);
  write->callback([&action, a] {
    action = [a] {
      std::string name = Queue(a->queuedir).write(0);
      spdlog::debug("wrote jobs/{}", name);
      return kExitOk;
    };
  });

  auto* get = add_queuedir(
      app.add_subcommand("queue-get-next", "Prints the next sequence number for the queue"), *a);
  get->callback([&action, a] {
    action = [a] {
      write_all(1, std::to_string(lock_queue(Queue(a->queuedir)).next()) + "\n", "standard output");
      return kExitOk;
    };
  });

  auto* set = add_queuedir(
      app.add_subcommand("queue-set-next", "Sets the next sequence number for the queue"), *a);
  set->add_option("ID", a->id, "The next sequence number")->required();
  set->callback([&action, a] {
    action = [a] {
      uint64_t v = parse_u64(a->id, "ID");
      lock_queue(Queue(a->queuedir)).set(v);
      return kExitOk;
    };
  });
}

void add_status_cmd(CLI::App& app, Action& action, const std::shared_ptr<QueueArgs>& a) {
  auto* st =
      add_queuedir(app.add_subcommand("queue-status",
                                      "Show what a queue is waiting for and whether it is healthy"),
                   *a);
  a->decode.add_to(st);
  auto* json = st->add_flag("--json", a->json, "Print one JSON document");
  a->policy_flags.add_to(st);
  st->add_flag("--check", a->check,
               "Print one line for a monitoring plugin (Nagios API) and exit 0-3")
      ->excludes(json);
  st->add_option("--warn-age", a->warn_age,
                 "--check: WARNING when the oldest waiting packet arrived DUR ago (e.g. 6h)");
  st->add_option("--crit-age", a->crit_age,
                 "--check: CRITICAL when the oldest waiting packet arrived DUR ago (e.g. 2d)");
  st->callback([&action, a] { action = [a] { return run_status(*a); }; });
}

// queue-ls, queue-ledger, queue-import.
void add_reader_cmds(CLI::App& app, Action& action, const std::shared_ptr<QueueArgs>& a) {
  auto* ls = add_queuedir(
      app.add_subcommand("queue-ls", "Gets information about the jobs in a queue"), *a);
  a->decode.add_to(ls);
  ls->add_flag("--json", a->json, "Print one JSON document");
  a->policy_flags.add_to(ls);
  ls->callback([&action, a] { action = [a] { return run_ls(*a); }; });

  auto* led = add_queuedir(
      app.add_subcommand("queue-ledger", "Show the processed ledger: what ran, and how it ended"),
      *a);
  led->add_flag("--json", a->json, "Print one JSON document");
  led->callback([&action, a] { action = [a] { return run_ledger(*a); }; });

  auto* im = add_queuedir(
      app.add_subcommand("queue-import",
                         "Move (or copy) packets from transfer directories into a queue"),
      *a);
  a->decode.add_to(im);
  im->add_flag("--copy", a->copy, "Leave the source files in place");
  a->policy_flags.add_to(im);
  im->add_option("SOURCE", a->sources, "Directories (their fspl-*.fspl files) or packet files")
      ->required();
  im->callback([&action, a] { action = [a] { return run_import(*a); }; });
}

}  // namespace

void register_queue(CLI::App& app, Action& action) {
  auto a = std::make_shared<QueueArgs>();
  add_admin_cmds(app, action, a);
  add_reader_cmds(app, action, a);
  add_status_cmd(app, action, a);
  add_job_cmd(app, action, "queue-info", "Show information about a specific job ID in a queue",
              run_info);
  add_job_cmd(app, action, "queue-payload", "Dump the payload of a job to stdout", run_payload);
}

}  // namespace safespool::cli
