#define _GNU_SOURCE
/* Builds that set _FILE_OFFSET_BITS=64 (node-gyp) would turn our mmap into a second mmap64. */
#undef _FILE_OFFSET_BITS
#include "symbols.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "ksm_env.h"

struct ksm_real_functions ksm_real;

/* glibc declares dlsym a leaf function, so GCC may assume it never calls back into
 * this file and drop a plain store to this flag around it; atomics keep it. */
static __thread int resolving __attribute__((tls_model("initial-exec")));

int ksm_resolving(void) { return __atomic_load_n(&resolving, __ATOMIC_SEQ_CST); }

/* glibc's dlsym allocates its error state (a few hundred bytes) on first use. */
#define BOOTSTRAP_BYTES KSM_BOOTSTRAP_BYTES
#define BOOTSTRAP_HEADER 16
unsigned char ksm_bootstrap_buffer[KSM_BOOTSTRAP_BYTES] __attribute__((aligned(64)));
#define bootstrap_buffer ksm_bootstrap_buffer
static size_t bootstrap_used;

void *ksm_bootstrap_alloc(size_t size, size_t alignment) {
  if (alignment < BOOTSTRAP_HEADER) alignment = BOOTSTRAP_HEADER;
  if (size > BOOTSTRAP_BYTES || (alignment & (alignment - 1)) != 0 || alignment > BOOTSTRAP_BYTES) {
    errno = ENOMEM;
    return NULL;
  }
  size_t used = __atomic_load_n(&bootstrap_used, __ATOMIC_RELAXED);
  for (;;) {
    size_t start = (used + BOOTSTRAP_HEADER + alignment - 1) & ~(alignment - 1);
    size_t end = start + size;
    if (end > BOOTSTRAP_BYTES) {
      errno = ENOMEM;
      return NULL;
    }
    if (__atomic_compare_exchange_n(&bootstrap_used, &used, end, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
      /* The size sits just before the block, for realloc. */
      memcpy(bootstrap_buffer + start - sizeof(size_t), &size, sizeof size);
      return bootstrap_buffer + start;
    }
  }
}

int ksm_bootstrap_used(void) { return __atomic_load_n(&bootstrap_used, __ATOMIC_RELAXED) != 0; }

size_t ksm_bootstrap_size(const void *p) {
  size_t size;
  memcpy(&size, (const unsigned char *)p - sizeof(size_t), sizeof size);
  return size;
}

static void *find(const char *name, int required) {
  void *symbol = dlsym(RTLD_NEXT, name);
  if (!symbol && required) {
    char line[160];
    size_t len = 0;
    const size_t cap = sizeof line - 1;
    ksm_append(line, &len, cap, "ksm-preload: cannot find the real ");
    ksm_append(line, &len, cap, name);
    ksm_append(line, &len, cap, "() behind libksm_preload.so; the program cannot run\n");
    ksm_write_stderr(line, len);
    _exit(127);
  }
  return symbol;
}

/* Inside dlsym on this thread, a second dlsym would recurse into the loader: refused.
 * Otherwise the allocations dlsym makes are served from the bootstrap buffer, as
 * while ksm_resolve_real_functions runs. */
static void *find_guarded(const char *name, int required) {
  if (ksm_resolving()) return NULL;
  int saved_errno = errno;
  __atomic_store_n(&resolving, 1, __ATOMIC_SEQ_CST);
  void *symbol = find(name, required);
  __atomic_store_n(&resolving, 0, __ATOMIC_SEQ_CST);
  errno = saved_errno;
  return symbol;
}

void *ksm_find_real(const char *name) { return find_guarded(name, 1); }

void *ksm_find_optional(const char *name) { return find_guarded(name, 0); }

#define RESOLVE_AS(place, name, required) ((place) = (__typeof__(place))find((name), (required)))
#define RESOLVE(field, required) RESOLVE_AS(ksm_real.field, #field, required)
#define RESOLVE_ALLOCATOR(field) RESOLVE_AS(ksm_real.allocator.field, #field, 1)

void ksm_resolve_real_functions(void) {
  int saved_errno = errno;
  __atomic_store_n(&resolving, 1, __ATOMIC_SEQ_CST);
  RESOLVE_ALLOCATOR(calloc);
  RESOLVE_ALLOCATOR(realloc);
  RESOLVE_ALLOCATOR(free);
  RESOLVE_ALLOCATOR(posix_memalign);
  RESOLVE_ALLOCATOR(aligned_alloc);
  RESOLVE_ALLOCATOR(memalign);
  RESOLVE_ALLOCATOR(valloc);
  RESOLVE(mmap, 1);
#ifdef __GLIBC__
  RESOLVE(mmap64, 0);
#endif
  RESOLVE(mremap, 0);
  RESOLVE(brk, 0);
  RESOLVE(sbrk, 0);
  /* malloc last: the hooks of optional functions take it as the sign that all is done. */
  RESOLVE_ALLOCATOR(malloc);
  __atomic_store_n(&resolving, 0, __ATOMIC_SEQ_CST);
  errno = saved_errno;
}
