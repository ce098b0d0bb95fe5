// SPDX-License-Identifier: GPL-3.0-or-later
// Envelope parts, packet files in a directory, outbox copies (see
// include/safespool/split.hpp).
#include "safespool/split.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "safespool/error.hpp"
#include "safespool/file_replace.hpp"
#include "safespool/queue.hpp"

namespace safespool {
namespace {

Fd create_exclusive(const std::string& path) {
  Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0666));
  if (!fd) throw_errno("cannot create " + path);
  return fd;
}

void pwrite_all(int fd, std::string_view data, off_t at, const std::string& what) {
  while (!data.empty()) {
    ssize_t n = ::pwrite(fd, data.data(), data.size(), at);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno("cannot write " + what);
    data.remove_prefix(static_cast<size_t>(n));
    at += n;
  }
}

Meta envelope_of(const Meta& job, PartInfo part) {
  Meta m;
  m.seq = job.seq;
  m.ctime_secs = job.ctime_secs;
  m.ctime_nanos = job.ctime_nanos;
  m.kind = JobKind::Fail;
  m.part = std::move(part);
  return m;
}

}  // namespace

std::string packet_filename(uint64_t seq, const std::string& uuid) {
  return "fspl-" + std::to_string(seq) + "-" + uuid + ".fspl";
}

std::string part_filename(uint64_t seq, const std::string& uuid, uint64_t index, uint64_t count) {
  return "fspl-" + std::to_string(seq) + "-" + uuid + "-part-" + std::to_string(index) + "-of-" +
         std::to_string(count) + ".fspl";
}

uint64_t envelope_header_size(const Meta& job) {
  PartInfo dummy;
  dummy.sha256 = dummy.job = std::string(64, '0');
  return encode_header(envelope_of(job, dummy)).size();
}

PartWriter::PartWriter(const Meta& job, std::string dir, std::optional<uint64_t> max_file_size)
    : job_(job), dir_(std::move(dir)), header_size_(envelope_header_size(job)), uuid_(gen_uuid()) {
  capacity_ = UINT64_MAX;
  if (max_file_size) {
    if (*max_file_size <= header_size_ || *max_file_size < kMinPartFileSize)
      throw UsageError("--split " + std::to_string(*max_file_size) + ": a part must be at least " +
                       std::to_string(kMinPartFileSize) + " bytes");
    capacity_ = *max_file_size - header_size_;
  }
}

PartWriter::~PartWriter() {
  if (published_) return;
  for (const auto& p : parts_) ::unlink(p.temp.c_str());
}

void PartWriter::start_part() {
  if (parts_.size() >= kMaxParts)
    throw Error("more than " + std::to_string(kMaxParts) + " parts: choose a larger --split SIZE",
                kExitUsage);
  Part p;
  p.temp = dir_ + "/.fspl-" + uuid_ + "-" + std::to_string(parts_.size() + 1) + ".tmp";
  current_ = create_exclusive(p.temp);
  parts_.push_back(std::move(p));
  // The header goes into this hole once the part's numbers are known.
  if (::lseek(current_.get(), static_cast<off_t>(header_size_), SEEK_SET) < 0)
    throw_errno("cannot seek in " + parts_.back().temp);
  part_hash_ = Sha256();
}

void PartWriter::end_part() {
  parts_.back().sha256 = part_hash_.hex();
  current_.reset();
}

void PartWriter::write(std::span<const std::byte> data) {
  job_hash_.update(data);
  while (!data.empty()) {
    if (!current_) start_part();
    Part& p = parts_.back();
    size_t n = static_cast<size_t>(std::min<uint64_t>(data.size(), capacity_ - p.size));
    write_all(current_.get(), data.first(n), p.temp);
    part_hash_.update(data.first(n));
    p.size += n;
    data = data.subspan(n);
    if (p.size == capacity_) end_part();
  }
}

void PartWriter::finish() {
  if (parts_.empty()) start_part();  // an empty stream is one empty part
  if (current_) end_part();
  job_sha256_ = job_hash_.hex();
  const uint64_t count = parts_.size();
  for (uint64_t i = 0; i < count; ++i) {
    const Part& p = parts_[i];
    std::string header =
        encode_header(envelope_of(job_, {i + 1, count, p.size, p.sha256, job_sha256_}));
    if (header.size() != header_size_) throw Error("envelope header of unexpected length");
    Fd fd(::open(p.temp.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd) throw_errno("cannot open " + p.temp);
    pwrite_all(fd.get(), header, 0, p.temp);
    if (::fsync(fd.get()) != 0) throw_errno("cannot fsync " + p.temp);
  }
}

std::string PartWriter::describe() const { return "parts in " + dir_; }

std::vector<std::string> PartWriter::publish() {
  std::vector<std::string> paths;
  const uint64_t count = parts_.size();
  for (uint64_t i = 0; i < count; ++i) {
    std::string name = count == 1 ? packet_filename(job_.seq, uuid_)
                                  : part_filename(job_.seq, uuid_, i + 1, count);
    paths.push_back(dir_ + "/" + name);
    if (::rename(parts_[i].temp.c_str(), paths.back().c_str()) != 0)
      throw_errno("cannot rename " + parts_[i].temp + " to " + paths.back());
  }
  published_ = true;
  fsync_dir(dir_);
  return paths;
}

void PartWriter::copy_to(int fd, const std::string& what) const {
  std::vector<std::byte> buf(1 << 20);
  for (const auto& p : parts_) {
    Fd in(::open(p.temp.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!in) throw_errno("cannot open " + p.temp);
    while (size_t n = read_full(in.get(), buf, p.temp))
      write_all(fd, std::span(buf).first(n), what);
  }
}

FileWriter::FileWriter(const std::string& dir, const std::string& name)
    : path_(dir + "/" + name), temp_(dir + "/." + name + ".tmp"), fd_(create_exclusive(temp_)) {}

FileWriter::~FileWriter() {
  if (!done_) ::unlink(temp_.c_str());
}

void FileWriter::write(std::span<const std::byte> data) { write_all(fd_.get(), data, temp_); }

std::string FileWriter::commit() {
  if (::fsync(fd_.get()) != 0) throw_errno("cannot fsync " + temp_);
  fd_.reset();
  if (::rename(temp_.c_str(), path_.c_str()) != 0)
    throw_errno("cannot rename " + temp_ + " to " + path_);
  done_ = true;
  fsync_dir(dir_of(path_));
  return path_;
}

namespace {

class TeeWriter : public Writer {
 public:
  TeeWriter(std::vector<Writer*> outs, std::string name)
      : outs_(std::move(outs)), name_(std::move(name)) {}
  void write(std::span<const std::byte> data) override {
    for (Writer* w : outs_) w->write(data);
  }
  void finish() override {
    for (Writer* w : outs_) w->finish();
  }
  std::string describe() const override { return name_; }

 private:
  std::vector<Writer*> outs_;
  std::string name_;
};

}  // namespace

std::unique_ptr<Writer> make_tee_writer(std::vector<Writer*> outs, std::string name) {
  return std::make_unique<TeeWriter>(std::move(outs), std::move(name));
}

std::string copy_into(const std::string& from, const std::string& dir, const std::string& name) {
  Fd in(::open(from.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!in) throw_errno("cannot open " + from);
  FileWriter out(dir, name);
  std::vector<std::byte> buf(1 << 20);
  while (size_t n = read_full(in.get(), buf, from)) out.write(std::span(buf).first(n));
  return out.commit();
}

}  // namespace safespool
