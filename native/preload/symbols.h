/* The real allocator and mapping functions behind our hooks, found with dlsym(RTLD_NEXT). */
#ifndef KSM_PRELOAD_SYMBOLS_H
#define KSM_PRELOAD_SYMBOLS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The allocation functions: the real ones, and the table our exported ones jump through. */
struct ksm_allocator {
  void *(*malloc)(size_t);
  void *(*calloc)(size_t, size_t);
  void *(*realloc)(void *, size_t);
  void (*free)(void *);
  int (*posix_memalign)(void **, size_t, size_t);
  void *(*aligned_alloc)(size_t, size_t);
  void *(*memalign)(size_t, size_t);
  void *(*valloc)(size_t);
};

struct ksm_real_functions {
  struct ksm_allocator allocator;
  void *(*mmap)(void *, size_t, int, int, int, off_t);
  /* Optional: left NULL where the C library lacks them. */
#ifdef __GLIBC__
  void *(*mmap64)(void *, size_t, int, int, int, off_t);
#endif
  void *(*mremap)(void *, size_t, size_t, int, ...);
  int (*brk)(void *);
  void *(*sbrk)(intptr_t);
};

extern struct ksm_real_functions ksm_real __attribute__((visibility("hidden")));

/* Fills ksm_real, once per process (racing threads just do it twice). A required
 * symbol that cannot be found ends the process: without it the program cannot run. */
void ksm_resolve_real_functions(void);

/* dlsym(RTLD_NEXT, name) for hooks outside ksm_real; a missing one ends the process.
 * Returns NULL when called from within dlsym on this thread (see ksm_resolving). */
void *ksm_find_real(const char *name);

/* The same for a function the C library may lack: NULL when it is missing. */
void *ksm_find_optional(const char *name);

/* Whether this thread is inside dlsym, whose own calloc/malloc calls must then be
 * served from the static bootstrap buffer instead of recursing. */
int ksm_resolving(void);

/* Bump allocator over a static buffer for those calls; its memory is never reused. */
#define KSM_BOOTSTRAP_BYTES (64 * 1024)
extern unsigned char ksm_bootstrap_buffer[KSM_BOOTSTRAP_BYTES] __attribute__((visibility("hidden")));
void *ksm_bootstrap_alloc(size_t size, size_t alignment);
size_t ksm_bootstrap_size(const void *p);
int ksm_bootstrap_used(void);

/* Inline: free() asks this on every call. */
static inline int ksm_bootstrap_owns(const void *p) {
  return (uintptr_t)p - (uintptr_t)ksm_bootstrap_buffer < KSM_BOOTSTRAP_BYTES;
}

#endif
