/* The baseline for 20-api.mjs: the cost of one madvise(MADV_MERGEABLE) call on
 * the whole pages inside a malloc'd 1 MiB buffer, as markMergeable() makes it.
 * Usage: 20-api-madvise CALLS; prints nanoseconds per call. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_MERGEABLE
#define MADV_MERGEABLE 12
#endif

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
  long calls = argc > 1 ? atol(argv[1]) : 100000;
  size_t size = 1 << 20;
  uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  char *data = malloc(size);
  if (data == NULL || calls <= 0) return 1;
  memset(data, 1, size);
  uintptr_t start = ((uintptr_t)data + page - 1) / page * page;
  uintptr_t end = ((uintptr_t)data + size) / page * page;
  double begin = now_ns();
  for (long i = 0; i < calls; i++) {
    if (madvise((void *)start, end - start, MADV_MERGEABLE) != 0) {
      perror("madvise");
      return 1;
    }
  }
  printf("%.1f\n", (now_ns() - begin) / (double)calls);
  free(data);
  return 0;
}
