/*
 * ksm-exec [--mode auto|prctl|madvise|off] [--lib PATH] [--] CMD ARGS...
 *
 * Runs CMD in place of itself (same pid, no parent left behind) with its memory given
 * to KSM: with PR_SET_MEMORY_MERGE where a probe shows the kernel keeps it across exec
 * (6.7+), or else by putting libksm_preload.so in front of LD_PRELOAD. Exit status as a
 * shell's: 127 CMD not found, 126 CMD not executable; 125 for ksm-exec's own errors.
 *
 * ksm-exec --probe-kernel prints what this kernel offers, one "name value" line each,
 * for `ksm doctor` (lib/kernel/features.ts reads it):
 *   prctl N            0 when PR_SET_MEMORY_MERGE is accepted, else the errno
 *   exec-survival W    kept, lost (6.4-6.6 accept the flag but drop it at execve),
 *                      unknown (the probe could not run) or none (no prctl)
 *   procmap-query N    0 when ioctl(PROCMAP_QUERY) answers, else the errno
 */
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "ksm_env.h"

#define WHO KSM_FACT_LAUNCHER_NAME
#define EXIT_USAGE 125
#define EXIT_NOT_EXECUTABLE 126
#define EXIT_NOT_FOUND 127
#define LIBRARY_NAME KSM_FACT_LIBRARY_NAME
#define PROBE_KERNEL_ARGUMENT "--probe-kernel"
/* argv[1] of the copy of ksm-exec that the exec-survival probe starts. */
#define REPORT_MERGE_FLAG_ARGUMENT "--report-merge-flag"

#ifndef KSM_EXEC_LIBDIR_FROM_BINDIR
#define KSM_EXEC_LIBDIR_FROM_BINDIR "../lib"
#endif

struct options {
  enum ksm_mode mode;
  const char *library;
  char **command;
};

static void usage(FILE *out) {
  fputs("usage: ksm-exec [--mode auto|prctl|madvise|off] [--lib PATH] [--] CMD [ARGS...]\n"
        "Runs CMD with its memory mergeable by KSM (PR_SET_MEMORY_MERGE, else LD_PRELOAD of " LIBRARY_NAME ").\n",
        out);
}

static void fail(int status, const char *message, const char *detail) {
  fprintf(stderr, WHO ": %s%s\n", message, detail ? detail : "");
  exit(status);
}

static struct options parse_arguments(int argc, char **argv) {
  struct options options = {ksm_env_mode(WHO), ksm_env_value("KSM_PRELOAD_LIB"), NULL};
  int i = 1;
  for (; i < argc; i++) {
    const char *arg = argv[i];
    const char *value = NULL;
    if (strcmp(arg, "--") == 0) {
      i++;
      break;
    }
    if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
      usage(stdout);
      exit(0);
    }
    if (arg[0] != '-') break;
    int is_mode = strncmp(arg, "--mode", 6) == 0 && (arg[6] == '\0' || arg[6] == '=');
    int is_lib = strncmp(arg, "--lib", 5) == 0 && (arg[5] == '\0' || arg[5] == '=');
    if (!is_mode && !is_lib) fail(EXIT_USAGE, "unknown option ", arg);
    const char *rest = arg + (is_mode ? 6 : 5);
    if (*rest == '=') {
      value = rest + 1;
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      fail(EXIT_USAGE, "missing value after ", arg);
    }
    if (is_lib) {
      options.library = value;
    } else if (!ksm_parse_mode(value, &options.mode)) {
      fail(EXIT_USAGE, "--mode must be auto, prctl, madvise or off, not ", value);
    }
  }
  if (i >= argc) {
    usage(stderr);
    exit(EXIT_USAGE);
  }
  options.command = argv + i;
  return options;
}

/* LD_PRELOAD splits on spaces and colons and expands $ORIGIN-style tokens (ksm_facts.h). */
static int preloadable(const char *path) {
  if (path[0] != '/') return 0;
  for (const char *p = path; *p; p++) {
    int ok = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || strchr(KSM_FACT_PRELOAD_PATH_PUNCTUATION, *p);
    if (!ok) return 0;
  }
  return 1;
}

/* The library next to this program (node-gyp, prebuilds) or in the installed lib dir. */
static const char *find_library(char *found, size_t size) {
  static const char *const relative[] = {".", KSM_EXEC_LIBDIR_FROM_BINDIR, "../lib64", "../lib"};
  char self[PATH_MAX];
  ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
  if (len <= 0) return NULL;
  self[len] = '\0';
  char *slash = strrchr(self, '/');
  if (!slash) return NULL;
  *slash = '\0';
  for (size_t i = 0; i < sizeof relative / sizeof relative[0]; i++) {
    char candidate[PATH_MAX + 64];
    snprintf(candidate, sizeof candidate, "%s/%s/" LIBRARY_NAME, self, relative[i]);
    if (access(candidate, R_OK) == 0 && realpath(candidate, found) && strlen(found) < size) return found;
  }
  return NULL;
}

