/*
 * Integration test: one in-process round on a C++ program.
 *
 *   it_cxx plain   run the workload, no round
 *   it_cxx round   warm up, ocolos_optimize_self() while std::thread workers
 *                  keep running, then check where they run
 *
 * The hot loop makes virtual calls through a small class hierarchy (v-table
 * slots to redirect), indirect calls through a const function-pointer table,
 * std::sort with a lambda, and throws an exception from a leaf three frames
 * below the catch on ~1 item in 20. Exceptions keep flying through C1 frames
 * after the round: if C1's unwind tables were not registered, the first
 * throw would std::terminate(). stdout carries only checksums and the
 * number of exceptions caught (run_it.sh compares them across modes).
 */
#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "common.h"

namespace {

constexpr unsigned kWorkers = 3;
constexpr uint64_t kLapItems = 6000;	   // ~10 ms
constexpr uint64_t kFinalItems = 800000;   // ~0.5 s CPU per worker
constexpr uint64_t kMainItems = 20000;
constexpr unsigned kWarmupMs = 1000;
// AArch64 tests run under qemu-user with sigprof (~150 samples a second
// here): a longer window gives the small hot virtual methods the
// HYBRID_MIN_FUNCTION_SAMPLES they need to be moved.
#if defined(__aarch64__)
constexpr uint32_t kProfileMs = 3000;
#else
constexpr uint32_t kProfileMs = 1000;
#endif
constexpr uint32_t kVerifyHz = 2000;
constexpr uint32_t kVerifyMs = 500;
constexpr double kMinC1Share = 0.5;

#define NOINLINE __attribute__((noinline))

struct Fault {
	uint64_t v;
};

NOINLINE uint64_t mix(uint64_t h, uint64_t v)
{
	h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
	h *= 0xff51afd7ed558ccdULL;
	return h ^ (h >> 33);
}

// Throws one time in 64: the deepest frame of the exception path.
NOINLINE uint64_t validate_deep(uint64_t x)
{
	x = mix(x, 0x77);
	if ((x & 63) == 0)
		throw Fault{ x >> 3 };
	return x;
}

NOINLINE uint64_t validate(uint64_t x)
{
	return validate_deep(x ^ 0x1f) + 3;
}

// Apply is the first virtual function: slot 0 of every v-table below.
class Op {
public:
	explicit Op(uint64_t k) : k_(k) {}
	virtual uint64_t apply(uint64_t x) const = 0;
	virtual ~Op() = default;

protected:
	uint64_t k_;
};

class RotOp : public Op {
public:
	using Op::Op;
	uint64_t apply(uint64_t x) const override
	{
		unsigned r = (unsigned)(k_ % 63) + 1;
		return ((x << r) | (x >> (64 - r))) ^ k_;
	}
};

class MulOp : public Op {
public:
	using Op::Op;
	uint64_t apply(uint64_t x) const override { return (x | 1) * (k_ | 1); }
};

class HashOp : public Op {
public:
	using Op::Op;
	uint64_t apply(uint64_t x) const override { return mix(x, k_); }
};

class CheckOp : public Op {
public:
	using Op::Op;
	uint64_t apply(uint64_t x) const override { return validate(x + k_); }
};

using Ops = std::vector<std::unique_ptr<Op>>;

Ops make_ops(uint64_t seed)
{
	Ops ops;
	uint64_t h = seed;

	for (unsigned i = 0; i < 8; i++) {
		h = mix(h, i);
		switch (h % 4) {
		case 0: ops.emplace_back(new RotOp(h)); break;
		case 1: ops.emplace_back(new MulOp(h)); break;
		case 2: ops.emplace_back(new HashOp(h)); break;
		default: ops.emplace_back(new CheckOp(h)); break;
		}
	}
	ops.emplace_back(new CheckOp(seed)); // at least one thrower per set
	return ops;
}

NOINLINE uint64_t run_ops(const Ops &ops, uint64_t x)
{
	for (const auto &op : ops)
		x = op->apply(x);
	return x;
}

NOINLINE uint64_t fp_rot(uint64_t x) { return (x << 29) | (x >> 35); }
NOINLINE uint64_t fp_mul(uint64_t x) { return x * 0xc4ceb9fe1a85ec53ULL; }
NOINLINE uint64_t fp_xs(uint64_t x) { return x ^ (x >> 31) ^ (x << 7); }
NOINLINE uint64_t fp_add(uint64_t x) { return mix(x, 5) + 11; }

using Fn = uint64_t (*)(uint64_t);
const Fn kTable[4] = { fp_rot, fp_mul, fp_xs, fp_add };

struct ItemResult {
	uint64_t value;
	uint64_t faults;
};

NOINLINE ItemResult item(const Ops &ops, uint64_t seed, uint64_t i)
{
	std::array<uint64_t, 20> buf;
	uint64_t h = mix(seed, i), acc = seed;

	for (auto &b : buf)
		b = h = mix(h, i);
	std::sort(buf.begin(), buf.end(),
		  [](uint64_t a, uint64_t b) { return (a >> 3) < (b >> 3); });
	for (uint64_t b : buf)
		acc = kTable[(b >> 9) & 3](acc ^ b);
	try {
		return { run_ops(ops, acc), 0 };
	} catch (const Fault &f) {
		return { f.v * 3 + 1, 1 };
	}
}

struct RunResult {
	uint64_t sum = 0;
	uint64_t faults = 0;
	bool operator!=(const RunResult &o) const
	{
		return sum != o.sum || faults != o.faults;
	}
};

// Local (anonymous-namespace) function on purpose: GNU as resolves a call
// to a local symbol in the same section itself, so worker_main's calls to
// run() have no R_X86_64_PLT32 in .rela.text even with --emit-relocs. A
// round that redirects only relocated call sites leaves the workers in C0
// here (the C test calls a global function and would not notice).
NOINLINE RunResult run(const Ops &ops, uint64_t seed, uint64_t count)
{
	RunResult r;

	for (uint64_t i = 0; i < count; i++) {
		ItemResult it = item(ops, seed, i);
		r.sum = r.sum * 31 + it.value;
		r.faults += it.faults;
	}
	return r;
}

struct Worker {
	unsigned id = 0;
	Ops ops;
	uint64_t laps = 0, mismatches = 0;
	RunResult result;
	std::thread th;
};

std::atomic<bool> g_stop{ false };

// Same protocol as work.c's pool: reference lap, laps until stop (each
// compared with the reference), then a fixed final phase.
void worker_main(Worker *w)
{
	uint64_t seed = 0x2000 + w->id;
	RunResult ref = run(w->ops, seed, kLapItems);

	while (!g_stop.load(std::memory_order_acquire)) {
		if (run(w->ops, seed, kLapItems) != ref)
			w->mismatches++;
		w->laps++;
	}
	w->result = run(w->ops, seed * 7, kFinalItems);
}

uint64_t vtable_slot0(const Op *op)
{
	const uint64_t *const volatile *vptr =
		reinterpret_cast<const uint64_t *const volatile *>(op);
	return (*vptr)[0];
}

void check_pointers_in_c1(const struct ocolos_stats *st, const Worker *ws)
{
	unsigned vt_c1 = 0, fp_c1 = 0;

	for (unsigned i = 0; i < kWorkers; i++) {
		for (const auto &op : ws[i].ops)
			vt_c1 += test_in_c1(st, vtable_slot0(op.get()));
	}
	for (unsigned k = 0; k < 4; k++) {
		const Fn *volatile table = kTable;
		fp_c1 += test_in_c1(st, (uint64_t)(uintptr_t)table[k]);
	}
	fprintf(stderr, "v-table slot 0 in C1: %u objects; fn table in C1: %u\n",
		vt_c1, fp_c1);
	check(vt_c1 > 0, "no hot object's v-table slot points into C1");
	check(fp_c1 > 0, "no slot of the const function table points into C1");
}

void do_round(const Worker *ws)
{
	OCOLOS_OPTS(ocolos_stats, st);

	OCOLOS_OPTS(ocolos_opts, o, .profile_ms = kProfileMs,
		    .log_fn = test_log, .log_user = (void *)"");
	int rc = ocolos_optimize_self(&o, &st);
	test_check_round(rc, &st, kWorkers, 1);
	check_pointers_in_c1(&st, ws);
	double share = test_c1_share(&st, kVerifyHz, kVerifyMs, 50);
	fprintf(stderr, "share of binary samples in C1: %.3f\n", share);
	check(share >= kMinC1Share,
	      "only %.1f%% of the samples in the binary land in C1 after the "
	      "round (want >= %.0f%%)",
	      share * 100, kMinC1Share * 100);
}

} // namespace

