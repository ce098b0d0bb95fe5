// SPDX-License-Identifier: GPL-3.0-or-later
// outbox-status, outbox-prune: the sender's view of its packets, from the
// receipts that came back (include/safespool/outbox.hpp).
#include <spdlog/spdlog.h>

#include "common.hpp"
#include "safespool/error.hpp"
#include "safespool/outbox.hpp"

namespace safespool::cli {
namespace {

struct OutboxArgs {
  std::string outbox, receipts;
  DecodeFlags decode;
  PolicyFlags policy_flags;
  bool json = false;
};

OutboxReport report_of(const OutboxArgs& a) {
  OutboxReport r = outbox_status(a.outbox, a.receipts, a.decode.finish(), a.policy_flags.build());
  for (const auto& b : r.bad) spdlog::warn("not used: {}: {}", b.filename, b.reason);
  return r;
}

// Exit status: 1 when a packet failed (it needs the sender), else 0.
int exit_status_of(const OutboxReport& r) {
  for (const auto& e : r.entries)
    if (e.state == "failed") return kExitFailing;
  return kExitOk;
}

int run_status(const OutboxArgs& a) {
  OutboxReport r = report_of(a);
  write_all(1, a.json ? outbox_json(r) : outbox_text(r), "standard output");
  return exit_status_of(r);
}

int run_prune(const OutboxArgs& a) {
  OutboxReport r = report_of(a);
  std::vector<std::string> pruned = outbox_prune(r, a.outbox);
  if (a.json) {
    write_all(1, outbox_json(r, pruned), "standard output");
  } else {
    std::string out;
    for (const auto& f : pruned) out += "deleted " + a.outbox + "/" + f + "\n";
    write_all(1, out, "standard output");
  }
  return exit_status_of(r);
}

void add_outbox_cmd(CLI::App& app, Action& action, const char* name, const char* help,
                    int (*run)(const OutboxArgs&)) {
  auto a = std::make_shared<OutboxArgs>();
  auto* sub = app.add_subcommand(name, help);
  sub->add_option("--outbox", a->outbox, "The outbox directory (prepare --outbox)")->required();
  sub->add_option("--receipts", a->receipts, "The directory the receipts came back into")
      ->required();
  sub->add_flag("--json", a->json, "Print one JSON document");
  a->decode.add_to(sub);
  a->policy_flags.add_to(sub);
  sub->callback([&action, a, run] { action = [a, run] { return run(*a); }; });
}

}  // namespace

void register_outbox(CLI::App& app, Action& action) {
  add_outbox_cmd(app, action, "outbox-status",
                 "Show which packets in an outbox the receiver acked, failed, or has not answered",
                 run_status);
  add_outbox_cmd(app, action, "outbox-prune",
                 "Delete the packets the receiver acked from an outbox", run_prune);
}

}  // namespace safespool::cli
