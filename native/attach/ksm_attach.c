/*
 * ksm-attach attach|detach PID [--mode auto|prctl|madvise] [--timeout-ms N]
 *
 * Turns KSM on (attach) or off (detach) in a running process by making one of its
 * threads run the system call itself, under ptrace: prctl(PR_SET_MEMORY_MERGE)
 * (Linux 6.4+, the whole process, later mappings too), or madvise(MADV_MERGEABLE)
 * over each private anonymous mapping it has now. Prints one JSON object on stdout.
 * Exit status: 0 done, 1 failed, 2 usage. The `ksm attach` command runs it after
 * its own safety checks; this program only refuses itself, its parent and, when
 * installed with privileges (setcap), other users' processes.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "inject.h"
#include "ksm_abi.h"
#include "maps_scan.h"

#define EXIT_FAILED 1
#define EXIT_USAGE 2
#define DEFAULT_TIMEOUT_MS 5000
/* vm.max_map_count's default: no process has more mappings than that unless raised. */
#define MAX_RANGES 65536

enum action { ACTION_ATTACH, ACTION_DETACH };
enum mode { MODE_AUTO, MODE_PRCTL, MODE_MADVISE };

struct options {
  enum action action;
  enum mode mode;
  pid_t pid;
  long timeout_ms;
};

struct range {
  uintptr_t start, end;
};

static struct range ranges[MAX_RANGES];
static size_t range_count;

struct outcome {
  const char *mode;
  int fell_back;
  unsigned syscalls;
  unsigned marked;
  unsigned failed;
  int first_error;
  unsigned long long bytes;
};

static void usage(FILE *out) {
  fputs("usage: ksm-attach attach|detach PID [--mode auto|prctl|madvise] [--timeout-ms N]\n"
        "Runs prctl(PR_SET_MEMORY_MERGE) or madvise(MADV_MERGEABLE) inside process PID under ptrace.\n",
        out);
}

static void usage_error(const char *message, const char *detail) {
  fprintf(stderr, "ksm-attach: %s%s\n", message, detail ? detail : "");
  usage(stderr);
  exit(EXIT_USAGE);
}

static long parse_number(const char *text, const char *what) {
  char *end;
  errno = 0;
  long value = strtol(text, &end, 10);
  if (errno || end == text || *end || value <= 0) usage_error(what, text);
  return value;
}

static struct options parse_arguments(int argc, char **argv) {
  struct options options = {ACTION_ATTACH, MODE_AUTO, 0, DEFAULT_TIMEOUT_MS};
  int positional = 0;
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
      usage(stdout);
      exit(0);
    }
    if (strcmp(arg, "--mode") == 0 || strcmp(arg, "--timeout-ms") == 0) {
      if (i + 1 >= argc) usage_error("missing value after ", arg);
      const char *value = argv[++i];
      if (arg[2] == 't') {
        options.timeout_ms = parse_number(value, "--timeout-ms needs a positive whole number, not ");
      } else if (strcmp(value, "auto") == 0) {
        options.mode = MODE_AUTO;
      } else if (strcmp(value, "prctl") == 0) {
        options.mode = MODE_PRCTL;
      } else if (strcmp(value, "madvise") == 0) {
        options.mode = MODE_MADVISE;
      } else {
        usage_error("--mode must be auto, prctl or madvise, not ", value);
      }
    } else if (positional == 0) {
      if (strcmp(arg, "attach") == 0) {
        options.action = ACTION_ATTACH;
      } else if (strcmp(arg, "detach") == 0) {
        options.action = ACTION_DETACH;
      } else {
        usage_error("the first argument is attach or detach, not ", arg);
      }
      positional++;
    } else if (positional == 1) {
      options.pid = (pid_t)parse_number(arg, "PID must be a positive whole number, not ");
      positional++;
    } else {
      usage_error("unexpected argument ", arg);
    }
  }
  if (positional != 2) usage_error("attach or detach, and a PID, are required", NULL);
  return options;
}

static const char *errno_name(int error) {
  static const struct {
    int value;
    const char *name;
  } names[] = {
      {EPERM, "EPERM"},   {ESRCH, "ESRCH"},   {EINTR, "EINTR"},         {EIO, "EIO"},       {ENOEXEC, "ENOEXEC"},
      {ECHILD, "ECHILD"}, {EAGAIN, "EAGAIN"}, {ENOMEM, "ENOMEM"},       {EACCES, "EACCES"}, {EFAULT, "EFAULT"},
      {EBUSY, "EBUSY"},   {EINVAL, "EINVAL"}, {ETIMEDOUT, "ETIMEDOUT"}, {ENOSYS, "ENOSYS"}, {ENOENT, "ENOENT"},
  };
  static char other[16];
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    if (names[i].value == error) return names[i].name;
  }
  snprintf(other, sizeof other, "E%d", error);
  return other;
}

