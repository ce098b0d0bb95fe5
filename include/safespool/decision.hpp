// SPDX-License-Identifier: GPL-3.0-or-later
// Which packet is the job with the next sequence number: the one decision
// queue-process acts on and queue-status reports (see DESIGN.md,
// "Decisions about packets").
//
// A scan (or the header index behind it) only says where to look. The
// decision rests on facts read now: every candidate's header is read
// again from its bytes; under a signer policy, what each one announces
// about its signer (verify.hpp) sets aside the ones that cannot be
// trusted before they can outrank, block or delete one that can; of the
// rest, byte-identical files — or files with the same decoded stream,
// each verified under a policy — are twins and one runs; different ones
// are a conflict. When nothing can run, unreadable files in jobs/ (the
// next packet may be among them) block the queue, named with the reason
// and, for OpenPGP, the keys they are encrypted to.
//
// Part files of a split job (parts.hpp) are grouped by job: a complete
// group is one candidate, an incomplete one only says which parts are
// missing. A packet that declares it supersedes another (a resumed `zfs
// receive`, docs/design/envelopes.md) takes the place of that packet only
// when the ledger says that exact packet failed at this seq; otherwise the
// two are a conflict, like any two packets with one seq.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "safespool/decode.hpp"
#include "safespool/job.hpp"
#include "safespool/ledger.hpp"
#include "safespool/policy.hpp"
#include "safespool/queue.hpp"
#include "safespool/status.hpp"

namespace safespool {

/// What the decision may do and under which policy.
struct DecisionRules {
  const SignerPolicy& policy;            ///< empty: none
  const std::set<std::string>& key_ids;  ///< signer_key_ids() of the policy
  /// queue-process acts: removes twins (unless keep_files) and, with
  /// delete_refused, packets the policy refused. queue-status reports:
  /// changes nothing.
  bool act = false;
  bool keep_files = false;      ///< --never-delete
  bool delete_refused = false;  ///< --on-error delete
};

/// A packet the chosen job takes the place of: the ledger records it as
/// `superseded`, and its files are deleted, once the chosen job succeeded.
struct Replaced {
  std::string sha256;
  std::vector<std::string> files;  ///< names within jobs/ (none when it is gone)
};

/// The decision about one sequence number.
struct Choice {
  enum class Kind {
    Run,      ///< `job` is the packet to run
    Missing,  ///< no packet with this seq can run (yet)
    Blocked,  ///< `blocked` says why
    Rescan,   ///< a candidate is not what the scan said: scan again, reading every file
  };
  Kind kind = Kind::Missing;
  std::optional<Job> job;  ///< Run: opened, header read now, the policy on its stream
  std::string filename;    ///< Run: its name within jobs/
  std::optional<Blocked> blocked;
  /// Packets with this seq the policy refused: (name within jobs/, why).
  std::vector<std::pair<std::string, std::string>> refused;
  /// Split jobs at this seq that lack parts: "job 7: parts 3, 4 of 4 missing".
  std::vector<std::string> missing_parts;
  /// Run: the packets `job` supersedes.
  std::vector<Replaced> replaces;
};

/// Decides among `candidates`, the scanned entries whose seq is `seq`.
/// With rules.act, refusals are recorded in `ledger`. Never throws for a
/// single bad file.
Choice choose(const Queue& q, uint64_t seq, std::span<const JobEntry> candidates,
              const DecodeOptions& decode, const DecisionRules& rules, Ledger& ledger);

/// Why nothing at `seq` could run blocks the queue, if it does: files in
/// jobs/ that cannot be read (`unreadable`, from the scan; each named with
/// its reason and, read from the file, the key ids it is encrypted to), or
/// the end of the sequence space. nullopt: the queue simply waits.
std::optional<Blocked> why_missing(const Queue& q, uint64_t seq,
                                   std::vector<SkippedFile>& unreadable, const Ledger& ledger);

}  // namespace safespool
