// SPDX-License-Identifier: GPL-3.0-or-later
// session_escaper: a consumer whose child leaves its process group.
//
// It forks a child that calls setsid() (a new session, so a new process
// group: a kill of the consumer's group misses it), writes its pid to
// DIR/escaper.pid, and reads the consumer's stdin to its end; only if it
// ever sees that end does it write DIR/escaper.eof ("eof N", N = bytes
// read). The parent, the consumer itself, waits until the child has
// written its pid, then
//
//   session_escaper DIR          waits for the child (the consumer runs on)
//   session_escaper DIR orphan   exits 0 at once, leaving the child holding
//                                its stdin (an orphan, reparented)
//
// The tests kill the processor, or time the job out, and check that the
// child died without writing DIR/escaper.eof.
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

namespace {

void write_file(const std::string& path, const std::string& text) {
  std::string tmp = path + ".tmp";
  if (FILE* f = std::fopen(tmp.c_str(), "w")) {
    std::fputs(text.c_str(), f);
    std::fclose(f);
    std::rename(tmp.c_str(), path.c_str());
  }
}

[[noreturn]] void escape_and_read(const std::string& dir, int ready) {
  if (::setsid() < 0) std::perror("session_escaper: setsid");
  write_file(dir + "/escaper.pid", std::to_string(::getpid()) + "\n");
  ::close(ready);  // the parent may go now
  char buf[65536];
  unsigned long long total = 0;
  for (;;) {
    ssize_t n = ::read(0, buf, sizeof buf);
    if (n > 0) {
      total += static_cast<unsigned long long>(n);
    } else if (n == 0) {
      write_file(dir + "/escaper.eof", "eof " + std::to_string(total) + "\n");
      ::_exit(0);
    } else if (errno != EINTR) {
      ::_exit(1);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3 || (argc == 3 && std::strcmp(argv[2], "orphan") != 0)) {
    std::fprintf(stderr, "usage: session_escaper DIR [orphan]\n");
    return 2;
  }
  int ready[2];
  if (::pipe(ready) != 0) return 1;
  pid_t pid = ::fork();
  if (pid < 0) return 1;
  if (pid == 0) {
    ::close(ready[0]);
    escape_and_read(argv[1], ready[1]);
  }
  ::close(ready[1]);
  char c;
  while (::read(ready[0], &c, 1) < 0 && errno == EINTR) {
  }
  if (argc == 3) return 0;
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  return 0;
}
