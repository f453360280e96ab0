/*
 * libksm_preload.so start-up: reads the environment, picks the mode, and in madvise
 * mode starts the marker. KSM_PRELOAD_MODE=auto|prctl|madvise|off:
 *   prctl    PR_SET_MEMORY_MERGE once (or inherited from ksm-exec); the hooks then idle.
 *   madvise  whole private anonymous mappings, found by walking /proc/self/maps.
 *   auto     prctl where the kernel has it, else madvise.
 */
#define _GNU_SOURCE
#include <pthread.h>

#include "exclude.h"
#include "hooks.h"
#include "ksm_env.h"
#include "log.h"
#include "marker.h"
#include "symbols.h"

#define WHO "ksm-preload"

static enum ksm_mode active_mode = KSM_MODE_OFF;
static int verbose;
static int without_procmap_query;

static void start_madvise(const char *why, int prctl_error, uint64_t min_bytes) {
  int refusal = ksm_marker_start(min_bytes, without_procmap_query);
  if (refusal) {
    active_mode = KSM_MODE_OFF;
    if (verbose) ksm_log_start(active_mode, "MADV_MERGEABLE refused, running unmarked", refusal);
    return;
  }
  active_mode = KSM_MODE_MADVISE;
  if (verbose) ksm_log_start(active_mode, why, prctl_error);
}

/* Every lock of the library, reset in the child: the thread that held one is gone. */
static void after_fork_child(void) {
  ksm_exclude_after_fork_child();
  if (active_mode == KSM_MODE_MADVISE) ksm_marker_after_fork_child();
}

/* Every real function is looked up here, once: no hook calls dlsym later, when it might
 * run inside a signal handler or a fork child. */
__attribute__((constructor)) static void ksm_preload_start(void) {
  int saved_errno = errno;
  ksm_resolve_real_functions();
  ksm_resolve_idle_functions();
  pthread_atfork(NULL, NULL, after_fork_child);
  enum ksm_mode requested = ksm_env_mode(WHO);
  uint64_t min_bytes = ksm_env_min_bytes(WHO);
  int pretend_no_prctl = ksm_env_bool(WHO, "KSM_PRELOAD_TEST_NO_PRCTL");
  verbose = ksm_env_bool(WHO, KSM_FACT_ENV_VERBOSE);
  without_procmap_query = ksm_env_bool(WHO, "KSM_PRELOAD_TEST_NO_PROCMAP_QUERY");

  if (requested == KSM_MODE_OFF) {
    if (verbose) ksm_log_start(KSM_MODE_OFF, "KSM_PRELOAD_MODE=off", 0);
  } else if (requested == KSM_MODE_MADVISE) {
    start_madvise("KSM_PRELOAD_MODE=madvise", 0, min_bytes);
  } else {
    int inherited;
    int error = ksm_enable_merge_any(pretend_no_prctl, &inherited);
    if (error == 0) {
      active_mode = KSM_MODE_PRCTL;
      if (verbose) ksm_log_start(active_mode, inherited ? "PR_SET_MEMORY_MERGE inherited" : "PR_SET_MEMORY_MERGE accepted", 0);
    } else if (requested == KSM_MODE_AUTO) {
      start_madvise("auto: PR_SET_MEMORY_MERGE refused", error, min_bytes);
    } else if (verbose) {
      ksm_log_start(KSM_MODE_OFF, "PR_SET_MEMORY_MERGE refused, running unmarked", error);
    }
  }
  ksm_hooks_settle(active_mode == KSM_MODE_MADVISE);
  errno = saved_errno;
}

__attribute__((destructor)) static void ksm_preload_stop(void) {
  if (verbose) ksm_log_summary(active_mode);
}
