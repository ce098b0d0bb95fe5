// SPDX-License-Identifier: GPL-3.0-or-later
// prepare, prepare-nop, prepare-fail, prepare-get-next, prepare-set-next.
#include <fcntl.h>
#include <unistd.h>

#include <cstring>

#include "common.hpp"
#include "safespool/encode.hpp"
#include "safespool/error.hpp"
#include "safespool/seqfile.hpp"
#include "safespool/units.hpp"

extern char** environ;

namespace safespool::cli {
namespace {

struct PrepareArgs {
  std::string seqfile;
  std::string input;
  std::vector<std::string> params;
  JobKind kind = JobKind::Command;
  std::optional<int> zstd;  // --zstd[=LEVEL]
  std::vector<std::string> encrypt_to;
  std::string sign_with, gnupg_home;

  EncodeOptions encoding() const {
    EncodeOptions o;
    o.zstd_level = zstd;
    o.recipients = encrypt_to;
    if (!sign_with.empty()) o.signer = sign_with;
    if (!gnupg_home.empty()) o.gnupg_home = gnupg_home;
    return o;
  }
};

SeqFile lock_seqfile(const std::string& path) {
  auto sf = SeqFile::try_open(path, true);
  if (!sf) throw Error("seqfile " + path + " is locked by another process", kExitTempFail);
  return std::move(*sf);
}

// The next sequence number, consumed under the lock ("-": always 1).
uint64_t take_seq(const std::string& seqfile) {
  if (seqfile == "-") return 1;
  SeqFile sf = lock_seqfile(seqfile);
  // 2^64-1 would leave no next number to store: the sender must start over.
  if (sf.next() == UINT64_MAX)
    throw Error("seqfile " + seqfile + " is at 18446744073709551615, the last sequence number; " +
                    "start a new sequence (prepare-set-next) and a new queue",
                kExitConfig);
  return sf.increment();
}

std::vector<std::pair<std::string, std::string>> env_to_send() {
  std::vector<std::pair<std::string, std::string>> out;
  const size_t plen = std::strlen(kEnvPrefix);
  for (char** e = environ; *e; ++e) {
    std::string_view kv(*e);
    if (!kv.starts_with(kEnvPrefix)) continue;
    size_t eq = kv.find('=');
    if (eq == std::string_view::npos) continue;
    out.emplace_back(kv.substr(plen, eq - plen), kv.substr(eq + 1));
  }
  return out;
}

Fd open_input(const std::string& input) {
  if (input.empty()) return Fd();
  if (input == "-") return Fd(::fcntl(0, F_DUPFD_CLOEXEC, 3));
  Fd fd(::open(input.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw_errno("cannot open input " + input);
  return fd;
}

int run_prepare(const PrepareArgs& a) {
  // Everything that can fail before a sequence number is consumed.
  Fd input = open_input(a.input);
  EncodeOptions enc = a.encoding();
  check_encoding(enc);
  Meta meta;
  meta.kind = a.kind;
  if (a.kind == JobKind::Command) {
    meta.params = a.params;
    meta.env = env_to_send();
  }
  meta.seq = take_seq(a.seqfile);
  std::tie(meta.ctime_secs, meta.ctime_nanos) = now_ctime();
  Encoder out(1, enc, "standard output");
  out.write(encode_header(meta));
  if (input) {
    std::vector<std::byte> buf(1 << 20);
    while (size_t n = read_full(input.get(), buf, "input")) out.write(std::span(buf).first(n));
  }
  out.finish();
  return kExitOk;
}

CLI::App* add_seqfile(CLI::App* sub, std::string& seqfile) {
  sub->add_option("-s,--seqfile", seqfile, "Path to the local seqfile (\"-\": none, seq 1)")
      ->required();
  return sub;
}

// Sender-side encoding: compress, then sign and/or encrypt.
void add_encoding(CLI::App* sub, PrepareArgs& a) {
  sub->add_option_function<std::string>(
         "--zstd",
         [&a](const std::string& v) {
           a.zstd = v.empty() ? 3 : static_cast<int>(parse_u64(v, "--zstd"));
         },
         "Compress with zstd (optionally at LEVEL, default 3)")
      ->expected(0, 1);
  sub->add_option("--encrypt-to", a.encrypt_to, "Encrypt to this OpenPGP key (repeatable)")
      ->expected(1)
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  sub->add_option("--sign-with", a.sign_with,
                  "Sign with this OpenPGP key (must need no passphrase)");
  sub->add_option("--gnupg-home", a.gnupg_home, "GnuPG home for the keys");
}

}  // namespace

void register_prepare(CLI::App& app, Action& action) {
  auto args = std::make_shared<PrepareArgs>();
  auto* prep =
      app.add_subcommand("prepare", "Prepare a command for transmission, writing to stdout");
  add_seqfile(prep, args->seqfile);
  add_encoding(prep, *args);
  prep->add_option("-i,--input", args->input, "Payload: \"-\" for stdin, or a file name");
  prep->add_option("params", args->params, "-- PARAMS... saved in the packet");
  prep->callback([&action, args] { action = [args] { return run_prepare(*args); }; });

  for (auto [name, kind] :
       {std::pair{"prepare-nop", JobKind::Nop}, {"prepare-fail", JobKind::Fail}}) {
    auto a = std::make_shared<PrepareArgs>();
    a->kind = kind;
    auto* sub = app.add_subcommand(
        name, kind == JobKind::Nop ? "Prepare a NOP packet for transmission, writing to stdout"
                                   : "Prepare a fail packet for transmission, writing to stdout");
    add_seqfile(sub, a->seqfile);
    add_encoding(sub, *a);
    sub->callback([&action, a] { action = [a] { return run_prepare(*a); }; });
  }

  auto* get = app.add_subcommand("prepare-get-next", "Get the next sequence number for prepare");
  add_seqfile(get, args->seqfile);
  get->callback([&action, args] {
    action = [args] {
      uint64_t next = args->seqfile == "-" ? 1 : lock_seqfile(args->seqfile).next();
      write_all(1, std::to_string(next) + "\n", "standard output");
      return kExitOk;
    };
  });

  auto id = std::make_shared<std::string>();
  auto* set = app.add_subcommand("prepare-set-next", "Set the next sequence number for prepare");
  add_seqfile(set, args->seqfile);
  set->add_option("ID", *id, "The next sequence number")->required();
  set->callback([&action, args, id] {
    action = [args, id] {
      uint64_t v = parse_u64(*id, "ID");
      lock_seqfile(args->seqfile).set(v);
      return kExitOk;
    };
  });
}

}  // namespace safespool::cli
