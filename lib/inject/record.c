/*
 * The patch record: every location a round ever wrote in the target, with
 * its original bytes and the bytes it holds now, and the transition from
 * what is there to what a round wants.
 *
 * Why a record and not one plan per round. With continuous rounds the
 * target runs C0 with some locations pointing at C_k; round k+1 wants some
 * of them pointing at C_{k+1}, others (functions no longer hot) back at
 * their original bytes, the entries of older versions at the new code, and
 * slots it redirects for the first time at their stubs. A revert wants
 * everything back but the slots (their stubs go back to C0 instead: a slot
 * value, once changed, never changes again, so the program never sees two
 * values for one function). All of these are one operation: for every
 * location in the record or in the wanted state, write the wanted bytes
 * over the current ones (apply.c still checks memory holds the current
 * ones). The record is then what a later round, or a fresh agent reading
 * it, needs to know.
 */
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "inject/inject.h"

static int cmp_loc(const void *a, const void *b)
{
	const struct inject_loc *x = a, *y = b;
	return x->addr < y->addr ? -1 : x->addr > y->addr;
}

struct inject_loc *inject_record_find(const struct inject_record *rec, uint64_t addr)
{
	size_t lo = 0, hi = rec->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (rec->v[mid].addr < addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < rec->n && rec->v[lo].addr == addr ? &rec->v[lo] : NULL;
}

static int push(struct inject_plan *p, const struct inject_patch *x)
{
	if (core_grow((void **)&p->v, &p->cap, p->n, sizeof(*p->v)))
		return OCOLOS_ENOMEM;
	p->v[p->n++] = *x;
	return 0;
}

/* Order of a transition plan: what apply.c and entry.c need — entries in
 * one run by address (entry.c), the slots of a function together (apply.c's
 * all-or-none), the rest anywhere. */
static int kind_rank(uint8_t kind)
{
	switch (kind) {
	case INJECT_ENTRY: return 1;
	case INJECT_PTR_SLOT: case INJECT_DATA_SLOT: return 2;
	default: return 0;
	}
}

static int cmp_transition(const void *a, const void *b)
{
	const struct inject_patch *x = a, *y = b;
	int rx = kind_rank(x->kind), ry = kind_rank(y->kind);
	if (rx != ry)
		return rx < ry ? -1 : 1;
	if (rx == 2 && x->group != y->group)
		return x->group < y->group ? -1 : 1;
	return x->addr < y->addr ? -1 : x->addr > y->addr;
}

static int cmp_patch_addr(const void *a, const void *b)
{
	const struct inject_patch *x = a, *y = b;
	return x->addr < y->addr ? -1 : x->addr > y->addr;
}

int inject_transition(const struct inject_record *rec, const struct inject_plan *want,
		      struct inject_plan *out, struct core_err *err)
{
	memset(out, 0, sizeof(*out));
	struct inject_patch *w = malloc((want->n + 1) * sizeof(*w));
	if (!w)
		return core_errf(err, OCOLOS_ENOMEM, "out of memory");
	memcpy(w, want->v, want->n * sizeof(*w));
	qsort(w, want->n, sizeof(*w), cmp_patch_addr);
	int rc = 0;
	/* Locations wanted: from what they hold now (the record, or the
	 * original bytes the want plan carries as `old`). */
	for (size_t i = 0; i < want->n && !rc; i++) {
		const struct inject_loc *l = inject_record_find(rec, w[i].addr);
		struct inject_patch p = w[i];
		p.applied = p.blocked = 0;
		if (l)
			memcpy(p.old, l->cur, p.len);
		if (!memcmp(p.old, p.new_, p.len))
			continue;
		rc = push(out, &p);
	}
	/* Locations recorded but not wanted: back to their original bytes,
	 * except slots, whose value never changes back. */
	for (size_t i = 0; i < rec->n && !rc; i++) {
		const struct inject_loc *l = &rec->v[i];
		struct inject_patch key = { .addr = l->addr };
		if (bsearch(&key, w, want->n, sizeof(*w), cmp_patch_addr))
			continue;
		if (l->kind == INJECT_PTR_SLOT || l->kind == INJECT_DATA_SLOT ||
		    !memcmp(l->cur, l->orig, l->len))
			continue;
		struct inject_patch p = { .addr = l->addr, .len = l->len, .kind = l->kind,
			.group = l->group };
		memcpy(p.old, l->cur, l->len);
		memcpy(p.new_, l->orig, l->len);
		p.target_gen = 0;
		p.owner_gen = l->owner_gen;
		rc = push(out, &p);
	}
	core_free_clear(w, (want->n + 1) * sizeof(*w));
	if (!rc) {
		if (out->n) /* qsort(NULL, 0, ...) is undefined */
			qsort(out->v, out->n, sizeof(*out->v), cmp_transition);
		for (size_t i = 0; i < out->n; i++) {
			out->call_sites += out->v[i].kind == INJECT_CALL_SITE;
			out->entries += out->v[i].kind == INJECT_ENTRY;
			out->ptr_slots += out->v[i].kind == INJECT_PTR_SLOT ||
					  out->v[i].kind == INJECT_DATA_SLOT;
		}
		if (!(out->changed = calloc(out->n + 1, 1)))
			rc = OCOLOS_ENOMEM;
	}
	if (rc) {
		inject_plan_free(out);
		return core_errf(err, rc, "out of memory");
	}
	return 0;
}

int inject_record_update(struct inject_record *rec, const struct inject_plan *done,
			 struct core_err *err)
{
	/* Locations seen for the first time: a transition patch of a location
	 * not in the record wrote over its original bytes (its `old`). */
	size_t add = 0;
	for (size_t i = 0; i < done->n; i++)
		add += done->v[i].applied && !inject_record_find(rec, done->v[i].addr);
	if (add) {
		struct inject_loc *v = malloc((rec->n + add) * sizeof(*v));
		if (!v)
			return core_errf(err, OCOLOS_ENOMEM, "out of memory");
		if (rec->n)
			memcpy(v, rec->v, rec->n * sizeof(*v));
		core_free_clear(rec->v, rec->cap * sizeof(*rec->v)); /* core/util.c: why */
		rec->v = v;
		rec->cap = rec->n + add;
		size_t n = rec->n;
		for (size_t i = 0; i < done->n; i++) {
			const struct inject_patch *p = &done->v[i];
			if (!p->applied || inject_record_find(rec, p->addr))
				continue;
			struct inject_loc l = { .addr = p->addr, .len = p->len, .kind = p->kind,
				.group = p->group, .owner_gen = p->owner_gen };
			memcpy(l.orig, p->old, p->len);
			memcpy(l.cur, p->old, p->len);
			v[n++] = l;
		}
		rec->n = n;
		if (rec->n)
			qsort(rec->v, rec->n, sizeof(*rec->v), cmp_loc);
	}
	for (size_t i = 0; i < done->n; i++) {
		const struct inject_patch *p = &done->v[i];
		struct inject_loc *l = p->applied ? inject_record_find(rec, p->addr) : NULL;
		if (!l)
			continue;
		memcpy(l->cur, p->new_, p->len);
		l->cur_gen = p->target_gen;
	}
	return 0;
}

void inject_record_drop_owner(struct inject_record *rec, uint32_t gen)
{
	size_t w = 0;
	for (size_t i = 0; i < rec->n; i++)
		if (rec->v[i].owner_gen != gen)
			rec->v[w++] = rec->v[i];
	rec->n = w;
}

void inject_plan_drop_owner(struct inject_plan *plan, uint32_t gen)
{
	size_t w = 0;
	for (size_t i = 0; i < plan->n; i++) {
		const struct inject_patch *pt = &plan->v[i];
		if (pt->owner_gen != gen) {
			plan->v[w++] = *pt;
			continue;
		}
		plan->call_sites -= pt->kind == INJECT_CALL_SITE && plan->call_sites;
		plan->entries -= pt->kind == INJECT_ENTRY && plan->entries;
		plan->ptr_slots -= (pt->kind == INJECT_PTR_SLOT || pt->kind == INJECT_DATA_SLOT) &&
				   plan->ptr_slots;
	}
	plan->n = w;
}

int inject_record_leads_to(const struct inject_record *rec, uint32_t gen)
{
	for (size_t i = 0; i < rec->n; i++)
		if (rec->v[i].cur_gen == gen && rec->v[i].owner_gen != gen)
			return 1;
	return 0;
}

void inject_record_free(struct inject_record *rec)
{
	core_free_clear(rec->v, rec->cap * sizeof(*rec->v));
	memset(rec, 0, sizeof(*rec));
}
