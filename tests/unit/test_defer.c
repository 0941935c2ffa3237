/*
 * The entries of an older version a round's stop may leave (inject_defer,
 * inject/entry.c): only those of copies a live copy calls or jumps to, and
 * of the live copies themselves, are written; a version without callee
 * lists, or a stop that could not read a stack, writes them all; an entry
 * already blocked (a thread inside) stays blocked; C0's entries are never
 * left, nor an entry already redirected to a newer version.
 */
#include <string.h>

#include "inject/inject.h"
#include "check.h"

/* Version 1: four copies of 0x100 bytes from 0x10000, f0 -> f1 -> f2, f3
 * calls nothing; its entries and one of C0 in a plan. */
static struct inject_frag_range frags[4] = {
	{ 0x10000, 0x10100, 0 }, { 0x10100, 0x10200, 1 }, { 0x10200, 0x10300, 2 },
	{ 0x10300, 0x10400, 3 },
};
static uint32_t callee_off[5] = { 0, 1, 2, 2, 2 }, callees[2] = { 1, 2 };
static uint8_t orig[4][5] = { { 0x55 }, { 0x55 }, { 0x55 }, { 0x55 } };

static struct inject_plan make_plan(struct inject_patch *v)
{
	memset(v, 0, 5 * sizeof(*v));
	v[0] = (struct inject_patch){ .addr = 0x5000, .len = 5, .kind = INJECT_ENTRY };
	for (int i = 0; i < 4; i++)
		v[1 + i] = (struct inject_patch){ .addr = 0x10000 + 0x100 * (uint64_t)i, .len = 5,
			.kind = INJECT_ENTRY, .owner_gen = 1, .target_gen = 2, .old = { 0x55 } };
	return (struct inject_plan){ .v = v, .n = 5, .cap = 5, .entries = 5 };
}

static void run(const struct inject_version_entries *ve, const uint64_t *words, size_t n,
		int unreadable, struct inject_plan *plan)
{
	const struct inject_version_entries *vs[1] = { ve };
	struct inject_defer d;
	struct core_err err = { 0 };
	check(inject_defer_init(&d, vs, 1, &err) == 0, "init: %s", err.msg);
	for (size_t i = 0; i < n; i++)
		inject_defer_mark(&d, words[i]);
	d.all |= unreadable;
	inject_defer_apply(&d, plan);
	inject_defer_free(&d);
}

static void want(const struct inject_plan *plan, const char *what, int b0, int b1, int b2, int b3,
		 int b4)
{
	const int w[5] = { b0, b1, b2, b3, b4 };
	for (int i = 0; i < 5; i++)
		expect(plan->v[i].blocked == w[i], "%s: patch %d blocked %d, want %d", what, i,
		       plan->v[i].blocked, w[i]);
}

int main(void)
{
	struct inject_version_entries ve = { .gen = 1, .nfuncs = 4, .frags = frags, .nfrags = 4,
		.callee_off = callee_off, .callees = callees, .orig = orig };
	struct inject_patch v[5];
	struct inject_plan plan = make_plan(v);

	/* A thread in f0 (a stack word; a word outside every copy is noise). */
	const uint64_t in_f0[2] = { 0x10050, 0x99999 };
	run(&ve, in_f0, 2, 0, &plan);
	want(&plan, "live f0", 0, 0, 0, 2, 2);

	/* In f3, which calls nothing: only its own entry. */
	plan = make_plan(v);
	const uint64_t in_f3[1] = { 0x103ff };
	run(&ve, in_f3, 1, 0, &plan);
	want(&plan, "live f3", 0, 2, 2, 2, 0);

	/* Nobody in the version: all of its entries wait. */
	plan = make_plan(v);
	run(&ve, NULL, 0, 0, &plan);
	want(&plan, "quiet", 0, 2, 2, 2, 2);

	/* An entry a thread is inside stays blocked, not deferred. */
	plan = make_plan(v);
	v[3].blocked = 1;
	run(&ve, in_f0, 1, 0, &plan);
	want(&plan, "blocked", 0, 0, 0, 1, 2);

	/* f3's entry jumps to a newer version already: written (retargeted),
	 * or that version would stay mapped for it. */
	plan = make_plan(v);
	v[4].old[0] = 0xe9;
	run(&ve, in_f0, 1, 0, &plan);
	want(&plan, "redirected before", 0, 0, 0, 2, 0);

	/* A stack that could not be read: everything is written. */
	plan = make_plan(v);
	run(&ve, NULL, 0, 1, &plan);
	want(&plan, "unreadable", 0, 0, 0, 0, 0);

	/* A version without callee lists (read back from a state record). */
	struct inject_version_entries bare = ve;
	bare.callee_off = NULL;
	bare.callees = NULL;
	plan = make_plan(v);
	run(&bare, NULL, 0, 0, &plan);
	want(&plan, "no callee lists", 0, 0, 0, 0, 0);

	test_done();
}
