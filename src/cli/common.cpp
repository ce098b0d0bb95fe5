// SPDX-License-Identifier: GPL-3.0-or-later
#include "common.hpp"

#include <unistd.h>

#include <algorithm>
#include <iostream>

#include "safespool/error.hpp"

namespace safespool::cli {

std::string did_you_mean(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_d = 3;  // suggest only close matches
  for (const auto& c : candidates) {
    std::vector<size_t> prev(c.size() + 1), cur(c.size() + 1);
    for (size_t j = 0; j <= c.size(); ++j) prev[j] = j;
    for (size_t i = 1; i <= word.size(); ++i) {
      cur[0] = i;
      for (size_t j = 1; j <= c.size(); ++j)
        cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (word[i - 1] != c[j - 1])});
      std::swap(prev, cur);
    }
    if (prev[c.size()] < best_d) {
      best_d = prev[c.size()];
      best = c;
    }
  }
  return best;
}

namespace {

const Choices<DecodeMode> kDecodeModes = {{"auto", DecodeMode::Auto},
                                          {"none", DecodeMode::None},
                                          {"zstd", DecodeMode::Zstd},
                                          {"gpg", DecodeMode::Gpg},
                                          {"openpgp", DecodeMode::Gpg}};

}  // namespace

void DecodeFlags::add_to(CLI::App* sub) {
  sub->add_option("-d,--decoder", decoder,
                  "Decoder command, run by $SHELL -c with the job file on stdin");
  sub->add_option("--decode", mode,
                  "Built-in decoding: auto (default), none, zstd, gpg or openpgp");
  sub->add_option("--gnupg-home", gnupg_home, "GnuPG home for OpenPGP decoding");
}

DecodeOptions DecodeFlags::finish() const {
  DecodeOptions o;
  o.mode = parse_choice(kDecodeModes, mode, "--decode");
  if (!decoder.empty()) o.external = decoder;
  if (!gnupg_home.empty()) o.gnupg_home = gnupg_home;
  return o;
}

void PolicyFlags::add_to(CLI::App* sub) {
  sub->add_option("--require-signer", require_signer,
                  "Trust only packets signed by this OpenPGP key (fingerprint; repeatable)")
      ->expected(1)
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  sub->add_option("--trusted-signers", trusted_signers,
                  "File of trusted signer fingerprints, one per line");
}

SignerPolicy PolicyFlags::build() const {
  SignerPolicy p;
  for (const auto& f : require_signer) p.require_signer(f);
  if (!trusted_signers.empty()) p.load_file(trusted_signers);
  return p;
}

std::vector<std::pair<std::string, std::string>> signer_lines(const Verdict& v) {
  return {{"SAFESPOOL_SIGNER", v.signer}, {"SAFESPOOL_SIGNER_TRUSTED", v.trusted ? "yes" : "no"}};
}

void print_env(const std::vector<std::pair<std::string, std::string>>& env) {
  std::string out;
  for (const auto& [k, v] : env) out += k + "=" + v + "\n";
  write_all(1, out, "standard output");
}

void copy_payload_to_stdout(Reader& in) {
  std::vector<std::byte> buf(1 << 20);
  while (size_t n = in.read(buf)) write_all(1, std::span(buf).first(n), "standard output");
  in.finish();
}

}  // namespace safespool::cli
