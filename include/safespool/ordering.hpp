// SPDX-License-Identifier: GPL-3.0-or-later
// Which job runs next, and tidying what sneakernet delivery leaves behind.
//
// Media deliver packets late, twice, or out of order. A packet delivered
// twice (same sequence, same bytes or the same decoded stream) is a twin: one runs, the other is
// removed, and the queue does not stall as fspl's does. Two different
// packets claiming one sequence number are a real conflict and stop the
// run. A packet whose sequence is below nextseq is stale: already
// processed (or skipped by an operator); it is reported, and removed only
// on request (--delete-stale).
//
// The completion record closes the one window where a crash leaves a
// finished job's file behind: nextseq is advanced durably, then the file is
// deleted. Just before advancing, the processor notes "seq N is done, file
// F" in queuedir/.safespool-done (not fsynced: losing it on power failure
// only leaves a stale file, as fspl would). The next run deletes F if
// nextseq moved past N and F still holds seq N. A run creates the record
// once, by rename, and then rewrites it in place, one fixed-size line per
// job: a new file and a rename per job cost a data writeback (ext4 flushes
// a file renamed over another) and the freeing of the old file's block.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "safespool/fd.hpp"
#include "safespool/queue.hpp"

namespace safespool {

/// Jobs with seq >= `next`, sorted by seq, one per seq. Twins are
/// collapsed (the later file in `jobs` is removed unless `keep_files`); a
/// different packet under a seq already seen throws Error (exit 65) naming
/// both files.
JobList index_by_seq(const Queue& q, JobList jobs, uint64_t next, bool keep_files,
                     const DecodeOptions& decode);

/// The job with sequence `seq` in a vector made by index_by_seq, or null.
const JobEntry* find_seq(const JobList& by_seq, uint64_t seq);

/// Jobs with seq < `next`.
JobList stale_jobs(const JobList& jobs, uint64_t next);

/// True when the two open files hold the same bytes (`what` names them in errors).
bool same_bytes(Fd a, Fd b, const std::string& what);

/// True when the two files are the same packet: the same bytes, or, stored
/// differently (plain and zstd, say), the same decoded stream.
bool same_packet(Fd a, const std::string& name_a, Fd b, const std::string& name_b,
                 const DecodeOptions& decode);

/// same_packet() for two files in jobs/.
bool same_content(const Queue& q, const std::string& a, const std::string& b,
                  const DecodeOptions& decode);

/// queuedir/.safespool-done, as one run writes it.
class CompletionRecord {
 public:
  explicit CompletionRecord(const Queue& q);
  /// Notes that `filename` (seq `seq`) is done and about to be deleted.
  /// The first note of a run replaces the file (temp, rename) and keeps it
  /// open; the next ones overwrite its one line in place. Throws SysError.
  void note(uint64_t seq, const std::string& filename);

 private:
  std::string path_;
  Fd fd_;
};

/// Deletes the file a previous run recorded as done if it is still there,
/// still holds that seq, and nextseq has moved past it.
void finish_recorded_completion(const Queue& q, uint64_t next, const DecodeOptions& decode);

/// Removes jobs/`filename`; a file already gone is fine.
void remove_job_file(const Queue& q, const std::string& filename);

}  // namespace safespool