static void print_json_string(const char *text) {
  putchar('"');
  for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
    if (*p == '"' || *p == '\\') {
      printf("\\%c", *p);
    } else if (*p < 0x20) {
      printf("\\u%04x", *p);
    } else {
      putchar(*p);
    }
  }
  putchar('"');
}

static const char *action_name(enum action action) { return action == ACTION_ATTACH ? "attach" : "detach"; }

static int report_error(const struct options *o, const struct inject_error *err) {
  printf("{\"action\":\"%s\",\"pid\":%d,\"error\":{\"code\":\"%s\",\"step\":", action_name(o->action), o->pid, errno_name(err->error));
  print_json_string(err->step);
  printf(",\"message\":");
  print_json_string(err->detail[0] ? err->detail : strerror(err->error));
  printf("}}\n");
  return EXIT_FAILED;
}

/* Installed setuid or with file capabilities, this program may trace what its user
 * could not: it then takes only processes whose every user ID is the caller's. */
static int refused_for_privileged_helper(pid_t pid, struct inject_error *err) {
  if (!getauxval(AT_SECURE) || getuid() == 0) return 0;
  char path[64], status[8192];
  snprintf(path, sizeof path, "/proc/%d/status", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  ssize_t n = fd >= 0 ? read(fd, status, sizeof status - 1) : -1;
  if (fd >= 0) close(fd);
  if (n <= 0) {
    err->step = "status";
    err->error = ESRCH;
    snprintf(err->detail, sizeof err->detail, "cannot read %s", path);
    return 1;
  }
  status[n] = '\0';
  const char *uids = strstr(status, "\nUid:");
  unsigned long id[4];
  if (!uids || sscanf(uids + 5, "%lu %lu %lu %lu", &id[0], &id[1], &id[2], &id[3]) != 4 || id[0] != getuid() || id[1] != getuid() ||
      id[2] != getuid() || id[3] != getuid()) {
    err->step = "check";
    err->error = EPERM;
    snprintf(err->detail, sizeof err->detail, "process %d is not only yours", pid);
    return 1;
  }
  return 0;
}

/* A thread's state letter from /proc/PID/task/TID/stat, or 0 when unreadable. */
static char thread_state(pid_t pid, pid_t tid) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/task/%d/stat", pid, tid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  const char *paren = strrchr(buf, ')');
  return paren && paren[1] == ' ' ? paren[2] : 0;
}

/* The main thread, unless it has exited and left the others running. */
static pid_t pick_thread(pid_t pid) {
  char state = thread_state(pid, pid);
  if (state && state != 'Z' && state != 'X') return pid;
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/task", pid);
  DIR *dir = opendir(path);
  if (!dir) return pid;
  pid_t chosen = pid;
  struct dirent *entry;
  while ((entry = readdir(dir)) != NULL) {
    pid_t tid = (pid_t)atoi(entry->d_name);
    if (tid <= 0) continue;
    state = thread_state(pid, tid);
    if (state && state != 'Z' && state != 'X') {
      chosen = tid;
      break;
    }
  }
  closedir(dir);
  return chosen;
}

static int collect_markable(const struct ksm_vma *vma, void *ctx) {
  (void)ctx;
  if (!ksm_vma_is_markable(vma)) return 0;
  if (range_count == MAX_RANGES) return 1;
  ranges[range_count].start = vma->start;
  ranges[range_count].end = vma->end;
  range_count++;
  return 0;
}

static int call(struct inject_session *s, struct outcome *out, long nr, long a0, long a1, long a2, long *result,
                struct inject_error *err) {
  const long args[6] = {a0, a1, a2, 0, 0, 0};
  out->syscalls++;
  return inject_syscall(s, nr, args, result, err);
}

/* madvise(advice) over each whole mapping the preload library would mark, listed
 * now, while the thread is stopped. */
static int advise_mappings(struct inject_session *s, pid_t pid, int advice, struct outcome *out, struct inject_error *err) {
  char path[64], buf[65536];
  snprintf(path, sizeof path, "/proc/%d/maps", pid);
  range_count = 0;
  int walked = ksm_maps_walk(path, buf, sizeof buf, collect_markable, NULL);
  if (walked < 0) {
    err->step = "maps";
    err->error = -walked;
    snprintf(err->detail, sizeof err->detail, "cannot read %s", path);
    return -1;
  }
  out->mode = "madvise";
  for (size_t i = 0; i < range_count; i++) {
    long result;
    if (call(s, out, SYS_madvise, (long)ranges[i].start, (long)(ranges[i].end - ranges[i].start), advice, &result, err) != 0) return -1;
    if (result == 0) {
      out->marked++;
      out->bytes += ranges[i].end - ranges[i].start;
    } else {
      out->failed++;
      if (!out->first_error) out->first_error = (int)-result;
    }
  }
  if (out->failed > 0 && out->marked == 0) {
    err->step = "madvise";
    err->error = out->first_error;
    snprintf(err->detail, sizeof err->detail, "madvise(%s) failed on every mapping", advice == MADV_MERGEABLE ? "MADV_MERGEABLE" : "MADV_UNMERGEABLE");
    return -1;
  }
  return 0;
}

