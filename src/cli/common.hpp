// SPDX-License-Identifier: GPL-3.0-or-later
// Shared pieces of the command-line interface.
//
// Each subcommand group registers its subcommands on the CLI11 app and
// leaves the work to do in an `Action`, run by main() after parsing, so
// that parsing errors (exit 64) and run-time errors are reported apart.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "safespool/decode.hpp"
#include "safespool/error.hpp"
#include "safespool/handoff.hpp"
#include "safespool/packet.hpp"
#include "safespool/policy.hpp"

namespace safespool::cli {

/// The selected subcommand's work; returns the exit code.
using Action = std::function<int()>;

/// A table entry for an enum-valued option: accepted spelling and value.
template <typename E>
using Choices = std::vector<std::pair<std::string, E>>;

/// Case-insensitive lookup of `value` in `table`; throws UsageError
/// "--option: unknown value 'x' (expected a, b; did you mean b?)".
template <typename E>
E parse_choice(const Choices<E>& table, const std::string& value, const std::string& option);

/// Closest candidate to `word` within a small edit distance, or "".
std::string did_you_mean(const std::string& word, const std::vector<std::string>& candidates);

/// Decode flags every queue and stdin command accepts: -d/--decoder,
/// --decode MODE, --gnupg-home DIR. `mode` is parsed later by finish().
struct DecodeFlags {
  std::string mode = "auto";
  std::string decoder;
  std::string gnupg_home;
  void add_to(CLI::App* sub);
  DecodeOptions finish() const;
};

/// Signer policy flags: --require-signer FPR (repeatable), --trusted-signers FILE.
struct PolicyFlags {
  std::vector<std::string> require_signer;
  std::string trusted_signers;
  void add_to(CLI::App* sub);
  /// The policy they describe (empty when neither flag was given).
  SignerPolicy build() const;
};

/// The signer lines queue-info/stdin-info add under a policy:
/// SAFESPOOL_SIGNER=FPR|none and SAFESPOOL_SIGNER_TRUSTED=yes|no.
std::vector<std::pair<std::string, std::string>> signer_lines(const Verdict& v);

/// Prints KEY=VALUE lines, as queue-info/stdin-info do.
void print_env(const std::vector<std::pair<std::string, std::string>>& env);

/// Copies the rest of `in` to stdout, then confirms the stream (finish()).
void copy_payload_to_stdout(Reader& in);

/// The subcommand groups.
void register_prepare(CLI::App& app, Action& action);
void register_queue(CLI::App& app, Action& action);
void register_process(CLI::App& app, Action& action);
void register_misc(CLI::App& app, Action& action);
void register_outbox(CLI::App& app, Action& action);

template <typename E>
E parse_choice(const Choices<E>& table, const std::string& value, const std::string& option) {
  std::string lower;
  std::string names;
  std::vector<std::string> candidates;
  for (char c : value)
    lower.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  size_t b = lower.find_first_not_of(' '), e = lower.find_last_not_of(' ');
  lower = b == std::string::npos ? "" : lower.substr(b, e - b + 1);
  for (const auto& [name, v] : table) {
    std::string n;
    for (char c : name) n.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    if (n == lower) return v;
    names += (names.empty() ? "" : ", ") + name;
    candidates.push_back(n);
  }
  std::string hint = did_you_mean(lower, candidates);
  throw UsageError(option + ": unknown value '" + value + "' (expected " + names + ")" +
                   (hint.empty() ? "" : "; did you mean '" + hint + "'?"));
}

}  // namespace safespool::cli
