// SPDX-License-Identifier: GPL-3.0-or-later
// Placeholder until the hook runner lands: registers programs, runs none.
#include "safespool/hooks.hpp"

#include <spdlog/spdlog.h>

namespace safespool {

void Hooks::add(HookEvent::Kind kind, std::string program) {
  programs_.emplace_back(kind, std::move(program));
}

bool Hooks::has(HookEvent::Kind kind) const {
  for (const auto& p : programs_)
    if (p.first == kind) return true;
  return false;
}

void Hooks::fire(const HookEvent& e) const noexcept {
  if (has(e.kind)) spdlog::debug("hook event for {} not run: no hook runner", e.queue);
}

}  // namespace safespool