static int set_merge_any(struct inject_session *s, long on, struct outcome *out, long *result, struct inject_error *err) {
  if (call(s, out, SYS_prctl, PR_SET_MEMORY_MERGE, on, 0, result, err) != 0) return -1;
  out->mode = "prctl";
  return 0;
}

static int prctl_failed(long result, struct inject_error *err) {
  err->step = "prctl";
  err->error = (int)-result;
  snprintf(err->detail, sizeof err->detail, "prctl(PR_SET_MEMORY_MERGE) failed in the target");
  return -1;
}

static int run_attach(struct inject_session *s, const struct options *o, struct outcome *out, struct inject_error *err) {
  if (o->mode != MODE_MADVISE) {
    long result;
    if (set_merge_any(s, 1, out, &result, err) != 0) return -1;
    if (result == 0) return 0;
    /* EINVAL: a kernel before 6.4 (or without KSM); madvise says which. */
    if (result != -EINVAL || o->mode == MODE_PRCTL) return prctl_failed(result, err);
    out->fell_back = 1;
  }
  return advise_mappings(s, o->pid, MADV_MERGEABLE, out, err);
}

static int run_detach(struct inject_session *s, const struct options *o, struct outcome *out, struct inject_error *err) {
  long result;
  if (o->mode == MODE_AUTO) {
    /* Whichever way the process was attached: the flag says whether prctl was used. */
    if (call(s, out, SYS_prctl, PR_GET_MEMORY_MERGE, 0, 0, &result, err) != 0) return -1;
    if (result == 1) {
      if (set_merge_any(s, 0, out, &result, err) != 0) return -1;
      return result == 0 ? 0 : prctl_failed(result, err);
    }
  } else if (o->mode == MODE_PRCTL) {
    if (set_merge_any(s, 0, out, &result, err) != 0) return -1;
    return result == 0 ? 0 : prctl_failed(result, err);
  }
  /* Unmerging an unmarked mapping does nothing, so the same mappings as attach. */
  return advise_mappings(s, o->pid, MADV_UNMERGEABLE, out, err);
}

int main(int argc, char **argv) {
  struct options o = parse_arguments(argc, argv);
  struct inject_error err = {"check", 0, ""};
  if (o.pid == getpid() || o.pid == getppid()) {
    err.error = EINVAL;
    snprintf(err.detail, sizeof err.detail, "refusing to attach to itself");
    return report_error(&o, &err);
  }
  if (refused_for_privileged_helper(o.pid, &err)) return report_error(&o, &err);
  inject_install_signal_handlers();
  /* The target's thread waits for this program while it is stopped: where allowed
   * (root), run ahead of ordinary work so that a busy machine does not stretch the stop. */
  (void)setpriority(PRIO_PROCESS, 0, -10);

  struct inject_session session;
  struct outcome out = {"none", 0, 0, 0, 0, 0, 0};
  int64_t started = inject_now_ns();
  pid_t tid = pick_thread(o.pid);
  int failed = inject_begin(&session, o.pid, tid, started + (int64_t)o.timeout_ms * 1000000, &err) != 0;
  if (!failed) failed = (o.action == ACTION_ATTACH ? run_attach : run_detach)(&session, &o, &out, &err) != 0;
  struct inject_error end_err = {"detach", 0, ""};
  int64_t stopped_ns = session.stopped_at_ns ? inject_now_ns() - session.stopped_at_ns : 0;
  if (inject_end(&session, &end_err) != 0 && !failed) {
    err = end_err;
    failed = 1;
  }
  if (failed) return report_error(&o, &err);

  printf("{\"action\":\"%s\",\"pid\":%d,\"tid\":%d,\"mode\":\"%s\",\"fellBack\":%s,\"syscalls\":%u,", action_name(o.action), o.pid,
         tid, out.mode, out.fell_back ? "true" : "false", out.syscalls);
  printf("\"mappings\":%u,\"failedMappings\":%u,\"firstError\":", out.marked, out.failed);
  if (out.first_error) {
    printf("\"%s\"", errno_name(out.first_error));
  } else {
    printf("null");
  }
  printf(",\"bytes\":%llu,\"signalsPassed\":%u,\"interruptedSyscall\":%ld,\"stoppedMicroseconds\":%lld}\n", out.bytes,
         session.signals_passed, session.interrupted_syscall, (long long)(stopped_ns / 1000));
  return fflush(stdout) == 0 ? 0 : EXIT_FAILED;
}
