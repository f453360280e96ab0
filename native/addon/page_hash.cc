#include "modules.h"

void InitPageHash(Napi::Env, Napi::Object) {}
