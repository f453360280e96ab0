/* The exported hooks: the malloc family (hooks.c) and the idle calls (idle_hooks.c). */
#ifndef KSM_PRELOAD_HOOKS_H
#define KSM_PRELOAD_HOOKS_H

/* Called once the mode is known: unless `noting` (madvise mode), the allocation
 * functions then jump straight to the real ones. */
void ksm_hooks_settle(int noting);

/* Looks up the real functions behind the idle hooks (idle_hooks.c), from the
 * constructor, so that no hook calls dlsym later, inside a signal handler. */
void ksm_resolve_idle_functions(void);

#endif
