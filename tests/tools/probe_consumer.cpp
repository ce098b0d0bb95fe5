// SPDX-License-Identifier: GPL-3.0-or-later
// probe_consumer: a consumer that reports what it was handed.
//
// It checks the hand-off invariant from the consumer's side. At start it
// records whether stdin is a FIFO, how many bytes were already waiting in it
// (FIONREAD) and its capacity (F_GETPIPE_SZ), then does what libzfs_core
// does to its stdin: if the capacity is below /proc/sys/fs/pipe-max-size it
// grows the pipe to that size (grew=1 says the hand-off left it work to do).
// Then it reads all of stdin and prints one line:
//
//   fifo=1 waiting=0 pipe_size=1048576 grew=0 bytes=N fnv=HEX [extra fields]
//
// to stdout, or to the file named by --out / $PROBE_OUT.
//
// Options:
//   --out PATH        where the report goes
//   --started PATH    create PATH once the start-up state is recorded
//   --report          add fds=0,1,2 own_pgrp=1 pgrp=N pgrp_leader=COMM parent=COMM
//                     ppid=N sigblk=HEX sigign=HEX stdin=TARGET (pgrp_leader, parent:
//                     /proc comm of the group leader and of the parent,
//                     "safespool-guard" for the parent under safespool)
//   --shrink-regrow N after N bytes shrink the pipe to one page (retrying
//                     until it is empty enough), read 256 KiB, grow it back
//   --exit-after N    stop after N bytes, report, exit with --status (3)
//   --never-read      never read stdin; sleep until killed
#include <dirent.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace {

struct Options {
  std::string out, started;
  bool report = false, never_read = false;
  long long shrink_at = -1, exit_after = -1;
  int status = 3;
};

struct State {
  std::string line;  // the start-up part of the report
  uint64_t bytes = 0;
  uint64_t fnv = 14695981039346656037ull;  // FNV-1a 64 offset basis
  bool shrunk = false, regrew = false;
  std::string regrow_error;
  int max_size = 0;
};

void hash(State& s, const char* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    s.fnv ^= static_cast<unsigned char>(p[i]);
    s.fnv *= 1099511628211ull;
  }
  s.bytes += n;
}

Options parse(int argc, char** argv) {
  Options o;
  if (const char* e = std::getenv("PROBE_OUT")) o.out = e;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (a == "--out")
      o.out = next();
    else if (a == "--started")
      o.started = next();
    else if (a == "--report")
      o.report = true;
    else if (a == "--never-read")
      o.never_read = true;
    else if (a == "--shrink-regrow")
      o.shrink_at = std::stoll(next());
    else if (a == "--exit-after")
      o.exit_after = std::stoll(next());
    else if (a == "--status")
      o.status = std::stoi(next());
    else {
      std::fprintf(stderr, "probe_consumer: unknown option %s\n", a.c_str());
      std::exit(64);
    }
  }
  return o;
}

std::string status_field(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key, 0) == 0)
      return line.substr(line.find_first_not_of(" \t", std::strlen(key)));
  return "?";
}

std::string process_report() {
  std::vector<int> fds;
  DIR* d = opendir("/proc/self/fd");
  while (dirent* e = d ? readdir(d) : nullptr)
    if (e->d_name[0] != '.' && std::atoi(e->d_name) != dirfd(d))
      fds.push_back(std::atoi(e->d_name));
  if (d) closedir(d);
  std::sort(fds.begin(), fds.end());
  std::string out = " fds=";
  for (size_t i = 0; i < fds.size(); ++i) out += (i ? "," : "") + std::to_string(fds[i]);
  char target[256] = {};
  ssize_t n = readlink("/proc/self/fd/0", target, sizeof target - 1);
  out += " own_pgrp=" + std::to_string(getpgrp() == getpid());
  std::string leader;
  std::getline(std::ifstream("/proc/" + std::to_string(getpgrp()) + "/comm"), leader);
  out += " pgrp=" + std::to_string(getpgrp()) + " pgrp_leader=" + (leader.empty() ? "?" : leader);
  std::string parent;
  std::getline(std::ifstream("/proc/" + std::to_string(getppid()) + "/comm"), parent);
  out += " parent=" + (parent.empty() ? std::string("?") : parent);
  out += " ppid=" + std::to_string(getppid());
  out += " sigblk=" + status_field("SigBlk:") + " sigign=" + status_field("SigIgn:");
  return out + " stdin=" + (n > 0 ? std::string(target, n) : "?");
}

