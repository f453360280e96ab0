// madvise for JavaScript memory: one buffer's pages, page-aligned allocations of
// their own, and one pass over every private anonymous mapping of the process.
// TypeScript validates arguments and decides what to advise; this file only
// makes the system calls and reports errno.
#include <dlfcn.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <mutex>
#include <utility>
#include <vector>

#include "ksm_abi.h"
#include "maps_scan.h"
#include "modules.h"

namespace {

using Range = std::pair<uintptr_t, uintptr_t>;  // [start, end)

// Live allocUnmergeable mappings. Process-wide (maps are), so shared by every
// worker thread's copy of the addon. A process pass holds the mutex throughout,
// and an unmergeable mapping is created and listed under it: no pass ever sees
// such a mapping unlisted.
std::mutex excluded_mutex;
std::vector<Range> excluded_ranges;

void RemoveExcluded(Range range) {
  std::lock_guard<std::mutex> lock(excluded_mutex);
  for (auto it = excluded_ranges.begin(); it != excluded_ranges.end(); ++it) {
    if (*it == range) {
      excluded_ranges.erase(it);
      return;
    }
  }
}

// libksm_preload.so, when loaded into this process, marks memory by itself;
// these entry points keep it away from secrets. Absent otherwise.
void CallPreloadHook(const char* name, Range range) {
  using RangeHook = void (*)(void*, size_t);
  auto hook = reinterpret_cast<RangeHook>(dlsym(RTLD_DEFAULT, name));
  if (hook != nullptr) hook(reinterpret_cast<void*>(range.first), range.second - range.first);
}

size_t PageSize() {
  static const size_t page_size = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return page_size;
}

uintptr_t ToAddress(const Napi::Value& value) {
  return static_cast<uintptr_t>(value.As<Napi::Number>().Int64Value());
}

Napi::Value GetPageSize(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(PageSize()));
}

// The address of an ArrayBuffer's memory, as a Number: user-space addresses
// fit in 53 bits on every 64-bit Linux ABI.
Napi::Value AddressOf(const Napi::CallbackInfo& info) {
  Napi::ArrayBuffer buffer = info[0].As<Napi::ArrayBuffer>();
  return Napi::Number::New(info.Env(), static_cast<double>(reinterpret_cast<uintptr_t>(buffer.Data())));
}

// madvise(address, length, mergeable ? MADV_MERGEABLE : MADV_UNMERGEABLE).
// No other advice is reachable from JavaScript.
Napi::Value Madvise(const Napi::CallbackInfo& info) {
  uintptr_t address = ToAddress(info[0]);
  size_t length = static_cast<size_t>(info[1].As<Napi::Number>().Int64Value());
  int advice = info[2].As<Napi::Boolean>().Value() ? MADV_MERGEABLE : MADV_UNMERGEABLE;
  if (madvise(reinterpret_cast<void*>(address), length, advice) != 0) ThrowErrno(info.Env(), errno, "madvise");
  return info.Env().Undefined();
}

struct Mapping {
  Range range;
  bool excluded;
};

void Unmap(Mapping* mapping) {
  munmap(reinterpret_cast<void*>(mapping->range.first), mapping->range.second - mapping->range.first);
  if (mapping->excluded) {
    // Unmapped first: the range must never be markable while it holds the secret.
    RemoveExcluded(mapping->range);
    CallPreloadHook("ksm_preload_include_range", mapping->range);
  }
  delete mapping;
}

void ReleaseMapping(Napi::Env env, uint8_t*, Mapping* mapping) {
  int64_t length = static_cast<int64_t>(mapping->range.second - mapping->range.first);
  Unmap(mapping);
  Napi::MemoryManagement::AdjustExternalMemory(env, -length);
}