static int same_entry(const char *entry, size_t len, const char *library) {
  return strlen(library) == len && strncmp(entry, library, len) == 0;
}

/* LD_PRELOAD=library:old entries, without a second copy of the library. */
static void prepend_preload(const char *library) {
  const char *old = getenv("LD_PRELOAD");
  size_t cap = strlen(library) + (old ? strlen(old) : 0) + 2;
  char *value = malloc(cap);
  if (!value) fail(EXIT_USAGE, "out of memory", NULL);
  strcpy(value, library);
  size_t used = strlen(value);
  for (const char *p = old; p && *p;) {
    size_t len = strcspn(p, " :");
    if (len > 0 && !same_entry(p, len, library)) {
      value[used++] = ':';
      memcpy(value + used, p, len);
      used += len;
    }
    p += len;
    p += strspn(p, " :");
  }
  value[used] = '\0';
  setenv("LD_PRELOAD", value, 1);
  free(value);
}

/* The file execvp would run, for the checks below; NULL when it finds none. */
static const char *resolve_command(const char *command, char *found, size_t size) {
  if (strchr(command, '/')) return command;
  const char *path = getenv("PATH");
  if (!path) path = "/usr/local/bin:/bin:/usr/bin";
  for (const char *p = path;; p += strcspn(p, ":") + 1) {
    size_t len = strcspn(p, ":");
    snprintf(found, size, "%.*s%s%s", (int)len, p, len ? "/" : "", command);
    struct stat st;
    if (stat(found, &st) == 0 && S_ISREG(st.st_mode) && access(found, X_OK) == 0) return found;
    if (p[len] == '\0') return NULL;
  }
}

/* Whether the file is an ELF program without a dynamic loader (PT_INTERP). */
static int statically_linked(const char *file) {
  int fd = open(file, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  Elf64_Ehdr header;
  int is_static = 0;
  if (pread(fd, &header, sizeof header, 0) == (ssize_t)sizeof header && memcmp(header.e_ident, ELFMAG, SELFMAG) == 0 &&
      header.e_ident[EI_CLASS] == ELFCLASS64 && header.e_phentsize == sizeof(Elf64_Phdr)) {
    is_static = 1;
    for (unsigned i = 0; i < header.e_phnum; i++) {
      Elf64_Phdr program_header;
      if (pread(fd, &program_header, sizeof program_header, (off_t)(header.e_phoff + i * sizeof program_header)) !=
          (ssize_t)sizeof program_header) {
        is_static = 0;
        break;
      }
      if (program_header.p_type == PT_INTERP) {
        is_static = 0;
        break;
      }
    }
  }
  close(fd);
  return is_static;
}

/* The dynamic loader ignores LD_PRELOAD for setuid, setgid and file-capability programs. */
static const char *preload_ignored_because(const char *file) {
  struct stat st;
  if (stat(file, &st) != 0) return NULL;
  if (st.st_mode & (S_ISUID | S_ISGID)) return "is setuid/setgid";
  if (getxattr(file, "security.capability", NULL, 0) >= 0) return "has file capabilities";
  if (statically_linked(file)) return "is statically linked";
  return NULL;
}

/* Whether the file runs with privileges its caller lacks: another security domain, whose
 * memory must not merge with the caller's (a side channel into it). */
static const char *privileged_because(const char *file) {
  struct stat st;
  if (!file || stat(file, &st) != 0) return NULL;
  if ((st.st_mode & S_ISUID) && st.st_uid != geteuid()) return "is setuid to another user";
  if ((st.st_mode & S_ISGID) && st.st_gid != getegid()) return "is setgid to another group";
  if (geteuid() != 0 && getxattr(file, "security.capability", NULL, 0) >= 0) return "has file capabilities";
  return NULL;
}

static void clear_inherited_merge_flag(void) {
  if (syscall(SYS_prctl, PR_GET_MEMORY_MERGE, 0, 0, 0, 0) == 1) syscall(SYS_prctl, PR_SET_MEMORY_MERGE, 0, 0, 0, 0);
}

/* Exit statuses of the copy started by probe_flag_after_exec(). */
enum { REPORT_FLAG_ON = 0, REPORT_FLAG_OFF = 1, REPORT_FLAG_UNREADABLE = 2, REPORT_EXEC_FAILED = 3 };

enum flag_after_exec { FLAG_KEPT, FLAG_LOST, FLAG_UNKNOWN };

static int report_merge_flag(void) {
  long on = syscall(SYS_prctl, PR_GET_MEMORY_MERGE, 0, 0, 0, 0);
  return on == 1 ? REPORT_FLAG_ON : on == 0 ? REPORT_FLAG_OFF : REPORT_FLAG_UNREADABLE;
}

/* KSM_PRELOAD_TEST_PRCTL_LOST_AT_EXEC=1 plays a kernel that accepts PR_SET_MEMORY_MERGE
 * but drops it at execve (6.4-6.6): ksm-exec drops the flag itself before each exec. */
static void drop_flag_as_such_a_kernel_would(int pretend_lost_at_exec) {
  if (pretend_lost_at_exec) clear_inherited_merge_flag();
}

/*
 * Whether the merge flag, already set on this process, reaches a program it execs. A
 * child inherits the flag, execs ksm-exec again with an empty environment (so that no
 * preloaded library sets the flag on its own) and reports it by exit status. One fork
 * and one exec of this small program; nothing is remembered between runs.
 */
static enum flag_after_exec probe_flag_after_exec(int pretend_lost_at_exec) {
  /* An ignored SIGCHLD would reap the child before waitpid sees its status; CMD gets
   * the default disposition anyway (reset_signals). */
  signal(SIGCHLD, SIG_DFL);
  pid_t child = fork();
  if (child < 0) return FLAG_UNKNOWN;
  if (child == 0) {
    char *const argv[] = {(char *)WHO, (char *)REPORT_MERGE_FLAG_ARGUMENT, NULL};
    char *const envp[] = {NULL};
    drop_flag_as_such_a_kernel_would(pretend_lost_at_exec);
    execve("/proc/self/exe", argv, envp);
    _exit(REPORT_EXEC_FAILED);
  }
  int status;
  while (waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) return FLAG_UNKNOWN;
  }
  if (!WIFEXITED(status)) return FLAG_UNKNOWN;
  switch (WEXITSTATUS(status)) {
    case REPORT_FLAG_ON:
      return FLAG_KEPT;
    case REPORT_FLAG_OFF:
      return FLAG_LOST;
    default:
      return FLAG_UNKNOWN;
  }
}