/// Records the start-up state, then grows the pipe as libzfs_core does.
State start(const Options& o) {
  State s;
  struct stat st {};
  bool fifo = fstat(0, &st) == 0 && S_ISFIFO(st.st_mode);
  int waiting = 0, size = 0;
  if (fifo) {
    ioctl(0, FIONREAD, &waiting);
    size = fcntl(0, F_GETPIPE_SZ);
  }
  std::ifstream("/proc/sys/fs/pipe-max-size") >> s.max_size;
  bool grew = false;
  if (fifo && size < s.max_size) grew = fcntl(0, F_SETPIPE_SZ, s.max_size) >= 0;
  char buf[160];
  std::snprintf(buf, sizeof buf, "fifo=%d waiting=%d pipe_size=%d grew=%d", fifo, waiting, size,
                grew);
  s.line = buf;
  if (o.report) s.line += process_report();
  if (!o.started.empty()) std::ofstream(o.started) << "started\n";
  return s;
}

void report(const Options& o, const State& s) {
  char buf[120];
  std::snprintf(buf, sizeof buf, " bytes=%" PRIu64 " fnv=%016" PRIx64, s.bytes, s.fnv);
  std::string line = s.line + buf;
  if (s.shrunk || s.regrew)
    line += " shrunk=" + std::to_string(s.shrunk) + " regrew=" + std::to_string(s.regrew);
  if (!s.regrow_error.empty()) line += " regrow_error=\"" + s.regrow_error + "\"";
  line += "\n";
  FILE* f = o.out.empty() ? stdout : std::fopen(o.out.c_str(), "w");
  if (!f) std::exit(70);
  std::fputs(line.c_str(), f);
  std::fclose(f);
}

/// Reads up to `limit` bytes (all of stdin when negative) in `chunk` pieces.
bool read_some(State& s, std::vector<char>& buf, long long limit, size_t chunk) {
  while (limit < 0 || static_cast<long long>(s.bytes) < limit) {
    size_t want = chunk;
    if (limit >= 0) want = std::min<size_t>(want, static_cast<size_t>(limit - s.bytes));
    ssize_t n = read(0, buf.data(), want);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) std::exit(74);
    if (n == 0) return false;
    hash(s, buf.data(), static_cast<size_t>(n));
  }
  return true;
}

/// Shrinks to one page (only possible while the pipe is nearly empty, so
/// drain and retry), reads a little through the tiny pipe so the writer
/// keeps hitting "full", then grows back while it waits.
void shrink_and_regrow(State& s, std::vector<char>& buf) {
  while (!s.shrunk) {
    ssize_t n = read(0, buf.data(), buf.size());  // drain what is there
    if (n <= 0) return;
    hash(s, buf.data(), static_cast<size_t>(n));
    s.shrunk = fcntl(0, F_SETPIPE_SZ, 4096) >= 0;
  }
  if (!read_some(s, buf, static_cast<long long>(s.bytes) + (256 << 10), 4096)) return;
  usleep(20000);  // let the writer fill the page and wait on it
  s.regrew = fcntl(0, F_SETPIPE_SZ, s.max_size) >= 0;
  if (!s.regrew) s.regrow_error = std::strerror(errno);
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  State s = start(o);
  if (o.never_read)
    for (;;) pause();
  std::vector<char> buf(1 << 20);
  if (o.shrink_at >= 0 && read_some(s, buf, o.shrink_at, buf.size())) shrink_and_regrow(s, buf);
  if (o.exit_after >= 0) {
    read_some(s, buf, o.exit_after, buf.size());
    report(o, s);
    return o.status;
  }
  read_some(s, buf, -1, buf.size());
  report(o, s);
  return 0;
}
