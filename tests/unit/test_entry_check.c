/*
 * The stop-time check of entry patches (inject/entry.c): an entry is left
 * alone when a thread's PC is inside it past the first byte, or a word of
 * a thread's stack points inside it; a PC at the first byte is fine; an
 * unreadable stack blocks every entry.
 */
#include <string.h>

#include "inject/inject.h"
#include "unit.h"

static uint64_t stack_words[4];
static size_t nstack_words;

static size_t fake_stack(void *ctx, uint64_t sp, uint64_t *words, size_t max)
{
	(void)ctx;
	if (sp == 0xdead)
		return 0; /* unreadable */
	memcpy(words, stack_words, nstack_words * sizeof(*words));
	return nstack_words;
}

static struct inject_plan make_plan(void)
{
	static struct inject_patch v[4];
	memset(v, 0, sizeof(v));
	v[0] = (struct inject_patch){ .addr = 0x1000, .len = 4, .kind = INJECT_CALL_SITE };
	v[1] = (struct inject_patch){ .addr = 0x2000, .len = 5, .kind = INJECT_ENTRY };
	v[2] = (struct inject_patch){ .addr = 0x3000, .len = 5, .kind = INJECT_ENTRY };
	v[3] = (struct inject_patch){ .addr = 0x4000, .len = 5, .kind = INJECT_ENTRY };
	return (struct inject_plan){ .v = v, .n = 4, .cap = 4, .entries = 3 };
}

int main(void)
{
	static uint64_t scratch[INJECT_STACK_WORDS];
	struct inject_plan plan = make_plan();
	struct proc_thread_state ts[2] = { { 0x2000, 0x100 }, { 0x3003, 0x100 } };
	nstack_words = 2;
	stack_words[0] = 0x4004; /* a saved PC inside the third entry */
	stack_words[1] = 0x2005; /* just past the first: harmless */
	inject_entries_check(&plan, ts, 2, fake_stack, NULL, scratch);
	expect(!plan.v[1].blocked, "PC at an entry's first byte must not block it");
	expect(plan.v[2].blocked, "PC inside an entry must block it");
	expect(plan.v[3].blocked, "a stack word inside an entry must block it");
	expect(!plan.v[0].blocked, "call sites are never blocked");

	nstack_words = 1;
	stack_words[0] = 0x9999; /* nothing of interest */
	ts[1].pc = 0x5000;
	inject_entries_check(&plan, ts, 2, fake_stack, NULL, scratch);
	expect(!plan.v[1].blocked && !plan.v[2].blocked && !plan.v[3].blocked,
	       "a new check starts from scratch");

	ts[0].sp = 0xdead;
	inject_entries_check(&plan, ts, 2, fake_stack, NULL, scratch);
	expect(plan.v[1].blocked && plan.v[2].blocked && plan.v[3].blocked,
	       "an unreadable stack must block every entry");
	unit_done();
}
