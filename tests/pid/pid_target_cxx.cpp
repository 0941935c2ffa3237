/*
 * C++ target of the pid-mode tests: built without libocolos (only -O2
 * -fno-jump-tables -Wl,--emit-relocs), it exercises what a round on a C++
 * process must get right: virtual calls (v-tables are the static pointer
 * slots a round redirects) and exceptions thrown from hot leaves through
 * hot frames (once those frames run in C1, unwinding needs C1's .eh_frame
 * registered with the target's libgcc, injected by ptrace).
 *
 *   pid_target_cxx [--threads N] [--exit-after MS] [--exit-code N]
 *
 * Same protocol as pid_target.c: laps compared with a reference lap until
 * SIGTERM/SIGINT (or --exit-after), then a fixed final phase; stdout holds
 * only the final checksums and "ok" (or "MISMATCH n"); exit --exit-code
 * (default 0) when all laps matched, else 1.
 */
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <pthread.h>
#include <stdexcept>
#include <unistd.h>
#include <vector>

#include "crash_report.h"

#define NOINLINE __attribute__((noinline))

namespace {

std::atomic<int> stop_flag{0};

constexpr uint64_t kLapItems = 2000;
constexpr uint64_t kFinalItems = 30000;

NOINLINE uint64_t mix(uint64_t h, uint64_t v)
{
	h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
	h *= 0xff51afd7ed558ccdULL;
	return h ^ (h >> 33);
}

struct Odd : std::runtime_error {
	uint64_t v;
	explicit Odd(uint64_t x) : std::runtime_error("odd"), v(x) {}
};

struct Shape {
	virtual ~Shape() = default;
	virtual uint64_t step(uint64_t x) const = 0;
	virtual uint64_t weight() const = 0;
};

struct Square : Shape {
	uint64_t k;
	explicit Square(uint64_t k_) : k(k_) {}
	NOINLINE uint64_t step(uint64_t x) const override { return mix(x * x + k, k); }
	NOINLINE uint64_t weight() const override { return k * 3 + 1; }
};

struct Ring : Shape {
	uint64_t a, b;
	Ring(uint64_t a_, uint64_t b_) : a(a_), b(b_) {}
	NOINLINE uint64_t step(uint64_t x) const override { return mix(x ^ a, x + b); }
	NOINLINE uint64_t weight() const override { return a + b; }
};

/* Throws for about one item in 48: exceptions leave a hot leaf. */
struct Spiky : Shape {
	uint64_t s;
	explicit Spiky(uint64_t s_) : s(s_) {}
	NOINLINE uint64_t step(uint64_t x) const override
	{
		uint64_t y = mix(x, s);
		if (y % 48 == 7)
			throw Odd(y);
		return y;
	}
	NOINLINE uint64_t weight() const override { return s ^ 0x55; }
};

/* One frame between the thrower and the catcher. */
NOINLINE uint64_t chain(const std::vector<std::unique_ptr<Shape>> &shapes, uint64_t x)
{
	for (const auto &sh : shapes)
		x = sh->step(x) + sh->weight();
	return x;
}

NOINLINE uint64_t one_item(const std::vector<std::unique_ptr<Shape>> &shapes, uint64_t seed,
			   uint64_t i)
{
	try {
		return chain(shapes, mix(seed, i));
	} catch (const Odd &e) {
		return e.v * 31 + i;
	}
}

NOINLINE uint64_t work_run(const std::vector<std::unique_ptr<Shape>> &shapes, uint64_t seed,
			   uint64_t count)
{
	uint64_t h = seed;
	for (uint64_t i = 0; i < count; i++)
		h = mix(h, one_item(shapes, seed, i));
	return h;
}

std::vector<std::unique_ptr<Shape>> make_shapes(unsigned id)
{
	std::vector<std::unique_ptr<Shape>> v;
	for (unsigned k = 0; k < 6; k++) {
		switch ((k + id) % 3) {
		case 0: v.emplace_back(new Square(k + 3)); break;
		case 1: v.emplace_back(new Ring(k * 7 + 1, id + 5)); break;
		default: v.emplace_back(new Spiky(k * 13 + id)); break;
		}
	}
	return v;
}

struct Worker {
	pthread_t th;
	unsigned id = 0;
	uint64_t laps = 0, mismatches = 0, result = 0;
};

void *worker_main(void *p)
{
	Worker *w = static_cast<Worker *>(p);
	auto shapes = make_shapes(w->id);
	uint64_t seed = 500 + w->id;
	uint64_t ref = work_run(shapes, seed, kLapItems);
	while (!stop_flag.load(std::memory_order_relaxed)) {
		w->mismatches += work_run(shapes, seed, kLapItems) != ref;
		w->laps++;
	}
	w->result = work_run(shapes, seed + 99, kFinalItems);
	return nullptr;
}

} // namespace

int main(int argc, char **argv)
{
	unsigned nthreads = 2;
	long exit_after_ms = -1;
	int exit_code = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--threads") && i + 1 < argc)
			nthreads = (unsigned)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--exit-after") && i + 1 < argc)
			exit_after_ms = atol(argv[++i]);
		else if (!strcmp(argv[i], "--exit-code") && i + 1 < argc)
			exit_code = atoi(argv[++i]);
		else {
			fprintf(stderr, "usage: %s [--threads N] [--exit-after MS] [--exit-code N]\n",
				argv[0]);
			return 2;
		}
	}
	if (nthreads < 1 || nthreads > 8)
		nthreads = 2;

	crash_report_install();
	/* Workers inherit the mask: only main's sigtimedwait() takes these. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, nullptr);

	std::vector<Worker> w(nthreads);
	for (unsigned i = 0; i < nthreads; i++) {
		w[i].id = i;
		if (pthread_create(&w[i].th, nullptr, worker_main, &w[i])) {
			fprintf(stderr, "pid_target_cxx: pthread_create failed\n");
			return 1;
		}
	}
	struct timespec ts = { exit_after_ms / 1000, (exit_after_ms % 1000) * 1000000 };
	int sig;
	do
		sig = sigtimedwait(&set, nullptr, exit_after_ms >= 0 ? &ts : nullptr);
	while (sig < 0 && errno == EINTR);

	stop_flag.store(1);
	uint64_t laps = 0, bad = 0;
	for (unsigned i = 0; i < nthreads; i++) {
		pthread_join(w[i].th, nullptr);
		laps += w[i].laps;
		bad += w[i].mismatches;
		printf("worker %u final %016llx\n", i, (unsigned long long)w[i].result);
	}
	fprintf(stderr, "pid_target_cxx %d: %llu laps, %llu mismatched\n", (int)getpid(),
		(unsigned long long)laps, (unsigned long long)bad);
	if (bad)
		printf("MISMATCH %llu\n", (unsigned long long)bad);
	else
		printf("ok\n");
	return bad ? 1 : exit_code;
}
