/*
 * inject/apply.c's runs: a switch reads and writes merged runs of patches,
 * not patches one by one. A hand-made plan on two pages of this process
 * (the in-process target writes through /proc/self/mem) checks:
 *   - what merges: code patches across gaps of up to 64 bytes, writable
 *     data slots only where they touch;
 *   - that the result is the patch-by-patch result, byte for byte (the
 *     same plan applied without runs on a copy of the pages): the patches
 *     written, a mismatched patch skipped, the gap bytes untouched, the
 *     slots of one function held together when the program changed one;
 *   - that a revert puts back every byte;
 *   - no jump loop between a C0 entry and its stub: a revert whose entry
 *     stays (a thread inside) keeps its stub on the version too.
 */
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "check.h"
#include "inject/inject.h"
#include "proc/target.h"

enum { NP = 7 };

static void fill(uint8_t *code, uint8_t *data, long pg)
{
	memset(code, 0xcc, (size_t)pg);
	for (long i = 0; i < pg; i++)
		data[i] = (uint8_t)(i * 7);
}

/* Patches at code+{0,20,200} (call sites) and data+{0,8,16,32} (slots;
 * the first three one function's). Old bytes as the pages hold them, but
 * the second call site expects other bytes (a mismatch). */
static void make_plan(struct inject_patch *v, uint8_t *code, uint8_t *data)
{
	const unsigned coff[3] = { 0, 20, 200 }, doff[4] = { 0, 8, 16, 32 };
	memset(v, 0, NP * sizeof(*v));
	for (int i = 0; i < 3; i++) {
		v[i] = (struct inject_patch){ .addr = (uint64_t)(uintptr_t)(code + coff[i]), .len = 4,
					      .kind = INJECT_CALL_SITE };
		memcpy(v[i].old, code + coff[i], 4);
		memset(v[i].new_, 0x10 + i, 4);
	}
	v[1].old[0] ^= 0xff;
	for (int i = 0; i < 4; i++) {
		struct inject_patch *p = &v[3 + i];
		*p = (struct inject_patch){ .addr = (uint64_t)(uintptr_t)(data + doff[i]), .len = 8,
					    .kind = INJECT_DATA_SLOT, .group = i < 3 ? 1 : 2 };
		memcpy(p->old, data + doff[i], 8);
		memset(p->new_, 0x40 + i, 8);
	}
}

/* Apply forward (with or without runs) and return the result. */
static struct inject_apply_result apply(struct proc_target *t, struct inject_plan *plan,
					int with_runs, int forward, size_t *nruns)
{
	struct inject_apply_result res;
	struct inject_runs runs = { 0 };
	struct core_err err = { 0 };
	struct proc_span *spans = NULL;
	size_t nspans = 0;
	check(inject_plan_spans(plan, &spans, &nspans, &err) == 0, "spans: %s", err.msg);
	check(t->ops->poke_prepare(t, spans, nspans, &err) == 0, "prepare: %s", err.msg);
	if (with_runs) {
		check(inject_runs_build(plan, &runs, &err) == 0, "runs: %s", err.msg);
		plan->runs = &runs;
		*nruns = runs.n;
	}
	check(inject_apply(t, plan, forward, &res, &err) == 0, "apply: %s", err.msg);
	plan->runs = NULL;
	inject_runs_free(&runs);
	t->ops->poke_done(t);
	free(spans);
	return res;
}

/* A jmp rel32 at `at` to `to`, the 5 bytes into out. */
static void jmp(uint8_t *out, const uint8_t *at, const uint8_t *to)
{
	int32_t d = (int32_t)(to - (at + 5));
	out[0] = 0xe9;
	memcpy(out + 1, &d, 4);
}

/* An entry at code+1024 jumps to its stub at code+2048, which jumps to a
 * version at code+3000; the plan puts both back (the entry to its own
 * bytes, the stub to the entry). With the entry blocked, neither may
 * change: the stub would lead to an entry leading back to the stub. */
static void stub_loop(struct proc_target *t, uint8_t *code, int with_runs, int block)
{
	uint8_t *e = code + 1024, *s = code + 2048, *ver = code + 3000;
	const uint8_t own[5] = { 0x55, 0x48, 0x89, 0xe5, 0x90 };
	jmp(e, e, s);
	jmp(s, s, ver);
	struct inject_patch v[2] = {
		{ .addr = (uint64_t)(uintptr_t)(s + 1), .len = 4, .kind = INJECT_STUB },
		{ .addr = (uint64_t)(uintptr_t)e, .len = 5, .kind = INJECT_ENTRY, .blocked = (uint8_t)block },
	};
	uint8_t b[5];
	memcpy(v[0].old, s + 1, 4);
	jmp(b, s, e);
	memcpy(v[0].new_, b + 1, 4);
	memcpy(v[1].old, e, 5);
	memcpy(v[1].new_, own, 5);
	uint8_t changed[3];
	struct inject_plan plan = { .v = v, .n = 2, .cap = 2, .changed = changed };
	size_t nruns = 0;
	struct inject_apply_result res = apply(t, &plan, with_runs, 1, &nruns);
	uint8_t want_s[5], want_e[5];
	jmp(want_s, s, block ? ver : e);
	if (block)
		jmp(want_e, e, s);
	else
		memcpy(want_e, own, 5);
	expect(!memcmp(s, want_s, 5) && !memcmp(e, want_e, 5),
	       "stub loop (runs %d, blocked %d): stub %s, entry %s", with_runs, block,
	       memcmp(s, want_s, 5) ? "wrong" : "right", memcmp(e, want_e, 5) ? "wrong" : "right");
	expect(res.stubs == (block ? 0u : 1u) && res.entries == (block ? 0u : 1u) &&
	       v[0].applied == !block, "stub loop (runs %d, blocked %d): %u stubs, %u entries",
	       with_runs, block, res.stubs, res.entries);
}

