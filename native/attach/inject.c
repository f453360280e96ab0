#define _GNU_SOURCE
#include "inject.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "maps_scan.h"

/* Kernel-internal return values a tracer can see in a stopped thread's registers:
 * the call is to be restarted (include/linux/errno.h). */
#define ERESTARTSYS 512
#define ERESTARTNOINTR 513
#define ERESTARTNOHAND 514
#define ERESTART_RESTARTBLOCK 516

/* Set by the deadline's SIGALRM or by SIGINT/SIGTERM/SIGHUP: every wait gives up. */
static volatile sig_atomic_t abort_signal;

static void on_abort_signal(int signo) { abort_signal = signo; }

void inject_install_signal_handlers(void) {
  static const int signals[] = {SIGALRM, SIGINT, SIGTERM, SIGHUP};
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_handler = on_abort_signal;
  sigemptyset(&action.sa_mask);
  /* No SA_RESTART: waitpid must return EINTR so that the deadline is seen. */
  for (size_t i = 0; i < sizeof signals / sizeof signals[0]; i++) sigaction(signals[i], &action, NULL);
}

int64_t inject_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int fail(struct inject_error *err, const char *step, int error, const char *format, ...) {
  err->step = step;
  err->error = error;
  va_list args;
  va_start(args, format);
  vsnprintf(err->detail, sizeof err->detail, format, args);
  va_end(args);
  return -1;
}

/* Repeats SIGALRM every 50 ms after the deadline, so a wait that started just before
 * it still returns. */
static void arm_deadline(int64_t deadline_ns) {
  int64_t left = deadline_ns - inject_now_ns();
  if (left < 1000) left = 1000;
  struct itimerval timer = {
      .it_interval = {0, 50000},
      .it_value = {(time_t)(left / 1000000000), (suseconds_t)(left % 1000000000 / 1000)},
  };
  setitimer(ITIMER_REAL, &timer, NULL);
}

static void disarm_deadline(void) {
  struct itimerval off;
  memset(&off, 0, sizeof off);
  setitimer(ITIMER_REAL, &off, NULL);
}

static int get_regs(pid_t tid, void *regs, size_t *len, int type) {
  struct iovec iov = {regs, *len};
  if (ptrace(PTRACE_GETREGSET, tid, (void *)(long)type, &iov) != 0) return -1;
  *len = iov.iov_len;
  return 0;
}

static int set_regs(pid_t tid, const void *regs, size_t len, int type) {
  struct iovec iov = {(void *)regs, len};
  return ptrace(PTRACE_SETREGSET, tid, (void *)(long)type, &iov) == 0 ? 0 : -1;
}

/* The field "TracerPid:" of the thread's status file, or 0. */
static long tracer_of(pid_t pid, pid_t tid) {
  char path[64], buf[4096];
  snprintf(path, sizeof path, "/proc/%d/task/%d/status", pid, tid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  const char *line = strstr(buf, "\nTracerPid:");
  return line ? strtol(line + 11, NULL, 10) : 0;
}

/* Whether the thread has exited or is exiting: the kernel refuses to seize it then. */
static int thread_is_gone(pid_t pid, pid_t tid) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/task/%d/stat", pid, tid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 1;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 1;
  buf[n] = '\0';
  const char *paren = strrchr(buf, ')');
  return !paren || paren[1] != ' ' || paren[2] == 'Z' || paren[2] == 'X';
}

/* What one waitpid() report means to the injector. */
enum stop_kind {
  STOP_GONE,       /* exited or killed */
  STOP_EXITING,    /* PTRACE_EVENT_EXIT: on its way out */
  STOP_INTERRUPT,  /* the stop PTRACE_INTERRUPT asked for */
  STOP_GROUP,      /* stopped by SIGSTOP/SIGTSTP/...: job control */
  STOP_STEP,       /* the trap after the borrowed instruction */
  STOP_SIGNAL,     /* a signal on its way to the program */
};

/* Waits for the thread's next report. Returns -1 when the deadline passed or the
 * helper was told to stop; the thread then is still running. */
