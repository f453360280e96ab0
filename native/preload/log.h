/* KSM_PRELOAD_VERBOSE=1 reporting, written with write(2) only (no stdio in a preload). */
#ifndef KSM_PRELOAD_LOG_H
#define KSM_PRELOAD_LOG_H

#include "ksm_env.h"

/* "ksm-preload: pid N: mode M (why)" at start-up. */
void ksm_log_start(enum ksm_mode mode, const char *why, int error);

/* The exit summary: walks, mappings and bytes marked. */
void ksm_log_summary(enum ksm_mode mode);

#endif
