/*
 * C++ target of the continuous-optimization soak (bench/continuous_soak.sh).
 *
 * Responsible for: being a multi-threaded C++ process whose hot code changes
 * over time, that uses virtual calls and exceptions on its hot path, creates
 * and ends threads, and forks while it runs — and for printing on stdout
 * only what does not depend on timing, so the output of a run optimized by
 * hundreds of rounds can be compared byte for byte with a plain run. Not
 * responsible for any timing or any optimization: it links nothing from
 * libocolos; the soak script attaches ocolos-agent by pid.
 *
 *   soak_target [--threads N] [--phase-ms MS] [--spawn-ms MS] [--fork-ms MS]
 *               [--exit-after MS]
 *
 * - N workers (default 2) run laps of work over one of two disjoint sets of
 *   classes (set A, set B: templates instantiated 8 times each, so each set
 *   has ~50 distinct hot functions), switching set every --phase-ms (default
 *   1500): each round of the agent sees different hot code than the last.
 *   Every lap is compared with a reference lap computed at start.
 * - Hot leaves throw for about one item in 40; the exception crosses one
 *   frame and is caught: once those frames run in optimized code, unwinding
 *   needs its registered unwind tables.
 * - Every --spawn-ms (default 40) the main thread starts a short-lived thread
 *   (std::thread, detached) that computes a fixed piece on both sets and
 *   checks it.
 * - Every --fork-ms (default 500) the main thread forks; the child computes
 *   the piece in its main thread and in a thread it creates, checks both
 *   against the parent's references (code inherited from the parent: the
 *   optimized versions mapped at the time) and exits 0, or 3 on a mismatch;
 *   an alarm kills a child still running after 20 s (counted as hung).
 *   The child's piece throws no exception unless --child-throws 1: after a
 *   fork, a multi-threaded program's child may only call async-signal-safe
 *   functions, and throwing is not one — with libgcc 12, once unwind tables
 *   are registered with __register_frame (which a round does for its
 *   code), every throw takes libgcc's global object_mutex, and a child
 *   forked while another thread held it hangs at its first throw
 *   (docs/benchmarks.md, "Continuous optimization").
 *
 * Stops on SIGTERM/SIGINT (or --exit-after). stdout: each worker's checksum
 * of a fixed final piece, then "threads ok", "children ok", "ok" — or lines
 * naming what went wrong. Counts (laps, threads, children, phases) go to
 * stderr. Exit 0 when everything matched, else 1.
 *
 * Build: g++ -O2 -fno-jump-tables -pthread -Wl,--emit-relocs (-no-pie or
 * -fPIE -pie).
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
#include <system_error>
#include <sys/wait.h>
#include <thread>
#include <time.h>
#include <unistd.h>
#include <vector>

#define NOINLINE __attribute__((noinline))

namespace {

constexpr uint64_t kLapItems = 1500;
constexpr uint64_t kPieceItems = 3000;
constexpr uint64_t kFinalItems = 20000;

std::atomic<int> stop_flag{0};
std::atomic<int> g_phase{0};
std::atomic<uint64_t> short_ok{0}, short_bad{0}, short_live{0};

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

/* Set A: three class templates, eight instances each. */
template <int K> struct SquareA : Shape {
	uint64_t k;
	explicit SquareA(uint64_t k_) : k(k_ + K) {}
	NOINLINE uint64_t step(uint64_t x) const override { return mix(x * x + k, k + K); }
	NOINLINE uint64_t weight() const override { return k * (3 + K) + 1; }
};
template <int K> struct RingA : Shape {
	uint64_t a, b;
	RingA(uint64_t a_, uint64_t b_) : a(a_), b(b_ + K) {}
	NOINLINE uint64_t step(uint64_t x) const override { return mix(x ^ a, x + b) + K; }
	NOINLINE uint64_t weight() const override { return a + b * K; }
};
template <int K> struct SpikyA : Shape {
	uint64_t s;
	explicit SpikyA(uint64_t s_) : s(s_ * (K + 1)) {}
	NOINLINE uint64_t step(uint64_t x) const override
	{
		uint64_t y = mix(x, s);
		if (y % 40 == (unsigned)K)
			throw Odd(y);
		return y;
	}
	NOINLINE uint64_t weight() const override { return s ^ (0x55 + K); }
};

/* Set B: different code, same shape of work. */
template <int K> struct TriB : Shape {
	uint64_t t;
	explicit TriB(uint64_t t_) : t(t_ * 7 + K) {}
	NOINLINE uint64_t step(uint64_t x) const override
	{
		return mix((x >> 3) * t, x ^ (t << K));
	}
	NOINLINE uint64_t weight() const override { return t * 5 - K; }
};
template <int K> struct HexB : Shape {
	uint64_t u, v;
	HexB(uint64_t u_, uint64_t v_) : u(u_ + 3 * K), v(v_) {}
	NOINLINE uint64_t step(uint64_t x) const override
	{
		return mix(mix(x + u, v), (uint64_t)K);
	}
	NOINLINE uint64_t weight() const override { return (u << 2) ^ v ^ K; }
};
template <int K> struct ThornyB : Shape {
	uint64_t s;
	explicit ThornyB(uint64_t s_) : s(s_ + 11 * K) {}
	NOINLINE uint64_t step(uint64_t x) const override
	{
		uint64_t y = mix(x + K, s);
		if (y % 40 == 13)
			throw Odd(y ^ K);
		return y;
	}
	NOINLINE uint64_t weight() const override { return s * 9 + K; }
};

