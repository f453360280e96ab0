#define _GNU_SOURCE
#include "marker.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <time.h>
#include <unistd.h>

#include "exclude.h"
#include "ksm_abi.h"
#include "maps_scan.h"
#include "ranges.h"
#include "symbols.h"

#define MS 1000000ull
/* A walk may follow the last after max(WALK_MIN_GAP, WALK_COST_FACTOR × its cost):
 * walking never takes more than about 2 % of the time. */
#define WALK_MIN_GAP (2 * MS)
#define WALK_COST_FACTOR 50
/* Looks again at mappings marked before, for memory that reappeared at an address known
 * from before: nothing in /proc/self/maps tells such a mapping from the marked one it
 * replaced. Rate-limited like every walk, and each re-advises at most REVISIT_MAX marked
 * mappings, taking up where the last one stopped: each madvise takes the mmap lock for
 * writing, and a process may have 65530 mappings. New mappings are always advised. */
#define FULL_WALK_GAP (1000 * MS)
#define REVISIT_MAX 128
/* Each thread looks at the clock about every CLOCK_EVERY while it allocates: the noted
 * calls between two looks double while looks come sooner, halve while they come later. */
#define CLOCK_EVERY (100 * MS)
#define CLOCK_COUNTDOWN_MAX 1024

int ksm_marker_active;

static uint64_t min_bytes;
/* Mappings larger than physical memory are address-space reservations (sanitizer
 * shadow, allocator cages): marking them only makes ksmd walk empty page tables. */
static uint64_t max_bytes = UINT64_MAX;
static int lock;
static int walk_pending;
static int query_supported = 1;
static uint64_t last_walk;
static uint64_t last_full_walk;
static uint64_t walk_gap = WALK_MIN_GAP;
/* Where the next full walk's revisits begin. */
static uintptr_t revisit_from;
static struct ksm_marker_stats stats;
static char maps_buffer[32 * 1024];
/* Mappings waiting to be marked (see remember_pending). */
#define PENDING_MAX 32
/* ksmd needs seconds to scan anyway; a quarter second lets a growth burst finish. */
#define PENDING_DELAY (250 * MS)
static uintptr_t pending[PENDING_MAX];
static unsigned pending_count;
static uint64_t pending_since;
/* The break the last pause saw (see heap_break). */
static uintptr_t seen_break;
__thread struct ksm_sampling ksm_sampling __attribute__((tls_model("initial-exec")));

