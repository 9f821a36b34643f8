/* Threading policy: one level of parallelism at a time. Our own loops use
 * OpenMP; BLAS and oneDNN calls are made from outside any parallel region and
 * get the same thread count. md_set_num_threads sets all of them. */
#ifndef MD_THREADS_H
#define MD_THREADS_H

/* Below this many elements a loop runs on one thread: starting a parallel
 * region costs more than the work. Every `omp parallel for if (...)` uses it. */
#define MD_PAR_MIN 32768

void md_threads_init(void); /* defaults: all cores */
void md_set_num_threads(int n);
int md_get_num_threads(void);

#endif
