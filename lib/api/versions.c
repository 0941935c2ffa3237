/*
 * Code versions over time: taking the target from the code it runs to the
 * code a round (or a revert) wants, and retiring versions nothing can reach
 * any more.
 *
 * Retirement. An old version C_k may be unmapped only when no thread can
 * ever run it again:
 *  1. nothing we wrote leads into it (the record: every call site, entry
 *     and stub now leads to C_{k+1} or C0, none still to C_k — an entry
 *     left for a switch because a thread was inside it keeps C_k);
 *  2. at the stop just made (the round's, or one made for this), no
 *     stopped thread's PC, register or stack word lies in it (switch.c);
 *  3. after that stop, no word of the target's writable memory points into
 *     it, plain or demangled (scan.c: suspended coroutines' stacks, saved
 *     contexts, setjmp buffers, atexit lists);
 *  4. a second, short stop after the scan finds still no thread in it.
 * After (2), nothing can create a new reference into C_k without running
 * C_k's code; (3) finds the references that exist outside the threads;
 * (4) catches one that was loaded into a thread while (3) ran (a coroutine
 * resumed, a longjmp). Not caught: a reference copied by memory-to-memory
 * copy, during (3), from a part not yet scanned to one already scanned (a
 * stack-copying coroutine switching at that moment); docs/guide.md says so.
 * Until all four hold, C_k stays mapped, is reported, and is checked again
 * at the next round or ocolos_retire().
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api.h"
#include "api/debuginfo.h"
#include "core/procmaps.h"
#include "core/util.h"
#include "proc/proc.h"

/* Keep version `v`'s memory mapped for the life of the process: libgcc
 * may still list its unwind tables (inject_unwind_deregister). */
static void keep_for_good(struct ocolos_ctx *ctx, struct api_version *v, const char *why)
{
	struct api_state *st = ctx->state;
	core_logf(&ctx->log, OCOLOS_LOG_WARN, "C%u stays mapped, unused, for the life of process "
		  "%d: its unwind tables may still be listed by libgcc (%s)", v->gen, (int)ctx->pid,
		  why);
	/* Out of memory: the ranges are simply not given back either way. */
	if (!api_state_add_tomb(st, v->res.addr, v->res.addr + v->res.size))
		api_state_add_tomb(st, v->island.addr, v->island.addr + v->island.size);
}

void api_version_free(struct ocolos_ctx *ctx, struct api_version *v, int unmap)
{
	if (unmap && ctx->target_open) {
		api_debuginfo_forget(ctx, v); /* gdb forgets it first (debuginfo.c) */
		struct core_err e = { 0 };
		if (inject_unwind_deregister(&ctx->target, v->unwind, &e)) {
			keep_for_good(ctx, v, e.msg);
		} else {
			/* The veneers first: killed in between, this leaves the
			 * code mapped, which the record still lists (the next
			 * context keeps it for good); the other way round left
			 * veneers no record names, and a process that maps
			 * optimized code without a record is refused for good. */
			inject_reservation_release(&ctx->target, &v->island);
			core_test_kill_at("retire-veneers-unmapped");
			inject_reservation_release(&ctx->target, &v->res);
		}
	}
	elf_bat_free(v->bat);
	inject_version_entries_free(&v->entries);
	memset(v, 0, sizeof(*v));
}

void api_state_free(struct api_state *st)
{
	for (size_t i = 0; i < st->nv; i++) {
		elf_bat_free(st->v[i].bat);
		inject_version_entries_free(&st->v[i].entries);
	}
	free(st->v);
	inject_record_free(&st->rec);
	inject_plan_free(&st->want);
	inject_stubs_free(&st->stubs);
	free(st->tomb);
	memset(st, 0, sizeof(*st));
}

int api_want_c0(struct ocolos_ctx *ctx, struct inject_plan *want)
{
	memset(want, 0, sizeof(*want));
	const struct api_state *st = ctx->state;
	/* Threads still in any version leave it for C0 as their calls go;
	 * everything else returns to its original bytes by the transition. */
	for (size_t i = 0; i < st->nv; i++) {
		int rc = inject_plan_version_entries(NULL, 0, 0, &st->v[i].entries, want, &ctx->err);
		if (rc)
			return rc;
	}
	return 0;
}

