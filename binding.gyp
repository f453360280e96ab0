{
  "variables": {
    "ksm_c_flags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-fvisibility=hidden", "-fno-strict-aliasing"]
  },
  "targets": [
    {
      "target_name": "ksm_addon",
      "conditions": [
        ["OS=='linux'", {
          "sources": [
            "native/addon/addon.cc",
            "native/addon/marking.cc",
            "native/addon/process.cc",
            "native/addon/page_hash.cc",
            "native/common/maps_scan.c"
          ]
        }]
      ],
      "include_dirs": ["native/common"],
      "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-O2", "-Wall", "-Wextra"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra"]
    },
    {
      "target_name": "ksm_preload",
      "type": "shared_library",
      "product_prefix": "lib",
      "conditions": [
        ["OS=='linux'", {
          "sources": [
            "native/preload/preload.c",
            "native/preload/exclude.c",
            "native/preload/hooks.c",
            "native/preload/idle_hooks.c",
            "native/preload/log.c",
            "native/preload/marker.c",
            "native/preload/ranges.c",
            "native/preload/symbols.c",
            "native/common/maps_scan.c"
          ]
        }]
      ],
      "include_dirs": ["native/common"],
      "cflags": ["<@(ksm_c_flags)"],
      "cflags!": ["-fno-omit-frame-pointer"],
      "ldflags": ["-Wl,-soname,libksm_preload.so", "-Wl,-z,now", "-Wl,-z,relro"],
      "libraries": ["-ldl", "-lpthread"]
    },
    {
      "target_name": "ksm-exec",
      "type": "executable",
      "conditions": [
        ["OS=='linux'", {
          "sources": ["native/launcher/ksm_exec.c"]
        }]
      ],
      "include_dirs": ["native/common"],
      "cflags": ["<@(ksm_c_flags)"]
    },
    {
      "target_name": "ksm-attach",
      "type": "executable",
      "conditions": [
        ["OS=='linux'", {
          "sources": ["native/attach/ksm_attach.c", "native/attach/inject.c", "native/common/maps_scan.c"]
        }]
      ],
      "include_dirs": ["native/common"],
      "cflags": ["<@(ksm_c_flags)"]
    }
  ]
}