static int wait_stop(struct inject_session *s, enum stop_kind *kind, int *signo, struct inject_error *err) {
  int status;
  for (;;) {
    if (abort_signal) {
      return fail(err, "wait", abort_signal == SIGALRM ? ETIMEDOUT : EINTR,
                  abort_signal == SIGALRM ? "the target did not stop in time" : "the helper was told to stop");
    }
    pid_t got = waitpid(s->tid, &status, __WALL);
    if (got == s->tid) break;
    if (got < 0 && errno == EINTR) continue;
    return fail(err, "waitpid", errno, "lost track of thread %d", s->tid);
  }
  if (WIFEXITED(status) || WIFSIGNALED(status)) {
    *kind = STOP_GONE;
    return 0;
  }
  int event = status >> 16;
  *signo = WSTOPSIG(status);
  if (event == PTRACE_EVENT_EXIT) {
    *kind = STOP_EXITING;
  } else if (event == PTRACE_EVENT_STOP) {
    *kind = *signo == SIGTRAP ? STOP_INTERRUPT : STOP_GROUP;
  } else if (*signo == SIGTRAP && s->borrowed) {
    /* The step trap comes from the kernel: si_code > 0 (x86_64: TRAP_BRKPT), or on
     * arm64 SI_USER with no sender. A SIGTRAP someone sent names its sender. */
    siginfo_t info;
    memset(&info, 0, sizeof info);
    ptrace(PTRACE_GETSIGINFO, s->tid, NULL, &info);
    *kind = info.si_code > 0 || (info.si_code == SI_USER && info.si_pid == 0) ? STOP_STEP : STOP_SIGNAL;
  } else {
    *kind = STOP_SIGNAL;
  }
  return 0;
}

static const char *stop_signal_name(int signo) {
  switch (signo) {
    case SIGSTOP: return "STOP";
    case SIGTSTP: return "TSTP";
    case SIGTTIN: return "TTIN";
    case SIGTTOU: return "TTOU";
    default: return "?";
  }
}

static int gone(struct inject_error *err) { return fail(err, "wait", ESRCH, "the target exited midway"); }

/* Reads the thread's own registers at a stop and adjusts them for the return. */
static int save_registers(struct inject_session *s, struct inject_error *err) {
  size_t len = sizeof s->saved;
  if (get_regs(s->tid, &s->saved, &len, NT_PRSTATUS) != 0) return fail(err, "getregs", errno, "cannot read the registers");
  s->fp_len = sizeof s->saved_fp;
  if (get_regs(s->tid, s->saved_fp, &s->fp_len, NT_PRFPREG) != 0) return fail(err, "getfpregs", errno, "cannot read the FP registers");
  if (arch_is_compat(&s->saved)) return fail(err, "getregs", ENOEXEC, "32-bit processes are not supported");
  s->interrupted_syscall = arch_interrupted_syscall(&s->saved);
  if (s->interrupted_syscall >= 0 && arch_result(&s->saved) == -EINTR && arch_restarts_after_eintr(s->interrupted_syscall)) {
    /* Woken only by the stop: what SA_RESTART does for other calls, it does again. */
    arch_set_result(&s->saved, -ERESTARTNOHAND);
  }
  return 0;
}

static int restore_registers(struct inject_session *s, struct inject_error *err) {
  if (set_regs(s->tid, &s->saved, sizeof s->saved, NT_PRSTATUS) != 0) return fail(err, "setregs", errno, "cannot restore the registers");
  if (set_regs(s->tid, s->saved_fp, s->fp_len, NT_PRFPREG) != 0) return fail(err, "setfpregs", errno, "cannot restore the FP registers");
  s->borrowed = 0;
  return 0;
}

/* After PTRACE_INTERRUPT: lets signals through to the program until the interrupt
 * stop, then saves the registers there. */
static int stop_and_save(struct inject_session *s, struct inject_error *err) {
  if (ptrace(PTRACE_INTERRUPT, s->tid, NULL, NULL) != 0) return errno == ESRCH ? gone(err) : fail(err, "interrupt", errno, "PTRACE_INTERRUPT failed");
  s->running = 1;
  for (;;) {
    enum stop_kind kind;
    int signo = 0;
    if (wait_stop(s, &kind, &signo, err) != 0) return -1;
    s->running = 0;
    switch (kind) {
      case STOP_GONE:
        s->exited = 1;
        return gone(err);
      case STOP_EXITING:
        s->exiting = 1;
        return gone(err);
      case STOP_GROUP:
        return fail(err, "interrupt", EAGAIN, "the target is stopped by job control (SIG%s); continue it first (kill -CONT)", stop_signal_name(signo));
      case STOP_INTERRUPT:
        return save_registers(s, err);
      case STOP_STEP:
      case STOP_SIGNAL:
        if (ptrace(PTRACE_CONT, s->tid, NULL, (void *)(long)signo) != 0) return fail(err, "cont", errno, "cannot pass a signal on");
        s->running = 1;
        s->signals_passed++;
        break;
    }
  }
}

