/*
 * Calls after which a program may sleep for a long time. Memory whose marking was
 * deferred (see marker.c) is marked just before them, so that a program that allocates
 * and then waits ends up covered, and the brk heap's growth is found there (marker.c).
 * Outside madvise mode each costs one predictable branch.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hooks.h"
#include "marker.h"
#include "symbols.h"

#define KSM_EXPORT __attribute__((visibility("default")))
#define UNLIKELY(x) __builtin_expect(!!(x), 0)

/*
 * Each real function is looked up by ksm_resolve_idle_functions, from the constructor:
 * these calls are often a signal handler's first (waitpid and read in a SIGCHLD
 * handler), and dlsym there can wait forever on a loader lock the interrupted code
 * holds. Only a call before the constructor ran looks its function up on the spot.
 */
static void *find_late(const char *name) {
  void *real = ksm_find_real(name);
  /* NULL only inside dlsym on this thread: nothing there blocks. */
  if (!real) errno = ENOSYS;
  return real;
}

/* `may_block` is evaluated only in madvise mode. */
#define IDLE_HOOK_IF(may_block, type, name, params, args)                        \
  static type(*real_##name) params;                                              \
  KSM_EXPORT type name params {                                                  \
    type(*next) params = __atomic_load_n(&real_##name, __ATOMIC_RELAXED);        \
    if (UNLIKELY(!next)) {                                                       \
      next = (type(*) params)find_late(#name);                                   \
      if (!next) return (type)-1;                                                \
      __atomic_store_n(&real_##name, next, __ATOMIC_RELAXED);                    \
    }                                                                            \
    if (UNLIKELY(ksm_marker_active) && ksm_marker_waiting() && (may_block)) ksm_marker_idle(); \
    return next args;                                                            \
  }

/* Reading files never waits long: start-up reads hundreds of them while the heap grows,
 * and marking there would cut the growing heap into many VMAs. Pipes, terminals and
 * sockets may wait. */
static int may_wait_on(int fd) {
  struct stat st;
  int saved_errno = errno;
  int is_file = fstat(fd, &st) == 0 && (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode));
  errno = saved_errno;
  return !is_file;
}

/* (may_block, type, name, params, args) */
#define IDLE_FUNCTIONS(X) \
  X(may_wait_on(fd), ssize_t, read, (int fd, void *buf, size_t count), (fd, buf, count)) \
  X(1, ssize_t, recv, (int fd, void *buf, size_t len, int flags), (fd, buf, len, flags)) \
  X(1, ssize_t, recvfrom, (int fd, void *buf, size_t len, int flags, struct sockaddr *from, socklen_t *from_len), (fd, buf, len, flags, from, from_len)) \
  X(1, ssize_t, recvmsg, (int fd, struct msghdr *message, int flags), (fd, message, flags)) \
  X(1, int, accept, (int fd, struct sockaddr *address, socklen_t *length), (fd, address, length)) \
  X(1, int, accept4, (int fd, struct sockaddr *address, socklen_t *length, int flags), (fd, address, length, flags)) \
  X(1, int, poll, (struct pollfd *fds, nfds_t count, int timeout), (fds, count, timeout)) \
  X(1, int, ppoll, (struct pollfd *fds, nfds_t count, const struct timespec *timeout, const sigset_t *mask), (fds, count, timeout, mask)) \
  X(1, int, select, (int count, fd_set *readable, fd_set *writable, fd_set *failed, struct timeval *timeout), (count, readable, writable, failed, timeout)) \
  X(1, int, pselect, (int count, fd_set *readable, fd_set *writable, fd_set *failed, const struct timespec *timeout, const sigset_t *mask), (count, readable, writable, failed, timeout, mask)) \
  X(1, int, epoll_wait, (int fd, struct epoll_event *events, int max, int timeout), (fd, events, max, timeout)) \
  X(1, int, epoll_pwait, (int fd, struct epoll_event *events, int max, int timeout, const sigset_t *mask), (fd, events, max, timeout, mask)) \
  X(1, int, nanosleep, (const struct timespec *duration, struct timespec *remaining), (duration, remaining)) \
  X(1, int, clock_nanosleep, (clockid_t clock, int flags, const struct timespec *time, struct timespec *remaining), (clock, flags, time, remaining)) \
  X(1, unsigned, sleep, (unsigned seconds), (seconds)) \
  X(1, int, usleep, (useconds_t microseconds), (microseconds)) \
  X(1, int, pause, (void), ()) \
  X(1, int, sigsuspend, (const sigset_t *mask), (mask)) \
  X(1, pid_t, waitpid, (pid_t pid, int *status, int options), (pid, status, options))

IDLE_FUNCTIONS(IDLE_HOOK_IF)

#define RESOLVE(may_block, type, name, params, args) \
  __atomic_store_n(&real_##name, (type(*) params)ksm_find_optional(#name), __ATOMIC_RELAXED);

void ksm_resolve_idle_functions(void) { IDLE_FUNCTIONS(RESOLVE) }
