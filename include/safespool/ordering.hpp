// SPDX-License-Identifier: GPL-3.0-or-later
// Telling packets apart, and tidying what sneakernet delivery leaves.
//
// Media deliver packets late, twice, or out of order. A packet delivered
// twice is a twin: the same bytes, or, stored differently (plain and zstd,
// signed and signed-and-encrypted), the same decoded stream — and, under a
// signer policy, both verified, so that an unsigned copy can never be
// called the twin of a signed original and take its place. Two different
// packets claiming one sequence number are a conflict. A packet below
// nextseq is stale: deleted as done only when the ledger says that exact
// packet completed, or on request (--delete-stale).
#pragma once

#include <cstdint>
#include <set>
#include <string>

#include "safespool/decode.hpp"
#include "safespool/fd.hpp"
#include "safespool/ledger.hpp"
#include "safespool/policy.hpp"
#include "safespool/queue.hpp"

namespace safespool {

/// True when the two open files hold the same bytes (`what` names them in errors).
bool same_bytes(Fd a, Fd b, const std::string& what);

/// How two packets compare.
enum class Sameness {
  Same,       ///< twins: one may stand for the other
  Different,  ///< a conflict (both decode, and verify under a policy)
  FirstBad,   ///< the first does not decode, or fails the policy
  SecondBad,  ///< the second does not decode, or fails the policy
};

/// Compares two packet files: the same bytes, or the same decoded stream
/// (`policy` non-empty: both streams must also be trusted). Reads both
/// whole when their bytes differ.
Sameness compare_packets(Fd a, const std::string& name_a, Fd b, const std::string& name_b,
                         const DecodeOptions& decode, const SignerPolicy& policy);

/// compare_packets() for packets that are not one file each (a split
/// job's stream): `a` and `b` are fresh decoded streams of the two
/// packets from their start, named in messages.
Sameness compare_decoded(Decoded a, const std::string& name_a, Decoded b, const std::string& name_b,
                         const SignerPolicy& policy);

/// True when the two files are the same packet (compare_packets without a
/// policy says Same).
bool same_packet(Fd a, const std::string& name_a, Fd b, const std::string& name_b,
                 const DecodeOptions& decode);

/// Removes jobs/`filename`; a file already gone is fine.
void remove_job_file(const Queue& q, const std::string& filename);

/// What to do with files below nextseq.
struct StaleRules {
  bool keep_files = false;    ///< --never-delete: nothing is deleted
  bool delete_stale = false;  ///< --delete-stale: every stale file goes
};

/// Deletes the stale files (seq < `next`) in `jobs` that the ledger says
/// completed (the last record for their seq is a success with their
/// hash: a run stopped between advancing nextseq and deleting), and with
/// --delete-stale the others too, each after reading its header again.
/// Logs what it keeps.
void tidy_stale(const Queue& q, const JobList& jobs, uint64_t next, const StaleRules& rules,
                const DecodeOptions& decode, const Ledger& ledger);

}  // namespace safespool
