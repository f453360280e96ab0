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

/* Whether `address` lies in a range the last walk saw (or the table is being rebuilt). */
int ksm_ranges_known(uintptr_t address);

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