/* 0 when ioctl(PROCMAP_QUERY) on /proc/self/maps answers (6.11+), else its errno. */
static int procmap_query_error(int pretend_missing) {
  static int mapped_here;
  if (pretend_missing) return ENOTTY;
  int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  struct ksm_procmap_query query = {.size = sizeof query, .query_addr = (uintptr_t)&mapped_here};
  int error = ioctl(fd, KSM_PROCMAP_QUERY, &query) == 0 ? 0 : errno;
  close(fd);
  return error;
}

static int probe_kernel(int pretend_no_prctl, int pretend_lost_at_exec, int pretend_no_procmap_query) {
  static const char *const survival[] = {"kept", "lost", "unknown"};
  int inherited;
  int prctl_error = ksm_enable_merge_any(pretend_no_prctl, &inherited);
  printf("prctl %d\n", prctl_error);
  printf("exec-survival %s\n", prctl_error ? "none" : survival[probe_flag_after_exec(pretend_lost_at_exec)]);
  printf("procmap-query %d\n", procmap_query_error(pretend_no_procmap_query));
  return fflush(stdout) == 0 ? 0 : EXIT_USAGE;
}

static void warn_if_preload_ignored(const char *command, const char *file) {
  const char *reason = file ? preload_ignored_because(file) : NULL;
  if (reason) {
    fprintf(stderr, WHO ": %s %s, so LD_PRELOAD cannot reach it and PR_SET_MEMORY_MERGE is unavailable: it runs unmarked\n",
            command, reason);
  }
}

/* Node ignores SIGPIPE and that survives exec. SIGHUP, SIGINT and SIGQUIT stay as they
 * are: nohup and shells ignore those on purpose. */
static void reset_signals(void) {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  for (int sig = 1; sig < NSIG; sig++) {
    if (sig == SIGHUP || sig == SIGINT || sig == SIGQUIT || sig == SIGKILL || sig == SIGSTOP) continue;
    struct sigaction current;
    if (sigaction(sig, NULL, &current) == 0 && current.sa_handler == SIG_IGN) signal(sig, SIG_DFL);
  }
}

