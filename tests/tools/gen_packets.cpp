// SPDX-License-Identifier: GPL-3.0-or-later
// gen_packets: many small packets, fast, for the benchmark (bench/run.sh).
//
// The packets come from the core library's own encoder (encode_header), so
// the benchmark has no packet encoder of its own to keep in step with the
// wire format.
//
//   gen_packets DIR FIRST COUNT PAYLOAD_BYTES [zstd]
//       writes Command packets (command "true") seq FIRST..FIRST+COUNT-1
//       as DIR/fspl-<uuid>.fspl, each with PAYLOAD_BYTES of text, the
//       whole packet zstd-compressed with "zstd"; prints the name of the
//       file of seq FIRST
//   gen_packets strip DIR SUFFIX DEST
//       renames DIR/*SUFFIX to DEST/* without the suffix; prints how many
//
// Exits 0 on success, 1 on failure, 2 on bad usage.
#include <fcntl.h>
#include <zstd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <tuple>

#include "safespool/error.hpp"
#include "safespool/fd.hpp"
#include "safespool/packet.hpp"
#include "safespool/queue.hpp"

using namespace safespool;

namespace {

std::string payload(size_t bytes) {
  const std::string line = "the quick brown fox jumps over the lazy dog 0123456789\n";
  std::string out;
  while (out.size() < bytes) out += line;
  out.resize(bytes);
  return out;
}

std::string compressed(const std::string& in) {
  std::string out(ZSTD_compressBound(in.size()), '\0');
  size_t n = ZSTD_compress(out.data(), out.size(), in.data(), in.size(), 3);
  if (ZSTD_isError(n)) throw Error(std::string("zstd: ") + ZSTD_getErrorName(n));
  out.resize(n);
  return out;
}

void write_file(const std::string& path, const std::string& bytes) {
  Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666));
  if (!fd) throw_errno("cannot create " + path);
  write_all(fd.get(), bytes, path);
}

int generate(const std::string& dir, uint64_t first, uint64_t count, size_t bytes, bool zstd) {
  const std::string body = payload(bytes);
  std::string first_name;
  for (uint64_t seq = first; seq < first + count; ++seq) {
    Meta m;
    m.seq = seq;
    std::tie(m.ctime_secs, m.ctime_nanos) = now_ctime();
    m.kind = JobKind::Command;
    std::string packet = encode_header(m) + body;
    std::string name = gen_job_filename();
    write_file(dir + "/" + name, zstd ? compressed(packet) : packet);
    if (first_name.empty()) first_name = name;
  }
  std::printf("%s\n", first_name.c_str());
  return 0;
}

int strip(const std::string& dir, const std::string& suffix, const std::string& dest) {
  size_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    std::string name = e.path().filename();
    if (name.size() <= suffix.size() || !name.ends_with(suffix)) continue;
    std::filesystem::rename(e.path(), dest + "/" + name.substr(0, name.size() - suffix.size()));
    ++n;
  }
  std::printf("%zu\n", n);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc == 5 && std::string(argv[1]) == "strip") return strip(argv[2], argv[3], argv[4]);
    if (argc == 5 || (argc == 6 && std::string(argv[5]) == "zstd")) {
      return generate(argv[1], std::stoull(argv[2]), std::stoull(argv[3]), std::stoull(argv[4]),
                      argc == 6);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gen_packets: %s\n", e.what());
    return 1;
  }
  std::fprintf(stderr,
               "usage: gen_packets DIR FIRST COUNT PAYLOAD_BYTES [zstd]\n"
               "       gen_packets strip DIR SUFFIX DEST\n");
  return 2;
}
