/* SPDX-License-Identifier: GPL-3.0-or-later */
/* floor: the irreducible work of running N jobs in sequence, as the
 * benchmark's yardstick for queue-process (bench/run.sh, case floor).
 *
 * Per job, exactly what any processor that promises "run once, in order,
 * durably" must do: start the consumer and wait for it (posix_spawn of
 * /usr/bin/true, waitpid), then record the next sequence number durably
 * (write + fsync of DIR/nextseq.tmp, rename to DIR/nextseq, fsync of DIR).
 *
 *   floor DIR N
 *
 * Exits 0 when all N jobs ran, 1 on any failure. */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

static int fail(const char* what) {
  fprintf(stderr, "floor: %s: %s\n", what, strerror(errno));
  return 1;
}

static int run_true(void) {
  char* argv[] = {"true", NULL};
  pid_t pid;
  int status;
  errno = posix_spawn(&pid, "/usr/bin/true", NULL, NULL, argv, environ);
  if (errno != 0) return fail("posix_spawn /usr/bin/true");
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return fail("waitpid");
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : (errno = 0, fail("true failed"));
}

static int write_seq(const char* tmp, const char* path, int dir, unsigned long seq) {
  char line[32];
  int n = snprintf(line, sizeof line, "%lu\n", seq);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) return fail("open nextseq.tmp");
  if (write(fd, line, (size_t)n) != n || fsync(fd) != 0) return fail("write nextseq.tmp");
  close(fd);
  if (rename(tmp, path) != 0) return fail("rename nextseq.tmp");
  if (fsync(dir) != 0) return fail("fsync the directory");
  return 0;
}

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: floor DIR N\n");
    return 2;
  }
  char tmp[4096], path[4096];
  snprintf(tmp, sizeof tmp, "%s/nextseq.tmp", argv[1]);
  snprintf(path, sizeof path, "%s/nextseq", argv[1]);
  int dir = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return fail(argv[1]);
  unsigned long n = strtoul(argv[2], NULL, 10);
  for (unsigned long seq = 1; seq <= n; ++seq)
    if (run_true() != 0 || write_seq(tmp, path, dir, seq + 1) != 0) return 1;
  return 0;
}
