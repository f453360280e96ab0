/* The exported malloc-family hooks. */
#ifndef KSM_PRELOAD_HOOKS_H
#define KSM_PRELOAD_HOOKS_H

/* Called once the mode is known: unless `noting` (madvise mode), the allocation
 * functions then jump straight to the real ones. */
void ksm_hooks_settle(int noting);

#endif
