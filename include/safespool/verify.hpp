// SPDX-License-Identifier: GPL-3.0-or-later
// Enforcing a signer policy on the stream a job is read from.
//
// The signature is known only at the end of the stream, so the policy is
// applied in finish(): a stream whose signatures do not satisfy the policy
// fails exactly like a corrupt one, and the hand-off's "EOF is a promise"
// then kills the consumer before it sees EOF. Callers that must not act on
// unverified bytes at all (NOP and Fail packets, --verify-first) read the
// whole stream and finish() it before acting.
#pragma once

#include <memory>
#include <string>

#include "safespool/decode.hpp"
#include "safespool/policy.hpp"

namespace safespool {

/// Wraps `inner` so that finish() also requires `policy` to trust its
/// signatures; throws FormatError "NAME: not trusted: REASON" otherwise.
/// Throws FormatError at once when the stream has no OpenPGP layer at all
/// (a plain or zstd-only packet cannot carry a signature).
std::unique_ptr<Reader> make_policy_reader(std::unique_ptr<Reader> inner,
                                           const SignerPolicy& policy, const std::string& name);

/// Reads the rest of `in` (positioned after the header) and judges its
/// signatures; a stream that fails to decode is untrusted, with the
/// decoder's error as the reason. For queue-ls/queue-info under a policy.
Verdict judge_stream(Reader& in, const SignerPolicy& policy);

/// Reads `in` to its end and finish()es it, discarding the bytes.
void drain_and_verify(Reader& in);

/// Copies the rest of `in` into an unlinked temporary file (O_TMPFILE) in
/// `dir`, finish()es the stream, and returns the file positioned at 0.
/// Nothing is left on disk if anything fails.
Fd spool_verified(Reader& in, const std::string& dir);

}  // namespace safespool
