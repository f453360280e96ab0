/* Kernel constants for KSM, defined here so the code builds against old headers. */
#ifndef KSM_ABI_H
#define KSM_ABI_H

#include "ksm_platform.h"

#ifndef MADV_MERGEABLE
#define MADV_MERGEABLE 12
#endif
#ifndef MADV_UNMERGEABLE
#define MADV_UNMERGEABLE 13
#endif
#ifndef PR_SET_MEMORY_MERGE
#define PR_SET_MEMORY_MERGE 67
#endif
#ifndef PR_GET_MEMORY_MERGE
#define PR_GET_MEMORY_MERGE 68
#endif

/* ioctl(fd of /proc/PID/maps, PROCMAP_QUERY) (Linux 6.11+): the one mapping at an
 * address, without reading the whole maps file. Layout from <linux/fs.h>. */
#include <stdint.h>
#include <sys/ioctl.h>

struct ksm_procmap_query {
  uint64_t size;
  uint64_t query_flags;
  uint64_t query_addr;
  uint64_t vma_start;
  uint64_t vma_end;
  uint64_t vma_flags;
  uint64_t vma_page_size;
  uint64_t vma_offset;
  uint64_t inode;
  uint32_t dev_major;
  uint32_t dev_minor;
  uint32_t vma_name_size;
  uint32_t build_id_size;
  uint64_t vma_name_addr;
  uint64_t build_id_addr;
};

#define KSM_PROCMAP_QUERY _IOWR('f', 17, struct ksm_procmap_query)
#define KSM_PROCMAP_QUERY_VMA_READABLE 0x01
#define KSM_PROCMAP_QUERY_VMA_WRITABLE 0x02
#define KSM_PROCMAP_QUERY_VMA_EXECUTABLE 0x04
#define KSM_PROCMAP_QUERY_VMA_SHARED 0x08

#endif