/* Version i's ranges to watch: its code and its island — what a thread
 * can execute or return to. Not the rest of its mapping: its unwind table
 * and the unwinder's record of it (inject/unwind.c) are named by libgcc's
 * lists, its sorted FDE vector and the like for as long as the table is
 * registered, which is until the version is retired: watched, they would
 * pin it forever. */
static size_t version_ranges(const struct api_version *v, uint64_t (*r)[2])
{
	size_t n = 0;
	int code = v->hi > v->lo && v->lo >= v->res.addr && v->hi <= v->res.addr + v->res.size;
	r[n][0] = code ? v->lo : v->res.addr;
	r[n++][1] = code ? v->hi : v->res.addr + v->res.size;
	if (v->island.size) {
		r[n][0] = v->island.addr;
		r[n++][1] = v->island.addr + v->island.size;
	}
	return n;
}

/* Versions that may be retired: not the one in use; nothing we wrote
 * leads into them. */
static int retirable(const struct api_state *st, size_t i, int keep_newest)
{
	if ((st->redirected || keep_newest) && i + 1 == st->nv)
		return 0;
	return !inject_record_leads_to(&st->rec, st->v[i].gen);
}

/* Of the stubs `plan` wrote, how many redirected slots hold: what a
 * revert or re-apply changes for the program's pointers (a stub may also
 * serve only a C0 entry, inject/plan.c). */
static uint32_t count_slot_stubs(const struct inject_record *rec, const struct inject_plan *plan)
{
	size_t n = 0;
	uint64_t *v = malloc((rec->n + 1) * sizeof(*v));
	if (!v)
		return 0;
	for (size_t i = 0; i < rec->n; i++)
		if (rec->v[i].kind == INJECT_PTR_SLOT || rec->v[i].kind == INJECT_DATA_SLOT)
			memcpy(&v[n++], rec->v[i].cur, 8);
	if (n)
		qsort(v, n, sizeof(*v), core_cmp_u64);
	uint32_t count = 0;
	for (size_t i = 0; n && i < plan->n; i++) {
		const struct inject_patch *p = &plan->v[i];
		uint64_t stub = p->addr - (p->len == 4 ? 1 : 8); /* x86-64 rel32, AArch64 literal */
		count += p->kind == INJECT_STUB && p->applied && core_sorted_has(v, n, stub);
	}
	core_free_clear(v, (rec->n + 1) * sizeof(*v));
	return count;
}

/* Which locations held other bytes than the transition expected (debug
 * log): a record that disagrees with the target is how an interrupted
 * round shows itself. */
static void log_mismatched(struct ocolos_ctx *ctx, const struct inject_plan *plan)
{
	static const char *const kinds[] = { "?", "call site", "pointer slot", "entry",
					     "data slot", "stub" };
	unsigned shown = 0;
	for (size_t i = 0; i < plan->n && shown < 8; i++) {
		const struct inject_patch *p = &plan->v[i];
		uint8_t cur[8] = { 0 };
		if (p->applied || p->blocked)
			continue;
		int unreadable = ctx->target.ops->peek(&ctx->target, p->addr, cur, p->len) != 0;
		if (!unreadable && !memcmp(cur, p->old, p->len))
			continue; /* a slot held with its group, or not wanted */
		uint64_t now = 0, expected = 0;
		memcpy(&now, cur, p->len);
		memcpy(&expected, p->old, p->len);
		core_logf(&ctx->log, OCOLOS_LOG_DEBUG, "mismatched: %s at 0x%llx (in C%u, to C%u): "
			  "%s 0x%llx, expected 0x%llx", p->kind < 6 ? kinds[p->kind] : "?",
			  (unsigned long long)p->addr, p->owner_gen, p->target_gen,
			  unreadable ? "unreadable," : "holds", (unsigned long long)now,
			  (unsigned long long)expected);
		shown++;
	}
}

