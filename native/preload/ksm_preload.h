/*
 * The C API libksm_preload.so exports besides its hooks. Programs (the Node addon) find
 * these with dlsym(RTLD_DEFAULT, ...) when the library happens to be preloaded.
 */
#ifndef KSM_PRELOAD_H
#define KSM_PRELOAD_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Promises that no later walk marks a mapping overlapping [addr, addr + len) mergeable,
 * and waits for a walk under way to finish. Call it before madvise(MADV_UNMERGEABLE) on
 * secret memory, so the library cannot undo that advice. Up to 256 ranges are kept
 * apart; beyond that the ranges are widened (more memory stays unmarked, never less).
 */
void ksm_preload_exclude_range(void *addr, size_t len);

/* Forgets the excluded ranges lying inside [addr, addr + len), e.g. after munmap. */
void ksm_preload_include_range(void *addr, size_t len);

#ifdef __cplusplus
}
#endif

#endif
