// SPDX-License-Identifier: GPL-3.0-or-later
// The receipts of a queue-process pass (see src/receipt_log.hpp).
#include "receipt_log.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "safespool/error.hpp"
#include "safespool/status.hpp"

namespace safespool {
namespace {

std::optional<int> exit_status_of(const HandoffResult& r) {
  if (r.kind == HandoffResult::Kind::Exited) return r.status;
  if (r.kind == HandoffResult::Kind::Signaled) return 128 + r.status;
  return std::nullopt;
}

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "";
  return buf;
}

// True when `dir` holds a waiting receipt for `seq` (named so by write_receipt()).
bool has_waiting_receipt(const std::string& dir, uint64_t seq) {
  std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
  if (!d) return false;
  std::string prefix = "fspl-receipt-" + std::to_string(seq) + "-waiting-";
  while (dirent* e = ::readdir(d.get()))
    if (std::string_view(e->d_name).starts_with(prefix)) return true;
  return false;
}

}  // namespace

ReceiptLog::ReceiptLog(const Queue& q, const ReceiptOptions& opts)
    : queuedir_(q.dir()),
      opts_(opts),
      note_path_(q.dir() + "/.safespool-receipt-note"),
      host_(host_name()) {}

std::vector<std::string> ReceiptLog::prepare_note() {
  if (!enabled()) return {};
  Fd fd(::open(note_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) {
    spdlog::warn("cannot prepare {}: {}; the receipt carries no note", note_path_,
                 std::strerror(errno));
    return {};
  }
  return {"SAFESPOOL_RECEIPT_NOTE=" + note_path_};
}

// What the consumer wrote; prepare_note() empties the file for the next job.
std::string ReceiptLog::take_note() {
  Fd fd(::open(note_path_.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
  if (!fd) return "";
  std::vector<std::byte> buf(kReceiptTextMax);
  size_t n = 0;
  try {
    n = read_full(fd.get(), buf, note_path_);
  } catch (const Error& e) {
    spdlog::warn("{}", e.what());
  }
  return std::string(reinterpret_cast<const char*>(buf.data()), n);
}

Receipt ReceiptLog::base(uint64_t seq) const {
  Receipt r;
  r.queue = queuedir_;
  r.host = host_;
  r.seq = seq;
  r.time = now_ctime().first;
  return r;
}

void ReceiptLog::write(const Receipt& r) {
  try {
    std::string path = write_receipt(opts_.dir, r, opts_.encode);
    spdlog::debug("receipt for seq {} ({}): {}", r.seq, r.result, path);
  } catch (const Error& e) {
    spdlog::warn("cannot write the receipt for seq {} ({}): {}", r.seq, r.result, e.what());
  }
}

void ReceiptLog::job_ended(Job& job, LedgerResult result, const JobOutcome& o,
                           const std::vector<Replaced>& replaced) {
  if (!enabled()) return;
  Receipt r = base(job.meta().seq);
  r.result = result_name(result);
  try {
    r.sha256 = job.sha256();
  } catch (const Error& e) {
    spdlog::warn("{}", e.what());
  }
  r.exit_status = exit_status_of(o.handoff);
  r.reason = o.reason();
  r.stderr_tail = o.handoff.stderr_tail;
  r.note = take_note();
  for (const auto& x : replaced) {
    Receipt s = base(r.seq);
    s.result = result_name(LedgerResult::Superseded);
    s.sha256 = x.sha256;
    s.superseded_by = r.sha256;
    write(s);
  }
  write(r);
}

void ReceiptLog::check_waiting(const QueueStatus& s) {
  if (!enabled() || s.state != QueueStatus::State::Waiting || !s.next_seq ||
      !s.oldest_age_seconds || *s.oldest_age_seconds < opts_.wait_after_seconds)
    return;
  if (has_waiting_receipt(opts_.dir, *s.next_seq)) return;
  Receipt r = base(*s.next_seq);
  r.result = "waiting";
  r.waiting_since = r.time - *s.oldest_age_seconds;
  r.reason =
      "waiting for " + std::to_string(*s.next_seq) + " since " + rfc3339_utc(*r.waiting_since);
  for (const auto& m : s.missing_parts) r.reason += "; " + m;
  write(r);
}

}  // namespace safespool
