#include "threads.h"

#include <omp.h>

void openblas_set_num_threads(int n);

static int nthreads;

void md_threads_init(void) {
  if (nthreads == 0) md_set_num_threads(omp_get_num_procs());
}

void md_set_num_threads(int n) {
  if (n < 1) n = 1;
  nthreads = n;
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

int md_get_num_threads(void) { return nthreads; }
