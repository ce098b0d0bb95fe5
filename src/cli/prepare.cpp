// prepare, prepare-nop, prepare-fail, prepare-get-next, prepare-set-next.
#include <fcntl.h>
#include <unistd.h>

#include <cstring>

#include "common.hpp"
#include "safespool/error.hpp"
#include "safespool/seqfile.hpp"

extern char** environ;

namespace safespool::cli {
namespace {

struct PrepareArgs {
  std::string seqfile;
  std::string input;
  std::vector<std::string> params;
  JobKind kind = JobKind::Command;
};

SeqFile lock_seqfile(const std::string& path) {
  auto sf = SeqFile::try_open(path, true);
  if (!sf) throw Error("seqfile " + path + " is locked by another process", kExitTempFail);
  return std::move(*sf);
}

// The next sequence number, consumed under the lock ("-": always 1).
uint64_t take_seq(const std::string& seqfile) {
  if (seqfile == "-") return 1;
  return lock_seqfile(seqfile).increment();
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
  Fd input = open_input(a.input);  // before consuming a sequence number
  Meta meta;
  meta.kind = a.kind;
  if (a.kind == JobKind::Command) {
    meta.params = a.params;
    meta.env = env_to_send();
  }
  meta.seq = take_seq(a.seqfile);
  std::tie(meta.ctime_secs, meta.ctime_nanos) = now_ctime();
  write_all(1, encode_header(meta), "standard output");
  if (input) {
    std::vector<std::byte> buf(1 << 20);
    while (size_t n = read_full(input.get(), buf, "input"))
      write_all(1, std::span(buf).first(n), "standard output");
  }
  return kExitOk;
}

CLI::App* add_seqfile(CLI::App* sub, std::string& seqfile) {
  sub->add_option("-s,--seqfile", seqfile, "Path to the local seqfile (\"-\": none, seq 1)")
      ->required();
  return sub;
}

}  // namespace

void register_prepare(CLI::App& app, Action& action) {
  auto args = std::make_shared<PrepareArgs>();
  auto* prep = app.add_subcommand("prepare", "Prepare a command for transmission, writing to stdout");
  add_seqfile(prep, args->seqfile);
  prep->add_option("-i,--input", args->input, "Payload: \"-\" for stdin, or a file name");
  prep->add_option("params", args->params, "-- PARAMS... saved in the packet");
  prep->callback([&action, args] { action = [args] { return run_prepare(*args); }; });

  for (auto [name, kind] : {std::pair{"prepare-nop", JobKind::Nop}, {"prepare-fail", JobKind::Fail}}) {
    auto a = std::make_shared<PrepareArgs>();
    a->kind = kind;
    auto* sub = app.add_subcommand(name, kind == JobKind::Nop
                                             ? "Prepare a NOP packet for transmission, writing to stdout"
                                             : "Prepare a fail packet for transmission, writing to stdout");
    add_seqfile(sub, a->seqfile);
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
