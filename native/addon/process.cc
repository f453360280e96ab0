#include "modules.h"

void InitProcess(Napi::Env, Napi::Object) {}
