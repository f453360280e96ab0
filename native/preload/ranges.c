#include "ranges.h"

#define RANGES_MAX 1024

struct range {
  uintptr_t start;
  uintptr_t end;
};

struct range_table {
  struct range items[RANGES_MAX];
  size_t count;
};

/* Every mapping the last walk saw (adjacent ones coalesced), read by the hooks. */
static struct range_table known;
/* What the last walk marked, and what the walk under way marks: writer only. */
static struct range_table marked_tables[2];
static unsigned marked_current;
static size_t marked_cursor;

unsigned ksm_ranges_sequence;

static uintptr_t load(const uintptr_t *field) { return __atomic_load_n(field, __ATOMIC_RELAXED); }
static void store(uintptr_t *field, uintptr_t value) { __atomic_store_n(field, value, __ATOMIC_RELAXED); }

static void remember(struct ksm_range_cache *cache, uintptr_t start, uintptr_t end, unsigned seen) {
  if (cache->sequence == seen) {
    cache->start[1] = cache->start[0];
    cache->size[1] = cache->size[0];
  } else {
    cache->size[1] = 0;
    cache->sequence = seen;
  }
  cache->start[0] = start;
  cache->size[0] = end - start;
}

int ksm_ranges_known(uintptr_t address, struct ksm_range_cache *cache) {
  unsigned seen = __atomic_load_n(&ksm_ranges_sequence, __ATOMIC_ACQUIRE);
  if (seen & 1) return 1;
  if (ksm_ranges_cached(cache, seen, address)) return 1;
  size_t low = 0;
  size_t high = __atomic_load_n(&known.count, __ATOMIC_RELAXED);
  if (high > RANGES_MAX) high = RANGES_MAX;
  uintptr_t start = 0, end = 0;
  while (low < high) {
    size_t middle = low + (high - low) / 2;
    uintptr_t middle_end = load(&known.items[middle].end);
    if (middle_end <= address) {
      low = middle + 1;
    } else {
      start = load(&known.items[middle].start);
      end = middle_end;
      high = middle;
    }
  }
  __atomic_thread_fence(__ATOMIC_ACQUIRE);
  if (__atomic_load_n(&ksm_ranges_sequence, __ATOMIC_RELAXED) != seen) return 1;
  if (start <= address && address < end) {
    remember(cache, start, end, seen);
    return 1;
  }
  return 0;
}

static void write_begin(void) {
  __atomic_store_n(&ksm_ranges_sequence, ksm_ranges_sequence + 1, __ATOMIC_RELAXED);
  __atomic_thread_fence(__ATOMIC_RELEASE);
}

static void write_end(void) { __atomic_store_n(&ksm_ranges_sequence, ksm_ranges_sequence + 1, __ATOMIC_RELEASE); }

/* Appends in ascending order. A full table stretches its last range instead: that
 * hides some new mappings until the next periodic walk, but never causes a storm. */
static void table_append(struct range_table *table, uintptr_t start, uintptr_t end) {
  struct range *last = table->count ? &table->items[table->count - 1] : NULL;
  if (last && (start <= last->end || table->count == RANGES_MAX)) {
    if (end > last->end) store(&last->end, end);
    return;
  }
  store(&table->items[table->count].start, start);
  store(&table->items[table->count].end, end);
  __atomic_store_n(&table->count, table->count + 1, __ATOMIC_RELAXED);
}

/* Inserts [start, end) anywhere, merging with the ranges it touches. */
static void table_insert(struct range_table *table, uintptr_t start, uintptr_t end) {
  size_t first = 0;
  while (first < table->count && table->items[first].end < start) first++;
  size_t last = first;
  while (last < table->count && table->items[last].start <= end) {
    if (table->items[last].start < start) start = table->items[last].start;
    if (table->items[last].end > end) end = table->items[last].end;
    last++;
  }
  size_t removed = last - first;
  if (removed == 0 && table->count == RANGES_MAX) return;
  size_t new_count = table->count - removed + 1;
  if (removed == 0) {
    for (size_t i = table->count; i > first; i--) {
      store(&table->items[i].start, table->items[i - 1].start);
      store(&table->items[i].end, table->items[i - 1].end);
    }
  } else {
    for (size_t i = first + 1; i < new_count; i++) {
      store(&table->items[i].start, table->items[i + removed - 1].start);
      store(&table->items[i].end, table->items[i + removed - 1].end);
    }
  }
  store(&table->items[first].start, start);
  store(&table->items[first].end, end);
  __atomic_store_n(&table->count, new_count, __ATOMIC_RELAXED);
}

void ksm_ranges_begin_rebuild(void) {
  write_begin();
  __atomic_store_n(&known.count, 0, __ATOMIC_RELAXED);
  marked_tables[!marked_current].count = 0;
  marked_cursor = 0;
}

void ksm_ranges_append(uintptr_t start, uintptr_t end, int marked) {
  table_append(&known, start, end);
  if (marked) table_append(&marked_tables[!marked_current], start, end);
}

int ksm_ranges_was_marked(uintptr_t start, uintptr_t end) {
  const struct range_table *old = &marked_tables[marked_current];
  while (marked_cursor < old->count && old->items[marked_cursor].end <= start) marked_cursor++;
  return marked_cursor < old->count && old->items[marked_cursor].start <= start && end <= old->items[marked_cursor].end;
}

void ksm_ranges_end_rebuild(void) {
  marked_current = !marked_current;
  write_end();
}

void ksm_ranges_insert(uintptr_t start, uintptr_t end, int marked) {
  write_begin();
  table_insert(&known, start, end);
  if (marked) table_insert(&marked_tables[marked_current], start, end);
  write_end();
}

void ksm_ranges_reset(void) {
  if (ksm_ranges_sequence & 1) ksm_ranges_sequence++;
  write_begin();
  __atomic_store_n(&known.count, 0, __ATOMIC_RELAXED);
  marked_tables[0].count = marked_tables[1].count = 0;
  write_end();
}
