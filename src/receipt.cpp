// SPDX-License-Identifier: GPL-3.0-or-later
// Receipts (see include/safespool/receipt.hpp).
#include "safespool/receipt.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>
#include <memory>
#include <nlohmann/json.hpp>

#include "safespool/error.hpp"
#include "safespool/split.hpp"
#include "safespool/verify.hpp"

namespace safespool {
namespace {

using nlohmann::ordered_json;

/// Most bytes of JSON a receipt may carry (its texts are bounded).
constexpr size_t kMaxReceiptBytes = 64 << 10;

std::string bounded(const std::string& s) {
  return s.size() <= kReceiptTextMax ? s : s.substr(s.size() - kReceiptTextMax);
}

ordered_json text_or_null(const std::string& s) {
  return s.empty() ? ordered_json() : ordered_json(bounded(s));
}

std::string text_of(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// The rest of `in` (a receipt's JSON), bounded, then the stream's verdict.
std::string read_document(Reader& in, const std::string& what) {
  std::string doc;
  std::vector<std::byte> buf(16 << 10);
  while (size_t n = in.read(buf)) {
    if (doc.size() + n > kMaxReceiptBytes) throw FormatError(what + ": receipt too large");
    doc.append(reinterpret_cast<const char*>(buf.data()), n);
  }
  in.finish();
  return doc;
}

Receipt read_one(const std::string& path, const DecodeOptions& decode, const SignerPolicy& policy) {
  Decoded d = open_decoded(open_regular_file(path), path, decode);
  std::unique_ptr<Reader> in = std::move(d.reader);
  if (!policy.empty()) in = std::make_unique<TrustedStream>(std::move(in), policy, path);
  Meta meta = read_header(*in, path);
  if (!meta.receipt) throw FormatError(path + ": a packet, not a receipt");
  Receipt r = parse_receipt(read_document(*in, path));
  if (r.seq != meta.seq) throw FormatError(path + ": its header and its document disagree on seq");
  return r;
}

}  // namespace

std::string receipt_json(const Receipt& r) {
  ordered_json j = {{"version", kReceiptVersion},
                    {"queue", r.queue},
                    {"host", r.host},
                    {"seq", r.seq},
                    {"sha256", text_or_null(r.sha256)},
                    {"result", r.result},
                    {"exit_status", r.exit_status ? ordered_json(*r.exit_status) : ordered_json()},
                    {"time", r.time},
                    {"time_rfc3339_utc", rfc3339_utc(r.time)},
                    {"reason", text_or_null(r.reason)},
                    {"stderr_tail", text_or_null(r.stderr_tail)},
                    {"note", text_or_null(r.note)}};
  if (!r.superseded_by.empty()) j["superseded_by"] = r.superseded_by;
  if (r.waiting_since) j["waiting_since"] = *r.waiting_since;
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

Receipt parse_receipt(std::string_view json) {
  auto j = nlohmann::json::parse(json, nullptr, false);
  if (j.is_discarded() || !j.is_object()) throw FormatError("receipt: not a JSON object");
  if (!j.contains("version") || j["version"] != kReceiptVersion)
    throw FormatError("receipt: unsupported version");
  Receipt r;
  if (!j.contains("seq") || !j["seq"].is_number_unsigned() || !j.contains("time") ||
      !j["time"].is_number_integer())
    throw FormatError("receipt: seq or time missing");
  r.seq = j["seq"].get<uint64_t>();
  r.time = j["time"].get<int64_t>();
  r.queue = text_of(j, "queue");
  r.host = text_of(j, "host");
  r.sha256 = text_of(j, "sha256");
  r.result = text_of(j, "result");
  if (r.result.empty()) throw FormatError("receipt: no result");
  if (j.contains("exit_status") && j["exit_status"].is_number_integer())
    r.exit_status = j["exit_status"].get<int>();
  r.reason = text_of(j, "reason");
  r.stderr_tail = text_of(j, "stderr_tail");
  r.note = text_of(j, "note");
  r.superseded_by = text_of(j, "superseded_by");
  if (j.contains("waiting_since") && j["waiting_since"].is_number_integer())
    r.waiting_since = j["waiting_since"].get<int64_t>();
  return r;
}

std::string write_receipt(const std::string& dir, const Receipt& r, const EncodeOptions& enc) {
  Meta meta;
  meta.seq = r.seq;
  std::tie(meta.ctime_secs, meta.ctime_nanos) = now_ctime();
  meta.kind = JobKind::Fail;
  meta.receipt = true;
  std::string name =
      "fspl-receipt-" + std::to_string(r.seq) + "-" + r.result + "-" + gen_uuid() + ".fspl";
  auto file = std::make_unique<FileWriter>(dir, name);
  FileWriter& out = *file;
  Encoder e(std::move(file), enc);
  e.write(encode_header(meta));
  e.write(receipt_json(r));
  e.finish();
  return out.commit();
}

std::vector<ReceiptFile> read_receipts(const std::string& dir, const DecodeOptions& decode,
                                       const SignerPolicy& policy, std::vector<SkippedFile>& bad) {
  std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
  if (!d) throw_errno("cannot list " + dir);
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d.get()))
    if (is_job_name(e->d_name)) names.push_back(e->d_name);
  std::sort(names.begin(), names.end());
  std::vector<ReceiptFile> out;
  for (const auto& name : names) {
    try {
      out.push_back({name, read_one(dir + "/" + name, decode, policy)});
    } catch (const Error& e) {
      bad.push_back({name, e.what(), {}});
    }
  }
  return out;
}

}  // namespace safespool
