// SPDX-License-Identifier: GPL-3.0-or-later
// What the first packets of an OpenPGP message say, read without a key.
//
// gpg tells the signer only at the end of a message, after the consumer
// got every byte. But an OpenPGP message announces most of it up front
// (RFC 4880 section 11.3): an encrypted one starts with a session key
// packet per recipient, naming each recipient's key id; a signed one
// starts with a one-pass signature packet per signer, naming the issuer's
// key id, before the literal data (or, in the old style, the signature
// packet itself comes first); an unsigned one goes straight to the
// literal data, possibly inside a compressed packet. Reading those
// packets lets a signer policy refuse an unsigned or foreign packet before
// its consumer starts, and lets queue-status name the keys an unreadable
// packet needs.
//
// An announcement is a claim, not a proof: a forged issuer id passes this
// look and is caught when the signature is verified at the end. So these
// functions only ever justify a refusal, never an acceptance.
//
// Pure functions over bytes: the caller reads the head of the message.
// Binary messages only (armored ones are Unknown / have no recipients).
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <vector>

namespace safespool::openpgp {

/// The key ids (16 upper-case hex digits) a binary message is encrypted to:
/// one per public-key session key packet at its start. Empty when the
/// message does not start with one (or `head` is too short to tell).
std::vector<std::string> recipients(std::span<const std::byte> head);

/// What the start of a message that is not encrypted says about signers.
struct Announcement {
  enum class Kind {
    Signers,      ///< `key_ids` announce (one-pass) signatures
    NoSignature,  ///< the literal data comes with no signature announced
    Unknown,      ///< cannot tell from these bytes: see `why`
  };
  Kind kind = Kind::Unknown;
  std::vector<std::string> key_ids;  ///< 16 upper-case hex digits each
  std::string why;
};

/// Reads the packets at the start of `head` (a message that is signed,
/// compressed or plain literal data) up to its literal data, inflating a
/// compressed packet's start (ZIP and ZLIB; BZip2 is Unknown). Never throws:
/// malformed or short input is Unknown.
Announcement announced_signers(std::span<const std::byte> head);

/// The key id of a v4 fingerprint (its last 16 hex digits), upper case.
std::string key_id_of(const std::string& fingerprint);

}  // namespace safespool::openpgp