/* Copies the regions worth searching for a system call instruction: the vdso
 * first, then libc's code, then any other code. */
struct code_regions {
  uintptr_t start[3], end[3];
};

static int collect_code(const struct ksm_vma *vma, void *ctx) {
  struct code_regions *regions = ctx;
  if (!(vma->prot & PROT_EXEC) || !(vma->prot & PROT_READ)) return 0;
  int rank;
  if (vma->path_len == 6 && memcmp(vma->path, "[vdso]", 6) == 0) {
    rank = 0;
  } else if (vma->inode != 0 && memmem(vma->path, vma->path_len, "/libc", 5)) {
    rank = 1;
  } else if (vma->inode != 0) {
    rank = 2;
  } else {
    return 0;
  }
  if (regions->end[rank] == 0) {
    regions->start[rank] = vma->start;
    regions->end[rank] = vma->end;
  }
  return 0;
}

static int search_region(int mem, uintptr_t start, uintptr_t end, uintptr_t *found) {
  const size_t insn = sizeof ARCH_SYSCALL_INSN;
  unsigned char buf[65536];
  for (uintptr_t at = start; at < end;) {
    size_t want = end - at < sizeof buf ? end - at : sizeof buf;
    ssize_t n = pread(mem, buf, want, (off_t)at);
    if (n < (ssize_t)insn) return 0;
    for (size_t i = 0; i + insn <= (size_t)n; i += ARCH_SYSCALL_ALIGN) {
      if (memcmp(buf + i, ARCH_SYSCALL_INSN, insn) == 0) {
        *found = at + i;
        return 1;
      }
    }
    /* Overlap by one instruction less a byte so no match across chunks is missed. */
    at += (uintptr_t)n - (insn - ARCH_SYSCALL_ALIGN);
  }
  return 0;
}

static int find_syscall_insn(struct inject_session *s, pid_t pid, struct inject_error *err) {
  char path[64], buf[16384];
  struct code_regions regions;
  memset(&regions, 0, sizeof regions);
  snprintf(path, sizeof path, "/proc/%d/maps", pid);
  int walked = ksm_maps_walk(path, buf, sizeof buf, collect_code, &regions);
  if (walked < 0) return fail(err, "maps", -walked, "cannot read %s", path);
  snprintf(path, sizeof path, "/proc/%d/mem", pid);
  int mem = open(path, O_RDONLY | O_CLOEXEC);
  if (mem < 0) return fail(err, "mem", errno, "cannot open %s", path);
  int found = 0;
  for (int rank = 0; rank < 3 && !found; rank++) {
    if (regions.end[rank]) found = search_region(mem, regions.start[rank], regions.end[rank], &s->syscall_insn);
  }
  close(mem);
  return found ? 0 : fail(err, "find-syscall", ENOEXEC, "no system call instruction in the target's vdso or libraries");
}

static int still_syscall_insn(const struct inject_session *s, pid_t pid) {
  char path[64];
  unsigned char bytes[sizeof ARCH_SYSCALL_INSN];
  snprintf(path, sizeof path, "/proc/%d/mem", pid);
  int mem = open(path, O_RDONLY | O_CLOEXEC);
  if (mem < 0) return 0;
  int same = pread(mem, bytes, sizeof bytes, (off_t)s->syscall_insn) == (ssize_t)sizeof bytes && memcmp(bytes, ARCH_SYSCALL_INSN, sizeof bytes) == 0;
  close(mem);
  return same;
}

int inject_begin(struct inject_session *s, pid_t pid, pid_t tid, int64_t deadline_ns, struct inject_error *err) {
  memset(s, 0, sizeof *s);
  s->tid = tid;
  s->interrupted_syscall = -1;
  s->deadline_ns = deadline_ns;
  arm_deadline(deadline_ns);
  if (ptrace(PTRACE_SEIZE, tid, NULL, (void *)(long)PTRACE_O_TRACEEXIT) != 0) {
    int error = errno;
    long tracer = tracer_of(pid, tid);
    if (error == EPERM && tracer > 0) return fail(err, "seize", EBUSY, "already traced by process %ld", tracer);
    if (error == ESRCH || (error == EPERM && thread_is_gone(pid, tid))) return fail(err, "seize", ESRCH, "no such process, or it is exiting");
    return fail(err, "seize", error, "PTRACE_SEIZE refused");
  }
  s->seized = 1;
  /* Searched while the thread still runs, to keep the stop short; checked again once
   * it is stopped, in case the process exec'd meanwhile. */
  if (find_syscall_insn(s, pid, err) != 0) return -1;
  if (stop_and_save(s, err) != 0) return -1;
  s->stopped_at_ns = inject_now_ns();
  return still_syscall_insn(s, pid) ? 0 : find_syscall_insn(s, pid, err);
}

