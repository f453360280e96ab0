/* What this kernel offers, found by calls rather than by version number, as one JSON
 * line: an oracle for the matrix's features table, independent of the library's code.
 * Run without arguments: it turns prctl merging on, execs itself and reports from the
 * new program whether the flag survived. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <unistd.h>

#define SET_MEMORY_MERGE 67
#define GET_MEMORY_MERGE 68

/* The kernel's struct procmap_query (6.11): older headers lack it. */
struct procmap_query_v1 {
  uint64_t size, query_flags, query_addr, vma_start, vma_end, vma_flags, vma_page_size, vma_offset, inode;
  uint32_t dev_major, dev_minor, vma_name_size, build_id_size;
  uint64_t vma_name_addr, build_id_addr;
};
#define PROCMAP_QUERY_IOCTL _IOWR('f', 17, struct procmap_query_v1)

static int procmap_query_works(void) {
  int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  struct procmap_query_v1 query;
  memset(&query, 0, sizeof query);
  query.size = sizeof query;
  query.query_addr = (uint64_t)(uintptr_t)&query;
  int ok = ioctl(fd, PROCMAP_QUERY_IOCTL, &query) == 0 && query.vma_start <= query.query_addr && query.query_addr < query.vma_end;
  close(fd);
  return ok;
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "--after-exec") == 0) {
    int flag_after_exec = (int)prctl(GET_MEMORY_MERGE, 0, 0, 0, 0);
    printf("{\"prctl\":%s,\"execSurvival\":%s,\"procmapQuery\":%s}\n", argv[2],
           strcmp(argv[2], "true") == 0 && flag_after_exec == 1 ? "true" : "false",
           procmap_query_works() ? "true" : "false");
    return 0;
  }
  int prctl_works = prctl(SET_MEMORY_MERGE, 1, 0, 0, 0) == 0 && prctl(GET_MEMORY_MERGE, 0, 0, 0, 0) == 1;
  char *again[] = {argv[0], "--after-exec", prctl_works ? "true" : "false", NULL};
  execv("/proc/self/exe", again);
  perror("features-probe: execv");
  return 1;
}
