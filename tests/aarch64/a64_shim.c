/* The shared integration programs (tests/it_threads.c, tests/it_cxx.cpp)
 * skip when perf_event_open is refused; on AArch64 under qemu-user it is
 * ENOSYS and the library samples with sigprof instead (OCOLOS_SAMPLER_AUTO
 * falls back to it), so they are built with test_require_perf() renamed
 * to this, which requires nothing. */
void a64_require_sampling(void);
void a64_require_sampling(void)
{
}