static uint64_t now_ns(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t load(const uint64_t *value) { return __atomic_load_n(value, __ATOMIC_RELAXED); }
static void count(uint64_t *counter, uint64_t amount) { __atomic_fetch_add(counter, amount, __ATOMIC_RELAXED); }

static int try_lock(void) { return !__atomic_exchange_n(&lock, 1, __ATOMIC_ACQUIRE); }
static void unlock(void) { __atomic_store_n(&lock, 0, __ATOMIC_RELEASE); }

static int eligible(const struct ksm_vma *vma) {
  uint64_t size = vma->end - vma->start;
  return ksm_vma_is_markable(vma) && size >= min_bytes && size <= max_bytes &&
         !ksm_excluded_overlaps(vma->start, vma->end);
}

/* Returns whether [start, end) is mergeable now. errno is the caller's to restore. */
static int advise(uintptr_t start, uintptr_t end, int count_as_new) {
  if (syscall(SYS_madvise, start, end - start, MADV_MERGEABLE) == 0) {
    if (count_as_new) {
      count(&stats.mappings_marked, 1);
      count(&stats.bytes_marked, end - start);
    }
    return 1;
  }
  /* EINVAL: a kernel without KSM. Anything else (EAGAIN, ENOMEM: the mapping changed
   * under us) is retried by a later walk. */
  if (errno == EINVAL) __atomic_store_n(&ksm_marker_active, 0, __ATOMIC_RELAXED);
  count(&stats.refused, 1);
  return 0;
}

/*
 * The kernel grows the brk heap by extending its top VMA, which glibc does through its
 * internal sbrk, out of our hooks' sight, and writes to at once. The extension joins the
 * top VMA only while that VMA is unmarked; next to a marked one it becomes a VMA of its
 * own, with an anon_vma of its own, which no later marking can merge back. So the top
 * HEAP_GUARD of the heap stays unmarked: growth extends it, and marking it later merges
 * it into the marked heap below, with which it shares one anon_vma. The heap keeps two
 * VMAs however often it grows. (Marking a slice is the exception to whole mappings.)
 */
#define HEAP_GUARD (64 * 1024)

static uintptr_t current_break(void) { return (uintptr_t)syscall(SYS_brk, 0); }

/* Where marking of `vma` stops: its end, or the start of the heap's guard. */
static uintptr_t marking_end(const struct ksm_vma *vma, uintptr_t brk) {
  int heap_top = ksm_vma_is_heap(vma) && vma->start < brk && brk <= vma->end;
  if (!heap_top) return vma->end;
  return vma->end - vma->start > HEAP_GUARD ? vma->end - HEAP_GUARD : vma->start;
}

struct walk {
  int full;
  uintptr_t brk;
  unsigned revisits_left;
  uintptr_t revisited_up_to;
};

/* Whether a full walk re-advises this mapping, marked before, and counts it. */
static int revisit(struct walk *walk, uintptr_t start, uintptr_t end) {
  if (!walk->full || walk->revisits_left == 0 || start < revisit_from) return 0;
  walk->revisits_left--;
  walk->revisited_up_to = end;
  return 1;
}

static int visit(const struct ksm_vma *vma, void *arg) {
  struct walk *walk = arg;
  int markable = eligible(vma);
  uintptr_t end = markable ? marking_end(vma, walk->brk) : vma->end;
  int marked = 0;
  if (markable && end > vma->start) {
    int was_marked = ksm_ranges_was_marked(vma->start, end);
    marked = (was_marked && !revisit(walk, vma->start, end)) || advise(vma->start, end, !was_marked);
  }
  if (end > vma->start) ksm_ranges_append(vma->start, end, marked);
  if (end < vma->end) {
    /* glibc shrank the heap into its marked part: give it back its guard. */
    if (ksm_ranges_was_marked(end, vma->end)) syscall(SYS_madvise, end, vma->end - end, MADV_UNMERGEABLE);
    ksm_ranges_append(end, vma->end, 0);
  }
  return !ksm_marker_active;
}

static void walk_now(int full, uint64_t now) {
  struct walk walk = {full, current_break(), REVISIT_MAX, 0};
  uint64_t started = now_ns(CLOCK_MONOTONIC);
  ksm_ranges_begin_rebuild();
  if (ksm_maps_walk("/proc/self/maps", maps_buffer, sizeof maps_buffer, visit, &walk) != 0) {
    /* No /proc: take every address as known, so only the periodic walk retries. */
    ksm_ranges_append(0, UINTPTR_MAX, 0);
  }
  ksm_ranges_end_rebuild();
  uint64_t cost = now_ns(CLOCK_MONOTONIC) - started;
  walk_gap = cost * WALK_COST_FACTOR > WALK_MIN_GAP ? cost * WALK_COST_FACTOR : WALK_MIN_GAP;
  last_walk = now;
  if (full) {
    last_full_walk = now;
    /* Budget left over: the revisits reached the top of the address space. */
    revisit_from = walk.revisits_left ? 0 : walk.revisited_up_to;
  }
  walk_pending = 0;
  pending_count = 0;
  __atomic_store_n(&pending_since, 0, __ATOMIC_RELAXED);
  count(&stats.walks, 1);
}

/* The mapping holding `address`, by PROCMAP_QUERY (Linux 6.11+). Returns 0 when the
 * kernel cannot answer (then walks take over), -1 when nothing is mapped there. */
static int query_mapping(uintptr_t address, struct ksm_vma *vma, char *name, size_t name_size) {
  struct ksm_procmap_query query = {
      .size = sizeof query,
      .query_addr = address,
      .vma_name_addr = (uintptr_t)name,
      .vma_name_size = (uint32_t)name_size,
  };
  long fd = syscall(SYS_openat, AT_FDCWD, "/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  long result = syscall(SYS_ioctl, (int)fd, KSM_PROCMAP_QUERY, &query);
  int query_errno = errno;
  syscall(SYS_close, (int)fd);
  if (result != 0) {
    if (query_errno == ENOTTY || query_errno == EINVAL) query_supported = 0;
    return query_errno == ENOENT ? -1 : 0;
  }
  *vma = (struct ksm_vma){
      .start = (uintptr_t)query.vma_start,
      .end = (uintptr_t)query.vma_end,
      .prot = (query.vma_flags & KSM_PROCMAP_QUERY_VMA_READABLE ? PROT_READ : 0) |
              (query.vma_flags & KSM_PROCMAP_QUERY_VMA_WRITABLE ? PROT_WRITE : 0) |
              (query.vma_flags & KSM_PROCMAP_QUERY_VMA_EXECUTABLE ? PROT_EXEC : 0),
      .is_private = !(query.vma_flags & KSM_PROCMAP_QUERY_VMA_SHARED),
      .inode = (unsigned long)query.inode,
      .path = name,
      .path_len = query.vma_name_size ? query.vma_name_size - 1 : 0,
  };
  return 1;
}

/*
 * New memory that allocators fault in before we see it (brk growth, mmapped chunks) is
 * not marked at once: a marked mapping cannot merge with the unmarked one the next
 * growth creates beside it, so marking every step would leave one VMA per step. The
 * mapping waits here instead, growing in place, and is marked once the growth pauses:
 * after PENDING_DELAY, or when the program is about to block (read, poll, sleep...).
 */

static void remember_pending(uintptr_t address, uint64_t now) {
  /* A growing mapping keeps its start: once is enough. */
  for (unsigned i = 0; i < pending_count; i++) {
    if (pending[i] == address) return;
  }
  if (pending_count == PENDING_MAX) {
    walk_pending = 1;
    return;
  }
  pending[pending_count++] = address;
  if (!load(&pending_since)) __atomic_store_n(&pending_since, now, __ATOMIC_RELAXED);
}

/* glibc's thread arenas grow by mprotect into the PROT_NONE rest of their 64 MiB
 * reservation. Marked along with the part in use, that rest hands its mark to each piece
 * growth makes usable, which then merges with the marked part below it. */
static void mark_reservation_after(uintptr_t end) {
  char name[256];
  struct ksm_vma next;
  if (query_mapping(end, &next, name, sizeof name) == 1 && next.start == end && next.prot == 0 && eligible(&next)) {
    ksm_ranges_insert(next.start, next.end, advise(next.start, next.end, 1));
  }
}

/* Lock held: marks the mapping holding each pending address, whatever it grew into. */
static void mark_pending(void) {
  uintptr_t brk = current_break();
  for (unsigned i = 0; i < pending_count; i++) {
    char name[256];
    struct ksm_vma vma;
    if (query_mapping(pending[i], &vma, name, sizeof name) != 1 || !eligible(&vma)) continue;
    uintptr_t end = marking_end(&vma, brk);
    if (end > vma.start) ksm_ranges_insert(vma.start, end, advise(vma.start, end, 1));
    if (end == vma.end) mark_reservation_after(vma.end);
    count(&stats.targeted, 1);
  }
  pending_count = 0;
  __atomic_store_n(&pending_since, 0, __ATOMIC_RELAXED);
}

/* Lock held: records the new mapping holding `address` as known and pending. */
static int note_new_mapping(uintptr_t address, uint64_t now) {
  char name[256];
  struct ksm_vma vma;
  int found = query_mapping(address, &vma, name, sizeof name);
  if (found == 1) {
    ksm_ranges_insert(vma.start, vma.end, 0);
    if (eligible(&vma)) remember_pending(vma.start, now);
  }
  return found != 0;
}

/* Lock held: what the evidence and the clock call for. */
static void act(uintptr_t address, int evidence, int idle) {
  uint64_t now = now_ns(CLOCK_MONOTONIC_COARSE);
  if (evidence && !(query_supported && note_new_mapping(address, now))) {
    /* A walk marks what it finds, so it waits for the growth to pause just the same. */
    walk_pending = 1;
    if (!load(&pending_since)) __atomic_store_n(&pending_since, now, __ATOMIC_RELAXED);
  }
  int full_due = now - last_full_walk >= FULL_WALK_GAP && now - last_walk >= walk_gap;
  int paused = idle || now - pending_since >= PENDING_DELAY;
  if (full_due || (walk_pending && paused && (idle || now - last_walk >= walk_gap))) {
    walk_now(full_due, now);
  } else if (pending_count && paused) {
    mark_pending();
  }
}

static void act_locked(uintptr_t address, int evidence, int idle) {
  int saved_errno = errno;
  if (try_lock()) {
    act(address, evidence, idle);
    unlock();
  }
  errno = saved_errno;
}

static void look(uintptr_t address) {
  int clock_due = ksm_sampling.clock < 0;
  /* With a walk due, evidence tells nothing new: the walk finds what grew, at the next
   * look at the clock or pause. Without PROCMAP_QUERY, until it runs, every call noted
   * in new memory comes here. */
  if (!clock_due && __atomic_load_n(&walk_pending, __ATOMIC_RELAXED)) return;
  int evidence = address != 0 && !ksm_ranges_known(address, &ksm_sampling.cache);
  if (!evidence && !clock_due) return;
  if (clock_due) {
    uint64_t now = now_ns(CLOCK_MONOTONIC_COARSE);
    int every = ksm_sampling.clock_every;
    if (now - ksm_sampling.clock_seen < CLOCK_EVERY / 2) {
      if (every < CLOCK_COUNTDOWN_MAX) every = every ? every * 2 : 1;
    } else if (now - ksm_sampling.clock_seen > CLOCK_EVERY) {
      every = every > 1 ? every / 2 : 1;
    }
    ksm_sampling.clock_every = every;
    ksm_sampling.clock_seen = now;
    ksm_sampling.clock = every - 1;
    if (!evidence && !__atomic_load_n(&walk_pending, __ATOMIC_RELAXED) && !load(&pending_since) &&
        now - load(&last_full_walk) < FULL_WALK_GAP) {
      return;
    }
  }
  act_locked(address, evidence, 0);
}

void *ksm_marker_look(void *p) {
  if (ksm_marker_active) look((uintptr_t)p);
  return p;
}

/*
 * glibc grows its brk heap by its internal sbrk, unseen by the hooks, and only sampled
 * allocations land in the growth; so each pause also compares the break with the one
 * the last pause saw. glibc's sbrk(0) returns the break it caches, without a system call
 * and without a lock; musl's makes the system call, so there sampling alone finds growth.
 */
static uintptr_t heap_break(void) {
#ifdef __GLIBC__
  if (ksm_real.sbrk) {
    int saved_errno = errno;
    void *end = ksm_real.sbrk(0);
    errno = saved_errno;
    if (end != (void *)-1) return (uintptr_t)end;
  }
#endif
  return 0;
}

int ksm_marker_waiting(void) {
  return load(&pending_since) || __atomic_load_n(&walk_pending, __ATOMIC_RELAXED) ||
         heap_break() != __atomic_load_n(&seen_break, __ATOMIC_RELAXED);
}

void ksm_marker_idle(void) {
  int saved_errno = errno;
  uintptr_t end = heap_break();
  if (try_lock()) {
    /* Grown: the top byte is in the new memory (shrunk: the next walk sees it). Not this
     * thread's cache: a signal handler may have interrupted a hook reading it. */
    struct ksm_range_cache scratch = {{0}, {0}, 0};
    int grew = end > seen_break && !ksm_ranges_known(end - 1, &scratch);
    __atomic_store_n(&seen_break, end, __ATOMIC_RELAXED);
    act(grew ? end - 1 : 0, grew, 1);
    unlock();
  }
  errno = saved_errno;
}

void ksm_marker_note_mapping(void *addr, size_t len) {
  uintptr_t start = (uintptr_t)addr;
  if (len < min_bytes || len > max_bytes || ksm_excluded_overlaps(start, start + len)) return;
  int saved_errno = errno;
  int marked = advise(start, start + len, 1);
  /* Remember it when nobody is walking; otherwise the walk under way may see it. */
  if (try_lock()) {
    ksm_ranges_insert(start, start + len, marked);
    unlock();
  }
  errno = saved_errno;
}

int ksm_marker_start(uint64_t bytes, int without_query) {
  int saved_errno = errno;
  if (without_query) query_supported = 0;
  struct sysinfo memory;
  min_bytes = bytes;
  if (sysinfo(&memory) == 0 && memory.totalram > 0) max_bytes = (uint64_t)memory.totalram * memory.mem_unit;
  ksm_marker_active = 1;
  seen_break = heap_break();
  while (!try_lock()) sched_yield();
  walk_now(1, now_ns(CLOCK_MONOTONIC_COARSE));
  unlock();
  int refusal = ksm_marker_active ? 0 : EINVAL;
  errno = saved_errno;
  return refusal;
}

void ksm_marker_wait_idle(void) {
  while (__atomic_load_n(&lock, __ATOMIC_ACQUIRE)) sched_yield();
}

void ksm_marker_after_fork_child(void) {
  ksm_ranges_reset();
  last_walk = last_full_walk = 0;
  revisit_from = 0;
  walk_pending = 0;
  pending_count = 0;
  pending_since = 0;
  unlock();
}

void ksm_marker_read_stats(struct ksm_marker_stats *out) {
  out->walks = load(&stats.walks);
  out->targeted = load(&stats.targeted);
  out->mappings_marked = load(&stats.mappings_marked);
  out->bytes_marked = load(&stats.bytes_marked);
  out->refused = load(&stats.refused);
}