/* Our own calls come back with these when a signal cut them short: run them again. */
static int call_was_cut_short(long result) {
  return result == -EINTR || result == -ERESTARTSYS || result == -ERESTARTNOINTR || result == -ERESTARTNOHAND ||
         result == -ERESTART_RESTARTBLOCK;
}

int inject_syscall(struct inject_session *s, long nr, const long args[6], long *result, struct inject_error *err) {
  for (;;) {
    if (abort_signal || inject_now_ns() > s->deadline_ns) return fail(err, "syscall", ETIMEDOUT, "the deadline passed");
    arch_regs regs = s->saved;
    arch_prepare_call(&regs, s->syscall_insn, nr, args);
    if (set_regs(s->tid, &regs, sizeof regs, NT_PRSTATUS) != 0) return fail(err, "setregs", errno, "cannot set the registers");
    s->borrowed = 1;
    if (ptrace(PTRACE_SINGLESTEP, s->tid, NULL, NULL) != 0) return fail(err, "singlestep", errno, "PTRACE_SINGLESTEP failed");
    s->running = 1;
    enum stop_kind kind;
    int signo = 0;
    if (wait_stop(s, &kind, &signo, err) != 0) return -1;
    s->running = 0;
    switch (kind) {
      case STOP_GONE:
        s->exited = 1;
        return gone(err);
      case STOP_EXITING:
        s->exiting = 1;
        return gone(err);
      case STOP_GROUP:
        return fail(err, "syscall", EAGAIN, "the target was stopped by job control (SIG%s) midway", stop_signal_name(signo));
      case STOP_INTERRUPT:
        return fail(err, "syscall", EIO, "an unexpected stop");
      case STOP_SIGNAL:
        /* The program gets the signal with its own registers, in this very stop, as if
         * the injector had not been there; then the thread is stopped again. */
        if (restore_registers(s, err) != 0) return -1;
        if (ptrace(PTRACE_CONT, s->tid, NULL, (void *)(long)signo) != 0) return fail(err, "cont", errno, "cannot pass a signal on");
        s->running = 1;
        s->signals_passed++;
        if (stop_and_save(s, err) != 0) return -1;
        continue;
      case STOP_STEP:
        break;
    }
    size_t len = sizeof regs;
    if (get_regs(s->tid, &regs, &len, NT_PRSTATUS) != 0) return fail(err, "getregs", errno, "cannot read the result");
    uintptr_t pc = arch_pc(&regs);
    if (pc == s->syscall_insn) continue; /* arm64 rewound a cut-short call before the stop */
    if (pc != s->syscall_insn + sizeof ARCH_SYSCALL_INSN) return fail(err, "syscall", EIO, "the thread stopped at an unexpected address");
    if (call_was_cut_short(arch_result(&regs))) continue;
    *result = arch_result(&regs);
    return 0;
  }
}

int inject_end(struct inject_session *s, struct inject_error *err) {
  int status = 0;
  int deliver = 0;
  disarm_deadline();
  abort_signal = 0;
  if (!s->seized || s->exited) return 0;
  /* A thread that never stopped holds its own registers: this program's exit detaches it. */
  if (s->running && !s->borrowed) return 0;
  if (s->running) {
    /* Past the deadline with the thread running: it may hold borrowed registers, so
     * stop it again however long that takes, and put them back. */
    ptrace(PTRACE_INTERRUPT, s->tid, NULL, NULL);
    for (;;) {
      int raw;
      pid_t got = waitpid(s->tid, &raw, __WALL);
      if (got < 0 && errno == EINTR) continue;
      if (got < 0 || WIFEXITED(raw) || WIFSIGNALED(raw)) return 0;
      int event = raw >> 16;
      if (event == PTRACE_EVENT_EXIT) s->exiting = 1;
      /* A signal caught here goes to the program when the thread is let go. */
      if (event == 0 && !(WSTOPSIG(raw) == SIGTRAP && s->borrowed)) deliver = WSTOPSIG(raw);
      break;
    }
    s->running = 0;
  }
  if (s->borrowed && !s->exiting && restore_registers(s, err) != 0) status = -1;
  if (ptrace(PTRACE_DETACH, s->tid, NULL, (void *)(long)deliver) != 0 && errno != ESRCH && status == 0) {
    status = fail(err, "detach", errno, "PTRACE_DETACH failed");
  }
  return status;
}
