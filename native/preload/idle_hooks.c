/*
 * Calls after which a program may sleep for a long time. Memory whose marking was
 * deferred (see marker.c) is marked just before them, so that a program that allocates
 * and then waits ends up covered. When nothing waits, each costs one predictable branch.
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

#include "marker.h"
#include "symbols.h"

#define KSM_EXPORT __attribute__((visibility("default")))
#define UNLIKELY(x) __builtin_expect(!!(x), 0)

/* `may_block` is evaluated only in madvise mode. */
#define IDLE_HOOK_IF(may_block, type, name, params, args)                        \
  KSM_EXPORT type name params {                                                  \
    static type(*real) params;                                                   \
    type(*next) params = __atomic_load_n(&real, __ATOMIC_RELAXED);               \
    if (UNLIKELY(!next)) {                                                       \
      next = (type(*) params)ksm_find_real(#name);                               \
      __atomic_store_n(&real, next, __ATOMIC_RELAXED);                           \
    }                                                                            \
    if (UNLIKELY(ksm_marker_active) && ksm_marker_waiting() && (may_block)) ksm_marker_idle(); \
    return next args;                                                            \
  }
#define IDLE_HOOK(type, name, params, args) IDLE_HOOK_IF(1, type, name, params, args)

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

IDLE_HOOK_IF(may_wait_on(fd), ssize_t, read, (int fd, void *buf, size_t count), (fd, buf, count))
IDLE_HOOK(ssize_t, recv, (int fd, void *buf, size_t len, int flags), (fd, buf, len, flags))
IDLE_HOOK(ssize_t, recvfrom, (int fd, void *buf, size_t len, int flags, struct sockaddr *from, socklen_t *from_len),
          (fd, buf, len, flags, from, from_len))
IDLE_HOOK(ssize_t, recvmsg, (int fd, struct msghdr *message, int flags), (fd, message, flags))
IDLE_HOOK(int, accept, (int fd, struct sockaddr *address, socklen_t *length), (fd, address, length))
IDLE_HOOK(int, accept4, (int fd, struct sockaddr *address, socklen_t *length, int flags), (fd, address, length, flags))
IDLE_HOOK(int, poll, (struct pollfd *fds, nfds_t count, int timeout), (fds, count, timeout))
IDLE_HOOK(int, ppoll, (struct pollfd *fds, nfds_t count, const struct timespec *timeout, const sigset_t *mask),
          (fds, count, timeout, mask))
IDLE_HOOK(int, select, (int count, fd_set *readable, fd_set *writable, fd_set *failed, struct timeval *timeout),
          (count, readable, writable, failed, timeout))
IDLE_HOOK(int, pselect,
          (int count, fd_set *readable, fd_set *writable, fd_set *failed, const struct timespec *timeout,
           const sigset_t *mask),
          (count, readable, writable, failed, timeout, mask))
IDLE_HOOK(int, epoll_wait, (int fd, struct epoll_event *events, int max, int timeout), (fd, events, max, timeout))
IDLE_HOOK(int, epoll_pwait, (int fd, struct epoll_event *events, int max, int timeout, const sigset_t *mask),
          (fd, events, max, timeout, mask))
IDLE_HOOK(int, nanosleep, (const struct timespec *duration, struct timespec *remaining), (duration, remaining))
IDLE_HOOK(int, clock_nanosleep, (clockid_t clock, int flags, const struct timespec *time, struct timespec *remaining),
          (clock, flags, time, remaining))
IDLE_HOOK(unsigned, sleep, (unsigned seconds), (seconds))
IDLE_HOOK(int, usleep, (useconds_t microseconds), (microseconds))
IDLE_HOOK(int, pause, (void), ())
IDLE_HOOK(int, sigsuspend, (const sigset_t *mask), (mask))
IDLE_HOOK(pid_t, waitpid, (pid_t pid, int *status, int options), (pid, status, options))