int main(int argc, char **argv)
{
	check(argc == 2 && (!std::strcmp(argv[1], "plain") ||
			    !std::strcmp(argv[1], "round")),
	      "usage: %s plain|round", argv[0]);
	bool round = !std::strcmp(argv[1], "round");
	test_watchdog(100);
	if (round)
		test_require_perf();

	static Worker ws[kWorkers];
	test_blocker_start();
	g_stop.store(!round);
	for (unsigned i = 0; i < kWorkers; i++) {
		ws[i].id = i;
		ws[i].ops = make_ops(0x3000 + i);
		ws[i].th = std::thread(worker_main, &ws[i]);
	}
	if (round) {
		test_sleep_ms(kWarmupMs);
		do_round(ws);
	}
	// The main thread throws and catches through patched code as well.
	Ops mine_ops = make_ops(99);
	RunResult mine = run(mine_ops, 42, kMainItems);
	g_stop.store(true, std::memory_order_release);

	uint64_t total = 0, mismatches = 0;
	for (unsigned i = 0; i < kWorkers; i++) {
		ws[i].th.join();
		std::fprintf(stderr, "worker %u: %llu laps, %llu mismatches\n", i,
			     (unsigned long long)ws[i].laps,
			     (unsigned long long)ws[i].mismatches);
		mismatches += ws[i].mismatches;
	}
	check(mismatches == 0,
	      "a lap computed a different checksum than the reference lap");
	for (unsigned i = 0; i < kWorkers; i++) {
		std::printf("worker %u: %016llx faults=%llu\n", i,
			    (unsigned long long)ws[i].result.sum,
			    (unsigned long long)ws[i].result.faults);
		check(ws[i].result.faults > 0, "no exception was thrown");
		total = total * 1000003 + ws[i].result.sum;
	}
	std::printf("main: %016llx faults=%llu\n", (unsigned long long)mine.sum,
		    (unsigned long long)mine.faults);
	std::printf("blocker: %c\n", test_blocker_release());
	std::printf("total: %016llx\n", (unsigned long long)(total ^ mine.sum));
	return 0;
}
