// SPDX-License-Identifier: GPL-3.0-or-later
// A packet opened to run (see include/safespool/job.hpp).
#include "safespool/job.hpp"

#include <fcntl.h>
#include <unistd.h>

#include "safespool/digest.hpp"
#include "safespool/error.hpp"

namespace safespool {
namespace {

Fd dup_fd(int fd, const std::string& what) {
  Fd copy(::fcntl(fd, F_DUPFD_CLOEXEC, 3));
  if (!copy) throw_errno("cannot duplicate the descriptor of " + what);
  return copy;
}

// A descriptor of the same file with an offset of its own (a dup would
// share the offset the consumer of a plain packet reads from).
Fd reopen(int fd, const std::string& what) {
  std::string self = "/proc/self/fd/" + std::to_string(fd);
  Fd copy(::open(self.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!copy) throw_errno("cannot open " + what + " again");
  return copy;
}

}  // namespace

Job::Job(Job&&) noexcept = default;
Job& Job::operator=(Job&&) noexcept = default;
Job::~Job() = default;

Job Job::open(const Queue& q, const std::string& filename, const DecodeOptions& decode) {
  Job job;
  job.name_ = "jobs/" + filename;
  job.origin_ = JobOrigin{filename, q.dir()};
  job.decode_ = decode;
  Fd file = q.open_job(filename);
  job.file_ = reopen(file.get(), job.name_);
  job.digest_ = std::make_shared<FileDigest>();
  job.dec_ = open_decoded(std::move(file), job.name_, decode, job.digest_);
  job.meta_ = read_header(*job.dec_.reader, job.name_);
  return job;
}

Job Job::open_split(const Queue& q, uint64_t seq, std::vector<PartFile> parts,
                    const DecodeOptions& decode) {
  Job job;
  job.name_ = parts.size() == 1
                  ? "jobs/" + parts.front().filename
                  : "split job " + std::to_string(seq) + " (" + std::to_string(parts.size()) +
                        " parts from jobs/" + parts.front().filename + ")";
  job.origin_ = JobOrigin{parts.front().filename, q.dir()};
  job.decode_ = decode;
  job.queuedir_ = q.dir();
  job.parts_ = std::move(parts);
  job.dec_ = job.open_again(&job.parts_reader_);
  job.meta_ = read_header(*job.dec_.reader, job.name_);
  if (job.meta_.part) throw FormatError(job.name_ + ": the packet inside is itself a part");
  if (job.meta_.seq != seq)
    throw FormatError(job.name_ + ": the packet inside has seq " + std::to_string(job.meta_.seq) +
                      ", its parts " + std::to_string(seq));
  return job;
}

Decoded Job::open_again(PartsReader** parts) const {
  if (parts_.empty()) return open_decoded(reopen(file_.get(), name_), name_, decode_, digest_);
  auto reader = std::make_unique<PartsReader>(Queue(queuedir_), parts_, name_);
  if (parts) *parts = reader.get();
  return open_decoded(std::move(reader), name_, decode_);
}

void Job::check_parts() {
  if (parts_reader_) parts_reader_->confirm();
}

Job Job::from_stdin(const DecodeOptions& decode) {
  Job job;
  job.name_ = "standard input";
  job.decode_ = decode;
  job.dec_ = open_decoded(dup_fd(0, job.name_), job.name_, decode);
  job.meta_ = read_header(*job.dec_.reader, job.name_);
  return job;
}

void Job::require(const SignerPolicy& policy, const std::set<std::string>& key_ids) {
  if (trusted_) return;  // already on the stream (the decision put it there)
  auto trusted = std::make_unique<TrustedStream>(std::move(dec_.reader), policy, name_);
  trusted_ = trusted.get();
  dec_.reader = std::move(trusted);
  dec_.plain_fd = -1;  // a plain packet never gets here: it has no OpenPGP layer
  trusted_->check_announcement(key_ids);
}

void Job::verify_rest(const SignerPolicy& policy, const std::set<std::string>& key_ids) {
  if (verified()) return;
  try {
    return drain_and_verify(*dec_.reader);
  } catch (const FormatError&) {
    throw;  // the stream's own verdict
  } catch (const Error& e) {
    if (e.exit_code() == kExitInterrupted || (!file_ && parts_.empty())) throw;
    // Cancelled (the consumer was stopped): read the packet again.
  }
  trusted_ = nullptr;  // it lived in the stream replaced here
  dec_ = open_again(&parts_reader_);
  Meta again = read_header(*dec_.reader, name_);
  if (again != meta_) throw FormatError(name_ + ": changed while it ran");
  require(policy, key_ids);
  drain_and_verify(*dec_.reader);
}

void Job::spool(const std::string& dir, std::optional<uint64_t> max_bytes) {
  spooled_ = spool_verified(*dec_.reader, dir, max_bytes);
}

PayloadSource Job::payload(bool ignore) {
  PayloadSource src;
  if (ignore) return src;
  if (spooled_) {
    src.file = dup_fd(spooled_.get(), "the verified payload");
  } else if (dec_.plain()) {
    src.file = dup_fd(dec_.plain_fd, name_);
  } else {
    src.stream = dec_.reader.get();
  }
  return src;
}

const std::string& Job::sha256() {
  if (sha256_.empty() && !parts_.empty()) sha256_ = parts_.front().part.job;
  if (sha256_.empty() && file_) sha256_ = digest_->finish(file_.get(), name_);
  return sha256_;
}

std::vector<std::string> Job::files() const {
  std::vector<std::string> out;
  for (const auto& p : parts_) out.push_back(p.filename);
  if (parts_.empty() && origin_) out.push_back(origin_->filename);
  return out;
}

}  // namespace safespool
