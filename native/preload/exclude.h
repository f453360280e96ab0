/*
 * Ranges that walks must never mark: Node's allocUnmergeable() secrets. The registry is
 * fixed-size and allocation-free; the public functions are in ksm_preload.h.
 */
#ifndef KSM_PRELOAD_EXCLUDE_H
#define KSM_PRELOAD_EXCLUDE_H

#include <stdint.h>

/* Whether [start, end) overlaps any excluded range. */
int ksm_excluded_overlaps(uintptr_t start, uintptr_t end);

/* pthread_atfork child handler: the registry lock may have been held by another thread. */
void ksm_exclude_after_fork_child(void);

#endif
