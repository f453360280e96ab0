// The addon is one module per concern; each registers its functions here.
#ifndef KSM_ADDON_MODULES_H
#define KSM_ADDON_MODULES_H

#include <napi.h>

#include <string>

// Throws the KsmError class that lib/native.ts hands to setErrorClass(), as
// new KsmError(syscall, errno, strerror(errno)); TypeScript derives the code.
[[noreturn]] void ThrowErrno(const Napi::Env& env, int err, const std::string& syscall);

void InitMarking(Napi::Env env, Napi::Object exports);   // marking.cc
void InitProcess(Napi::Env env, Napi::Object exports);   // process.cc
void InitPageHash(Napi::Env env, Napi::Object exports);  // page_hash.cc

#endif
