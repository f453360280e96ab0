/*
 * A process that offers KSM pages identical across every worker. Usage:
 *   merging-worker PAGES madvise|prctl|none
 * maps PAGES private anonymous pages (page i holds pattern i, the same in every
 * worker), opts in as told, prints "ready", then sleeps until killed.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#define PAGE 4096
#ifndef PR_SET_MEMORY_MERGE
#define PR_SET_MEMORY_MERGE 67
#endif

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s PAGES madvise|prctl|none\n", argv[0]);
    return 2;
  }
  size_t pages = strtoul(argv[1], NULL, 10);
  const char *mode = argv[2];
  if (strcmp(mode, "prctl") == 0 && prctl(PR_SET_MEMORY_MERGE, 1, 0, 0, 0) != 0) return perror("prctl"), 1;
  unsigned char *region = NULL;
  if (pages > 0) {
    region = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (region == MAP_FAILED) return perror("mmap"), 1;
    madvise(region, pages * PAGE, MADV_NOHUGEPAGE);
    for (size_t i = 0; i < pages; i++) {
      uint64_t *words = (uint64_t *)(region + i * PAGE);
      for (size_t w = 0; w < PAGE / 8; w++) words[w] = (i + 1) * 0x9e3779b97f4a7c15ULL ^ w;
    }
    if (strcmp(mode, "madvise") == 0 && madvise(region, pages * PAGE, MADV_MERGEABLE) != 0) return perror("madvise"), 1;
  }
  puts("ready");
  fflush(stdout);
  for (;;) pause();
}
