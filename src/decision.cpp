// SPDX-License-Identifier: GPL-3.0-or-later
// The decision about the next sequence number (see decision.hpp).
#include "safespool/decision.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>

#include "safespool/digest.hpp"
#include "safespool/error.hpp"
#include "safespool/openpgp.hpp"
#include "safespool/ordering.hpp"
#include "safespool/parts.hpp"
#include "safespool/verify.hpp"

namespace safespool {
namespace {

/// The candidates that opened and passed the policy's early look.
struct Opened {
  std::string filename;
  Job job;
};

std::string jobs(const std::string& filename) { return "jobs/" + filename; }

Blocked blocked(Blocked::Reason reason, std::string summary, std::vector<std::string> files) {
  return Blocked{reason, std::move(summary), std::move(files)};
}

std::string sha256_of_job(const Queue& q, const std::string& filename) {
  Fd fd = q.open_job(filename);
  return sha256_file(fd.get(), jobs(filename));
}

/// The key ids an OpenPGP job file is encrypted to (none when it is not
/// one, or cannot be read).
std::vector<std::string> encrypted_to(const Queue& q, const std::string& filename) {
  try {
    Fd fd = q.open_job(filename);
    std::vector<std::byte> head(4096);
    ssize_t n = ::pread(fd.get(), head.data(), head.size(), 0);
    head.resize(n > 0 ? static_cast<size_t>(n) : 0);
    return openpgp::recipients(head);
  } catch (const Error&) {
    return {};
  }
}

bool exhausted(uint64_t seq, const Ledger& ledger) {
  if (seq != UINT64_MAX) return false;
  LedgerView view = ledger.read();
  const LedgerRecord* last = view.last_for_seq(seq);
  return last && last->result == LedgerResult::Success;
}

/// Opens a candidate and reads its header now. nullopt when it cannot be
/// read (the scan lists it as unreadable next time) or no longer holds
/// `seq`; `doubt` is set when the scan took that seq from the index.
std::optional<Job> open_candidate(const Queue& q, const JobEntry& e, uint64_t seq,
                                  const DecodeOptions& decode, bool& doubt) {
  try {
    Job job = Job::open(q, e.filename, decode);
    if (job.meta().seq == seq) return job;
    if (e.from_index)
      spdlog::warn("{} has seq {}, not {} as the header index said; reading every job file again",
                   jobs(e.filename), job.meta().seq, seq);
    else
      spdlog::debug("{} has seq {} now, not {}", jobs(e.filename), job.meta().seq, seq);
    doubt = doubt || e.from_index;
  } catch (const Error& err) {
    spdlog::debug("{}", err.what());
  }
  return std::nullopt;
}

class Decision {
 public:
  Decision(const Queue& q, uint64_t seq, const DecodeOptions& decode, const DecisionRules& rules,
           Ledger& ledger)
      : q_(q), seq_(seq), decode_(decode), rules_(rules), ledger_(ledger) {}

  Choice run(std::span<const JobEntry> candidates);

 private:
  bool open_all(std::span<const JobEntry> candidates);
  void admit(const std::string& filename, Job job);
  void refuse(const std::string& filename, const std::string& why,
              const std::vector<std::string>& files = {}, const std::string& sha256 = {});
  void open_split(const PartSet& set);
  void check_incomplete(const PartGroups& groups, std::vector<std::string> jobs_here,
                        const std::string& incomplete);
  bool resolve_supersedes();
  Sameness compare(const Opened& a, const Opened& b) const;
  bool resolve_twins();
  void conflict(std::string summary, std::vector<std::string> files);
  Choice finish();