using Shapes = std::vector<std::unique_ptr<Shape>>;

template <template <int> class C, int K, typename... Args>
void add(Shapes &v, unsigned which, Args... args)
{
	if constexpr (K < 8) {
		if (which == K)
			v.emplace_back(new C<K>(args...));
		else
			add<C, K + 1>(v, which, args...);
	}
}

/* Twelve shapes of one set; without `throwing`, no shape that throws. */
Shapes make_shapes(int set, unsigned id, bool throwing = true)
{
	Shapes v;
	for (unsigned k = 0; k < 12; k++) {
		unsigned inst = (k * 5 + id) % 8;
		switch ((k + id) % (throwing ? 3 : 2)) {
		case 0:
			if (set == 0)
				add<SquareA, 0>(v, inst, (uint64_t)k + 3);
			else
				add<TriB, 0>(v, inst, (uint64_t)k + 3);
			break;
		case 1:
			if (set == 0)
				add<RingA, 0>(v, inst, (uint64_t)k * 7 + 1, (uint64_t)id + 5);
			else
				add<HexB, 0>(v, inst, (uint64_t)k * 7 + 1, (uint64_t)id + 5);
			break;
		default:
			if (set == 0)
				add<SpikyA, 0>(v, inst, (uint64_t)k * 13 + id);
			else
				add<ThornyB, 0>(v, inst, (uint64_t)k * 13 + id);
			break;
		}
	}
	return v;
}

/* One frame between the thrower and the catcher. */
NOINLINE uint64_t chain(const Shapes &shapes, uint64_t x)
{
	for (const auto &sh : shapes)
		x = sh->step(x) + sh->weight();
	return x;
}

NOINLINE uint64_t one_item(const Shapes &shapes, uint64_t seed, uint64_t i)
{
	try {
		return chain(shapes, mix(seed, i));
	} catch (const Odd &e) {
		return e.v * 31 + i;
	}
}

NOINLINE uint64_t work_run(const Shapes &shapes, uint64_t seed, uint64_t count)
{
	uint64_t h = seed;
	for (uint64_t i = 0; i < count; i++)
		h = mix(h, one_item(shapes, seed, i));
	return h;
}

/* The fixed piece of short-lived threads and children: both sets. */
NOINLINE uint64_t piece(bool throwing)
{
	Shapes a = make_shapes(0, 3, throwing), b = make_shapes(1, 3, throwing);
	return mix(work_run(a, 71, kPieceItems), work_run(b, 72, kPieceItems));
}

uint64_t g_piece_ref, g_child_ref;
bool g_child_throws;

struct Worker {
	pthread_t th;
	unsigned id = 0;
	uint64_t laps = 0, mismatches = 0, result = 0;
};

void *worker_main(void *p)
{
	Worker *w = static_cast<Worker *>(p);
	Shapes sets[2] = { make_shapes(0, w->id), make_shapes(1, w->id) };
	uint64_t seed = 500 + w->id;
	uint64_t ref[2] = { work_run(sets[0], seed, kLapItems), work_run(sets[1], seed, kLapItems) };
	while (!stop_flag.load(std::memory_order_relaxed)) {
		int ph = g_phase.load(std::memory_order_relaxed);
		w->mismatches += work_run(sets[ph], seed, kLapItems) != ref[ph];
		w->laps++;
	}
	w->result = mix(work_run(sets[0], seed + 99, kFinalItems),
			work_run(sets[1], seed + 98, kFinalItems));
	return nullptr;
}

void short_lived()
{
	if (piece(true) == g_piece_ref)
		short_ok++;
	else
		short_bad++;
	short_live--;
}

/* The child of a fork: the piece in its main thread and in a new thread. */
#ifdef SOAK_ALARM_ABORT
/* Debugging a hung child: a core dump instead of a silent kill. */
void on_alarm(int) { abort(); }
#endif

[[noreturn]] void child_main()
{
#ifdef SOAK_ALARM_ABORT
	signal(SIGALRM, on_alarm);
#endif
	alarm(20);
	bool ok = piece(g_child_throws) == g_child_ref;
	uint64_t t_res = 0;
	std::thread t([&t_res] { t_res = piece(g_child_throws); });
	t.join();
	ok = ok && t_res == g_child_ref;
	_exit(ok ? 0 : 3);
}

double now_ms()
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

} // namespace

