#include "exclude.h"

#include <sched.h>
#include <stddef.h>

#include "ksm_preload.h"
#include "marker.h"

#define EXCLUDED_MAX 256

struct excluded {
  uintptr_t start;
  uintptr_t end; /* 0: free slot; written last so readers never see half a range */
};

static struct excluded registry[EXCLUDED_MAX];
/* Slots ever used: readers look no further. Only grows, raised before the slot is filled. */
static size_t registry_used;
static int registry_lock;

static void lock_registry(void) {
  while (__atomic_exchange_n(&registry_lock, 1, __ATOMIC_ACQUIRE)) sched_yield();
}

static void unlock_registry(void) { __atomic_store_n(&registry_lock, 0, __ATOMIC_RELEASE); }

/* A thread that held the lock in the parent does not exist in the child. Slots are
 * written start first, end last, so a half-done registration leaves no half range. */
void ksm_exclude_after_fork_child(void) { unlock_registry(); }

int ksm_excluded_overlaps(uintptr_t start, uintptr_t end) {
  size_t used = __atomic_load_n(&registry_used, __ATOMIC_ACQUIRE);
  for (size_t i = 0; i < used; i++) {
    uintptr_t excluded_end = __atomic_load_n(&registry[i].end, __ATOMIC_ACQUIRE);
    if (excluded_end == 0) continue;
    uintptr_t excluded_start = __atomic_load_n(&registry[i].start, __ATOMIC_RELAXED);
    if (excluded_start < end && start < excluded_end) return 1;
  }
  return 0;
}

__attribute__((visibility("default"))) void ksm_preload_exclude_range(void *addr, size_t len) {
  uintptr_t start = (uintptr_t)addr;
  uintptr_t end = start + len;
  if (len == 0 || end < start) return;
  lock_registry();
  struct excluded *slot = NULL;
  for (size_t i = 0; i < EXCLUDED_MAX && !slot; i++) {
    if (registry[i].end == 0) slot = &registry[i];
  }
  if (slot) {
    size_t index = (size_t)(slot - registry);
    if (index >= registry_used) __atomic_store_n(&registry_used, index + 1, __ATOMIC_RELEASE);
    __atomic_store_n(&slot->start, start, __ATOMIC_RELAXED);
    __atomic_store_n(&slot->end, end, __ATOMIC_RELEASE);
  } else {
    /* Full: widen the first range to cover this one too. */
    if (start < registry[0].start) __atomic_store_n(&registry[0].start, start, __ATOMIC_RELEASE);
    if (end > registry[0].end) __atomic_store_n(&registry[0].end, end, __ATOMIC_RELEASE);
  }
  unlock_registry();
  ksm_marker_wait_idle();
}

__attribute__((visibility("default"))) void ksm_preload_include_range(void *addr, size_t len) {
  uintptr_t start = (uintptr_t)addr;
  uintptr_t end = start + len;
  lock_registry();
  for (size_t i = 0; i < EXCLUDED_MAX; i++) {
    if (registry[i].end != 0 && start <= registry[i].start && registry[i].end <= end) {
      __atomic_store_n(&registry[i].end, 0, __ATOMIC_RELEASE);
    }
  }
  unlock_registry();
}