int api_transition(struct ocolos_ctx *ctx, const struct inject_plan *want,
		   struct inject_switch_result *res, uint8_t *quiet)
{
	struct api_state *st = ctx->state;
	struct inject_plan plan = { 0 };
	int rc = want ? inject_transition(&st->rec, want, &plan, &ctx->err) : 0;
	if (rc)
		return rc;
	uint64_t (*watch)[2] = calloc(2 * st->nv + 1, sizeof(*watch));
	uint8_t *busy = calloc(2 * st->nv + 1, 1);
	struct inject_pin *pins = calloc(2 * st->nv + 1, sizeof(*pins));
	if (!watch || !busy || !pins) {
		free(watch);
		free(busy);
		free(pins);
		inject_plan_free(&plan);
		return core_errf(&ctx->err, OCOLOS_ENOMEM, "out of memory");
	}
	const uint64_t **sites = calloc(2 * st->nv + 1, sizeof(*sites));
	size_t *nsites = calloc(2 * st->nv + 1, sizeof(*nsites));
	const uint64_t **throws = calloc(2 * st->nv + 1, sizeof(*throws));
	size_t *nthrows = calloc(2 * st->nv + 1, sizeof(*nthrows));
	const struct inject_version_entries **vers = calloc(st->nv + 1, sizeof(*vers));
	for (size_t i = 0; vers && i < st->nv; i++)
		vers[i] = &st->v[i].entries;
	size_t nwatch = 0;
	for (size_t i = 0; i < st->nv; i++) {
		if (sites && nsites && throws && nthrows) {
			sites[nwatch] = st->v[i].entries.ret_sites;
			nsites[nwatch] = st->v[i].entries.nret_sites;
			throws[nwatch] = st->v[i].entries.throw_sites;
			nthrows[nwatch] = st->v[i].entries.nthrow_sites;
		}
		nwatch += version_ranges(&st->v[i], watch + nwatch);
	}
	/* Where a thread's throw would be: read before the stop (no /proc
	 * inside it). Unknown (none found): every thread counts. */
	uint64_t (*unwinder)[2] = NULL;
	size_t nunwinder = 0;
	uint64_t *sigreturn = NULL;
	size_t nsigreturn = 0;
	if (quiet && nwatch) {
		proc_unwinder_ranges(ctx->pid, elf_unwinding_name, &unwinder, &nunwinder);
		proc_sigreturn_trampolines(ctx->pid, ctx->target.memfd, &sigreturn, &nsigreturn);
	}
	int have_sites = sites && nsites && throws && nthrows;
	struct inject_switch_request rq = { .plan = &plan, .forward = 1, .watch = (const uint64_t (*)[2])watch,
		.nwatch = quiet ? nwatch : 0, .watch_busy = busy, .watch_pins = pins, .threads = st->threads,
		.threads_cap = sizeof(st->threads) / sizeof(st->threads[0]), .nthreads = &st->nthreads,
		.watch_sites = have_sites ? sites : NULL, .watch_nsites = nsites,
		.watch_throw_sites = have_sites ? throws : NULL, .watch_nthrow_sites = nthrows,
		.unwinder = (const uint64_t (*)[2])unwinder, .nunwinder = nunwinder,
		.sigreturn = sigreturn, .nsigreturn = nsigreturn,
		.versions = vers, .nversions = vers ? st->nv : 0 };
	rc = inject_switch(&ctx->target, &rq, res, &ctx->err);
	if (!rc)
		rc = inject_record_update(&st->rec, &plan, &ctx->err);
	if (!rc)
		res->applied.slot_stubs = count_slot_stubs(&st->rec, &plan);
	/* Bytes other than the record said: it is corrected from the target
	 * before anything relies on it (retirement above all). */
	if (!rc && res->applied.mismatched && ctx->bin) {
		log_mismatched(ctx, &plan);
		api_record_refresh(ctx);
	}
	if (quiet)
		for (size_t i = 0, w = 0; i < st->nv; i++) {
			size_t nr = version_ranges(&st->v[i], watch + w);
			quiet[i] = !rc;
			for (size_t k = 0; k < nr; k++) {
				if (!rc && busy[w + k] && quiet[i])
					st->v[i].pin = pins[w + k];
				quiet[i] &= !busy[w + k];
			}
			w += nr;
		}
	st->pointer_guard = res->pointer_guard ? res->pointer_guard : st->pointer_guard;
	core_free_clear(watch, (2 * st->nv + 1) * sizeof(*watch));
	free(busy);
	core_free_clear(pins, (2 * st->nv + 1) * sizeof(*pins));
	free(sites);
	free(nsites);
	free(throws);
	free(nthrows);
	free(unwinder);
	free(sigreturn);
	free(vers);
	inject_plan_free(&plan);
	return rc;
}

