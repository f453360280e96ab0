// censusPages(tasks, options): reads the resident private anonymous pages of some
// processes (page_reader.h), digests each page and
// counts identical contents. Reading runs on a few threads off the JS thread, so a
// live view keeps redrawing meanwhile.
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "modules.h"
#include "page_census.h"
#include "page_reader.h"

namespace {

using page_reader::FileDescriptor;
using page_reader::PageRecord;
using page_reader::Range;
using page_reader::WorkItem;
using namespace page_reader::flags;

struct Task {
  int pid;
  std::vector<Range> ranges;
};

struct Options {
  uint64_t max_page_sharing;
  bool use_zero_pages;
  bool contents;  // read and digest every page, not only find the merged ones
};

struct ProcessResult {
  int pid = 0;
  int error = 0;  // errno of the failure that made the process unreadable
  std::string syscall;
  uint64_t pages = 0;
  uint64_t advised_pages = 0;
  uint64_t zero_pages = 0;
  uint64_t duplicate_pages = 0;  // identical to an earlier page of the same process
  uint64_t ksm_pages = 0;        // mapped to a page KSM has already merged
  uint64_t fork_shared_pages = 0;  // one physical page seen earlier (COW after fork): not counted again
  uint64_t unreadable_pages = 0;
};

// Counts the records of all work items, process by process, on one thread: each
// physical page counts once, except KSM pages, whose every mapping is a page the
// kernel would otherwise need. Without contents it counts the KSM pages alone.
class Tally {
 public:
  explicit Tally(const Options& options) : census_(options.max_page_sharing, options.use_zero_pages), contents_(options.contents) {}

  void BeginProcess() { census_.BeginProcess(); }

  void Add(const PageRecord& page, ProcessResult* result) {
    if (page.flags & kShared) {
      bool first;
      physical_.Upsert(page.pfn + 1, &first);
      if (page.flags & kKsm) {
        result->ksm_pages++;
        if (first) ksm_distinct_pages_++;
      } else if (!first) {
        result->fork_shared_pages++;  // one physical page shared since a fork: no duplicate
        return;
      }
    }
    if (!contents_) return;
    bool advised = (page.flags & kAdvised) != 0;
    result->pages++;
    if (advised) result->advised_pages++;
    if (page.flags & kZero) {
      result->zero_pages++;
      census_.AddZero(advised);
    } else if (census_.Add(page.digest, advised)) {
      result->duplicate_pages++;
    }
  }

  page_census::Totals Finish() const { return census_.Finish(); }
  uint64_t ksm_distinct_pages() const { return ksm_distinct_pages_; }

 private:
  page_census::Census census_;
  bool contents_;
  page_census::KeyTable<char> physical_;
  uint64_t ksm_distinct_pages_ = 0;
};

// Opens the /proc files of every process, cuts their ranges into work items and
// reads them on a few threads; then tallies them in process order.
class Scan {
 public:
  Scan(const std::vector<Task>& tasks, const Options& options)
      : tasks_(tasks), read_contents_(options.contents), tally_(options), kpageflags_("/proc/kpageflags") {}

  std::vector<ProcessResult> Run() {
    std::vector<ProcessResult> results(tasks_.size());
    std::vector<std::unique_ptr<FileDescriptor>> pagemaps(tasks_.size()), mems(tasks_.size());
    for (std::size_t t = 0; t < tasks_.size(); t++) {
      results[t].pid = tasks_[t].pid;
      std::string dir = "/proc/" + std::to_string(tasks_[t].pid);
      if (!Open(dir + "/pagemap", &pagemaps[t], &results[t]) || !Open(dir + "/mem", &mems[t], &results[t])) continue;
      for (const Range& range : tasks_[t].ranges) {
        for (uint64_t start = range.start; start < range.end; start += page_reader::kItemBytes) {
          items_.push_back({t, {start, std::min(range.end, start + page_reader::kItemBytes), range.advised}, {}});
        }
      }
    }
    ReadInParallel(pagemaps, mems);
    std::size_t next_item = 0;
    for (std::size_t t = 0; t < tasks_.size(); t++) {
      tally_.BeginProcess();
      for (; next_item < items_.size() && items_[next_item].task == t; next_item++) {
        const WorkItem& item = items_[next_item];
        for (const PageRecord& page : item.pages) tally_.Add(page, &results[t]);
        results[t].unreadable_pages += item.unreadable_pages;
        if (item.error != 0 && results[t].error == 0) {
          results[t].error = item.error;  // the process exited mid-scan: what was read still counts
          results[t].syscall = "pread /proc/" + std::to_string(tasks_[t].pid) + "/pagemap";
        }
      }
    }
    return results;
  }

  page_census::Totals Finish() const { return tally_.Finish(); }
  uint64_t ksm_distinct_pages() const { return tally_.ksm_distinct_pages(); }

 private:
  // Opens `path` into `file`; on failure notes the errno in `result`.
  static bool Open(const std::string& path, std::unique_ptr<FileDescriptor>* file, ProcessResult* result) {
    *file = std::make_unique<FileDescriptor>(path);
    if ((*file)->get() >= 0) return true;
    result->error = errno;
    result->syscall = "open " + path;
    return false;
  }

  void ReadInParallel(const std::vector<std::unique_ptr<FileDescriptor>>& pagemaps,
                      const std::vector<std::unique_ptr<FileDescriptor>>& mems) {
    std::atomic<std::size_t> next{0};
    auto work = [&]() {
      page_reader::PageReader reader(kpageflags_.get(), read_contents_);
      for (std::size_t i = next++; i < items_.size(); i = next++) {
        WorkItem& item = items_[i];
        reader.Read(pagemaps[item.task]->get(), mems[item.task]->get(), &item);
      }
    };
    std::size_t threads = std::min<std::size_t>({std::max(1u, std::thread::hardware_concurrency()), kMaxThreads, items_.size()});
    std::vector<std::thread> helpers;
    for (std::size_t i = 1; i < threads; i++) helpers.emplace_back(work);
    work();
    for (std::thread& helper : helpers) helper.join();
  }

