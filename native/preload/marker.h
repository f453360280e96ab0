/*
 * madvise mode: marks whole private anonymous mappings mergeable by walking
 * /proc/self/maps, and decides from the hooks' evidence when to walk again.
 */
#ifndef KSM_PRELOAD_MARKER_H
#define KSM_PRELOAD_MARKER_H

#include <stddef.h>
#include <stdint.h>

#include "ranges.h"

struct ksm_marker_stats {
  uint64_t walks;
  uint64_t targeted;          /* single mappings marked between walks */
  uint64_t mappings_marked;   /* madvise calls that marked a mapping for the first time */
  uint64_t bytes_marked;
  uint64_t refused;           /* madvise calls the kernel refused */
};

/* Nonzero while madvise mode runs: the hooks' only test on their fast path. */
extern int ksm_marker_active __attribute__((visibility("hidden")));

/* Per thread. The hooks note an allocation when its size exceeds `budget`, the bytes
 * left since the last one noted, so one of KSM_SAMPLE_BYTES or more always is: it may
 * have a mapping of its own (glibc's and musl's initial mmap threshold) or, once glibc
 * has raised its threshold, extend the heap by as much. Smaller ones are sampled by the
 * bytes they take, as heaps grow. `clock` counts noted calls down to a look at the
 * clock, which periodic walks and deferred marking wait for; `clock_every` and
 * `clock_seen` (marker.c) set its pace. One thread-local: one address computation. */
#define KSM_SAMPLE_BYTES (128 * 1024)
struct ksm_sampling {
  intptr_t budget;
  int clock;
  struct ksm_range_cache cache;
  int clock_every;
  uint64_t clock_seen;
};
extern __thread struct ksm_sampling ksm_sampling __attribute__((visibility("hidden"), tls_model("initial-exec")));

/* Starts madvise mode with a first full walk. Returns 0, or the errno with which the
 * kernel refuses MADV_MERGEABLE (then madvise mode stays off). `without_query` plays a
 * kernel before 6.11, which has no PROCMAP_QUERY: walks alone find new mappings. */
int ksm_marker_start(uint64_t min_bytes, int without_query);

/* ksm_marker_note's work once the cheap case is ruled out. Returns p. */
void *ksm_marker_look(void *p);

/* After an allocation returned `p`: resets the budget and returns p. A dozen
 * instructions, inline, in the common case: p lies in a known range this thread found
 * lately and the clock is not due; else a look at the known mappings. */
__attribute__((always_inline)) static inline void *ksm_marker_note(void *p) {
  /* Loaded first, which on x86_64 leaves p where the return wants it. */
  unsigned sequence = __atomic_load_n(&ksm_ranges_sequence, __ATOMIC_RELAXED);
  ksm_sampling.budget = KSM_SAMPLE_BYTES - 1;
  if (__builtin_expect(--ksm_sampling.clock >= 0 && ksm_ranges_cached(&ksm_sampling.cache, sequence, (uintptr_t)p), 1)) return p;
  return ksm_marker_look(p);
}

/* Whether marking waits for the program to pause (see ksm_marker_idle). */
int ksm_marker_waiting(void);

/* Before the program blocks (read, poll, sleep...): mark what is waiting. */
void ksm_marker_idle(void);

/* After the program mapped fresh private anonymous memory itself. */
void ksm_marker_note_mapping(void *addr, size_t len);

/* Waits until no walk is under way (never from a hook). */
void ksm_marker_wait_idle(void);

/* pthread_atfork child handler: the walk lock may have been held by another thread. */
void ksm_marker_after_fork_child(void);

void ksm_marker_read_stats(struct ksm_marker_stats *out);

#endif