/* In the calling process, the memory scan also reads the library's own
 * bookkeeping, which names the versions' addresses (its freed buffers are
 * cleared: core/util.c): the live structures, and the library's frames on
 * the calling thread's stack, are skipped. */
/* How long threads get to leave the code they were just diverted from
 * before the stop that looks for them (see api_retire). */
#define RETIRE_SETTLE_NS 20000000

struct skips {
	uint64_t (*v)[2];
	size_t n, cap;
};

static void skip(struct skips *sk, const void *p, size_t len)
{
	if (!p || !len || core_grow((void **)&sk->v, &sk->cap, sk->n, sizeof(*sk->v)))
		return;
	sk->v[sk->n][0] = (uint64_t)(uintptr_t)p;
	sk->v[sk->n++][1] = (uint64_t)(uintptr_t)p + len;
}

static void own_bookkeeping(struct ocolos_ctx *ctx, struct skips *sk, const void *ranges,
			    size_t nranges)
{
	const struct api_state *st = ctx->state;
	skip(sk, st, sizeof(*st));
	skip(sk, st->v, st->cap * sizeof(*st->v));
	for (size_t i = 0; i < st->nv; i++) {
		const struct api_version *v = &st->v[i];
		const struct inject_version_entries *e = &v->entries;
		skip(sk, e->at, e->nfuncs * sizeof(*e->at));
		skip(sk, e->orig, e->nfuncs * sizeof(*e->orig));
		skip(sk, e->ret_sites, e->nret_sites * sizeof(*e->ret_sites));
		skip(sk, e->throw_sites, e->nthrow_sites * sizeof(*e->throw_sites));
		skip(sk, e->frags, e->nfrags * sizeof(*e->frags));
		if (v->bat) {
			skip(sk, v->bat, sizeof(*v->bat));
			skip(sk, v->bat->frags, v->bat->nfrags * sizeof(*v->bat->frags));
		}
	}
	skip(sk, st->rec.v, st->rec.cap * sizeof(*st->rec.v));
	skip(sk, st->want.v, st->want.cap * sizeof(*st->want.v));
	skip(sk, ranges, nranges * 2 * sizeof(uint64_t));
	/* This thread's frames inside the library, from here to the public
	 * call's (the program's frames above it are scanned). */
	uint64_t sp = (uint64_t)(uintptr_t)__builtin_frame_address(0);
	if (ctx->entry_frame > sp)
		skip(sk, (const void *)(uintptr_t)(sp - 4096), ctx->entry_frame - sp + 4096);
}

/* " (FUNC+0xOFF)" for an address in version `v` (its fragments name the
 * function each came from), or "" when not known. A return or throw site
 * (`after_call`) is looked up by the call before it: a call to a function
 * that does not return may end its fragment. */
