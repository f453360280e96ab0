/*
 * The environment variables shared by libksm_preload.so and ksm-exec. Header-only
 * (static functions) so both binaries parse them identically without a shared object.
 * Everything here is allocation-free and writes with write(2) only: the library runs
 * it from a constructor, before the program's own start-up code.
 */
#ifndef KSM_ENV_H
#define KSM_ENV_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ksm_abi.h"
#include "ksm_facts.h"

enum ksm_mode { KSM_MODE_AUTO, KSM_MODE_PRCTL, KSM_MODE_MADVISE, KSM_MODE_OFF };

static const char *const ksm_mode_names[] = {KSM_FACT_MODES};

/* Default smallest mapping worth marking: no more than one page (4, 16 or 64 KiB),
 * i.e. every mapping. */
#define KSM_DEFAULT_MIN_BYTES 4096u
/* Larger values are surely typos (1 TiB). */
#define KSM_MAX_MIN_BYTES ((uint64_t)1 << 40)

/* Whole-line writes to stderr; short writes are not retried (diagnostics only). */
static inline void ksm_write_stderr(const char *text, size_t len) {
  int saved_errno = errno;
  (void)!syscall(SYS_write, 2, text, len);
  errno = saved_errno;
}

/* Appends `text` to buf[*len..cap), truncating; printable ASCII only so a hostile
 * environment value cannot inject terminal escapes into the warning. */
static inline void ksm_append_printable(char *buf, size_t *len, size_t cap, const char *text, size_t max) {
  for (size_t i = 0; text[i] != '\0' && *len < cap; i++) {
    if (i == max) {
      for (const char *dots = "..."; *dots && *len < cap; dots++) buf[(*len)++] = *dots;
      return;
    }
    unsigned char c = (unsigned char)text[i];
    buf[(*len)++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
  }
}

static inline void ksm_append(char *buf, size_t *len, size_t cap, const char *text) {
  while (*text && *len < cap) buf[(*len)++] = *text++;
}

static inline void ksm_append_uint(char *buf, size_t *len, size_t cap, uint64_t value) {
  char digits[24];
  size_t n = 0;
  do {
    digits[n++] = (char)('0' + value % 10);
    value /= 10;
  } while (value != 0);
  while (n > 0 && *len < cap) buf[(*len)++] = digits[--n];
}

/* One line: "<who>: NAME='value' is not <expected>; using <fallback>". */
static inline void ksm_env_warn(const char *who, const char *name, const char *value, const char *expected,
                                const char *fallback) {
  char line[256];
  size_t len = 0;
  const size_t cap = sizeof line - 1;
  ksm_append(line, &len, cap, who);
  ksm_append(line, &len, cap, ": ");
  ksm_append(line, &len, cap, name);
  ksm_append(line, &len, cap, "='");
  ksm_append_printable(line, &len, cap, value, 40);
  ksm_append(line, &len, cap, "' is not ");
  ksm_append(line, &len, cap, expected);
  ksm_append(line, &len, cap, "; using ");
  ksm_append(line, &len, cap, fallback);
  line[len++] = '\n';
  ksm_write_stderr(line, len);
}

/* An unset or empty variable counts as unset, as shells treat `NAME= cmd`. */
static inline const char *ksm_env_value(const char *name) {
  const char *value = getenv(name);
  return value && *value ? value : NULL;
}

static inline int ksm_parse_mode(const char *text, enum ksm_mode *mode) {
  for (size_t i = 0; i < sizeof ksm_mode_names / sizeof ksm_mode_names[0]; i++) {
    if (strcmp(text, ksm_mode_names[i]) == 0) {
      *mode = (enum ksm_mode)i;
      return 1;
    }
  }
  return 0;
}

static inline enum ksm_mode ksm_env_mode(const char *who) {
  const char *value = ksm_env_value(KSM_FACT_ENV_MODE);
  enum ksm_mode mode = KSM_MODE_AUTO;
  if (value && !ksm_parse_mode(value, &mode)) {
    ksm_env_warn(who, KSM_FACT_ENV_MODE, value, "auto, prctl, madvise or off", "auto");
  }
  return mode;
}

static inline int ksm_parse_bool(const char *text, int *out) {
  static const char *const yes[] = {"1", "yes", "true", "on"};
  static const char *const no[] = {"0", "no", "false", "off"};
  for (size_t i = 0; i < 4; i++) {
    if (strcmp(text, yes[i]) == 0) return *out = 1, 1;
    if (strcmp(text, no[i]) == 0) return *out = 0, 1;
  }
  return 0;
}

static inline int ksm_env_bool(const char *who, const char *name) {
  const char *value = ksm_env_value(name);
  int result = 0;
  if (value && !ksm_parse_bool(value, &result)) ksm_env_warn(who, name, value, "1 or 0", "0");
  return result;
}

/* Plain decimal byte counts only: "-5", "12abc" and "1e6" are refused. */
static inline int ksm_parse_bytes(const char *text, uint64_t *out) {
  uint64_t value = 0;
  if (*text == '\0') return 0;
  for (; *text; text++) {
    if (*text < '0' || *text > '9') return 0;
    value = value * 10 + (uint64_t)(*text - '0');
    if (value > KSM_MAX_MIN_BYTES) return 0;
  }
  *out = value;
  return 1;
}

/* KSM_PRELOAD_MIN_BYTES, else ksm_preload's KSMP_MERGE_THRESHOLD, else the default. */
static inline uint64_t ksm_env_min_bytes(const char *who) {
  static const char *const names[] = {KSM_FACT_ENV_MIN_BYTES, KSM_FACT_ENV_LEGACY_THRESHOLD};
  for (size_t i = 0; i < 2; i++) {
    const char *value = ksm_env_value(names[i]);
    uint64_t bytes;
    if (!value) continue;
    if (ksm_parse_bytes(value, &bytes)) return bytes;
    ksm_env_warn(who, names[i], value, "a byte count from 0 to 1099511627776", "4096");
    return KSM_DEFAULT_MIN_BYTES;
  }
  return KSM_DEFAULT_MIN_BYTES;
}

/*
 * Turns on PR_SET_MEMORY_MERGE for this process (kept across fork and, on 6.7+, exec).
 * Returns 0 when it is on, already or now, else the errno of the refusal.
 * `pretend_refused` is KSM_PRELOAD_TEST_NO_PRCTL: tests play a kernel without it.
 */
static inline int ksm_enable_merge_any(int pretend_refused, int *was_inherited) {
  int saved_errno = errno;
  int result = 0;
  *was_inherited = 0;
  if (pretend_refused) return EINVAL;
  if (syscall(SYS_prctl, PR_GET_MEMORY_MERGE, 0, 0, 0, 0) == 1) {
    *was_inherited = 1;
  } else if (syscall(SYS_prctl, PR_SET_MEMORY_MERGE, 1, 0, 0, 0) != 0) {
    result = errno;
  }
  errno = saved_errno;
  return result;
}

#endif
