// SPDX-License-Identifier: GPL-3.0-or-later
// The queue directory.
//
//   queuedir/nextseq        the next sequence number to run (see seqfile.hpp)
//   queuedir/nextseq.lock   flock'd by the processor
//   queuedir/jobs/          job files, fspl-*.fspl
//   queuedir/.safespool-index  a cache of their headers (see index.hpp)
//
// A file whose name matches fspl-*.fspl is complete by convention: writers
// use another name until the file is whole, then rename. Anything else in
// jobs/ is ignored. Job files are opened with O_NOFOLLOW|O_NONBLOCK and
// only regular files are read, so a symlink, FIFO or directory wearing a
// job's name is skipped, never followed or blocked on.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "safespool/decode.hpp"
#include "safespool/fd.hpp"
#include "safespool/huge_pages.hpp"
#include "safespool/index.hpp"
#include "safespool/packet.hpp"

namespace safespool {

/// One job file whose header was read.
struct JobEntry {
  std::string filename;  ///< name within jobs/
  Meta meta;
  FileId id;                ///< the file the header was read from
  bool from_index = false;  ///< the header came from the index, not the file
};

/// Jobs as scans return them: a listing of 100,000 packets is ~16 MB of
/// entries, on huge pages (huge_pages.hpp) rather than 4,000 page faults.
using JobList = std::vector<JobEntry, HugePageAllocator<JobEntry>>;

/// Sorts `jobs` by seq, keeping the scan's order among equal seqs. Each
/// entry is moved about once (a sort of (seq, position) pairs, then the
/// permutation applied in place): 100,000 entries are ~16 MB.
void sort_by_seq(JobList& jobs);

/// Who scans, which decides how an indexed header is trusted and used.
enum class ScanFor {
  /// Listings show what is there now: every file is stat()ed and its
  /// inode, size, mtime and ctime compared with the index.
  Listing,
  /// Listings that show only seq and ctime (queue-ls without --json,
  /// queue-status, queue-import): files are stat()ed as for Listing, and
  /// `meta` of an indexed file holds only seq and ctime, from the index's
  /// checksummed entries (its headers are not read or parsed) — unless its
  /// header is long enough to be a part of a split job's
  /// (kMinPartHeaderSize): then all of it, so that a part says so.
  Summary,
  /// The processor's scan, with a `seq_below` window: every file listed
  /// in `jobs` was checked as for Listing (its whole identity), but `meta`
  /// of an indexed file holds only seq and ctime. Files that the index
  /// places at or beyond `seq_below` are only counted in `beyond`, and
  /// for that their name and the inode number readdir() reports suffice
  /// (no stat() for the bulk of a 100,000-file queue). So `jobs` and the
  /// count may be trusted; the absence of a seq from `jobs` may not when
  /// `beyond` > 0: a file whose inode number was reused under its old name
  /// may hide there. Confirm with a Listing scan before declaring a job
  /// missing. Without a window (`seq_below` = UINT64_MAX) it checks all
  /// files as Summary does.
  Processing,
};

/// Receives each job a scan finds, in directory order, in place of
/// ScanResult::jobs (left empty): a listing of 100,000 jobs need not hold
/// 100,000 JobEntry at once.
using JobSink = std::function<void(JobEntry&&)>;

/// A file in jobs/ that looked like a job but could not be read as one.
struct SkippedFile {
  std::string filename;
  std::string reason;
  /// For an OpenPGP message: the key ids it is encrypted to (read from its
  /// session key packets, which need no key), as 16 upper-case hex digits.
  std::vector<std::string> recipients;
};

/// The outcome of a scan.
struct ScanResult {
  JobList jobs;                      ///< in directory order
  std::vector<SkippedFile> skipped;  ///< unreadable, not a packet, not a regular file
  /// Jobs at or above the scan's `seq_below` bound: counted, not listed.
  size_t beyond = 0;
  /// The temporary files (tmp-NAME.tmp, regular files) readdir() gave. A
  /// directory or a link with such a name is no writer's and is left
  /// alone, and does not keep the index from listing jobs/. A scan that took
  /// its listing from the header index gives none, and that is the truth:
  /// an index never claims to list a jobs/ that held one.
  std::vector<std::string> temp_files;
  /// Logs the skipped files once at warn level (count and first one) and
  /// each at debug level.
  void warn_skipped(const std::string& queuedir) const;
};

/// True for names of the form fspl-*.fspl.
bool is_job_name(std::string_view name);
/// True for the temporary names of files being written into jobs/
/// (tmp-*.tmp, a name within jobs/: no '/').
bool is_temp_name(std::string_view name);

/// A random (v4) UUID, lower-case hyphenated.
std::string gen_uuid();

/// "fspl-<uuid>.fspl".
std::string gen_job_filename();

/// A queue directory. Cheap to construct; nothing is touched until asked.
class Queue {
 public:
  explicit Queue(std::string dir) : dir_(std::move(dir)) {}

  /// Creates DIR, DIR/jobs and (unless append_only) nextseq = 1 and its
  /// lock. Throws SysError if DIR already exists, as fspl does.
  static void init(const std::string& dir, bool append_only);

  const std::string& dir() const { return dir_; }
  std::string jobs_dir() const { return dir_ + "/jobs"; }
  std::string seqfile_path() const { return dir_ + "/nextseq"; }
  std::string job_path(const std::string& filename) const { return jobs_dir() + "/" + filename; }

  /// Throws Error (exit 66) when DIR/jobs is not a directory.
  void check_exists() const;

  /// Reads the header of every job file, or takes it from the header index
  /// when the file is unchanged (see ScanFor), and updates the index when
  /// it learnt something. Never throws for a single bad file (it lands in
  /// `skipped`); throws when jobs/ cannot be listed.
  /// `seq_below`: list only jobs with a smaller seq and count the others
  /// (UINT64_MAX: no bound, the last seq included)
  /// (the processor needs the next few thousand, not all of a huge queue).
  /// `sink`: where the jobs go instead of ScanResult::jobs.
  ScanResult scan(const DecodeOptions& decode, ScanFor purpose = ScanFor::Listing,
                  uint64_t seq_below = UINT64_MAX, const JobSink& sink = {}) const;

  /// Opens a job file read-only, refusing symlinks and anything that is not
  /// a regular file. Throws SysError/Error naming the file.
  Fd open_job(const std::string& filename) const;

  /// Copies `in` (named `what` in errors) to a temporary name in jobs/
  /// (tmp-NAME.tmp, locked while written), fsyncs it, renames it to a
  /// fresh fspl-<uuid>.fspl and fsyncs jobs/. On any failure the temporary
  /// file is removed and nothing appears under a job name. Returns the name.
  std::string write(int in_fd, const std::string& what = "standard input") const;

  /// Temporary files in jobs/ that no writer holds (their queue-write or
  /// queue-import died), not written to for `min_age_seconds`.
  std::vector<std::string> abandoned_temp_files(int64_t min_age_seconds) const;
  /// Removes those among `names` (a scan's temp_files) that are abandoned
  /// and older than a minute; logs each.
  void remove_abandoned_temp_files(const std::vector<std::string>& names) const;

 private:
  std::string dir_;
};

}  // namespace safespool
