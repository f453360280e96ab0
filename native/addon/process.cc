// Process-wide switches: prctl(PR_{GET,SET}_MEMORY_MERGE) and execve in place.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <string>
#include <vector>

#include "ksm_abi.h"
#include "modules.h"

namespace {

// prctl(PR_GET_MEMORY_MERGE): 1 when the process merges everything, else 0.
Napi::Value GetMemoryMerge(const Napi::CallbackInfo& info) {
  int result = prctl(PR_GET_MEMORY_MERGE, 0, 0, 0, 0);
  if (result < 0) ThrowErrno(info.Env(), errno, "prctl(PR_GET_MEMORY_MERGE)");
  return Napi::Number::New(info.Env(), result);
}

// prctl(PR_SET_MEMORY_MERGE, on): arguments 3 to 5 must be zero.
Napi::Value SetMemoryMerge(const Napi::CallbackInfo& info) {
  unsigned long on = info[0].As<Napi::Boolean>().Value() ? 1 : 0;
  if (prctl(PR_SET_MEMORY_MERGE, on, 0, 0, 0) != 0) ThrowErrno(info.Env(), errno, "prctl(PR_SET_MEMORY_MERGE)");
  return info.Env().Undefined();
}

std::vector<std::string> ToStrings(const Napi::Array& array) {
  std::vector<std::string> strings;
  strings.reserve(array.Length());
  for (uint32_t i = 0; i < array.Length(); i++) strings.push_back(array.Get(i).As<Napi::String>().Utf8Value());
  return strings;
}

std::vector<char*> ToPointers(std::vector<std::string>& strings) {
  std::vector<char*> pointers;
  for (std::string& s : strings) pointers.push_back(s.data());
  pointers.push_back(nullptr);
  return pointers;
}

// What Node changed in the process and execve would hand on to the new program:
// SIGPIPE and SIGXFSZ ignored, close-on-exec and non-blocking stdio, a raw-mode
// terminal.
class InheritedState {
 public:
  void ResetForExec() {
    for (int i = 0; i < 2; i++) {
      struct sigaction fresh = {};
      fresh.sa_handler = SIG_DFL;
      sigaction(kNodeIgnored[i], &fresh, &saved_actions_[i]);
    }
    sigset_t none;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, &saved_mask_);
    for (int fd = 0; fd < 3; fd++) {
      saved_fd_flags_[fd] = fcntl(fd, F_GETFD);
      if (saved_fd_flags_[fd] >= 0) fcntl(fd, F_SETFD, saved_fd_flags_[fd] & ~FD_CLOEXEC);
      saved_status_flags_[fd] = fcntl(fd, F_GETFL);
      if (saved_status_flags_[fd] >= 0) fcntl(fd, F_SETFL, saved_status_flags_[fd] & ~O_NONBLOCK);
    }
    uv_tty_reset_mode();
  }

  // After a failed execve Node carries on as it was (bar the terminal mode).
  void Restore() {
    for (int fd = 0; fd < 3; fd++) {
      if (saved_status_flags_[fd] >= 0) fcntl(fd, F_SETFL, saved_status_flags_[fd]);
      if (saved_fd_flags_[fd] >= 0) fcntl(fd, F_SETFD, saved_fd_flags_[fd]);
    }
    pthread_sigmask(SIG_SETMASK, &saved_mask_, nullptr);
    for (int i = 0; i < 2; i++) sigaction(kNodeIgnored[i], &saved_actions_[i], nullptr);
  }

 private:
  static constexpr int kNodeIgnored[2] = {SIGPIPE, SIGXFSZ};
  struct sigaction saved_actions_[2] = {};
  sigset_t saved_mask_ = {};
  int saved_fd_flags_[3] = {-1, -1, -1};
  int saved_status_flags_[3] = {-1, -1, -1};
};

// execve(path, argv, envp): replaces this process; returns only by throwing.
Napi::Value Execve(const Napi::CallbackInfo& info) {
  std::string path = info[0].As<Napi::String>().Utf8Value();
  std::vector<std::string> argv = ToStrings(info[1].As<Napi::Array>());
  std::vector<std::string> envp = ToStrings(info[2].As<Napi::Array>());
  std::vector<char*> argv_pointers = ToPointers(argv);
  std::vector<char*> envp_pointers = ToPointers(envp);
  InheritedState state;
  state.ResetForExec();
  execve(path.c_str(), argv_pointers.data(), envp_pointers.data());
  int err = errno;
  state.Restore();
  ThrowErrno(info.Env(), err, "execve");
}

}  // namespace

void InitProcess(Napi::Env env, Napi::Object exports) {
  exports.Set("getMemoryMerge", Napi::Function::New(env, GetMemoryMerge, "getMemoryMerge"));
  exports.Set("setMemoryMerge", Napi::Function::New(env, SetMemoryMerge, "setMemoryMerge"));
  exports.Set("execve", Napi::Function::New(env, Execve, "execve"));
}