int main(int argc, char **argv)
{
	unsigned nthreads = 2;
	long exit_after_ms = -1, phase_ms = 1500, spawn_ms = 40, fork_ms = 500;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (i + 1 >= argc)
			goto usage;
		if (!strcmp(a, "--threads"))
			nthreads = (unsigned)atoi(argv[++i]);
		else if (!strcmp(a, "--exit-after"))
			exit_after_ms = atol(argv[++i]);
		else if (!strcmp(a, "--phase-ms"))
			phase_ms = atol(argv[++i]);
		else if (!strcmp(a, "--spawn-ms"))
			spawn_ms = atol(argv[++i]);
		else if (!strcmp(a, "--fork-ms"))
			fork_ms = atol(argv[++i]);
		else if (!strcmp(a, "--child-throws"))
			g_child_throws = atoi(argv[++i]) != 0;
		else
			goto usage;
	}
	if (nthreads < 1 || nthreads > 16 || phase_ms < 1 || spawn_ms < 1 || fork_ms < 1)
		goto usage;
	{
		/* Workers and short-lived threads inherit the mask: only main's
		 * sigtimedwait() takes these. */
		sigset_t set;
		sigemptyset(&set);
		sigaddset(&set, SIGTERM);
		sigaddset(&set, SIGINT);
		pthread_sigmask(SIG_BLOCK, &set, nullptr);
		g_piece_ref = piece(true);
		g_child_ref = piece(g_child_throws);

		std::vector<Worker> w(nthreads);
		for (unsigned i = 0; i < nthreads; i++) {
			w[i].id = i;
			if (pthread_create(&w[i].th, nullptr, worker_main, &w[i])) {
				fprintf(stderr, "soak_target: pthread_create failed\n");
				return 1;
			}
		}
		double t0 = now_ms(), next_phase = t0 + phase_ms, next_spawn = t0 + spawn_ms,
		       next_fork = t0 + fork_ms;
		uint64_t phases = 0, spawned = 0, spawn_failed = 0, forks = 0, fork_failed = 0,
			 children_bad = 0, children_hung = 0;
		for (;;) {
			struct timespec tick = { 0, 10 * 1000000L };
			int sig = sigtimedwait(&set, nullptr, &tick);
			if (sig == SIGTERM || sig == SIGINT)
				break;
			double t = now_ms();
			if (exit_after_ms >= 0 && t - t0 >= exit_after_ms)
				break;
			if (t >= next_phase) {
				g_phase.store(g_phase.load() ^ 1);
				phases++;
				next_phase += phase_ms;
			}
			if (t >= next_spawn) {
				next_spawn = t + spawn_ms;
				short_live++;
				try {
					std::thread(short_lived).detach();
					spawned++;
				} catch (const std::system_error &) {
					short_live--;
					spawn_failed++;
				}
			}
			if (t >= next_fork) {
				next_fork = t + fork_ms;
				pid_t c = fork();
				if (c == 0)
					child_main();
				if (c < 0) {
					fork_failed++;
					continue;
				}
				forks++;
				int st;
				while (waitpid(c, &st, 0) < 0 && errno == EINTR)
					;
				if (WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM)
					children_hung++;
				else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
					children_bad++;
			}
		}

		stop_flag.store(1);
		uint64_t laps = 0, bad = 0;
		for (unsigned i = 0; i < nthreads; i++) {
			pthread_join(w[i].th, nullptr);
			laps += w[i].laps;
			bad += w[i].mismatches;
			printf("worker %u final %016llx\n", i, (unsigned long long)w[i].result);
		}
		while (short_live.load())
			usleep(1000);
		fprintf(stderr,
			"soak_target %d: %llu laps (%llu mismatched), %llu phase switches, "
			"%llu threads (%llu failed checks, %llu not started), %llu children "
			"(%llu failed, %llu hung, %llu forks failed)\n",
			(int)getpid(), (unsigned long long)laps, (unsigned long long)bad,
			(unsigned long long)phases, (unsigned long long)spawned,
			(unsigned long long)short_bad.load(), (unsigned long long)spawn_failed,
			(unsigned long long)forks, (unsigned long long)children_bad,
			(unsigned long long)children_hung, (unsigned long long)fork_failed);
		bool ok = !bad && !short_bad.load() && !children_bad && !children_hung;
		if (bad)
			printf("MISMATCH laps %llu\n", (unsigned long long)bad);
		printf(short_bad.load() ? "threads MISMATCH\n" : "threads ok\n");
		if (children_bad || children_hung)
			printf("children FAILED %llu hung %llu\n", (unsigned long long)children_bad,
			       (unsigned long long)children_hung);
		else
			printf("children ok\n");
		printf(ok ? "ok\n" : "FAILED\n");
		return ok ? 0 : 1;
	}
usage:
	fprintf(stderr,
		"usage: %s [--threads N] [--phase-ms MS] [--spawn-ms MS] [--fork-ms MS] "
		"[--child-throws 0|1] [--exit-after MS]\n",
		argv[0]);
	return 2;
}
