/*
 * madvise mode: marks whole private anonymous mappings mergeable by walking
 * /proc/self/maps, and decides from the hooks' evidence when to walk again.
 */
#ifndef KSM_PRELOAD_MARKER_H
#define KSM_PRELOAD_MARKER_H

#include <stddef.h>
#include <stdint.h>

struct ksm_marker_stats {
  uint64_t walks;
  uint64_t targeted;          /* single mappings marked between walks */
  uint64_t mappings_marked;   /* madvise calls that marked a mapping for the first time */
  uint64_t bytes_marked;
  uint64_t refused;           /* madvise calls the kernel refused */
};

/* Nonzero while madvise mode runs: the hooks' only test on their fast path. */
extern int ksm_marker_active __attribute__((visibility("hidden")));

/* Small allocations come from memory that is nearly always known already, so the hooks
 * pass only one in KSM_SAMPLE_EVERY of them on (per thread); those large enough to get
 * a mapping of their own (128 KiB) always. The countdown counts down to -1. */
#define KSM_SAMPLE_EVERY 64
extern __thread int ksm_sample_countdown __attribute__((visibility("hidden"), tls_model("initial-exec")));

/* Starts madvise mode with a first full walk. Returns 0, or the errno with which the
 * kernel refuses MADV_MERGEABLE (then madvise mode stays off). `without_query` plays a
 * kernel before 6.11, which has no PROCMAP_QUERY: walks alone find new mappings. */
int ksm_marker_start(uint64_t min_bytes, int without_query);

/* After an allocation returned `p`: cheap unless p lies outside the known mappings.
 * Resets ksm_sample_countdown. */
void ksm_marker_note(const void *p);

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
