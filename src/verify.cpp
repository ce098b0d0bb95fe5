// SPDX-License-Identifier: GPL-3.0-or-later
#include "safespool/verify.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <vector>

#include "safespool/error.hpp"

namespace safespool {
namespace {

class PolicyReader : public Reader {
 public:
  PolicyReader(std::unique_ptr<Reader> inner, const SignerPolicy& policy, std::string name)
      : inner_(std::move(inner)), policy_(policy), name_(std::move(name)) {}

  size_t read(std::span<std::byte> buf) override { return inner_->read(buf); }
  void cancel() override { inner_->cancel(); }
  std::string describe() const override { return inner_->describe(); }
  std::string source() const override { return inner_->source(); }
  std::vector<Signature> signatures() const override { return inner_->signatures(); }

  void finish() override {
    inner_->finish();
    Verdict v = policy_.check(inner_->signatures());
    if (!v.trusted) throw FormatError(name_ + ": not trusted: " + v.reason);
    spdlog::info("{}: {}", name_, v.reason);
  }

 private:
  std::unique_ptr<Reader> inner_;
  const SignerPolicy& policy_;
  std::string name_;
};

}  // namespace

std::unique_ptr<Reader> make_policy_reader(std::unique_ptr<Reader> inner,
                                           const SignerPolicy& policy, const std::string& name) {
  // The stage names come from the decoders' describe(): "OpenPGP < ...".
  if (inner->describe().find("OpenPGP") == std::string::npos)
    throw FormatError(name +
                      ": not trusted: no OpenPGP signature (the packet is not an OpenPGP message)");
  return std::make_unique<PolicyReader>(std::move(inner), policy, name);
}

void drain_and_verify(Reader& in) {
  std::vector<std::byte> buf(1 << 16);
  while (in.read(buf) > 0) {
  }
  in.finish();
}

Verdict judge_stream(Reader& in, const SignerPolicy& policy) {
  try {
    drain_and_verify(in);
  } catch (const Error& e) {
    Verdict v = policy.check(in.signatures());
    v.trusted = false;
    v.reason = e.what();
    return v;
  }
  return policy.check(in.signatures());
}

Fd spool_verified(Reader& in, const std::string& dir) {
  Fd fd(::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
  if (!fd)
    throw_errno("cannot create a temporary file in " + dir + " (--verify-first needs O_TMPFILE)");
  std::vector<std::byte> buf(1 << 20);
  while (size_t n = in.read(buf))
    write_all(fd.get(), std::span(buf).first(n), "temporary file in " + dir);
  in.finish();
  if (::lseek(fd.get(), 0, SEEK_SET) != 0) throw_errno("cannot rewind temporary file in " + dir);
  return fd;
}

}  // namespace safespool
