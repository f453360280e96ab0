/*
 * The address ranges the last walk of /proc/self/maps saw, so that a hook can tell in a
 * few instructions whether an allocation landed in memory that existed then (nothing to
 * do) or in a mapping that appeared since (evidence that marking is due).
 *
 * Readers (any thread, any hook, signal handlers) never block: a seqcount tells them the
 * writer is busy and they answer "known". The single writer holds the marker's lock.
 */
#ifndef KSM_PRELOAD_RANGES_H
#define KSM_PRELOAD_RANGES_H

#include <stddef.h>
#include <stdint.h>

/* The known ranges in which a thread found its last addresses, most recent first, and
 * the table's sequence then: even, and changed by every rebuild and insert. Two, as
 * allocations come from a heap and from the mappings beside it, or two heaps. */
struct ksm_range_cache {
  uintptr_t start[2];
  uintptr_t size[2];
  unsigned sequence;
};
extern unsigned ksm_ranges_sequence __attribute__((visibility("hidden")));

/* Whether `address` lies in a range the last walk saw (or the table is being rebuilt).
 * Keeps the range found in `cache`. */
int ksm_ranges_known(uintptr_t address, struct ksm_range_cache *cache);

/* ksm_ranges_known's first step, inline for the hooks: whether `address` lies in a range
 * of `cache` and the table is still the one they came from, `sequence` being
 * ksm_ranges_sequence (loaded relaxed: nothing the writer published is read here). */
static inline int ksm_ranges_cached(const struct ksm_range_cache *cache, unsigned sequence, uintptr_t address) {
  return cache->sequence == sequence &&
         (address - cache->start[0] < cache->size[0] || address - cache->start[1] < cache->size[1]);
}

/* Writer side, lock held. A rebuild replaces the whole table with what a walk appends. */
void ksm_ranges_begin_rebuild(void);
/* Appends [start, end), in ascending order; `marked` says whether it is mergeable now. */
void ksm_ranges_append(uintptr_t start, uintptr_t end, int marked);
/* Whether [start, end) lay inside a range marked before this rebuild began. */
int ksm_ranges_was_marked(uintptr_t start, uintptr_t end);
void ksm_ranges_end_rebuild(void);

/* Adds one mapping marked between walks (lock held). */
void ksm_ranges_insert(uintptr_t start, uintptr_t end, int marked);

/* After fork: a walk may have been cut short in another thread; forget everything. */
void ksm_ranges_reset(void);

#endif
