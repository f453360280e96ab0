/*
 * The interposed functions. Each calls the real one first and, in madvise mode only,
 * hands the result to the marker as a cheap hint; in every other mode the extra cost is
 * one well-predicted branch. While dlsym is still looking up the real functions, the
 * allocation functions are served from the static bootstrap buffer.
 */
#define _GNU_SOURCE
/* Builds that set _FILE_OFFSET_BITS=64 (node-gyp) would turn our mmap into a second mmap64. */
#undef _FILE_OFFSET_BITS
/* First: on a target it does not support, this stops the build before anything else. */
#include "ksm_platform.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "hooks.h"
#include "marker.h"
#include "symbols.h"

#define KSM_EXPORT __attribute__((visibility("default")))
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
#define MIN_ALIGNMENT 16
/* Makes ksm_real.field usable; on the thread running dlsym, returns `fallback` instead. */
#define ENSURE_REAL(field, fallback)                          \
  do {                                                        \
    if (UNLIKELY(!ksm_real.field)) {                          \
      if (ksm_resolving()) return fallback;                   \
      ksm_resolve_real_functions();                           \
    }                                                         \
  } while (0)

/* Whether an allocation of `size` goes unnoted: whether it fits in this thread's budget
 * (see marker.h), which it then takes from; ksm_marker_note resets the budget. Written
 * so that the test is one subtraction from the thread-local and a sign test (a size of
 * 2^63 or more, which no allocator serves, adds to the budget instead). */
static inline int skip_noting(size_t size) {
  ksm_sampling.budget = (intptr_t)((uintptr_t)ksm_sampling.budget - size);
  return __builtin_expect(ksm_sampling.budget >= 0, 1);
}

static inline void *noted(void *p, size_t size) {
  if (UNLIKELY(ksm_marker_active) && !skip_noting(size)) ksm_marker_note(p);
  return p;
}

static int is_private_anonymous(int flags) {
  return (flags & MAP_TYPE) == MAP_PRIVATE && (flags & MAP_ANONYMOUS) && !(flags & MAP_HUGETLB);
}

static inline void *noted_mapping(void *p, size_t len, int flags) {
  if (UNLIKELY(ksm_marker_active) && p != MAP_FAILED && is_private_anonymous(flags)) ksm_marker_note_mapping(p, len);
  return p;
}

static void *malloc_hooked(size_t size) {
  ENSURE_REAL(allocator.malloc, ksm_bootstrap_alloc(size, MIN_ALIGNMENT));
  return noted(ksm_real.allocator.malloc(size), size);
}

static void *bootstrap_calloc(size_t count, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(count, size, &total)) {
    errno = ENOMEM;
    return NULL;
  }
  /* The bootstrap buffer is static and never reused, so it is still zero. */
  return ksm_bootstrap_alloc(total, MIN_ALIGNMENT);
}

static void *calloc_hooked(size_t count, size_t size) {
  ENSURE_REAL(allocator.calloc, bootstrap_calloc(count, size));
  return noted(ksm_real.allocator.calloc(count, size), count * size);
}

static void free_hooked(void *p) {
  if (ksm_bootstrap_owns(p)) return;
  ENSURE_REAL(allocator.free, );
  ksm_real.allocator.free(p);
}

static void *move_out_of_bootstrap(void *p, size_t size) {
  void *moved = malloc_hooked(size);
  if (moved) {
    size_t old_size = ksm_bootstrap_size(p);
    memcpy(moved, p, old_size < size ? old_size : size);
  }
  return moved;
}

static void *realloc_hooked(void *p, size_t size) {
  if (ksm_bootstrap_owns(p)) return move_out_of_bootstrap(p, size);
  ENSURE_REAL(allocator.realloc, p ? NULL : ksm_bootstrap_alloc(size, MIN_ALIGNMENT));
  return noted(ksm_real.allocator.realloc(p, size), size);
}

static int bootstrap_posix_memalign(void **out, size_t alignment, size_t size) {
  void *p = ksm_bootstrap_alloc(size, alignment);
  if (!p) return ENOMEM;
  *out = p;
  return 0;
}

static int posix_memalign_hooked(void **out, size_t alignment, size_t size) {
  ENSURE_REAL(allocator.posix_memalign, bootstrap_posix_memalign(out, alignment, size));
  int result = ksm_real.allocator.posix_memalign(out, alignment, size);
  if (result == 0) noted(*out, size);
  return result;
}

static void *aligned_alloc_hooked(size_t alignment, size_t size) {
  ENSURE_REAL(allocator.aligned_alloc, ksm_bootstrap_alloc(size, alignment));
  return noted(ksm_real.allocator.aligned_alloc(alignment, size), size);
}

static void *memalign_hooked(size_t alignment, size_t size) {
  ENSURE_REAL(allocator.memalign, ksm_bootstrap_alloc(size, alignment));
  return noted(ksm_real.allocator.memalign(alignment, size), size);
}

static void *valloc_hooked(size_t size) {
  /* The kernel's page size from the auxiliary vector: no call that could allocate. */
  ENSURE_REAL(allocator.valloc, ksm_bootstrap_alloc(size, getauxval(AT_PAGESZ)));
  return noted(ksm_real.allocator.valloc(size), size);
}

/*
 * Each exported allocation function is a single indirect jump through `dispatch`. It
 * starts on the full hooks above (resolve the real function, then note the result);
 * once start-up has chosen the mode, outside madvise mode it points straight at the
 * real functions, so the cost left is that one jump.
 */
