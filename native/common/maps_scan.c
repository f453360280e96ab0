#define _GNU_SOURCE
#include "maps_scan.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/*
 * A hex digit's value plus one, 0 for anything else: one load per digit. Walks parse
 * every line of /proc/PID/maps, up to max_map_count (65530) of them, so the loop counts.
 */
static const unsigned char hex_plus_one[256] = {
    ['0'] = 1,  ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,  ['6'] = 7,  ['7'] = 8,
    ['8'] = 9,  ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
    ['A'] = 11, ['B'] = 12, ['C'] = 13, ['D'] = 14, ['E'] = 15, ['F'] = 16,
};

static const char *parse_hex(const char *p, const char *end, uintptr_t *out) {
  uintptr_t v = 0;
  const char *start = p;
  unsigned d;
  while (p < end && (d = hex_plus_one[(unsigned char)*p]) != 0) {
    v = (v << 4) | (uintptr_t)(d - 1);
    p++;
  }
  *out = v;
  return p == start ? NULL : p;
}

static const char *skip_spaces(const char *p, const char *end) {
  /* The kernel pads the path column with up to ~25 spaces: eight at a time first. */
  static const uint64_t eight_spaces = 0x2020202020202020ULL;
  for (uint64_t word; end - p >= 8; p += 8) {
    memcpy(&word, p, sizeof word);
    if (word != eight_spaces) break;
  }
  while (p < end && *p == ' ') p++;
  return p;
}

static const char *skip_field(const char *p, const char *end) {
  while (p < end && *p != ' ') p++;
  return skip_spaces(p, end);
}

/*
 * Skips a field the kernel prints with a fixed width (perms "rwxp", offset "%08lx",
 * dev "%02x:%02x") without looking at each character; a wider one, as a large offset
 * or device number gives, is skipped character by character.
 */
static const char *skip_field_of_width(const char *p, const char *end, size_t width) {
  if ((size_t)(end - p) > width && p[width] == ' ') return skip_spaces(p + width + 1, end);
  return skip_field(p, end);
}

/* Parses "start-end perms offset dev inode   path". Returns 0 when the line is malformed. */
static int parse_line(const char *p, const char *end, struct ksm_vma *vma) {
  uintptr_t inode;
  p = parse_hex(p, end, &vma->start);
  if (!p || p >= end || *p != '-') return 0;
  p = parse_hex(p + 1, end, &vma->end);
  if (!p || p + 5 > end || *p != ' ') return 0;
  p++;
  vma->prot = (p[0] == 'r' ? PROT_READ : 0) | (p[1] == 'w' ? PROT_WRITE : 0) | (p[2] == 'x' ? PROT_EXEC : 0);
  vma->is_private = p[3] == 'p';
  p = skip_field_of_width(p, end, 4);  /* perms */
  p = skip_field_of_width(p, end, 8);  /* offset */
  p = skip_field_of_width(p, end, 5);  /* dev */
  inode = 0;
  while (p < end && *p >= '0' && *p <= '9') inode = inode * 10 + (uintptr_t)(*p++ - '0');
  vma->inode = (unsigned long)inode;
  p = skip_spaces(p, end);
  vma->path = p;
  vma->path_len = (size_t)(end - p);
  return 1;
}

int ksm_maps_walk(const char *maps_path, char *buf, size_t buf_size, ksm_vma_fn fn, void *ctx) {
  int saved_errno = errno;
  int result = 0;
  size_t have = 0;
  int skipping_long_line = 0;
  long fd = syscall(SYS_openat, AT_FDCWD, maps_path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    result = -errno;
    errno = saved_errno;
    return result;
  }
  for (;;) {
    long n = syscall(SYS_read, (int)fd, buf + have, buf_size - have);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      result = -errno;
      break;
    }
    have += (size_t)n;
    char *line = buf;
    char *limit = buf + have;
    char *nl;
    int stop = 0;
    if (skipping_long_line) {
      /* The rest of a line that did not fit: its tail is no mapping. */
      nl = memchr(line, '\n', have);
      if (nl == NULL) {
        have = 0;
        if (n == 0) break;
        continue;
      }
      skipping_long_line = 0;
      line = nl + 1;
    }
    while ((nl = memchr(line, '\n', (size_t)(limit - line))) != NULL) {
      struct ksm_vma vma;
      if (parse_line(line, nl, &vma) && fn(&vma, ctx)) {
        stop = 1;
        break;
      }
      line = nl + 1;
    }
    if (stop) break;
    if (n == 0) {
      struct ksm_vma vma;
      if (line < limit && parse_line(line, limit, &vma)) fn(&vma, ctx);
      break;
    }
    if (line == buf && have == buf_size) {
      /* A line longer than the buffer: drop all of it rather than fail the walk. */
      have = 0;
      skipping_long_line = 1;
      continue;
    }
    have = (size_t)(limit - line);
    memmove(buf, line, have);
  }
  syscall(SYS_close, (int)fd);
  errno = saved_errno;
  return result;
}

static int path_is(const struct ksm_vma *vma, const char *name) {
  size_t len = strlen(name);
  return vma->path_len == len && memcmp(vma->path, name, len) == 0;
}

static int path_starts_with(const struct ksm_vma *vma, const char *prefix) {
  size_t len = strlen(prefix);
  return vma->path_len >= len && memcmp(vma->path, prefix, len) == 0;
}

int ksm_vma_is_heap(const struct ksm_vma *vma) { return path_is(vma, "[heap]"); }

int ksm_vma_is_markable(const struct ksm_vma *vma) {
  if (!vma->is_private || vma->inode != 0 || vma->end <= vma->start) return 0;
  if (vma->path_len == 0 || path_is(vma, "[heap]")) return 1;
  /* Named anonymous memory (PR_SET_VMA_ANON_NAME), but not shared memory. */
  if (path_starts_with(vma, "[anon:")) return 1;
  return 0;
}