int main(void)
{
	long pg = sysconf(_SC_PAGESIZE);
	uint8_t *m = mmap(NULL, 4 * (size_t)pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			  -1, 0);
	check(m != MAP_FAILED, "mmap");
	uint8_t *code[2] = { m, m + 2 * pg }, *data[2] = { m + pg, m + 3 * pg };
	struct proc_target t;
	struct core_log log = { 0 };
	struct core_err err = { 0 };
	check(proc_target_open(&t, getpid(), &log, &err) == 0, "target: %s", err.msg);

	/* 0: with runs; 1: patch by patch, the reference */
	struct inject_patch v[2][NP];
	struct inject_plan plan[2];
	uint8_t changed[2][NP + 1];
	struct inject_apply_result res[2];
	size_t nruns = 0;
	for (int k = 0; k < 2; k++) {
		fill(code[k], data[k], pg);
		make_plan(v[k], code[k], data[k]);
		plan[k] = (struct inject_plan){ .v = v[k], .n = NP, .cap = NP, .changed = changed[k] };
	}
	uint8_t before[2 * 4096];
	check(pg <= 4096 * 16, "page size");
	memcpy(before, code[0], 4096);
	memcpy(before + 4096, data[0], 4096);

	for (int k = 0; k < 2; k++)
		res[k] = apply(&t, &plan[k], k == 0, 1, &nruns);
	expect(nruns == 4, "runs: %zu, want 4 (code 0-24, code 200, slots 0-24, slot 32)", nruns);
	expect(res[0].call_sites == 2 && res[0].ptr_slots == 4 && res[0].mismatched == 1,
	       "forward: %u call sites, %u slots, %u mismatched; want 2, 4, 1", res[0].call_sites,
	       res[0].ptr_slots, res[0].mismatched);
	expect(!memcmp(&res[0], &res[1], sizeof(res[0])), "results differ from patch by patch");
	expect(!memcmp(code[0], code[1], 4096) && !memcmp(data[0], data[1], 4096),
	       "bytes differ from patch by patch");
	expect(code[0][0] == 0x10 && code[0][20] == 0xcc && code[0][10] == 0xcc && code[0][200] == 0x12,
	       "code: %02x %02x %02x %02x", code[0][0], code[0][20], code[0][10], code[0][200]);
	expect(data[0][24] == (uint8_t)(24 * 7) && data[0][32] == 0x43, "data: gap %02x slot %02x",
	       data[0][24], data[0][32]);

	/* Back: every byte as before. */
	for (int k = 0; k < 2; k++)
		res[k] = apply(&t, &plan[k], k == 0, 0, &nruns);
	expect(!memcmp(code[0], before, 4096) && !memcmp(data[0], before + 4096, 4096),
	       "revert left bytes changed");
	expect(res[0].call_sites == 2 && res[0].ptr_slots == 4, "revert: %u call sites, %u slots",
	       res[0].call_sites, res[0].ptr_slots);

	/* The program changed one slot of function 1: its three slots stay. */
	for (int k = 0; k < 2; k++) {
		data[k][8] ^= 1;
		res[k] = apply(&t, &plan[k], k == 0, 1, &nruns);
	}
	expect(res[0].ptr_slots == 1 && res[0].slots_held == 2 && res[0].mismatched == 2,
	       "held: %u slots, %u held, %u mismatched; want 1, 2, 2", res[0].ptr_slots,
	       res[0].slots_held, res[0].mismatched);
	expect(!memcmp(data[0], data[1], 4096) && !memcmp(code[0], code[1], 4096),
	       "held: bytes differ from patch by patch");
	expect(data[0][0] == before[4096] && data[0][16] == before[4096 + 16],
	       "a slot of the held function was written");

	for (int runs = 0; runs < 2; runs++)
		for (int block = 0; block < 2; block++) {
			memset(code[0], 0xcc, (size_t)pg);
			stub_loop(&t, code[0], runs, block);
		}

	proc_target_close(&t);
	test_done();
}