  const Queue& q_;
  uint64_t seq_;
  const DecodeOptions& decode_;
  const DecisionRules& rules_;
  Ledger& ledger_;
  std::vector<Opened> ok_;
  std::vector<std::pair<std::string, std::string>> unreadable_;  ///< split jobs: (file, why)
  Choice choice_;
};

// Part files are grouped by job; every other candidate is a job of its own.
bool Decision::open_all(std::span<const JobEntry> candidates) {
  bool doubt = false;
  PartGroups groups;
  std::vector<std::string> whole;  // candidates that are not parts
  for (const auto& e : candidates) {
    auto job = open_candidate(q_, e, seq_, decode_, doubt);
    if (!job) continue;
    if (job->meta().part) {
      groups.add(e.filename, *job->meta().part);
    } else {
      whole.push_back(e.filename);
      admit(e.filename, std::move(*job));
    }
  }
  std::vector<std::string> incomplete;
  for (auto [hash, set] : groups.sets()) {
    if (auto c = settle_copies(q_, seq_, set, rules_.act && !rules_.keep_files)) {
      conflict(std::move(c->summary), std::move(c->files));
      return !doubt;
    }
    if (set.complete()) {
      open_split(set);
      continue;
    }
    choice_.missing_parts.push_back(set.missing_text(seq_));
    incomplete.push_back(set.parts.begin()->second.filename);
  }
  if (!incomplete.empty()) check_incomplete(groups, whole, incomplete.front());
  return !doubt;
}

// Without a policy, a job still missing parts and another packet at the
// same seq are two packets with one seq. Under a policy, parts nobody can
// verify yet never block a packet that may verify.
void Decision::check_incomplete(const PartGroups& groups, std::vector<std::string> jobs_here,
                                const std::string& incomplete) {
  if (!rules_.policy.empty()) return;
  for (const auto& [hash, set] : groups.sets())
    jobs_here.push_back(set.parts.begin()->second.filename);
  auto other = std::find_if(jobs_here.begin(), jobs_here.end(),
                            [&](const std::string& f) { return f != incomplete; });
  if (other == jobs_here.end()) return;
  conflict("split job " + std::to_string(seq_) + " is missing parts and another packet has " +
               "sequence " + std::to_string(seq_) + ": jobs/" + incomplete + " and jobs/" + *other,
           {incomplete, *other});
}

// Under a policy, what announces no trusted signer is set aside at once.
void Decision::admit(const std::string& filename, Job job) {
  if (!rules_.policy.empty()) {
    try {
      job.require(rules_.policy, rules_.key_ids);
    } catch (const FormatError& err) {
      refuse(filename, err.what(), job.files(), job.split() ? job.sha256() : "");
      return;
    }
  }
  ok_.push_back({filename, std::move(job)});
}

void Decision::open_split(const PartSet& set) {
  std::vector<PartFile> parts = set.ordered();
  std::string first = parts.front().filename;
  std::vector<std::string> files;
  for (const auto& p : parts) files.push_back(p.filename);
  try {
    admit(first, Job::open_split(q_, seq_, std::move(parts), decode_));
  } catch (const Error& e) {
    if (e.exit_code() == kExitInterrupted) throw;
    // A header error in a packet nobody verified is the policy's to judge.
    if (!rules_.policy.empty())
      refuse(first, e.what(), files, set.job);
    else
      unreadable_.emplace_back(first, e.what());
  }
}

void Decision::conflict(std::string summary, std::vector<std::string> files) {
  choice_.kind = Choice::Kind::Blocked;
  choice_.blocked = blocked(Blocked::Reason::Conflict, std::move(summary), std::move(files));
}

void Decision::refuse(const std::string& filename, const std::string& why,
                      const std::vector<std::string>& files, const std::string& sha256) {
  choice_.refused.emplace_back(filename, why);
  if (!rules_.act) return;
  spdlog::error("{}; it cannot run, and the queue waits for a packet that can", why);
  LedgerRecord r;
  r.time = now_ctime().first;
  r.seq = seq_;
  r.result = LedgerResult::Rejected;
  r.filename = filename;
  r.reason = why;
  try {
    r.sha256 = sha256.empty() ? sha256_of_job(q_, filename) : sha256;
    ledger_.append(r);
    if (rules_.delete_refused) {
      spdlog::info("deleting {} (--on-error delete); nextseq stays {}", jobs(filename), seq_);
      for (const auto& f : files.empty() ? std::vector{filename} : files) remove_job_file(q_, f);
    }
  } catch (const Error& e) {
    spdlog::warn("{}", e.what());
  }
}

// A packet that declares it supersedes another takes that packet's place
// only when the ledger says that exact packet failed at this seq; the one
// it replaces steps aside (deleted once the replacement succeeded).
bool Decision::resolve_supersedes() {
  auto declares = [](const Opened& o) { return o.job.meta().supersedes.has_value(); };
  if (std::none_of(ok_.begin(), ok_.end(), declares)) return true;
  LedgerView view = ledger_.read();
  for (const Opened& o : ok_) {
    const auto& s = o.job.meta().supersedes;
    if (!s) continue;
    const LedgerRecord* r = view.last_for_hash(s->sha256);
    if (s->seq != seq_ || !r || r->seq != seq_ || r->result != LedgerResult::Failure) {
      conflict(jobs(o.filename) + " replaces the packet of seq " + std::to_string(s->seq) +
                   " with SHA-256 " + s->sha256.substr(0, 16) + "..., which " +
                   (r ? std::string("is recorded as ") + result_name(r->result) + " at seq " +
                            std::to_string(r->seq)
                      : std::string("has no record")) +
                   " here; only a packet that failed can be replaced",
               {o.filename});
      return false;
    }
    auto known = [&](const Replaced& x) { return x.sha256 == s->sha256; };
    if (std::none_of(choice_.replaces.begin(), choice_.replaces.end(), known))
      choice_.replaces.push_back({s->sha256, {}});
  }
  for (size_t i = 0; i < ok_.size();) {
    const std::string& sha = ok_[i].job.sha256();
    auto it = std::find_if(choice_.replaces.begin(), choice_.replaces.end(),
                           [&](const Replaced& x) { return x.sha256 == sha; });
    if (it == choice_.replaces.end()) {
      ++i;
      continue;
    }
    spdlog::debug("{} is superseded; it steps aside", ok_[i].job.name());
    it->files = ok_[i].job.files();
    ok_.erase(ok_.begin() + static_cast<ptrdiff_t>(i));
  }
  return true;
}

// Two files are compared by their bytes first; a split job by its stream.
Sameness Decision::compare(const Opened& a, const Opened& b) const {
  if (!a.job.split() && !b.job.split())
    return compare_packets(q_.open_job(a.filename), jobs(a.filename), q_.open_job(b.filename),
                           jobs(b.filename), decode_, rules_.policy);
  return compare_decoded(a.job.open_again(), a.job.name(), b.job.open_again(), b.job.name(),
                         rules_.policy);
}

bool Decision::resolve_twins() {
  for (size_t i = 1; i < ok_.size();) {
    const Opened& a = ok_.front();
    const Opened& b = ok_[i];
    Sameness s = compare(a, b);
    bool policed = !rules_.policy.empty();
    if (s == Sameness::Same) {
      spdlog::info("{} is a copy of {} (seq {}){}", b.job.name(), a.job.name(), seq_,
                   rules_.act && !rules_.keep_files ? "; removing it" : "; ignoring it");
      if (rules_.act && !rules_.keep_files)
        for (const auto& f : b.job.files()) remove_job_file(q_, f);
      ok_.erase(ok_.begin() + static_cast<ptrdiff_t>(i));
    } else if (policed && s != Sameness::Different) {
      size_t bad = s == Sameness::FirstBad ? 0 : i;
      Opened& o = ok_[bad];
      refuse(o.filename,
             o.job.name() + ": not trusted: its stream does not verify, unlike another packet " +
                 "with seq " + std::to_string(seq_),
             o.job.files(), o.job.split() ? o.job.sha256() : "");
      ok_.erase(ok_.begin() + static_cast<ptrdiff_t>(bad));
      if (bad == 0) i = 1;
    } else {
      conflict("two different packets have sequence " + std::to_string(seq_) + ": " + a.job.name() +
                   " and " + b.job.name(),
               {a.filename, b.filename});
      return false;
    }
  }
  return true;
}

Choice Decision::finish() {
  if (!ok_.empty()) {
    choice_.kind = Choice::Kind::Run;
    choice_.filename = ok_.front().filename;
    choice_.job = std::move(ok_.front().job);
  } else if (!choice_.refused.empty() && !(rules_.act && rules_.delete_refused)) {
    std::vector<std::string> files;
    for (const auto& [f, why] : choice_.refused) files.push_back(f);
    choice_.kind = Choice::Kind::Blocked;
    choice_.blocked = blocked(Blocked::Reason::Rejected, choice_.refused.front().second, files);
  } else if (!unreadable_.empty()) {
    choice_.kind = Choice::Kind::Blocked;
    choice_.blocked = blocked(
        Blocked::Reason::Unreadable,
        "split job " + std::to_string(seq_) + " cannot be read: " + unreadable_.front().second,
        {unreadable_.front().first});
  }
  return std::move(choice_);
}

Choice Decision::run(std::span<const JobEntry> candidates) {
  if (exhausted(seq_, ledger_)) {
    choice_.kind = Choice::Kind::Blocked;
    choice_.blocked = blocked(Blocked::Reason::Exhausted,
                              "sequence number " + std::to_string(seq_) +
                                  ", the last there is, has run; start the queue over "
                                  "(queue-set-next) to go on",
                              {});
    return std::move(choice_);
  }
  try {
    if (!open_all(candidates)) {
      choice_ = {};
      choice_.kind = Choice::Kind::Rescan;
      return std::move(choice_);
    }
    if (choice_.kind == Choice::Kind::Blocked) return std::move(choice_);
    if (!resolve_supersedes() || !resolve_twins()) return std::move(choice_);
  } catch (const Error& e) {
    // A candidate vanished or cannot be read while compared: decide again
    // from a new scan.
    spdlog::debug("{}", e.what());
    choice_ = {};
    choice_.kind = Choice::Kind::Rescan;
    return std::move(choice_);
  }
  return finish();
}

std::string recipients_text(const std::vector<std::string>& ids) {
  std::string out;
  for (const auto& id : ids) out += (out.empty() ? "" : ", ") + id;
  return out;
}

}  // namespace

Choice choose(const Queue& q, uint64_t seq, std::span<const JobEntry> candidates,
              const DecodeOptions& decode, const DecisionRules& rules, Ledger& ledger) {
  return Decision(q, seq, decode, rules, ledger).run(candidates);
}

std::optional<Blocked> why_missing(const Queue& q, uint64_t seq,
                                   std::vector<SkippedFile>& unreadable, const Ledger& ledger) {
  if (exhausted(seq, ledger))
    return blocked(Blocked::Reason::Exhausted,
                   "sequence number " + std::to_string(seq) +
                       ", the last there is, has run; start the queue over (queue-set-next) "
                       "to go on",
                   {});
  if (unreadable.empty()) return std::nullopt;
  std::string summary;
  std::vector<std::string> files;
  for (auto& u : unreadable) {
    u.recipients = encrypted_to(q, u.filename);
    std::string line = u.reason;
    if (!u.recipients.empty()) line += " (encrypted to " + recipients_text(u.recipients) + ")";
    summary += (summary.empty() ? "" : "; ") + line;
    files.push_back(u.filename);
  }
  return blocked(Blocked::Reason::Unreadable,
                 "sequence " + std::to_string(seq) + " is missing and " +
                     std::to_string(unreadable.size()) +
                     " file(s) in jobs/ cannot be read: " + summary,
                 files);
}

}  // namespace safespool
