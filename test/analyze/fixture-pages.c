/*
 * A process with known page contents, for analyze tests. Usage:
 *   fixture-pages SHARED REPEATED ZERO UNIQUE ADVISE_SHARED
 * maps one private anonymous region and fills, in order:
 *   SHARED pages whose contents are the same in every fixture process and distinct
 *     within one (page i holds pattern i),
 *   REPEATED pages all holding one same content,
 *   ZERO pages written with zeros (real pages, not the kernel's zero page),
 *   UNIQUE pages holding this process's PID and the page index.
 * With ADVISE_SHARED=1 the SHARED pages are advised MADV_MERGEABLE. Prints
 * "START END" (hex) of the region, then sleeps until killed.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096

static void fill(unsigned char *page, uint64_t a, uint64_t b) {
  uint64_t *words = (uint64_t *)page;
  for (size_t i = 0; i < PAGE / 8; i++) words[i] = (a * 0x9e3779b97f4a7c15ULL) ^ (b << 20) ^ i;
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: %s SHARED REPEATED ZERO UNIQUE ADVISE_SHARED\n", argv[0]);
    return 2;
  }
  size_t shared = strtoul(argv[1], NULL, 10), repeated = strtoul(argv[2], NULL, 10);
  size_t zero = strtoul(argv[3], NULL, 10), unique = strtoul(argv[4], NULL, 10);
  size_t total = shared + repeated + zero + unique;
  unsigned char *region = mmap(NULL, total * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (region == MAP_FAILED) return perror("mmap"), 1;
  /* Small pages only: a huge page would make the untouched tail of its 2 MiB resident. */
  madvise(region, total * PAGE, MADV_NOHUGEPAGE);
  unsigned char *p = region;
  for (size_t i = 0; i < shared; i++, p += PAGE) fill(p, 1, i + 1);
  for (size_t i = 0; i < repeated; i++, p += PAGE) fill(p, 2, 0);
  for (size_t i = 0; i < zero; i++, p += PAGE) memset(p, 0, PAGE);
  for (size_t i = 0; i < unique; i++, p += PAGE) fill(p, 3 + (uint64_t)getpid(), i + 1);
  if (atoi(argv[5]) && madvise(region, shared * PAGE, MADV_MERGEABLE) != 0) return perror("madvise"), 1;
  printf("%lx %lx\n", (unsigned long)region, (unsigned long)(region + total * PAGE));
  fflush(stdout);
  for (;;) pause();
}