/* `file` is the command as execvp will find it, or NULL. */
static void use_preload_library(const struct options *options, const char *file) {
  char found[PATH_MAX];
  const char *library = options->library ? options->library : find_library(found, sizeof found);
  if (!library) fail(EXIT_USAGE, "cannot find " LIBRARY_NAME " next to ksm-exec or in ../lib*; pass --lib PATH", NULL);
  if (!preloadable(library)) {
    fail(EXIT_USAGE, "LD_PRELOAD cannot carry this library path (it must be absolute, without spaces, colons or $): ",
         library);
  }
  if (access(library, R_OK) != 0) fail(EXIT_USAGE, "cannot read the library ", library);
  prepend_preload(library);
  setenv(KSM_FACT_ENV_MODE, "madvise", 1);
  warn_if_preload_ignored(options->command[0], file);
}

static void say(int verbose, const char *what, int error) {
  if (!verbose) return;
  if (error) {
    fprintf(stderr, WHO ": %s (%s)\n", what, strerror(error));
  } else {
    fprintf(stderr, WHO ": %s\n", what);
  }
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], REPORT_MERGE_FLAG_ARGUMENT) == 0) return report_merge_flag();
  int pretend_no_prctl = ksm_env_bool(WHO, "KSM_PRELOAD_TEST_NO_PRCTL");
  int pretend_lost_at_exec = ksm_env_bool(WHO, "KSM_PRELOAD_TEST_PRCTL_LOST_AT_EXEC");
  if (argc == 2 && strcmp(argv[1], PROBE_KERNEL_ARGUMENT) == 0) {
    return probe_kernel(pretend_no_prctl, pretend_lost_at_exec, ksm_env_bool(WHO, "KSM_PRELOAD_TEST_NO_PROCMAP_QUERY"));
  }
  struct options options = parse_arguments(argc, argv);
  int verbose = ksm_env_bool(WHO, KSM_FACT_ENV_VERBOSE);
  int inherited;
  char found[PATH_MAX];
  const char *file = options.mode == KSM_MODE_OFF ? NULL : resolve_command(options.command[0], found, sizeof found);
  const char *privileged = file ? privileged_because(file) : NULL;
  if (options.mode == KSM_MODE_OFF) {
    /* Off means off, also for a flag inherited from our own parent. */
    clear_inherited_merge_flag();
    setenv(KSM_FACT_ENV_MODE, "off", 1);
    say(verbose, "mode off", 0);
  } else if (privileged) {
    /* The prctl flag would survive the exec (the loader drops LD_PRELOAD by itself). */
    clear_inherited_merge_flag();
    fprintf(stderr, WHO ": %s %s: it runs unmarked, as merging its memory with this user's would open a side channel into it\n",
            options.command[0], privileged);
  } else if (options.mode == KSM_MODE_MADVISE) {
    use_preload_library(&options, file);
    say(verbose, "mode madvise: LD_PRELOAD set", 0);
  } else {
    int error = ksm_enable_merge_any(pretend_no_prctl, &inherited);
    enum flag_after_exec after_exec = error ? FLAG_UNKNOWN : probe_flag_after_exec(pretend_lost_at_exec);
    if (after_exec == FLAG_KEPT) {
      say(verbose, "mode prctl: PR_SET_MEMORY_MERGE set, kept across exec", 0);
    } else if (options.mode == KSM_MODE_AUTO) {
      if (error) {
        say(verbose, "mode madvise: PR_SET_MEMORY_MERGE refused", error);
      } else {
        /* The library marks CMD from inside; a flag that did survive only adds to it. */
        say(verbose, after_exec == FLAG_LOST ? "mode madvise: this kernel drops PR_SET_MEMORY_MERGE at execve"
                                             : "mode madvise: cannot tell whether PR_SET_MEMORY_MERGE survives execve",
            0);
      }
      use_preload_library(&options, file);
    } else if (error) {
      fprintf(stderr, WHO ": PR_SET_MEMORY_MERGE refused (%s); %s runs unmarked\n", strerror(error), options.command[0]);
    } else if (after_exec == FLAG_LOST) {
      fprintf(stderr, WHO ": this kernel drops PR_SET_MEMORY_MERGE at execve; %s runs unmarked (--mode auto uses the library)\n",
              options.command[0]);
    } else {
      fprintf(stderr, WHO ": cannot tell whether PR_SET_MEMORY_MERGE survives execve; %s may run unmarked\n", options.command[0]);
    }
  }
  fflush(stderr);
  reset_signals();
  drop_flag_as_such_a_kernel_would(pretend_lost_at_exec);
  execvp(options.command[0], options.command);
  int error = errno;
  if (error == ENOENT && !strchr(options.command[0], '/')) {
    fprintf(stderr, WHO ": %s: command not found\n", options.command[0]);
  } else {
    fprintf(stderr, WHO ": %s: %s\n", options.command[0], strerror(error));
  }
  return error == ENOENT || error == ENOTDIR ? EXIT_NOT_FOUND : EXIT_NOT_EXECUTABLE;
}
