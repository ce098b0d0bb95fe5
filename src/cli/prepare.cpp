// SPDX-License-Identifier: GPL-3.0-or-later
// prepare, prepare-nop, prepare-fail, prepare-get-next, prepare-set-next.
#include <fcntl.h>
#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <cstring>
#include <optional>

#include "common.hpp"
#include "safespool/digest.hpp"
#include "safespool/encode.hpp"
#include "safespool/error.hpp"
#include "safespool/queue.hpp"
#include "safespool/seqfile.hpp"
#include "safespool/split.hpp"
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
  std::string split, output_dir, outbox;    // --split SIZE, --output-dir, --outbox
  std::string supersedes, supersedes_hash;  // --supersedes N --supersedes-hash SHA256

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

/// Where the packet goes, checked before a sequence number is consumed.
struct Outputs {
  std::optional<uint64_t> split;       ///< --split: most bytes per part file
  std::string dir;                     ///< --output-dir ("": standard output)
  std::string outbox;                  ///< --outbox ("": none)
  std::optional<Supersedes> replaces;  ///< --supersedes/--supersedes-hash
  bool envelope() const { return split || replaces; }
};

void check_dir(const std::string& dir, const char* option) {
  if (::access(dir.c_str(), W_OK | X_OK) != 0)
    throw_errno(std::string(option) + " " + dir + " is not a writable directory");
}

Outputs check_outputs(const PrepareArgs& a) {
  Outputs o;
  o.dir = a.output_dir;
  o.outbox = a.outbox;
  if (!a.split.empty()) o.split = parse_size(a.split, "--split");
  if (o.split && o.dir.empty()) throw UsageError("--split needs --output-dir DIR for its parts");
  if (o.split && *o.split < kMinPartFileSize)
    throw UsageError("--split " + a.split + ": a part must be at least " +
                     std::to_string(kMinPartFileSize) + " bytes");
  if (a.supersedes.empty() != a.supersedes_hash.empty())
    throw UsageError("--supersedes N and --supersedes-hash SHA256 go together");
  if (!a.supersedes.empty()) {
    if (!is_sha256_hex(a.supersedes_hash))
      throw UsageError("--supersedes-hash " + a.supersedes_hash +
                       " is not a SHA-256 (64 hex digits)");
    Supersedes r{parse_u64(a.supersedes, "--supersedes"), a.supersedes_hash};
    for (char& c : r.sha256) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    o.replaces = std::move(r);
  } else if (a.seqfile.empty()) {
    throw UsageError("--seqfile is required");
  }
  if (!o.dir.empty()) check_dir(o.dir, "--output-dir");
  if (!o.outbox.empty()) check_dir(o.outbox, "--outbox");
  return o;
}

void copy_input(int input, Encoder& out) {
  if (input < 0) return;
  std::vector<std::byte> buf(1 << 20);
  while (size_t n = read_full(input, buf, "input")) out.write(std::span(buf).first(n));
}

void print_paths(const std::vector<std::string>& paths) {
  std::string text;
  for (const auto& p : paths) text += p + "\n";
  write_all(1, text, "standard output");
}

// A whole packet: to standard output or into --output-dir, a copy in --outbox.
void write_whole(const Meta& meta, int input, const EncodeOptions& enc, const Outputs& o) {
  std::string name = packet_filename(meta.seq, gen_uuid());
  std::optional<FileWriter> file, copy;
  std::unique_ptr<Writer> out = make_fd_writer(1, "standard output");
  if (!o.dir.empty()) file.emplace(o.dir, name);
  if (!o.outbox.empty()) copy.emplace(o.outbox, name);
  std::vector<Writer*> sinks{file ? &*file : out.get()};
  if (copy) sinks.push_back(&*copy);
  Encoder enc_out(make_tee_writer(sinks, sinks.front()->describe()), enc);
  enc_out.write(encode_header(meta));
  copy_input(input, enc_out);
  enc_out.finish();
  if (copy) copy->commit();
  if (file) print_paths({file->commit()});
}

// An envelope: parts in --output-dir (or one, to standard output), copies in --outbox.
void write_envelope(const Meta& meta, int input, const EncodeOptions& enc, const Outputs& o) {
  const char* tmp = std::getenv("TMPDIR");
  std::string dir = !o.dir.empty() ? o.dir : !o.outbox.empty() ? o.outbox : tmp ? tmp : "/tmp";
  auto parts = std::make_unique<PartWriter>(meta, dir, o.split);
  PartWriter& written = *parts;
  Encoder out(std::move(parts), enc);
  out.write(encode_header(meta));
  copy_input(input, out);
  out.finish();
  if (o.dir.empty()) {
    written.copy_to(1, "standard output");
    if (!o.outbox.empty()) written.publish();
    return;
  }
  std::vector<std::string> paths = written.publish();
  for (const auto& p : paths)
    if (!o.outbox.empty()) copy_into(p, o.outbox, p.substr(p.rfind('/') + 1));
  print_paths(paths);
}

int run_prepare(const PrepareArgs& a) {
  // Everything that can fail before a sequence number is consumed.
  Fd input = open_input(a.input);
  EncodeOptions enc = a.encoding();
  check_encoding(enc);
  Outputs o = check_outputs(a);
  Meta meta;
  meta.kind = a.kind;
  if (a.kind == JobKind::Command) {
    meta.params = a.params;
    meta.env = env_to_send();
  }
  meta.supersedes = o.replaces;
  // A replacement takes the number of the packet it replaces.
  meta.seq = o.replaces ? o.replaces->seq : take_seq(a.seqfile);
  std::tie(meta.ctime_secs, meta.ctime_nanos) = now_ctime();
  if (o.envelope())
    write_envelope(meta, input ? input.get() : -1, enc, o);
  else
    write_whole(meta, input ? input.get() : -1, enc, o);
  return kExitOk;
}

CLI::App* add_seqfile(CLI::App* sub, std::string& seqfile, bool required = true) {
  auto* opt =
      sub->add_option("-s,--seqfile", seqfile, "Path to the local seqfile (\"-\": none, seq 1)");
  if (required) opt->required();
  return sub;
}

// Where the packet goes besides standard output, and what it replaces.
void add_outputs(CLI::App* sub, PrepareArgs& a) {
  sub->add_option("--output-dir", a.output_dir,
                  "Write the packet (or its parts) into DIR instead of standard output");
  sub->add_option("--split", a.split,
                  "Split the packet into parts of at most SIZE bytes (K/M/G/T), in --output-dir");
  sub->add_option("--outbox", a.outbox, "Keep a copy of the packet in DIR (see outbox-status)");
  sub->add_option("--supersedes", a.supersedes,
                  "Replace the failed packet of sequence N (no seqfile is used)");
  sub->add_option("--supersedes-hash", a.supersedes_hash,
                  "SHA-256 of the packet file --supersedes replaces");
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
  add_seqfile(prep, args->seqfile, false);  // --supersedes takes its number
  add_encoding(prep, *args);
  add_outputs(prep, *args);
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
