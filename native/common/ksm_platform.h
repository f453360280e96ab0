/*
 * The targets this code is written for: 64-bit Linux on x86_64 and aarch64, with glibc
 * or musl. Elsewhere it would build and compute wrong results: a 32-bit off_t sends
 * mmap64's offset through mmap truncated, SYS_mmap is the old struct-based call on i386,
 * and addresses are kept in 53-bit JavaScript numbers. So other targets stop here.
 */
#ifndef KSM_PLATFORM_H
#define KSM_PLATFORM_H

#if !defined(__linux__)
#error "ksm-preload builds for Linux only (x86_64 or aarch64, 64-bit)"
#elif !defined(__LP64__)
#error "ksm-preload needs a 64-bit (LP64) build: 32-bit and x32 targets are not supported (x86_64 or aarch64 only)"
#elif !defined(__x86_64__) && !defined(__aarch64__)
#error "ksm-preload supports x86_64 and aarch64 only: this architecture is untested"
#endif

#endif