static void name_in_version(const struct ocolos_ctx *ctx, const struct api_version *v, uint64_t a,
			    int after_call, char *buf, size_t len)
{
	const struct inject_version_entries *e = &v->entries;
	uint64_t key = a - (after_call ? 1 : 0);
	buf[0] = 0;
	size_t lo = 0, hi = e->nfrags;
	while (lo < hi) { /* the last fragment starting at or before key */
		size_t mid = (lo + hi) / 2;
		if (e->frags[mid].lo <= key)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (!e->nfrags && e->at && ctx->bin && !after_call) {
		/* Fragments are not in the state record: a version another
		 * agent made names only its functions' entries. */
		for (size_t f = 0; f < e->nfuncs && f < ctx->bin->nfuncs; f++)
			if (e->at[f] == a) {
				snprintf(buf, len, " (%s)", ctx->bin->funcs[f].name);
				return;
			}
		return;
	}
	if (!lo || key >= e->frags[lo - 1].hi || !ctx->bin || e->frags[lo - 1].func >= ctx->bin->nfuncs ||
	    e->frags[lo - 1].func >= e->nfuncs)
		return;
	const struct inject_frag_range *f = &e->frags[lo - 1];
	snprintf(buf, len, " (%s%s+0x%llx)", ctx->bin->funcs[f->func].name,
		 e->at && f->lo == e->at[f->func] ? "" : " fragment",
		 (unsigned long long)(a - f->lo));
}

/* Why version `v` stays mapped, as the last look found it (v->pin): an
 * operator's answer to "what holds C3?" (and ours, for the soak). */
static void log_pin(struct ocolos_ctx *ctx, const struct api_version *v)
{
	const struct inject_pin *p = &v->pin;
	char fn[160], what[256] = "";
	name_in_version(ctx, v, p->value, p->kind == INJECT_PIN_STACK || p->kind == INJECT_PIN_MEMORY,
			fn, sizeof(fn));
	unsigned long long val = (unsigned long long)p->value, off = (unsigned long long)(p->where - p->sp);
	switch (p->kind) {
	case INJECT_PIN_PC:
		snprintf(what, sizeof(what), "thread %u runs in it, at 0x%llx%s", p->thread, val, fn);
		break;
	case INJECT_PIN_REG: {
		const char *reg = proc_reg_name(p->reg);
		char num[16];
		if (!reg) {
			snprintf(num, sizeof(num), "%u", p->reg);
			reg = num;
		}
		snprintf(what, sizeof(what), "register %s of thread %u holds 0x%llx%s", reg, p->thread,
			 val, fn);
		break;
	}
	case INJECT_PIN_STACK:
		snprintf(what, sizeof(what), "the stack of thread %u holds 0x%llx%s at sp+0x%llx, "
			 "a %s", p->thread, val, fn, off,
			 p->throw_site ? "throw site, the thread unwinding"
			 : p->any_word ? "word in the version (its return sites are not known)"
				       : "return site");
		break;
	case INJECT_PIN_SIGFRAME:
		if (p->where)
			snprintf(what, sizeof(what), "a signal frame on the stack of thread %u (at "
				 "sp+0x%llx) restores 0x%llx%s", p->thread, off, val, fn);
		else
			snprintf(what, sizeof(what), "thread %u, in a signal handler on another stack, "
				 "returns to 0x%llx%s", p->thread, val, fn);
		break;
	case INJECT_PIN_UNKNOWN:
		snprintf(what, sizeof(what), "the stack of thread %u (sp 0x%llx) could not be followed",
			 p->thread, (unsigned long long)p->sp);
		break;
	case INJECT_PIN_MEMORY: {
		struct procmaps m = { 0 };
		struct core_err e = { 0 };
		const char *in = "no longer mapped";
		if (!core_procmaps_read(ctx->pid, &m, &e))
			for (size_t i = 0; i < m.n; i++)
				if (p->where >= m.v[i].start && p->where < m.v[i].end)
					in = m.v[i].path[0] ? m.v[i].path : "an anonymous mapping";
		snprintf(what, sizeof(what), "the word at 0x%llx (%s) of process %d's memory holds "
			 "0x%llx%s", (unsigned long long)p->where, in, (int)ctx->pid, val, fn);
		core_procmaps_free(&m);
		break;
	}
	default:
		snprintf(what, sizeof(what), "a thread may still run in it");
	}
	core_logf(&ctx->log, OCOLOS_LOG_INFO, "C%u stays mapped: %s", v->gen, what);
}

int api_retire(struct ocolos_ctx *ctx, const uint8_t *quiet_at_stop, int keep_newest,
	       uint32_t *retired)
{
	struct api_state *st = ctx->state;
	*retired = 0;
	size_t n = st->nv;
	/* said: why it stays was logged already (by the scan) */
	uint8_t *quiet = calloc(n + 1, 1), *found = calloc(2 * n + 1, 1), *said = calloc(n + 1, 1);
	uint64_t (*ranges)[2] = calloc(2 * n + 1, sizeof(*ranges));
	struct inject_pin *pins = calloc(2 * n + 1, sizeof(*pins));
	int rc = 0;
	if (!quiet || !found || !ranges || !pins || !said) {
		rc = core_errf(&ctx->err, OCOLOS_ENOMEM, "out of memory");
		goto out;
	}
	size_t cand = 0;
	for (size_t i = 0; i < n; i++)
		cand += retirable(st, i, keep_newest);
	if (!cand)
		goto out;
	/* A thread still inside a library call left to finish (by pid) has
	 * its own PC and registers in the injection stub's frame, where no
	 * stop looks: it may resume in any version. */
	if (proc_target_call_still_running(&ctx->target)) {
		core_logf(&ctx->log, OCOLOS_LOG_INFO, "nothing retired: a call injected into thread "
			  "%d of process %d has not returned yet", (int)ctx->target.call_left.tid,
			  (int)ctx->pid);
		goto out;
	}
	struct inject_switch_result res;
	int need_stop = !quiet_at_stop;
	if (quiet_at_stop) {
		memcpy(quiet, quiet_at_stop, n);
		for (size_t i = 0; i < n; i++)
			need_stop |= retirable(st, i, keep_newest) && !quiet[i];
	}
	if (need_stop) {
		/* (2): at the round's own stop the threads were usually still
		 * running the old hot code they had just been diverted from;
		 * a moment later they have left it. A stop only to look. */
		struct timespec ts = { 0, RETIRE_SETTLE_NS };
		nanosleep(&ts, NULL);
		if ((rc = api_transition(ctx, NULL, &res, quiet)))
			goto out;
	}
	/* (3): the memory, between the two stops. */
	size_t nr = 0;
	for (size_t i = 0; i < n; i++)
		if (retirable(st, i, keep_newest) && quiet[i])
			nr += version_ranges(&st->v[i], ranges + nr);
		else if (retirable(st, i, keep_newest)) {
			log_pin(ctx, &st->v[i]); /* busy at the stop */
			said[i] = 1;
		}
	if (!nr)
		goto out;
	uint64_t scanned = 0, t0 = core_now_ns();
	struct skips sk = { 0 };
	if (ctx->self)
		own_bookkeeping(ctx, &sk, ranges, 2 * n + 1);
	const uint64_t **sites = calloc(nr + 1, sizeof(*sites));
	size_t *nsites = calloc(nr + 1, sizeof(*nsites));
	for (size_t i = 0, w = 0; sites && nsites && i < n; i++) {
		if (!retirable(st, i, keep_newest) || !quiet[i])
			continue;
		size_t k = version_ranges(&st->v[i], ranges + w);
		sites[w] = st->v[i].entries.ret_sites; /* the code; the island has none */
		nsites[w] = st->v[i].entries.nret_sites;
		w += k;
	}
	/* In this process the calling thread was not stopped: its stack below
	 * here is dead too. */
	struct proc_live_thread *threads = malloc((st->nthreads + 1) * sizeof(*threads));
	size_t nthreads = st->nthreads;
	if (threads) {
		memcpy(threads, st->threads, st->nthreads * sizeof(*threads));
		if (ctx->self)
			threads[nthreads++] =
				proc_self_thread((uint64_t)(uintptr_t)__builtin_frame_address(0));
	}
	/* On AArch64 the guard is a word of the dynamic linker, not of the
	 * threads (x86-64: read at the stop): looked up once. */
	if (!st->pointer_guard && ctx->bin->machine == EM_AARCH64 && !st->guard_looked) {
		st->guard_looked = 1;
		if (proc_a64_pointer_guard(&ctx->target, ctx->pid, &st->pointer_guard))
			core_logf(&ctx->log, OCOLOS_LOG_INFO, "glibc's pointer guard was not found "
				  "in process %d: mangled code addresses (setjmp buffers, atexit "
				  "handlers) are not seen by retirement", (int)ctx->pid);
	}
	struct inject_scan_opts so = { .guard = st->pointer_guard,
		.threads = threads ? threads : st->threads, .nthreads = threads ? nthreads : st->nthreads,
		.skip = (const uint64_t (*)[2])sk.v, .nskip = sk.n,
		.sites = sites && nsites ? sites : NULL, .nsites = nsites, .skip_malloc = ctx->self,
		.pins = pins };
	rc = inject_scan_memory(&ctx->target, (const uint64_t (*)[2])ranges, nr, &so, found,
				&scanned, &ctx->err);
	free(sk.v);
	free(sites);
	free(nsites);
	free(threads);
	if (rc)
		goto out;
	core_logf(&ctx->log, OCOLOS_LOG_DEBUG, "retirement scan: %llu KiB of memory in %.1f ms",
		  (unsigned long long)(scanned >> 10), (double)(core_now_ns() - t0) / 1e6);
	for (size_t i = 0, w = 0; i < n; i++) {
		if (!retirable(st, i, keep_newest) || !quiet[i])
			continue;
		size_t k = version_ranges(&st->v[i], ranges + w);
		for (size_t j = 0; j < k; j++)
			if (found[w + j] && quiet[i]) {
				quiet[i] = 0;
				st->v[i].pin = pins[w + j];
				log_pin(ctx, &st->v[i]);
				said[i] = 1;
			}
		w += k;
	}
	/* (4): still nobody in them. */
	uint8_t *again = calloc(n + 1, 1);
	if (!again) {
		rc = core_errf(&ctx->err, OCOLOS_ENOMEM, "out of memory");
		goto out;
	}
	rc = api_transition(ctx, NULL, &res, again);
	for (size_t i = 0; !rc && i < n; i++)
		quiet[i] &= again[i];
	free(again);
	if (rc)
		goto out;
	/* Each one noted in the state record before it goes (persist.c). */
	for (size_t i = 0; i < st->nv;) {
		if (!retirable(st, i, keep_newest) || !quiet[i]) {
			if (retirable(st, i, keep_newest) && !said[i])
				log_pin(ctx, &st->v[i]);
			i++;
			continue;
		}
		uint32_t gen = st->v[i].gen;
		struct api_pending pd = { .phase = API_PHASE_RETIRING, .gen = gen };
		if ((rc = api_state_save(ctx, &pd)))
			goto out;
		core_test_kill_at("retiring-saved");
		/* Its unwind tables leave libgcc first. A call that could not
		 * be made safely (a thread inside fork or malloc, safe_point.c)
		 * changed nothing: the version stays, and is tried again. */
		struct core_err e = { 0 };
		int un = inject_unwind_deregister(&ctx->target, st->v[i].unwind, &e);
		if (un == INJECT_UNWIND_LATER) {
			core_logf(&ctx->log, OCOLOS_LOG_INFO, "C%u stays mapped for now: %s", gen,
				  e.msg);
			if ((rc = api_state_save(ctx, NULL)))
				goto out;
			i++;
			continue;
		}
		core_test_kill_at("retire-deregistered");
		inject_record_drop_owner(&st->rec, gen);
		inject_plan_drop_owner(&st->want, gen);
		if (un == INJECT_UNWIND_UNKNOWN) {
			keep_for_good(ctx, &st->v[i], e.msg);
			api_version_free(ctx, &st->v[i], 0);
		} else {
			st->bytes_retired += st->v[i].bytes;
			st->versions_retired++;
			core_logf(&ctx->log, OCOLOS_LOG_INFO, "C%u retired (%llu KiB unmapped)", gen,
				  (unsigned long long)(st->v[i].bytes >> 10));
			st->v[i].unwind = 0; /* done above */
			api_version_free(ctx, &st->v[i], 1);
		}
		memmove(&st->v[i], &st->v[i + 1], (st->nv - i - 1) * sizeof(*st->v));
		memmove(&quiet[i], &quiet[i + 1], st->nv - i - 1);
		memmove(&said[i], &said[i + 1], st->nv - i - 1);
		st->nv--;
		(*retired)++;
	}
	if (*retired)
		rc = api_state_save(ctx, NULL);
out:
	free(quiet);
	free(found);
	free(said);
	core_free_clear(ranges, (2 * n + 1) * sizeof(*ranges));
	core_free_clear(pins, (2 * n + 1) * sizeof(*pins));
	return rc;
}

int api_retire_call(struct ocolos_ctx *ctx, struct ocolos_stats *st)
{
	uint64_t bias;
	uint32_t retired = 0;
	int rc = api_open_model(ctx);
	if (!rc)
		rc = api_find_bias(ctx, &bias);
	if (!rc && !ctx->state->bias)
		ctx->state->bias = bias;
	if (!rc)
		rc = api_state_sync(ctx, 1);
	if (!rc)
		rc = api_retire(ctx, NULL, 0, &retired);
	api_fill_state_stats(ctx->state, st);
	return rc;
}
