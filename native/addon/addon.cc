// Entry point of the N-API addon: owns the error class and registers each module.
#include "modules.h"

#include <cstring>

namespace {

struct AddonData {
  Napi::FunctionReference error_class;
};

Napi::Value SetErrorClass(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsFunction()) {
    throw Napi::TypeError::New(env, "setErrorClass expects a constructor");
  }
  env.GetInstanceData<AddonData>()->error_class = Napi::Persistent(info[0].As<Napi::Function>());
  return env.Undefined();
}

}  // namespace

void ThrowErrno(const Napi::Env& env, int err, const std::string& syscall) {
  AddonData* data = env.GetInstanceData<AddonData>();
  if (data == nullptr || data->error_class.IsEmpty()) {
    throw Napi::Error::New(env, syscall + " failed: " + std::strerror(err));
  }
  Napi::Object error = data->error_class.New(
      {Napi::String::New(env, syscall), Napi::Number::New(env, err), Napi::String::New(env, std::strerror(err))});
  throw Napi::Error(env, error);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData(new AddonData());
  exports.Set("setErrorClass", Napi::Function::New(env, SetErrorClass, "setErrorClass"));
  InitMarking(env, exports);
  InitProcess(env, exports);
  InitPageHash(env, exports);
  return exports;
}

NODE_API_MODULE(ksm_addon, Init)
