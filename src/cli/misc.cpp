// SPDX-License-Identifier: GPL-3.0-or-later
// gen-filename, gen-uuid, show-license.
#include "common.hpp"
#include "safespool/error.hpp"
#include "safespool/queue.hpp"

namespace safespool::cli {
namespace {

constexpr const char* kLicense =
    "SafeSpool " SAFESPOOL_VERSION
    "\n"
    "Copyright (C) 2026 The SafeSpool authors\n"
    "\n"
    "This program is free software: you can redistribute it and/or modify it\n"
    "under the terms of the GNU General Public License as published by the Free\n"
    "Software Foundation, either version 3 of the License, or (at your option)\n"
    "any later version.\n"
    "\n"
    "This program is distributed in the hope that it will be useful, but WITHOUT\n"
    "ANY WARRANTY; without even the implied warranty of MERCHANTABILITY or\n"
    "FITNESS FOR A PARTICULAR PURPOSE.  See the GNU General Public License for\n"
    "more details: <https://www.gnu.org/licenses/>.\n";

void add_printer(CLI::App& app, Action& action, const char* name, const char* help,
                 std::string (*text)()) {
  app.add_subcommand(name, help)->callback([&action, text] {
    action = [text] {
      write_all(1, text(), "standard output");
      return kExitOk;
    };
  });
}

}  // namespace

void register_misc(CLI::App& app, Action& action) {
  add_printer(app, action, "gen-filename", "Display a fspl-*.fspl filename to stdout",
              [] { return gen_job_filename() + "\n"; });
  add_printer(app, action, "gen-uuid", "Display a UUID to stdout",
              [] { return gen_uuid() + "\n"; });
  add_printer(app, action, "show-license", "Show the license information",
              [] { return std::string(kLicense); });
}

}  // namespace safespool::cli
