// SPDX-License-Identifier: GPL-3.0-or-later
// The decision about the next sequence number (see decision.hpp).
#include "safespool/decision.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include "safespool/digest.hpp"
#include "safespool/error.hpp"
#include "safespool/openpgp.hpp"
#include "safespool/ordering.hpp"
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
  void refuse(const std::string& filename, const std::string& why);
  bool resolve_twins();
  Choice finish();

  const Queue& q_;
  uint64_t seq_;
  const DecodeOptions& decode_;
  const DecisionRules& rules_;
  Ledger& ledger_;
  std::vector<Opened> ok_;
  Choice choice_;
};

bool Decision::open_all(std::span<const JobEntry> candidates) {
  bool doubt = false;
  for (const auto& e : candidates) {
    auto job = open_candidate(q_, e, seq_, decode_, doubt);
    if (!job) continue;
    if (!rules_.policy.empty()) {
      try {
        job->require(rules_.policy, rules_.key_ids);
      } catch (const FormatError& err) {
        refuse(e.filename, err.what());
        continue;
      }
    }
    ok_.push_back({e.filename, std::move(*job)});
  }
  return !doubt;
}

void Decision::refuse(const std::string& filename, const std::string& why) {
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
    r.sha256 = sha256_of_job(q_, filename);
    ledger_.append(r);
    if (rules_.delete_refused) {
      spdlog::info("deleting {} (--on-error delete); nextseq stays {}", jobs(filename), seq_);
      remove_job_file(q_, filename);
    }
  } catch (const Error& e) {
    spdlog::warn("{}", e.what());
  }
}

bool Decision::resolve_twins() {
  for (size_t i = 1; i < ok_.size();) {
    const std::string& a = ok_.front().filename;
    const std::string& b = ok_[i].filename;
    Sameness s =
        compare_packets(q_.open_job(a), jobs(a), q_.open_job(b), jobs(b), decode_, rules_.policy);
    bool policed = !rules_.policy.empty();
    if (s == Sameness::Same) {
      spdlog::info("{} is a copy of {} (seq {}){}", jobs(b), jobs(a), seq_,
                   rules_.act && !rules_.keep_files ? "; removing it" : "; ignoring it");
      if (rules_.act && !rules_.keep_files) remove_job_file(q_, b);
      ok_.erase(ok_.begin() + static_cast<ptrdiff_t>(i));
    } else if (policed && s != Sameness::Different) {
      size_t bad = s == Sameness::FirstBad ? 0 : i;
      refuse(ok_[bad].filename, jobs(ok_[bad].filename) + ": not trusted: its stream does not " +
                                    "verify, unlike another packet with seq " +
                                    std::to_string(seq_));
      ok_.erase(ok_.begin() + static_cast<ptrdiff_t>(bad));
      if (bad == 0) i = 1;
    } else {
      choice_.kind = Choice::Kind::Blocked;
      choice_.blocked = blocked(Blocked::Reason::Conflict,
                                "two different packets have sequence " + std::to_string(seq_) +
                                    ": " + jobs(a) + " and " + jobs(b),
                                {a, b});
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
  if (!open_all(candidates)) {
    choice_.kind = Choice::Kind::Rescan;
    return std::move(choice_);
  }
  try {
    if (!resolve_twins()) return std::move(choice_);
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
