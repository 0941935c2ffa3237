/*
 * Integration test of when a code version with a throw in it may be
 * retired (in-process, four rounds):
 *
 *   it_throw_retire plain   the same work, no round
 *   it_throw_retire round   the rounds and the checks below
 *
 * The address after a call to __cxa_throw is a "throw site" (elf/plt.c):
 * nothing ever returns there, but while the throw runs the unwinder reads
 * it to find the thrower's frame — in the version. So it keeps a version
 * mapped in the stack of a thread inside the unwinder at the stop, and
 * only there (inject/switch.c): once the throw is over, the word left in
 * stack memory is dead.
 *
 * Round 1 moves thrower() (hot in phase A) into C1. Then thread T throws
 * from thrower() in C1 and is held inside the unwinder: this program's
 * _dl_find_object (or dl_iterate_phdr), which libgcc_s calls to find the
 * frames' unwind tables, parks it there. Rounds 2 (phase B) and 3 (phase
 * A) map C2 and C3: C1 must stay mapped (T is unwinding through it;
 * unmapped, the unwinder would find no frame for C1's address and call
 * std::terminate). T is let go, catches the exception, and keeps the throw
 * site it saw on its own stack, in a live local, while it sleeps. Round 4
 * (phase B) maps C4: C1 must now be retired (x86-64, where throw sites are
 * known: that dead word must not keep it mapped). Checked to fail both
 * ways: with throw sites counted in every thread's stack, and in none.
 *
 * stdout: checksums only (run_it.sh compares them with a plain run).
 */
#include <dlfcn.h>
#include <link.h>
#include <pthread.h>

#include <atomic>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>

#include "common.h"

namespace {

#define NOINLINE __attribute__((noinline))
#define SPIN(x, k)                                                                                 \
	for (unsigned _i = 0; _i < 16; _i++)                                                       \
	x = (x ^ (x >> 29)) * (k)

constexpr unsigned kWorkers = 2;
constexpr unsigned kPhaseMs = 300;
constexpr uint32_t kProfileMs = 800;

struct Boom {
	uint64_t v;
};

// Phase A's hot code: throws one time in 1024.
NOINLINE uint64_t thrower(uint64_t x)
{
	SPIN(x, 0x9e3779b97f4a7c15ull);
	if ((x & 1023) == 0)
		throw Boom{ x };
	return x;
}

// Phase B's hot code.
NOINLINE uint64_t quiet_work(uint64_t x)
{
	SPIN(x, 0xbf58476d1ce4e5b9ull);
	return x + 1;
}

std::atomic<unsigned> phase{ 0 };
std::atomic<bool> quit{ false };

struct Worker {
	uint64_t result = 0, laps = 0, caught = 0;
};

void worker_main(Worker *w, unsigned id)
{
	uint64_t x = 0x1234 + id;
	while (!quit.load(std::memory_order_relaxed)) {
		for (unsigned i = 0; i < 256; i++) {
			if (phase.load(std::memory_order_relaxed) == 0) {
				try {
					x = thrower(x + i);
				} catch (const Boom &b) {
					x = b.v + 7;
					w->caught++;
				}
			} else {
				x = quiet_work(x + i);
			}
		}
		w->laps++;
	}
	w->result = x;
}

// Thread T, and where the unwinder holds it.
std::atomic<int> t_state{ 0 }; // 1 parked in the unwinder, 2 caught, 3 quit
std::atomic<bool> t_hold{ false };
std::atomic<uint64_t> t_seen{ 0 }; // the C1 word T saw on its stack
uint64_t c1_lo, c1_hi;
thread_local bool is_t;

NOINLINE void t_main()
{
	is_t = true;
	t_hold.store(true);
	uint64_t caught = 0;
	try {
		thrower(0); // 0 spins to 0: it throws
	} catch (const Boom &b) {
		caught = b.v;
	}
	(void)caught;
	// The throw site T saw, kept in a live local of this frame while T
	// sleeps outside the unwinder.
	volatile uint64_t keep = t_seen.load();
	t_state.store(2);
	while (t_state.load() != 3)
		test_sleep_ms(5);
	__asm__ volatile("" : : "r"(keep) : "memory");
}


// The library's messages of the current round, for what it says keeps C1.
std::mutex log_mu;
std::string round_log;

void log_line(enum ocolos_log_level level, const char *msg, void *user)
{
	(void)user;
	if (level > OCOLOS_LOG_INFO)
		return;
	fprintf(stderr, "  ocolos: %s\n", msg);
	std::lock_guard<std::mutex> g(log_mu);
	round_log += msg;
	round_log += '\n';
}

int round_of(unsigned k, ocolos_stats *st)
{
	OCOLOS_OPTS(ocolos_opts, o, .profile_ms = kProfileMs, .log_fn = log_line);
	{
		std::lock_guard<std::mutex> g(log_mu);
		round_log.clear();
	}
	int rc = ocolos_optimize_self(&o, st);
	fprintf(stderr, "round %u: rc %d gen %u mapped %u retired %u moved %u%s%s\n", k, rc,
		st->generation, st->versions_mapped, st->versions_retired, st->functions_moved,
		rc ? ": " : "", rc ? ocolos_last_error(NULL) : "");
	check(rc == 0, "round %u failed: %s", k, ocolos_last_error(NULL));
	return rc;
}

} // namespace

