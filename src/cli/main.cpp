// SPDX-License-Identifier: GPL-3.0-or-later
// safespool: a Filespooler-compatible spool queue processor.
//
// main() is the table of contents: set up signals and logging, parse the
// command line into one Action, run it, and turn whatever it threw into
// one error line and a documented exit code (docs/exit-codes.md).
#include <fcntl.h>
#include <signal.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>

#include "common.hpp"
#include "safespool/error.hpp"

using namespace safespool;

namespace {

const cli::Choices<spdlog::level::level_enum> kLogLevels = {{"trace", spdlog::level::trace},
                                                            {"debug", spdlog::level::debug},
                                                            {"info", spdlog::level::info},
                                                            {"warn", spdlog::level::warn},
                                                            {"error", spdlog::level::err}};

void setup_logging() {
  auto logger = spdlog::stderr_logger_st("safespool");
  logger->set_pattern("safespool: %l: %v");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::info);
}

// Unknown subcommands get a suggestion before CLI11's generic message.
void check_subcommand(const CLI::App& app, int argc, char** argv) {
  std::vector<std::string> names;
  for (const auto* sub : app.get_subcommands([](const CLI::App*) { return true; }))
    names.push_back(sub->get_name());
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-l" || a == "--log-level") {
      ++i;
      continue;
    }
    if (a.starts_with("-")) continue;
    if (std::find(names.begin(), names.end(), a) != names.end()) return;
    std::string hint = cli::did_you_mean(a, names);
    throw UsageError("unknown subcommand '" + a + "'" +
                     (hint.empty() ? "" : "; did you mean '" + hint + "'?"));
  }
}

// An option the chosen subcommand does not know, with the closest one it
// does ("--on-eror" -> "--on-error"); "" when nothing is close.
std::string option_hint(const CLI::App& app) {
  for (const CLI::App* sub : app.get_subcommands()) {
    std::vector<std::string> names;
    for (const CLI::App* a : {&app, sub})
      for (const CLI::Option* o : a->get_options())
        for (const auto& n : o->get_lnames()) names.push_back("--" + n);
    for (const std::string& arg : sub->remaining()) {
      if (!arg.starts_with("--")) continue;
      std::string word = arg.substr(0, arg.find('='));
      std::string hint = cli::did_you_mean(word, names);
      if (!hint.empty())
        return "unknown option '" + word + "' for " + sub->get_name() + "; did you mean '" + hint +
               "'?";
    }
  }
  return "";
}

// A child must find fds 0-2 where it expects them: if we were started with
// one closed, the next pipe or file we open would take its number.
void ensure_standard_fds() {
  for (int fd = 0; fd <= 2; ++fd)
    if (::fcntl(fd, F_GETFD) < 0 && ::open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY) < 0)
      ::_exit(kExitOsErr);
}

}  // namespace

int main(int argc, char** argv) {
  ensure_standard_fds();
  ::signal(SIGPIPE, SIG_IGN);  // a closed pipe is an error to report, not a death
  CLI::App app{"SafeSpool: sequential, distributed job queue processing (fspl-compatible)",
               "safespool"};
  app.set_version_flag("-V,--version", "safespool " SAFESPOOL_VERSION);
  app.require_subcommand(1);
  std::string log_level = "info";
  app.add_option("-l,--log-level", log_level, "trace, debug, info (default), warn, error");
  cli::Action action;
  cli::register_prepare(app, action);
  cli::register_queue(app, action);
  cli::register_process(app, action);
  cli::register_misc(app, action);
  cli::register_outbox(app, action);
  setup_logging();
  try {
    check_subcommand(app, argc, argv);
    app.parse(argc, argv);
    spdlog::set_level(cli::parse_choice(kLogLevels, log_level, "--log-level"));
    return action();
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ExtrasError& e) {
    std::string hint = option_hint(app);
    if (hint.empty())
      app.exit(e);
    else
      spdlog::error("{}", hint);
    return kExitUsage;
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  } catch (const QueueBusy& e) {
    // Overlapping cron or timer runs are normal: the run that holds the
    // lock does the work. Only a person at a terminal is told.
    if (::isatty(2))
      spdlog::error("{}", e.what());
    else
      spdlog::debug("{}", e.what());
    return e.exit_code();
  } catch (const Error& e) {
    spdlog::error("{}", e.what());
    return e.exit_code();
  } catch (const std::exception& e) {
    spdlog::error("internal error: {}", e.what());
    return kExitSoftware;
  }
}
