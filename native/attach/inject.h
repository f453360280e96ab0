/*
 * Running system calls inside another process: stop one of its threads with
 * PTRACE_SEIZE + PTRACE_INTERRUPT, point it at a system call instruction it already
 * maps, step over it, and put every register back as it was.
 */
#ifndef KSM_ATTACH_INJECT_H
#define KSM_ATTACH_INJECT_H

#include <stdint.h>
#include <sys/types.h>

#include "arch.h"

/* Room for the largest NT_PRFPREG set (x86_64 FXSAVE: 512 bytes; arm64 FPSIMD: 528). */
#define INJECT_FP_MAX 1024

struct inject_session {
  pid_t tid;
  /* The thread's registers at the stop, put back before it runs its own code again. */
  arch_regs saved;
  unsigned char saved_fp[INJECT_FP_MAX];
  size_t fp_len;
  /* Whether the thread holds the injector's registers rather than its own. */
  int borrowed;
  int seized;
  /* Resumed by the injector and not yet reported stopped again. */
  int running;
  int exited;
  int exiting;
  uintptr_t syscall_insn;
  /* The thread's own system call the stop interrupted (to be restarted), or -1. */
  long interrupted_syscall;
  /* Signals that arrived meanwhile, delivered to the program with its own registers. */
  unsigned signals_passed;
  int64_t deadline_ns;
  int64_t stopped_at_ns;
};

/* Why an injection failed: the step, and an errno value. */
struct inject_error {
  const char *step;
  int error;
  /* Words for the person; may be empty. */
  char detail[256];
};

/* A monotonic clock in nanoseconds. */
int64_t inject_now_ns(void);

/* Seizes `tid`, stops it and saves its registers; finds the instruction to borrow.
 * The session ends with inject_end() whatever happens. */
int inject_begin(struct inject_session *s, pid_t pid, pid_t tid, int64_t deadline_ns, struct inject_error *err);

/* Runs syscall `nr` with `args` in the stopped thread; *result is the raw return value
 * (a negative errno on failure). Returns 0, or -1 with err set when the injection
 * itself failed (the target exited, the deadline passed...). */
int inject_syscall(struct inject_session *s, long nr, const long args[6], long *result, struct inject_error *err);

/* Puts back the thread's registers and lets it go. Returns 0, or -1 with err set. */
int inject_end(struct inject_session *s, struct inject_error *err);

/* Handlers for SIGALRM (the deadline) and SIGINT/SIGTERM/SIGHUP (give up cleanly):
 * they interrupt the waits so that the thread is never left stopped or borrowed. */
void inject_install_signal_handlers(void);

#endif
