// Reading the resident private anonymous pages of a process: /proc/PID/pagemap says
// which pages are present, anonymous and shared, /proc/PID/mem gives their contents,
// /proc/kpageflags says which physical pages KSM has merged.
#ifndef KSM_PAGE_READER_H
#define KSM_PAGE_READER_H

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <string>
#include <vector>

#include "ksm_platform.h"
#include "page_census.h"
#include "page_digest.h"

namespace page_reader {

// The kernel's page size (4 KiB on x86_64; 4, 16 or 64 KiB on aarch64): pagemap has
// one entry per page of it.
inline std::size_t KernelPageSize() {
  static const std::size_t page_size = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  return page_size;
}

// pagemap entry bits (Documentation/admin-guide/mm/pagemap.rst).
constexpr uint64_t kPresent = 1ULL << 63;
constexpr uint64_t kFileOrSharedAnon = 1ULL << 61;
constexpr uint64_t kExclusivelyMapped = 1ULL << 56;
constexpr uint64_t kPfnMask = (1ULL << 55) - 1;
constexpr uint64_t kKpfKsm = 1ULL << 21;  // /proc/kpageflags
constexpr uint64_t kKpfZeroPage = 1ULL << 24;

constexpr std::size_t kPagemapBatch = 8192;  // pages of address space per pagemap read
constexpr std::size_t kReadRun = 256;        // most pages per /proc/PID/mem read (1 MiB of 4 KiB pages)

struct Range {
  uint64_t start;
  uint64_t end;
  bool advised;
};

// What the reading threads learn about one resident anonymous page.
namespace flags {
enum PageFlag : uint8_t {
  kZero = 1,
  kAdvised = 2,
  kShared = 4,  // mapped more than once: `pfn` identifies the physical page
  kKsm = 8,     // a page KSM has merged
};
}  // namespace flags
using namespace flags;

struct PageRecord {
  uint64_t digest;
  uint64_t pfn;
  uint8_t flags;
};

// A slice of one process's address space, read by one thread.
struct WorkItem {
  std::size_t task;
  Range range;
  std::vector<PageRecord> pages;
  uint64_t unreadable_pages = 0;
  int error = 0;  // errno when pagemap could not be read (the process exited)
};

constexpr uint64_t kItemBytes = 64ULL << 20;  // address space per work item

class FileDescriptor {
 public:
  explicit FileDescriptor(const std::string& path) : fd_(open(path.c_str(), O_RDONLY | O_CLOEXEC)) {}
  ~FileDescriptor() {
    if (fd_ >= 0) close(fd_);
  }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// pread that retries EINTR and short reads; returns bytes read, or -1 with errno.
inline ssize_t ReadFully(int fd, void* buffer, std::size_t size, uint64_t offset) {
  std::size_t done = 0;
  while (done < size) {
    ssize_t n = pread(fd, static_cast<char*>(buffer) + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return done > 0 ? static_cast<ssize_t>(done) : -1;
    if (n == 0) break;
    done += static_cast<std::size_t>(n);
  }
  return static_cast<ssize_t>(done);
}

// Reads and digests the pages of work items; one per thread. Pages mapped more than
// once are read once per thread: their digest is remembered by physical page.
// Without `read_contents` it records only pages mapped more than once, undigested:
// enough to see what KSM has merged, at the cost of pagemap and kpageflags alone.
class PageReader {
 public:
  PageReader(int kpageflags, bool read_contents)
      : kpageflags_(kpageflags), read_contents_(read_contents), page_size_(KernelPageSize()), buffer_(read_contents ? kReadRun * page_size_ : 0), entries_(kPagemapBatch) {}

  // Reads the work item's slice of a process whose pagemap and mem are open.
  void Read(int pagemap, int mem, WorkItem* item) {
    for (uint64_t address = item->range.start; address < item->range.end;) {
      std::size_t count = static_cast<std::size_t>(std::min<uint64_t>(kPagemapBatch, (item->range.end - address) / page_size_));
      ssize_t got = ReadFully(pagemap, entries_.data(), count * sizeof(uint64_t), (address / page_size_) * sizeof(uint64_t));
      if (got < 0) {
        item->error = errno;
        return;
      }
      count = static_cast<std::size_t>(got) / sizeof(uint64_t);
      if (count == 0) return;
      if (read_contents_) {
        ReadBatch(mem, address, count, item);
      } else {
        RecordShared(count, item);
      }
      address += count * page_size_;
    }
  }

 private:
  struct Known {
    uint64_t digest;
    uint8_t flags;
    bool kernel_zero_page;
  };

  // Gathers the pages to read, up to kReadRun at a time.
  void ReadBatch(int mem, uint64_t base, std::size_t count, WorkItem* item) {
    pending_.clear();
    for (std::size_t i = 0; i < count; i++) {
      if (!IsAnonymous(entries_[i]) || RecordKnown(entries_[i], item)) continue;
      pending_.push_back(i);
      if (pending_.size() == kReadRun) ReadPending(mem, base, item);
    }
    if (!pending_.empty()) ReadPending(mem, base, item);
  }

  void RecordShared(std::size_t count, WorkItem* item) {
    for (std::size_t i = 0; i < count; i++) {
      uint64_t pfn = SharedPfn(entries_[i]);
      if (pfn == 0 || !IsAnonymous(entries_[i]) || RecordKnown(entries_[i], item)) continue;
      uint8_t flags = 0;
      if (Classify(pfn, 0, &flags)) Push(0, pfn, flags, item);
    }
  }

  static bool IsAnonymous(uint64_t entry) { return (entry & kPresent) && !(entry & kFileOrSharedAnon); }

  static uint64_t SharedPfn(uint64_t entry) { return (entry & kExclusivelyMapped) ? 0 : entry & kPfnMask; }

  // A page whose physical page this thread has read before: recorded without a read.
  bool RecordKnown(uint64_t entry, WorkItem* item) {
    uint64_t pfn = SharedPfn(entry);
    if (pfn == 0) return false;
    const Known* known = known_.Get(pfn + 1);
    if (known == nullptr) return false;
    if (!known->kernel_zero_page) Push(known->digest, pfn, known->flags, item);
    return true;
  }

  // Reads the pending pages, one pread of /proc/PID/mem per run of consecutive pages.
  // Not process_vm_readv: it pins pages, and pinning a page KSM merged (or any shared
  // anonymous page) makes the kernel unshare it, undoing the merge being measured.
  void ReadPending(int mem, uint64_t base, WorkItem* item) {
    for (std::size_t first = 0; first < pending_.size();) {
      std::size_t length = 1;
      while (first + length < pending_.size() && pending_[first + length] == pending_[first] + length) length++;
      ReadRun(mem, base, first, length, item);
      first += length;
    }
    pending_.clear();
  }

  // Pages pending_[first .. first + length) are consecutive in memory.
  void ReadRun(int mem, uint64_t base, std::size_t first, std::size_t length, WorkItem* item) {
    ssize_t got = ReadFully(mem, buffer_.data(), length * page_size_, base + pending_[first] * page_size_);
    std::size_t read = got < 0 ? 0 : static_cast<std::size_t>(got) / page_size_;
    for (std::size_t i = 0; i < read; i++) Digest(buffer_.data() + i * page_size_, pending_[first + i], item);
    if (read == length) return;
    if (length == 1) {
      item->unreadable_pages++;
      return;
    }
    // The read stops at a page that went away meanwhile; the ones after it are read alone.
    for (std::size_t i = read; i < length; i++) ReadRun(mem, base, first + i, 1, item);
  }

  void Digest(const unsigned char* page, std::size_t index, WorkItem* item) {
    page_digest::Digest digest = page_digest::DigestPage(page, page_size_);
    uint8_t flags = digest.zero ? kZero : 0;
    uint64_t pfn = SharedPfn(entries_[index]);
    if (pfn != 0 && !Classify(pfn, digest.value, &flags)) return;
    Push(digest.value, pfn, flags, item);
  }

  // Looks a page with other mappings up in /proc/kpageflags and remembers it. Returns
  // false for the kernel's shared zero page, which read faults map: no process's memory.
  bool Classify(uint64_t pfn, uint64_t digest, uint8_t* flags) {
    uint64_t page_flags = 0;
    if (kpageflags_ >= 0) ReadFully(kpageflags_, &page_flags, sizeof page_flags, pfn * sizeof page_flags);
    *flags |= kShared | ((page_flags & kKpfKsm) ? kKsm : 0);
    bool kernel_zero_page = (page_flags & kKpfZeroPage) != 0;
    bool inserted;
    known_.Upsert(pfn + 1, &inserted) = {digest, *flags, kernel_zero_page};
    return !kernel_zero_page;
  }

  static void Push(uint64_t digest, uint64_t pfn, uint8_t flags, WorkItem* item) {
    item->pages.push_back({digest, pfn, static_cast<uint8_t>(flags | (item->range.advised ? kAdvised : 0))});
  }

  int kpageflags_;
  bool read_contents_;
  std::size_t page_size_;
  std::vector<unsigned char> buffer_;
  std::vector<uint64_t> entries_;
  std::vector<std::size_t> pending_;  // indexes into entries_ of the pages to read
  page_census::KeyTable<Known> known_;
};

}  // namespace page_reader

#endif
