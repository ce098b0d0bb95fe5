// SPDX-License-Identifier: GPL-3.0-or-later
// Command-line parsing helpers: enum tables, suggestions, option checks.
#include <gtest/gtest.h>

#include "../../src/cli/common.hpp"
#include "safespool/error.hpp"

using namespace safespool;
using namespace safespool::cli;

namespace {
enum class Color { Red, Green };
const Choices<Color> kColors = {{"Red", Color::Red}, {"Green", Color::Green}};

std::string usage_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const UsageError& e) {
    return e.what();
  }
  return "(no error)";
}
}  // namespace

TEST(Cli, ChoicesAreCaseInsensitiveAsInFspl) {
  EXPECT_EQ(parse_choice(kColors, "red", "--color"), Color::Red);
  EXPECT_EQ(parse_choice(kColors, "GREEN", "--color"), Color::Green);
  EXPECT_EQ(parse_choice(kColors, " Green ", "--color"), Color::Green);
}

TEST(Cli, UnknownChoiceListsValuesAndSuggests) {
  EXPECT_EQ(usage_error([] { parse_choice(kColors, "gren", "--color"); }),
            "--color: unknown value 'gren' (expected Red, Green); did you mean 'green'?");
  EXPECT_EQ(usage_error([] { parse_choice(kColors, "blue", "--color"); }),
            "--color: unknown value 'blue' (expected Red, Green)");
}

TEST(Cli, DidYouMeanOnlyForCloseWords) {
  std::vector<std::string> subs = {"queue-process", "queue-ls", "stdin-info"};
  EXPECT_EQ(did_you_mean("queue-proces", subs), "queue-process");
  EXPECT_EQ(did_you_mean("queue-lss", subs), "queue-ls");
  EXPECT_EQ(did_you_mean("frobnicate", subs), "");
}

TEST(Cli, DecodeFlagsBecomeOptions) {
  DecodeFlags f;
  f.mode = "ZSTD";
  f.decoder = "zcat";
  DecodeOptions o = f.finish();
  EXPECT_EQ(o.mode, DecodeMode::Zstd);
  EXPECT_EQ(o.external, std::optional<std::string>("zcat"));
  EXPECT_FALSE(o.gnupg_home);
  f.mode = "rot13";
  EXPECT_THROW(f.finish(), UsageError);
  for (auto [text, mode] : {std::pair{"AUTO", DecodeMode::Auto},
                            {"none", DecodeMode::None},
                            {"Zstd", DecodeMode::Zstd},
                            {"gpg", DecodeMode::Gpg},
                            {"OpenPGP", DecodeMode::Gpg}}) {
    f.mode = text;
    EXPECT_EQ(f.finish().mode, mode) << text;
  }
}

TEST(Cli, DecodeModeIsATableWithSuggestions) {
  DecodeFlags f;
  f.mode = "zstdd";
  EXPECT_EQ(usage_error([&] { f.finish(); }),
            "--decode: unknown value 'zstdd' (expected auto, none, zstd, gpg, openpgp); did you "
            "mean 'zstd'?");
}

TEST(Cli, PolicyFlagsRejectBadFingerprints) {
  PolicyFlags f;
  EXPECT_TRUE(f.build().empty());
  f.require_signer = {"0123456789abcdef0123456789ABCDEF01234567"};
  EXPECT_EQ(f.build().fingerprints().size(), 1u);
  f.require_signer = {"not-a-fingerprint"};
  EXPECT_THROW(f.build(), UsageError);
}