  static constexpr std::size_t kMaxThreads = 4;

  const std::vector<Task>& tasks_;
  bool read_contents_;
  Tally tally_;
  FileDescriptor kpageflags_;
  std::vector<WorkItem> items_;
};

class CensusWorker : public Napi::AsyncWorker {
 public:
  CensusWorker(Napi::Env env, std::vector<Task> tasks, Options options)
      : Napi::AsyncWorker(env, "ksm:censusPages"),
        deferred_(Napi::Promise::Deferred::New(env)),
        tasks_(std::move(tasks)),
        options_(options) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    auto started = std::chrono::steady_clock::now();
    Scan scan(tasks_, options_);
    results_ = scan.Run();
    totals_ = scan.Finish();
    ksm_distinct_pages_ = scan.ksm_distinct_pages();
    seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Array processes = Napi::Array::New(env, results_.size());
    for (std::size_t i = 0; i < results_.size(); i++) {
      const ProcessResult& r = results_[i];
      Napi::Object p = Napi::Object::New(env);
      p.Set("pid", r.pid);
      if (r.error != 0) {
        p.Set("errno", r.error);
        p.Set("syscall", r.syscall);
      }
      SetCount(p, "pages", r.pages);
      SetCount(p, "advisedPages", r.advised_pages);
      SetCount(p, "zeroPages", r.zero_pages);
      SetCount(p, "duplicatePages", r.duplicate_pages);
      SetCount(p, "ksmPages", r.ksm_pages);
      SetCount(p, "forkSharedPages", r.fork_shared_pages);
      SetCount(p, "unreadablePages", r.unreadable_pages);
      processes.Set(static_cast<uint32_t>(i), p);
    }
    Napi::Object totals = Napi::Object::New(env);
    SetCount(totals, "pages", totals_.pages);
    SetCount(totals, "advisedPages", totals_.advised_pages);
    SetCount(totals, "zeroPages", totals_.zero_pages);
    SetCount(totals, "distinctContents", totals_.distinct_contents);
    SetCount(totals, "idealPages", totals_.ideal_pages);
    SetCount(totals, "idealAdvisedPages", totals_.ideal_advised_pages);
    SetCount(totals, "zeroSavingPages", totals_.zero_saving_pages);
    SetCount(totals, "withinSavingPages", totals_.within_saving_pages);
    SetCount(totals, "ksmDistinctPages", ksm_distinct_pages_);
    Napi::Object result = Napi::Object::New(env);
    result.Set("processes", processes);
    result.Set("totals", totals);
    result.Set("seconds", seconds_);
    result.Set("pageSize", static_cast<double>(page_reader::KernelPageSize()));
    deferred_.Resolve(result);
  }

  void OnError(const Napi::Error& error) override { deferred_.Reject(error.Value()); }

 private:
  static void SetCount(Napi::Object& object, const char* key, uint64_t value) {
    object.Set(key, static_cast<double>(value));
  }

  Napi::Promise::Deferred deferred_;
  std::vector<Task> tasks_;
  Options options_;
  std::vector<ProcessResult> results_;
  page_census::Totals totals_;
  uint64_t ksm_distinct_pages_ = 0;
  double seconds_ = 0;
};

uint64_t PageAligned(const Napi::Value& value, bool round_up) {
  uint64_t address = static_cast<uint64_t>(value.As<Napi::Number>().DoubleValue());
  const uint64_t page = page_reader::KernelPageSize();
  return round_up ? (address + page - 1) / page * page : address / page * page;
}

// tasks: [{ pid, ranges: [start, end, advised(0|1), ...] }]; lib/analyze.ts validates them.
std::vector<Task> ParseTasks(const Napi::Array& array) {
  std::vector<Task> tasks;
  for (uint32_t i = 0; i < array.Length(); i++) {
    Napi::Object object = array.Get(i).As<Napi::Object>();
    Task task;
    task.pid = object.Get("pid").As<Napi::Number>().Int32Value();
    Napi::Array ranges = object.Get("ranges").As<Napi::Array>();
    for (uint32_t j = 0; j + 2 < ranges.Length(); j += 3) {
      Range range{PageAligned(ranges.Get(j), false), PageAligned(ranges.Get(j + 1), true),
                  ranges.Get(j + 2).As<Napi::Number>().Int32Value() != 0};
      if (range.end > range.start) task.ranges.push_back(range);
    }
    tasks.push_back(std::move(task));
  }
  return tasks;
}

Napi::Value CensusPages(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 2 || !info[0].IsArray() || !info[1].IsObject()) {
    throw Napi::TypeError::New(env, "censusPages expects (tasks, { maxPageSharing, useZeroPages, contents })");
  }
  Napi::Object object = info[1].As<Napi::Object>();
  Options options{static_cast<uint64_t>(object.Get("maxPageSharing").As<Napi::Number>().Int64Value()),
                  object.Get("useZeroPages").ToBoolean().Value(), object.Get("contents").ToBoolean().Value()};
  auto* worker = new CensusWorker(env, ParseTasks(info[0].As<Napi::Array>()), options);
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

}  // namespace

void InitPageHash(Napi::Env env, Napi::Object exports) {
  exports.Set("censusPages", Napi::Function::New(env, CensusPages, "censusPages"));
}
