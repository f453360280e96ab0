/*
 * Reading /proc/<pid>/maps without malloc, stdio or locks, so that the preload
 * library can call it from inside malloc hooks and the addon can share it.
 */
#ifndef KSM_MAPS_SCAN_H
#define KSM_MAPS_SCAN_H

#include <stddef.h>
#include <stdint.h>

#include "ksm_platform.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One line of a maps file. `path` points into the caller's buffer and is only
 * valid during the callback; it is not NUL-terminated. */
struct ksm_vma {
  uintptr_t start;
  uintptr_t end;
  unsigned prot;          /* PROT_READ | PROT_WRITE | PROT_EXEC */
  int is_private;         /* 'p' rather than 's' */
  unsigned long inode;
  const char *path;
  size_t path_len;
};

/* Return nonzero to stop the walk. */
typedef int (*ksm_vma_fn)(const struct ksm_vma *vma, void *ctx);

/* Walks `maps_path` (e.g. "/proc/self/maps") with raw syscalls, using `buf` as
 * the only memory. Returns 0, or a negative errno. Leaves errno as it found it. */
int ksm_maps_walk(const char *maps_path, char *buf, size_t buf_size, ksm_vma_fn fn, void *ctx);

/* Whether the mapping is private anonymous memory that KSM may merge and that
 * we are willing to mark: no file, not the main stack, not a kernel special
 * mapping ([vdso], [vvar], [vsyscall], ...). The heap and [anon:...] count. */
int ksm_vma_is_markable(const struct ksm_vma *vma);

/* Whether the kernel names the mapping [heap]: part of the brk heap. */
int ksm_vma_is_heap(const struct ksm_vma *vma);

#ifdef __cplusplus
}
#endif

#endif
