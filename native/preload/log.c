#include "log.h"

#include <unistd.h>

#include "marker.h"

#define WHO "ksm-preload"

struct line {
  char text[320];
  size_t len;
};

static void add(struct line *line, const char *text) { ksm_append(line->text, &line->len, sizeof line->text - 1, text); }
static void add_uint(struct line *line, uint64_t value) { ksm_append_uint(line->text, &line->len, sizeof line->text - 1, value); }

static void begin(struct line *line) {
  line->len = 0;
  add(line, WHO ": pid ");
  add_uint(line, (uint64_t)getpid());
  add(line, ": ");
}

static void finish(struct line *line) {
  line->text[line->len++] = '\n';
  ksm_write_stderr(line->text, line->len);
}

/* "12.3 MiB", from bytes, in integer arithmetic. */
static void add_mib(struct line *line, uint64_t bytes) {
  uint64_t tenths = bytes * 10 / (1024 * 1024);
  add_uint(line, tenths / 10);
  add(line, ".");
  add_uint(line, tenths % 10);
  add(line, " MiB");
}

static void add_errno_name(struct line *line, int error) {
  switch (error) {
    case EINVAL: add(line, "EINVAL"); break;
    case EPERM: add(line, "EPERM"); break;
    case EACCES: add(line, "EACCES"); break;
    case ENOSYS: add(line, "ENOSYS"); break;
    case ENOMEM: add(line, "ENOMEM"); break;
    default: add(line, "errno "); add_uint(line, (uint64_t)error); break;
  }
}

static void add_marker_stats(struct line *line) {
  struct ksm_marker_stats stats;
  ksm_marker_read_stats(&stats);
  add_uint(line, stats.mappings_marked);
  add(line, " mappings marked (");
  add_mib(line, stats.bytes_marked);
  add(line, ") in ");
  add_uint(line, stats.walks);
  add(line, " walks and ");
  add_uint(line, stats.targeted);
  add(line, " single look-ups, ");
  add_uint(line, stats.refused);
  add(line, " refused");
}

void ksm_log_start(enum ksm_mode mode, const char *why, int error) {
  struct line line;
  begin(&line);
  add(&line, "mode ");
  add(&line, ksm_mode_names[mode]);
  add(&line, " (");
  add(&line, why);
  if (error) {
    add(&line, ": ");
    add_errno_name(&line, error);
  }
  add(&line, ")");
  if (mode == KSM_MODE_MADVISE) {
    add(&line, "; first walk: ");
    add_marker_stats(&line);
  }
  finish(&line);
}

void ksm_log_summary(enum ksm_mode mode) {
  struct line line;
  begin(&line);
  add(&line, "exit summary, mode ");
  add(&line, ksm_mode_names[mode]);
  if (mode == KSM_MODE_MADVISE) {
    add(&line, ": ");
    add_marker_stats(&line);
  }
  finish(&line);
}