static struct ksm_allocator dispatch = {
    malloc_hooked, calloc_hooked, realloc_hooked, free_hooked,
    posix_memalign_hooked, aligned_alloc_hooked, memalign_hooked, valloc_hooked,
};

#define SET(field, value) __atomic_store_n(&dispatch.field, (value), __ATOMIC_RELAXED)

/* madvise mode's hot paths, once the real functions are known: most calls are a plain
 * tail call; the rest go to a function of their own that notes the result. */
__attribute__((noinline)) static void *malloc_then_note(size_t size) { return ksm_marker_note(ksm_real.allocator.malloc(size)); }
__attribute__((noinline)) static void *calloc_then_note(size_t count, size_t size) {
  return ksm_marker_note(ksm_real.allocator.calloc(count, size));
}
__attribute__((noinline)) static void *realloc_then_note(void *p, size_t size) {
  return ksm_marker_note(ksm_real.allocator.realloc(p, size));
}

static void *malloc_noting(size_t size) {
  if (skip_noting(size)) return ksm_real.allocator.malloc(size);
  return malloc_then_note(size);
}

static void *calloc_noting(size_t count, size_t size) {
  if (skip_noting(count * size)) return ksm_real.allocator.calloc(count, size);
  return calloc_then_note(count, size);
}

static void *realloc_noting(void *p, size_t size) {
  if (skip_noting(size)) return ksm_real.allocator.realloc(p, size);
  return realloc_then_note(p, size);
}

void ksm_hooks_settle(int noting) {
  /* Blocks from the bootstrap buffer may still be freed or reallocated. */
  int bootstrap_in_use = ksm_bootstrap_used();
  if (!bootstrap_in_use) SET(free, ksm_real.allocator.free);
  SET(malloc, noting ? malloc_noting : ksm_real.allocator.malloc);
  SET(calloc, noting ? calloc_noting : ksm_real.allocator.calloc);
  if (!bootstrap_in_use) SET(realloc, noting ? realloc_noting : ksm_real.allocator.realloc);
  if (noting) return;
  SET(posix_memalign, ksm_real.allocator.posix_memalign);
  SET(aligned_alloc, ksm_real.allocator.aligned_alloc);
  SET(memalign, ksm_real.allocator.memalign);
  SET(valloc, ksm_real.allocator.valloc);
}

KSM_EXPORT void *malloc(size_t size) { return dispatch.malloc(size); }
KSM_EXPORT void *calloc(size_t count, size_t size) { return dispatch.calloc(count, size); }
KSM_EXPORT void *realloc(void *p, size_t size) { return dispatch.realloc(p, size); }
KSM_EXPORT void free(void *p) { dispatch.free(p); }
KSM_EXPORT int posix_memalign(void **out, size_t alignment, size_t size) { return dispatch.posix_memalign(out, alignment, size); }
KSM_EXPORT void *aligned_alloc(size_t alignment, size_t size) { return dispatch.aligned_alloc(alignment, size); }
KSM_EXPORT void *memalign(size_t alignment, size_t size) { return dispatch.memalign(alignment, size); }
KSM_EXPORT void *valloc(size_t size) { return dispatch.valloc(size); }

/* dlsym does not map memory itself; should it ever, the raw syscall serves it. */
static void *raw_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t offset) {
  return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, offset);
}

KSM_EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t offset) {
  ENSURE_REAL(mmap, raw_mmap(addr, len, prot, flags, fd, offset));
  return noted_mapping(ksm_real.mmap(addr, len, prot, flags, fd, offset), len, flags);
}

#ifdef __GLIBC__
KSM_EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off64_t offset) {
  ENSURE_REAL(mmap, raw_mmap(addr, len, prot, flags, fd, offset));
  void *(*real)(void *, size_t, int, int, int, off_t) = ksm_real.mmap64 ? ksm_real.mmap64 : ksm_real.mmap;
  return noted_mapping(real(addr, len, prot, flags, fd, offset), len, flags);
}
#endif

KSM_EXPORT void *mremap(void *old_address, size_t old_size, size_t new_size, int flags, ...) {
  void *new_address = NULL;
  if (flags & MREMAP_FIXED) {
    va_list args;
    va_start(args, flags);
    new_address = va_arg(args, void *);
    va_end(args);
  }
  ENSURE_REAL(allocator.malloc, (void *)syscall(SYS_mremap, old_address, old_size, new_size, flags, new_address));
  void *p = ksm_real.mremap ? ksm_real.mremap(old_address, old_size, new_size, flags, new_address)
                            : (void *)syscall(SYS_mremap, old_address, old_size, new_size, flags, new_address);
  return p == MAP_FAILED ? p : noted(p, new_size);
}

KSM_EXPORT int brk(void *end) {
  ENSURE_REAL(allocator.malloc, (errno = ENOMEM, -1));
  if (!ksm_real.brk) return errno = ENOMEM, -1;
  int result = ksm_real.brk(end);
  /* The last byte below the new break is in the new memory, if there is any. */
  if (result == 0) noted((char *)end - 1, KSM_SAMPLE_BYTES);
  return result;
}

KSM_EXPORT void *sbrk(intptr_t increment) {
  ENSURE_REAL(allocator.malloc, (errno = ENOMEM, (void *)-1));
  if (!ksm_real.sbrk) return errno = ENOMEM, (void *)-1;
  void *old_end = ksm_real.sbrk(increment);
  return old_end != (void *)-1 && increment > 0 ? noted(old_end, (size_t)increment) : old_end;
}
