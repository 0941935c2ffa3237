/*
 * The workload of the ABI tests' in-process rounds: threads that call a
 * few small functions directly and through a const table of function
 * pointers, so a round has functions to move, call sites and pointer slots
 * to patch. Independent of libocolos's header (abi_old.c is built against
 * the 0.1 one).
 */
#ifndef OCOLOS_TESTS_ABI_HOT_H
#define OCOLOS_TESTS_ABI_HOT_H

/* Compute the expected results, then start `n` (at most 4) busy threads
 * that keep checking their results against them. */
void hot_start(unsigned n);
/* Stop and join the threads; return how many batches computed a result
 * other than the expected one (0 unless a round broke the code). */
long hot_stop(void);

#endif
