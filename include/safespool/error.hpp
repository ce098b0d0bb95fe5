// SPDX-License-Identifier: GPL-3.0-or-later
// Errors and exit codes.
//
// Failures are thrown, outcomes are returned. One small family of
// exceptions: Error (anything operational), UsageError (bad command line or
// option value), FormatError (a corrupt or foreign packet) and SysError (a
// failed system call, carrying errno). Each message names the object and
// the reason, e.g. "cannot read jobs/fspl-x.fspl: metadata CRC mismatch".
//
// Exit codes follow sysexits.h so a cron wrapper can tell "another run
// holds the lock" (75, EX_TEMPFAIL) from "a job failed" (1).
#pragma once

#include <stdexcept>
#include <string>

namespace safespool {

/// Process exit statuses; documented in docs/exit-codes.md.
enum ExitCode : int {
  kExitOk = 0,
  kExitJobFailed = 1,      ///< a job (command or Fail packet) failed under --on-error=retry
  kExitFailing = 1,        ///< queue-status: the next job failed on its last run
  kExitWaiting = 2,        ///< queue-status: the next job has not arrived
  kExitBlocked = 3,        ///< the queue cannot advance without an operator
  kExitUsage = 64,         ///< EX_USAGE: bad command line or option value
  kExitDataErr = 65,       ///< EX_DATAERR: corrupt packet, undecodable input
  kExitNoInput = 66,       ///< EX_NOINPUT: missing queue, job or file
  kExitUnavailable = 69,   ///< EX_UNAVAILABLE: the consumer could not be started
  kExitSoftware = 70,      ///< EX_SOFTWARE: internal error
  kExitOsErr = 71,         ///< EX_OSERR: a system call failed
  kExitIoErr = 74,         ///< EX_IOERR: I/O error
  kExitTempFail = 75,      ///< EX_TEMPFAIL: the queue lock is held by another run
  kExitNoPerm = 77,        ///< EX_NOPERM
  kExitConfig = 78,        ///< EX_CONFIG: e.g. an append-only queue has no seqfile
  kExitInterrupted = 130,  ///< stopped by SIGINT/SIGTERM/SIGHUP; job left in the queue
};

/// Base of all SafeSpool failures. `exit_code()` is what main() returns.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what, int exit_code = kExitSoftware)
      : std::runtime_error(what), exit_code_(exit_code) {}
  int exit_code() const { return exit_code_; }

 private:
  int exit_code_;
};

/// A bad command line or option value.
class UsageError : public Error {
 public:
  explicit UsageError(const std::string& what) : Error(what, kExitUsage) {}
};

/// A corrupt, truncated or foreign packet (or decoded stream).
class FormatError : public Error {
 public:
  explicit FormatError(const std::string& what) : Error(what, kExitDataErr) {}
};

/// The queue is being processed by another run (exit 75). Expected when
/// runs overlap, so a run without a terminal says nothing about it.
class QueueBusy : public Error {
 public:
  explicit QueueBusy(const std::string& queuedir)
      : Error("queue " + queuedir + " is locked by another process", kExitTempFail) {}
};

/// A failed system call. `what()` is "<context>: <strerror(err)>".
class SysError : public Error {
 public:
  SysError(const std::string& context, int err);
  int err() const { return err_; }

 private:
  int err_;
};

/// Throws SysError(context, errno).
[[noreturn]] void throw_errno(const std::string& context);

/// Maps an errno to the closest exit code (ENOENT -> 66, EACCES -> 77, ...).
int exit_code_for_errno(int err);

}  // namespace safespool
