/*
 * Facts the C side and the TypeScript side must agree on. This header is their one
 * source: lib/core/facts.ts is generated from it (`npm run facts`), and
 * test/core/facts.test.ts fails when the two drift or when the binaries disagree.
 * Each fact is one `#define KSM_FACT_NAME value` line: a string, a number, or a
 * comma-separated list of strings.
 */
#ifndef KSM_FACTS_H
#define KSM_FACTS_H

/* Values of KSM_PRELOAD_MODE and of `ksm-exec --mode`, in enum ksm_mode order. */
#define KSM_FACT_MODES "auto", "prctl", "madvise", "off"

/* A path LD_PRELOAD can carry: absolute, and only letters, digits and these
 * characters (the loader splits the variable at spaces and colons, and expands $). */
#define KSM_FACT_PRELOAD_PATH_PUNCTUATION "._+/-"

/* File names of the built preload library and launcher. */
#define KSM_FACT_LIBRARY_NAME "libksm_preload.so"
#define KSM_FACT_LAUNCHER_NAME "ksm-exec"

/* The environment variables the library and the launcher read. */
#define KSM_FACT_ENV_MODE "KSM_PRELOAD_MODE"
#define KSM_FACT_ENV_MIN_BYTES "KSM_PRELOAD_MIN_BYTES"
#define KSM_FACT_ENV_LEGACY_THRESHOLD "KSMP_MERGE_THRESHOLD"
#define KSM_FACT_ENV_VERBOSE "KSM_PRELOAD_VERBOSE"

#endif
