#include "threads.h"

#include <malloc.h>
#include <omp.h>

void openblas_set_num_threads(int n);

static int nthreads;

/* Activations are allocated and freed every step in the same sizes. Keeping
 * freed memory in glibc's heap (rather than returning each large block to
 * the kernel with munmap) saves a page fault per 4 KiB per step. */
static void keep_freed_memory(void) {
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
}

void md_threads_init(void) {
  if (nthreads == 0) {
    keep_freed_memory();
    md_set_num_threads(omp_get_num_procs());
  }
}

void md_set_num_threads(int n) {
  if (n < 1) n = 1;
  nthreads = n;
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

int md_get_num_threads(void) { return nthreads; }
