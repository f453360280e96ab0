// Generated from native/common/ksm_facts.h by scripts/gen-facts.mjs (`npm run facts`): do not edit.

export const MODES = ['auto', 'prctl', 'madvise', 'off'] as const;
export const PRELOAD_PATH_PUNCTUATION = '._+/-';
export const LIBRARY_NAME = 'libksm_preload.so';
export const LAUNCHER_NAME = 'ksm-exec';
export const ENV_MODE = 'KSM_PRELOAD_MODE';
export const ENV_MIN_BYTES = 'KSM_PRELOAD_MIN_BYTES';
export const ENV_LEGACY_THRESHOLD = 'KSMP_MERGE_THRESHOLD';
export const ENV_VERBOSE = 'KSM_PRELOAD_VERBOSE';
