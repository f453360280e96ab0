#include "modules.h"

void InitMarking(Napi::Env, Napi::Object) {}
