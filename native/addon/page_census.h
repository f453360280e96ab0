// Counting page contents: how many pages hold each distinct content, over all the
// analysed processes and over the advised (`mg`) pages alone, and how many distinct
// contents each process has on its own.
#ifndef KSM_PAGE_CENSUS_H
#define KSM_PAGE_CENSUS_H

#include <cstddef>
#include <cstdint>
#include <vector>

namespace page_census {

// Open addressing with linear probing on non-zero 64-bit keys (digests and PFNs + 1);
// keys are already well mixed or sparse enough, so the slot is a multiplicative hash.
template <typename Value>
class KeyTable {
 public:
  explicit KeyTable(std::size_t expected = 1024) { Reset(expected); }

  void Reset(std::size_t expected) {
    std::size_t capacity = 1024;
    while (capacity < expected * 2) capacity <<= 1;
    keys_.assign(capacity, 0);
    values_.assign(capacity, Value{});
    size_ = 0;
  }

  // The value for `key`, inserting a default one; `inserted` says whether it was new.
  Value& Upsert(uint64_t key, bool* inserted) {
    if ((size_ + 1) * 10 > keys_.size() * 7) Grow();
    std::size_t slot = Find(key);
    *inserted = keys_[slot] == 0;
    if (*inserted) {
      keys_[slot] = key;
      size_++;
    }
    return values_[slot];
  }

  const Value* Get(uint64_t key) const {
    std::size_t slot = Find(key);
    return keys_[slot] == 0 ? nullptr : &values_[slot];
  }

  std::size_t size() const { return size_; }

  template <typename Fn>
  void ForEach(Fn fn) const {
    for (std::size_t i = 0; i < keys_.size(); i++) {
      if (keys_[i] != 0) fn(keys_[i], values_[i]);
    }
  }

 private:
  std::size_t Find(uint64_t key) const {
    std::size_t mask = keys_.size() - 1;
    std::size_t slot = static_cast<std::size_t>((key * 0x9e3779b97f4a7c15ULL) >> 20) & mask;
    while (keys_[slot] != 0 && keys_[slot] != key) slot = (slot + 1) & mask;
    return slot;
  }

  void Grow() {
    std::vector<uint64_t> old_keys;
    std::vector<Value> old_values;
    old_keys.swap(keys_);
    old_values.swap(values_);
    keys_.assign(old_keys.size() * 2, 0);
    values_.assign(old_keys.size() * 2, Value{});
    for (std::size_t i = 0; i < old_keys.size(); i++) {
      if (old_keys[i] == 0) continue;
      std::size_t slot = Find(old_keys[i]);
      keys_[slot] = old_keys[i];
      values_[slot] = old_values[i];
    }
  }

  std::vector<uint64_t> keys_;
  std::vector<Value> values_;
  std::size_t size_ = 0;
};

struct ContentCount {
  uint32_t pages;
  uint32_t advised_pages;
};

// What KSM can save on a group of `pages` identical pages: each KSM page takes at
// most `max_page_sharing` mappings, so the group keeps ceil(pages / max) copies.
inline uint64_t GroupSaving(uint64_t pages, uint64_t max_page_sharing) {
  if (pages == 0) return 0;
  return pages - (pages + max_page_sharing - 1) / max_page_sharing;
}

struct Totals {
  uint64_t pages = 0;
  uint64_t advised_pages = 0;
  uint64_t zero_pages = 0;
  uint64_t advised_zero_pages = 0;
  uint64_t distinct_contents = 0;  // the zero page counts as one content
  uint64_t ideal_pages = 0;
  uint64_t ideal_advised_pages = 0;
  uint64_t zero_saving_pages = 0;
  uint64_t within_saving_pages = 0;  // duplicates inside one process, zero pages excepted
};

class Census {
 public:
  // `use_zero_pages`: the kernel maps zero pages to its own zero page, saving all of them.
  Census(uint64_t max_page_sharing, bool use_zero_pages)
      : max_page_sharing_(max_page_sharing < 2 ? 2 : max_page_sharing), use_zero_pages_(use_zero_pages) {}

  void BeginProcess() { process_contents_.Reset(1024); }

  void AddZero(bool advised) {
    totals_.pages++;
    totals_.zero_pages++;
    if (advised) {
      totals_.advised_pages++;
      totals_.advised_zero_pages++;
    }
  }

  // Returns whether this process already held the content.
  bool Add(uint64_t digest, bool advised) {
    totals_.pages++;
    if (advised) totals_.advised_pages++;
    bool inserted;
    ContentCount& count = contents_.Upsert(digest, &inserted);
    count.pages++;
    if (advised) count.advised_pages++;
    process_contents_.Upsert(digest, &inserted);
    if (!inserted) totals_.within_saving_pages++;
    return !inserted;
  }

  Totals Finish() const {
    Totals totals = totals_;
    totals.distinct_contents = contents_.size() + (totals.zero_pages > 0 ? 1 : 0);
    contents_.ForEach([&](uint64_t, const ContentCount& count) {
      totals.ideal_pages += GroupSaving(count.pages, max_page_sharing_);
      totals.ideal_advised_pages += GroupSaving(count.advised_pages, max_page_sharing_);
    });
    totals.zero_saving_pages = ZeroSaving(totals.zero_pages);
    totals.ideal_pages += totals.zero_saving_pages;
    totals.ideal_advised_pages += ZeroSaving(totals.advised_zero_pages);
    return totals;
  }

 private:
  uint64_t ZeroSaving(uint64_t zero_pages) const {
    return use_zero_pages_ ? zero_pages : GroupSaving(zero_pages, max_page_sharing_);
  }

  uint64_t max_page_sharing_;
  bool use_zero_pages_;
  Totals totals_;
  KeyTable<ContentCount> contents_{1 << 16};
  KeyTable<char> process_contents_;
};

}  // namespace page_census

#endif
