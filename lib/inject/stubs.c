/*
 * Stubs: where a redirected function-pointer slot points, and (x86-64)
 * where a moved function's C0 entry jumps (plan.c says why).
 *
 * A slot (v-table entry, table of handlers) that the pointer rule allows to
 * move is given the address of a small stub, once, and never changes
 * again; the stub jumps to the function's current code: its copy in the
 * newest version, or C0 after a revert or when the function is no longer
 * hot. So the program sees one value per function from the first redirect
 * on — a copy of the slot it made after that round compares equal to a
 * fresh read after any later round or revert — and no slot ever holds an
 * address inside a code version, which can therefore be retired without
 * looking for copies of slot values anywhere in memory. The price is one
 * direct jump per call through a slot; the stubs of the hot functions share
 * a few cache lines, where going through C0's entries costs one line per
 * function, scattered over the whole text.
 *
 * The stub area is reserved once, within rel32 reach of the image (so of
 * every version too). A round's new stubs go on fresh pages, mapped before
 * the stop with their jump aimed at C0 (nothing reaches them yet); pages
 * already in use are only ever changed by patches written in a stop.
 *   x86-64:  jmp rel32; int3 x3                      (8 bytes; the rel32 is
 *            retargeted: one instruction, no thread can be inside it)
 *   AArch64: ldr x16, #8; br x16; .quad target      (16 bytes; the literal
 *            is retargeted: a data word, read whole by the ldr)
 */
#include <elf.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "arch/arch.h"
#include "arch/cpu.h"
#include "inject/inject.h"

/* Address space only (PROT_NONE until used): a round that adds stubs takes
 * at least a page, so 16 MiB is 4,096 such rounds. */
#define STUB_AREA (16ull << 20)

static uint64_t stub_len(uint16_t machine)
{
	return machine == EM_AARCH64 ? 16 : 8;
}

int inject_stubs_reserve(struct proc_target *t, const struct elf_binary *b, uint64_t bias,
			 struct inject_stubs *st, struct core_err *err)
{
	if (st->res.size)
		return 0;
	if (!st->at && !(st->at = calloc(b->nfuncs + 1, sizeof(*st->at))))
		return core_errf(err, OCOLOS_ENOMEM, "out of memory");
	st->nfuncs = b->nfuncs;
	int rc = inject_reserve(t, b, bias, STUB_AREA, &st->res, err);
	if (!rc)
		st->next = st->res.addr;
	return rc;
}

/* The bytes of a stub at `at` jumping to `to`, into out (stub_len bytes). */
static int stub_bytes(uint16_t machine, uint64_t at, uint64_t to, uint8_t *out)
{
	if (machine == EM_AARCH64) {
		const uint32_t ldr = 0x58000050u; /* ldr x16, #8 */
		const uint32_t br = 0xd61f0200u;  /* br x16 */
		memcpy(out, &ldr, 4);
		memcpy(out + 4, &br, 4);
		memcpy(out + 8, &to, 8);
		return 0;
	}
	out[0] = 0xe9;
	memset(out + 5, 0xcc, 3);
	return arch_x86_encode_rel32(at, to, out + 1);
}

int inject_stubs_alloc(const struct elf_binary *b, struct inject_stubs *st, uint32_t f,
		       uint64_t c0, uint64_t *addr, struct core_err *err)
{
	if (st->at[f]) {
		*addr = st->at[f];
		return 0;
	}
	uint64_t len = stub_len(b->machine), pg = arch_page_size();
	if (!st->fresh_len) /* this round's first: on a fresh page */
		st->fresh_lo = st->next = (st->next + pg - 1) & ~(pg - 1);
	if (st->next + len > st->res.addr + st->res.size)
		return core_errf(err, OCOLOS_ERESERVE, "the slot stub area (%llu KiB) is full",
				 (unsigned long long)(st->res.size >> 10));
	uint64_t need = st->next + len - st->fresh_lo;
	if (need > st->fresh_cap) {
		uint64_t cap = (need + pg - 1) & ~(pg - 1);
		uint8_t *buf = realloc(st->fresh, cap);
		if (!buf)
			return core_errf(err, OCOLOS_ENOMEM, "out of memory");
		memset(buf + st->fresh_cap, 0xcc, cap - st->fresh_cap);
		st->fresh = buf;
		st->fresh_cap = cap;
	}
	if (stub_bytes(b->machine, st->next, c0, st->fresh + (st->next - st->fresh_lo)))
		return core_errf(err, OCOLOS_ERESERVE, "a slot stub at 0x%llx cannot reach 0x%llx",
				 (unsigned long long)st->next, (unsigned long long)c0);
	st->fresh_len = need;
	*addr = st->at[f] = st->next;
	st->next += len;
	return 0;
}

int inject_stubs_map(struct proc_target *t, struct inject_stubs *st, struct core_err *err)
{
	if (!st->fresh_len)
		return 0;
	uint64_t pg = arch_page_size();
	uint64_t size = (st->fresh_len + pg - 1) & ~(pg - 1);
	int rc = t->ops->map_fill(t, st->fresh_lo, size, PROT_READ | PROT_EXEC, st->fresh,
				  st->fresh_len, "ocolos-stubs", err);
	if (rc) {
		inject_stubs_rollback(st);
		return rc;
	}
	st->next = st->fresh_lo + size; /* the next round starts on a fresh page */
	st->fresh_len = 0;
	return 0;
}

void inject_stubs_rollback(struct inject_stubs *st)
{
	if (!st->fresh_len)
		return;
	for (size_t f = 0; f < st->nfuncs; f++)
		if (st->at[f] >= st->fresh_lo)
			st->at[f] = 0;
	st->next = st->fresh_lo;
	st->fresh_len = 0;
}

int inject_stub_patch(const struct elf_binary *b, uint64_t stub, uint64_t c0, uint64_t to,
		      struct inject_patch *p)
{
	uint8_t from_bytes[16], to_bytes[16];
	memset(p, 0, sizeof(*p));
	if (stub_bytes(b->machine, stub, c0, from_bytes) || stub_bytes(b->machine, stub, to, to_bytes))
		return OCOLOS_ERESERVE;
	p->kind = INJECT_STUB;
	if (b->machine == EM_AARCH64) {
		p->addr = stub + 8;
		p->len = 8;
		memcpy(p->old, from_bytes + 8, 8);
		memcpy(p->new_, to_bytes + 8, 8);
	} else {
		p->addr = stub + 1;
		p->len = 4;
		memcpy(p->old, from_bytes + 1, 4);
		memcpy(p->new_, to_bytes + 1, 4);
	}
	return 0;
}

void inject_stubs_free(struct inject_stubs *st)
{
	free(st->at);
	free(st->fresh);
	memset(st, 0, sizeof(*st));
}