// The secret's mapping is never advised MADV_MERGEABLE, not even for a moment. The
// preload library's mmap hook advises each new private anonymous mapping at once, and
// its walks each one they find, on any thread. So the address range first holds a
// shared anonymous placeholder, which neither ever advises (KSM cannot merge shared
// memory); the range is excluded (which also waits for a walk under way); only then
// does the private mapping replace the placeholder in place, and the hook, seeing the
// range excluded, leaves it alone. Listed under the mutex, so no markProcess() pass
// sees it unlisted either.
void* MapExcluded(size_t length) {
  std::lock_guard<std::mutex> lock(excluded_mutex);
  void* placeholder = mmap(nullptr, length, PROT_NONE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (placeholder == MAP_FAILED) return MAP_FAILED;
  uintptr_t start = reinterpret_cast<uintptr_t>(placeholder);
  Range range{start, start + length};
  CallPreloadHook("ksm_preload_exclude_range", range);
  void* memory = mmap(placeholder, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
  if (memory == MAP_FAILED) {
    int err = errno;
    munmap(placeholder, length);
    CallPreloadHook("ksm_preload_include_range", range);
    errno = err;
    return MAP_FAILED;
  }
  excluded_ranges.push_back(range);
  return memory;
}

// allocMapping(size, mergeable): a Buffer of `size` bytes over a private
// anonymous mapping of its own, unmapped when the Buffer is collected.
// Mergeable memory is advised MADV_MERGEABLE. Unmergeable memory is
// MAP_NORESERVE (so the kernel never joins it to a neighbouring VMA),
// MADV_DONTDUMP (no core dumps) and MADV_UNMERGEABLE (wins over prctl's
// merge-any), and excluded from every process-wide marking.
Napi::Value AllocMapping(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t size = static_cast<size_t>(info[0].As<Napi::Number>().Int64Value());
  bool mergeable = info[1].As<Napi::Boolean>().Value();
  size_t page = PageSize();
  size_t length = (size + page - 1) / page * page;
  void* memory = mergeable ? mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
                           : MapExcluded(length);
  if (memory == MAP_FAILED) ThrowErrno(env, errno, "mmap");
  Range range{reinterpret_cast<uintptr_t>(memory), reinterpret_cast<uintptr_t>(memory) + length};
  auto* mapping = new Mapping{range, !mergeable};
  bool advised = mergeable ? madvise(memory, length, MADV_MERGEABLE) == 0
                           : madvise(memory, length, MADV_DONTDUMP) == 0 && madvise(memory, length, MADV_UNMERGEABLE) == 0;
  if (!advised) {
    int err = errno;
    Unmap(mapping);
    ThrowErrno(env, err, "madvise");
  }
  Napi::MemoryManagement::AdjustExternalMemory(env, static_cast<int64_t>(length));
  return Napi::Buffer<uint8_t>::New(env, static_cast<uint8_t*>(memory), size, ReleaseMapping, mapping);
}

struct ProcessPass {
  const std::vector<Range>* excluded;  // sorted
  double mappings = 0;
  double bytes = 0;
  double failed = 0;
  int error = 0;
};

void AdviseRange(ProcessPass* pass, uintptr_t start, uintptr_t end, bool* any_advised) {
  if (start >= end) return;
  if (madvise(reinterpret_cast<void*>(start), end - start, MADV_MERGEABLE) != 0) {
    // ENOMEM/EAGAIN: another thread unmapped or changed the mapping meanwhile;
    // count it and go on. Anything else (EINVAL: no KSM) ends the pass.
    if (errno == ENOMEM || errno == EAGAIN) pass->failed++;
    else pass->error = errno;
    return;
  }
  pass->bytes += static_cast<double>(end - start);
  *any_advised = true;
}

int AdviseMapping(const struct ksm_vma* vma, void* ctx) {
  auto* pass = static_cast<ProcessPass*>(ctx);
  if (!ksm_vma_is_markable(vma)) return 0;
  // Whole mappings, minus the holes for allocUnmergeable memory.
  uintptr_t cursor = vma->start;
  bool any_advised = false;
  for (const Range& hole : *pass->excluded) {
    if (hole.second <= cursor || hole.first >= vma->end) continue;
    AdviseRange(pass, cursor, hole.first, &any_advised);
    cursor = std::max(cursor, hole.second);
  }
  if (pass->error != 0) return pass->error;
  AdviseRange(pass, cursor, vma->end, &any_advised);
  if (any_advised) pass->mappings++;
  return pass->error;
}

// markProcess(): MADV_MERGEABLE on every markable mapping of /proc/self/maps.
Napi::Value MarkProcess(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<char> buffer(64 * 1024);
  ProcessPass pass;
  int result;
  {
    std::lock_guard<std::mutex> lock(excluded_mutex);
    std::sort(excluded_ranges.begin(), excluded_ranges.end());
    pass.excluded = &excluded_ranges;
    result = ksm_maps_walk("/proc/self/maps", buffer.data(), buffer.size(), AdviseMapping, &pass);
  }
  if (result < 0) ThrowErrno(env, -result, "read /proc/self/maps");
  if (pass.error != 0) ThrowErrno(env, pass.error, "madvise");
  Napi::Object counts = Napi::Object::New(env);
  counts.Set("mappings", pass.mappings);
  counts.Set("bytes", pass.bytes);
  counts.Set("failed", pass.failed);
  return counts;
}

}  // namespace

void InitMarking(Napi::Env env, Napi::Object exports) {
  exports.Set("pageSize", Napi::Function::New(env, GetPageSize, "pageSize"));
  exports.Set("addressOf", Napi::Function::New(env, AddressOf, "addressOf"));
  exports.Set("madvise", Napi::Function::New(env, Madvise, "madvise"));
  exports.Set("allocMapping", Napi::Function::New(env, AllocMapping, "allocMapping"));
  exports.Set("markProcess", Napi::Function::New(env, MarkProcess, "markProcess"));
}
