/*
 * What the injector needs to know about one architecture: the general registers as
 * PTRACE_GETREGSET NT_PRSTATUS returns them, where a system call takes its number,
 * arguments and result, and the bytes of the instruction that makes one.
 */
#ifndef KSM_ATTACH_ARCH_H
#define KSM_ATTACH_ARCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/user.h>

#if defined(__x86_64__)

typedef struct user_regs_struct arch_regs;

/* `syscall`: any two bytes 0f 05 decode as one when execution starts there. */
static const unsigned char ARCH_SYSCALL_INSN[] = {0x0f, 0x05};
#define ARCH_SYSCALL_ALIGN 1

static inline uintptr_t arch_pc(const arch_regs *r) { return r->rip; }
static inline long arch_result(const arch_regs *r) { return (long)r->rax; }

/* The number of the system call the thread was stopped in, or -1 outside one. */
static inline long arch_interrupted_syscall(const arch_regs *r) { return (long)r->orig_rax; }

static inline void arch_set_result(arch_regs *r, long value) { r->rax = (unsigned long)value; }

static inline void arch_prepare_call(arch_regs *r, uintptr_t insn, long nr, const long args[6]) {
  r->rip = insn;
  r->rax = (unsigned long)nr;
  /* orig_rax -1: the kernel must not apply restart fix-ups meant for the thread's own call. */
  r->orig_rax = (unsigned long)-1;
  r->rdi = (unsigned long)args[0];
  r->rsi = (unsigned long)args[1];
  r->rdx = (unsigned long)args[2];
  r->r10 = (unsigned long)args[3];
  r->r8 = (unsigned long)args[4];
  r->r9 = (unsigned long)args[5];
}

/* A 32-bit (ia32) process runs with the compat code segment; its system calls differ. */
static inline int arch_is_compat(const arch_regs *r) { return r->cs == 0x23; }

/* The kernel returns -EINTR, never a restart code, from these when a thread is only
 * made to stop (signal(7)): the injector restarts them instead. */
static inline int arch_restarts_after_eintr(long nr) {
  return nr == 232 /* epoll_wait */ || nr == 281 /* epoll_pwait */ || nr == 441 /* epoll_pwait2 */;
}

#elif defined(__aarch64__)

typedef struct user_regs_struct arch_regs;

/* `svc #0`, little-endian, 4-byte aligned. */
static const unsigned char ARCH_SYSCALL_INSN[] = {0x01, 0x00, 0x00, 0xd4};
#define ARCH_SYSCALL_ALIGN 4

static inline uintptr_t arch_pc(const arch_regs *r) { return r->pc; }
static inline long arch_result(const arch_regs *r) { return (long)r->regs[0]; }

/* arm64 rewinds an interrupted call before the stop and keeps its number outside
 * NT_PRSTATUS: restoring the registers restarts it, with nothing to record here. */
static inline long arch_interrupted_syscall(const arch_regs *r) {
  (void)r;
  return -1;
}

static inline void arch_set_result(arch_regs *r, long value) { r->regs[0] = (unsigned long long)value; }

static inline void arch_prepare_call(arch_regs *r, uintptr_t insn, long nr, const long args[6]) {
  r->pc = insn;
  r->regs[8] = (unsigned long long)nr;
  for (int i = 0; i < 6; i++) r->regs[i] = (unsigned long long)args[i];
}

/* PSR_MODE32_BIT: an AArch32 (compat) task. */
static inline int arch_is_compat(const arch_regs *r) { return (r->pstate & 0x10) != 0; }

static inline int arch_restarts_after_eintr(long nr) {
  (void)nr;
  return 0;
}

#else
#error "ksm-attach supports x86_64 and aarch64"
#endif

#endif
