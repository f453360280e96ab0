/*
 * Hook latency with many VMAs: maps one region and protects every other page read-only,
 * which cuts it into VMAS mappings (argv[1]), then for SECONDS (argv[2]) times every
 * malloc/free pair, as the allocating thread of a program with that many mappings sees
 * it. Time is the thread's CPU time (user + system), which other tenants' load on a
 * shared machine does not inflate, as it does wall time. Prints one line: calls, then the
 * p50, p99, p99.9, p99.99 and maximum latency in nanoseconds, then how many pairs took
 * over 1 ms.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* Latency histogram: 10 ns buckets up to 100 µs, then 10 µs buckets up to 1 s. */
#define FINE_BUCKETS 10000
#define COARSE_BUCKETS 100000
static uint64_t fine[FINE_BUCKETS];
static uint64_t coarse[COARSE_BUCKETS];

static uint64_t now_ns(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void record(uint64_t ns) {
  if (ns < FINE_BUCKETS * 10ull) fine[ns / 10]++;
  else if (ns < COARSE_BUCKETS * 10000ull) coarse[ns / 10000]++;
  else coarse[COARSE_BUCKETS - 1]++;
}

/* The latency below which `fraction` of the calls fall. */
static uint64_t quantile(uint64_t calls, double fraction) {
  uint64_t wanted = (uint64_t)(fraction * (double)calls);
  uint64_t seen = 0;
  for (size_t i = 0; i < FINE_BUCKETS; i++) {
    seen += fine[i];
    if (seen > wanted) return (i + 1) * 10;
  }
  for (size_t i = 0; i < COARSE_BUCKETS; i++) {
    seen += coarse[i];
    if (seen > wanted) return (i + 1) * 10000;
  }
  return UINT64_MAX;
}

int main(int argc, char **argv) {
  long vmas = argc > 1 ? atol(argv[1]) : 10000;
  double seconds = argc > 2 ? atof(argv[2]) : 3;
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  char *region = mmap(NULL, (size_t)vmas * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (region == MAP_FAILED) return perror("mmap"), 1;
  for (long i = 0; i < vmas; i++) region[(size_t)i * page] = 1;
  for (long i = 1; i < vmas; i += 2) {
    if (mprotect(region + (size_t)i * page, page, PROT_READ) != 0) return perror("mprotect"), 1;
  }
  uint64_t calls = 0, over_ms = 0, max = 0;
  uint64_t end = now_ns(CLOCK_MONOTONIC) + (uint64_t)(seconds * 1e9);
  for (uint64_t started = now_ns(CLOCK_THREAD_CPUTIME_ID); calls % 1024 != 0 || now_ns(CLOCK_MONOTONIC) < end; calls++) {
    void *p = malloc(64 + calls % 512);
    /* Without this the compiler removes the malloc/free pair. */
    __asm__ volatile("" : : "r"(p) : "memory");
    free(p);
    uint64_t finished = now_ns(CLOCK_THREAD_CPUTIME_ID);
    uint64_t took = finished - started;
    record(took);
    if (took > max) max = took;
    if (took > 1000000) over_ms++;
    started = finished;
  }
  printf("%llu %llu %llu %llu %llu %llu %llu\n", (unsigned long long)calls, (unsigned long long)quantile(calls, 0.5),
         (unsigned long long)quantile(calls, 0.99), (unsigned long long)quantile(calls, 0.999),
         (unsigned long long)quantile(calls, 0.9999), (unsigned long long)max, (unsigned long long)over_ms);
  return 0;
}