// The first word of C1 on the calling thread's stack above `from`: the
// address after thrower's call to __cxa_throw (nothing else of T is in C1).
// Not instrumented: it reads other frames' slots (and redzones).
__attribute__((no_sanitize("address"))) static uint64_t c1_word_above(const uint64_t *from)
{
	pthread_attr_t a;
	void *lo = nullptr;
	size_t size = 0;
	if (pthread_getattr_np(pthread_self(), &a))
		return 0;
	pthread_attr_getstack(&a, &lo, &size);
	pthread_attr_destroy(&a);
	const uint64_t *end = reinterpret_cast<const uint64_t *>(static_cast<char *>(lo) + size);
	for (const uint64_t *p = from; p < end; p++)
		if (*p >= c1_lo && *p < c1_hi)
			return *p;
	return 0;
}

// Park thread T, once, inside the unwinder until main lets it go.
static void park_in_unwinder()
{
	if (!is_t || !t_hold.load())
		return;
	if (c1_hi)
		t_seen.store(c1_word_above(reinterpret_cast<const uint64_t *>(__builtin_frame_address(0))));
	t_state.store(1);
	while (t_hold.load())
		test_sleep_ms(2);
}

// libgcc_s finds the unwind tables of the frames it has no registration
// for (libstdc++'s __cxa_throw, its own) through _dl_find_object (glibc
// 2.35 and GCC 12 on), or dl_iterate_phdr before: these definitions, in
// the executable, come first.
extern "C" int _dl_find_object(void *pc, struct dl_find_object *result)
{
	static auto real = reinterpret_cast<int (*)(void *, struct dl_find_object *)>(
		dlsym(RTLD_NEXT, "_dl_find_object"));
	park_in_unwinder();
	return real(pc, result);
}

extern "C" int dl_iterate_phdr(int (*cb)(struct dl_phdr_info *, size_t, void *), void *data)
{
	static auto real = reinterpret_cast<int (*)(int (*)(struct dl_phdr_info *, size_t, void *),
						    void *)>(dlsym(RTLD_NEXT, "dl_iterate_phdr"));
	park_in_unwinder();
	return real(cb, data);
}

int main(int argc, char **argv)
{
	check(argc >= 2 && (!strcmp(argv[1], "plain") || !strcmp(argv[1], "round")),
	      "usage: %s plain|round", argv[0]);
	bool round = !strcmp(argv[1], "round");
	test_watchdog(90);
	if (round)
		test_require_perf();
	Worker w[kWorkers];
	std::thread th[kWorkers];
	for (unsigned i = 0; i < kWorkers; i++)
		th[i] = std::thread(worker_main, &w[i], i);
	test_sleep_ms(kPhaseMs);
	ocolos_stats st = {};
	st.sz = sizeof(st);
	if (round) {
		round_of(1, &st);
		check(test_version_range(st.generation, &c1_lo, &c1_hi), "C%u is not in /proc/self/maps",
		      st.generation);
	}
	unsigned c1 = st.generation;

	// T throws from thrower() — in C1, round 1 moved it — and parks in
	// the unwinder, through two rounds: the first (phase B) leaves C1
	// pinned by the workers' last frames there too, the second (phase A
	// again) by T alone.
	phase.store(1);
	std::thread t(t_main);
	while (t_state.load() != 1)
		test_sleep_ms(2);
	uint64_t lo, hi;
	if (round) {
		check(t_seen.load() != 0, "thrower() was not moved into C1: no word of C1 on the "
		      "stack of a thread throwing from it");
		test_sleep_ms(kPhaseMs);
		round_of(2, &st);
		phase.store(0);
		test_sleep_ms(kPhaseMs);
		round_of(3, &st);
		check(test_version_range(c1, &lo, &hi), "C%u was retired while a thread was unwinding "
		      "through it", c1);
		// What keeps it, as the log says: T's throw site (the first word
		// of C1 on its stack, found above from inside the unwinder), or,
		// when T happened to be stopped with that address still in a
		// register (the unwinder computes with it; registers are looked
		// at first and any address counts there), that register.
		char want[128];
		snprintf(want, sizeof(want), "holds 0x%llx", (unsigned long long)t_seen.load());
		std::lock_guard<std::mutex> g(log_mu);
		size_t at = round_log.find("C" + std::to_string(c1) + " stays mapped: ");
		size_t eol = at == std::string::npos ? at : round_log.find('\n', at);
		std::string line = at == std::string::npos ? "" : round_log.substr(at, eol - at);
		bool on_stack = line.find("the stack of thread ") != std::string::npos &&
				line.find("a throw site, the thread unwinding") != std::string::npos;
		bool in_reg = line.find(": register ") != std::string::npos;
		check(line.find(want) != std::string::npos && (on_stack || in_reg),
		      "round 3's log does not name T's throw site (%s) as what keeps C%u: \"%s\"",
		      want, c1, line.c_str());
	}
	t_hold.store(false);
	while (t_state.load() != 2)
		test_sleep_ms(2);

	phase.store(1);
	test_sleep_ms(kPhaseMs);
	// Under AddressSanitizer (its runtime preloaded into this program),
	// every malloc's stack trace is kept for the life of the process —
	// return addresses in the versions (thrower's exception allocation)
	// that the conservative memory scan must count: nothing is retired.
	bool asan = dlsym(RTLD_DEFAULT, "__asan_init") != nullptr;
	if (round) {
		round_of(4, &st);
		if (asan)
			fprintf(stderr, "AddressSanitizer's allocation traces keep every version: "
				"retirement after round 4 not checked\n");
		check(asan || st.versions_mapped <= 2, "%u versions mapped after round 4",
		      st.versions_mapped);
#if defined(__x86_64__)
		check(asan || !test_version_range(c1, &lo, &hi), "C%u stays mapped after round 4: the "
		      "throw site left on the stack of a thread no longer unwinding keeps it", c1);
#endif
	}
	t_state.store(3);
	t.join();
	quit.store(true);
	uint64_t sum = 0;
	for (unsigned i = 0; i < kWorkers; i++) {
		th[i].join();
		sum ^= w[i].laps ? 1 : 0;
	}
	// Workers' results depend on how long they ran: only that each ran
	// and that thrower() computes the same thing goes to stdout.
	uint64_t ref = 0;
	for (uint64_t i = 1; i < 200; i++) {
		try {
			ref += thrower(i * 77);
		} catch (const Boom &b) {
			ref ^= b.v;
		}
	}
	printf("workers ran: %" PRIu64 "\nthrower: %016" PRIx64 "\n", sum, ref);
	return 0;
}
