/*
 * The state record: what the rounds did to a process, kept in the process
 * itself, so that a context that did not do it — a new `ocolos-agent --pid
 * P`, one started after the previous agent was killed mid-round, or an
 * agent looking at a program that optimizes itself — can continue with the
 * next generation, revert to C0, or finish what was interrupted.
 *
 * Where. A read-only private mapping of a memfd named "ocolos-state"
 * (/proc/PID/maps: "/memfd:ocolos-state (deleted)"), found by that name. It
 * is never written in place: each save maps a new record elsewhere and
 * then unmaps the oldest, keeping the two newest, so a save interrupted at
 * any point leaves at least one whole record, and a record overwritten by
 * the program (a stray write needs mprotect first, but a debugger can) is
 * found out by its checksum and the other one is used.
 *
 * What. A header (magic, format, library version, build-id and load bias
 * of the binary, a sequence number, a checksum, who is in the middle of a
 * round) and the api_state: every mapped version (ranges, unwind handle,
 * BAT tables, entries, return sites), the patch record, the want plan of
 * the newest round, the slot stubs, and the ranges kept mapped for good.
 * The structs are written as they are in memory: a record is only read by
 * the same library version on the same machine type (checked), so their
 * layout is the reader's; the sizes are checked too.
 *
 * Phases. A round saves before each step that leaves something in the
 * target that the record would not otherwise know about:
 *
 *   PROFILING  the new version's reservation exists (profile, optimize);
 *   MAPPING    its code is mapped and its unwind tables are about to be
 *              registered (the last moment we know they are not);
 *   SWITCHING  it is complete and a transition to `want` is about to stop
 *              the world (also a revert or a re-apply);
 *   RETIRING   a version is about to be deregistered and unmapped;
 *   IDLE       nothing pending.
 *
 * A context that finds a record newer than what it knows loads it and
 * checks it against the process (api_state_sync): versions no longer
 * mapped are dropped, and each recorded or wanted location is read to see
 * what it holds (a switch that was cut short wrote some of its patches:
 * each patch is one write, so a location holds either its old or its new
 * bytes). If the record is not IDLE and whoever wrote it is gone, the
 * interrupted step is finished: a reservation is given back, a switch is
 * completed (rolled forward: every version it leads to is mapped and
 * registered), a version being retired is unmapped. A registration with
 * libgcc that may or may not have happened cannot be undone safely
 * (deregistering an object libgcc does not know aborts the process;
 * unmapping one it knows leaves it reading freed memory), so such a
 * version is kept mapped, unused and never reused, for the life of the
 * process: a "tombstone", logged and counted.
 */
#include <elf.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "api/api.h"
#include "arch/arch.h"
#include "arch/cpu.h"
#include "core/procmaps.h"
#include "core/util.h"
#include "ocolos/ocolos.h"

#define RECORD_MAGIC "OCOLOSR1"
#define RECORD_FORMAT 3u /* 2: a version's throw sites follow its return sites;
				   3: and its entry width, AArch64 offsets and pads */
#define RECORD_NAME "ocolos-state"
#define RECORD_MAX (1ull << 30) /* a larger one is not ours */

struct record_hdr {
	char magic[8];
	uint32_t format, hdr_size;
	uint64_t total;		/* bytes of the record, header included */
	uint64_t checksum;	/* FNV-1a of those bytes, this field zero */
	uint64_t seq;		/* each save: the newest record's + 1 */
	char version[16];	/* OCOLOS_VERSION_STRING of the writer */
	uint32_t machine, build_id_len;
	uint8_t build_id[64];
	uint64_t bias;
	int32_t busy_pid;	/* not IDLE: the process in the middle of it */
	uint32_t phase;		/* enum api_phase */
	uint64_t busy_start;	/* its start time (/proc/PID/stat), against pid reuse */
	uint32_t sizes[6];	/* of the structs written as they are */
	uint32_t reserved;
};

static void struct_sizes(uint32_t s[6])
{
	s[0] = sizeof(struct inject_loc);
	s[1] = sizeof(struct inject_patch);
	s[2] = sizeof(struct elf_bat_frag);
	s[3] = sizeof(struct elf_bat_entry);
	s[4] = sizeof(struct inject_reservation);
	s[5] = sizeof(struct record_hdr);
}

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

/* Start time of process `pid` in clock ticks since boot, or 0. */
static uint64_t start_time(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return 0;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	const char *p = strrchr(buf, ')'); /* the command may hold spaces */
	unsigned long long t = 0;
	/* After ")": state (field 3) ... starttime (field 22). */
	for (int field = 2; p && *p && field < 22; p++)
		if (*p == ' ')
			field++;
	if (p && sscanf(p, "%llu", &t) != 1)
		t = 0;
	return t;
}

static int alive(pid_t pid, uint64_t start)
{
	if (pid <= 0 || (kill(pid, 0) != 0 && errno != EPERM))
		return 0;
	return !start || start_time(pid) == start;
}

/* ---- writing ---- */

struct wbuf {
	uint8_t *p;
	size_t n, cap;
	int oom;
};

static void put(struct wbuf *w, const void *src, size_t len)
{
	if (w->oom || !len)
		return;
	if (w->n + len > w->cap) {
		size_t cap = w->cap ? w->cap : 65536;
		while (cap < w->n + len)
			cap *= 2;
		uint8_t *p = malloc(cap);
		if (!p) {
			w->oom = 1;
			return;
		}
		if (w->n)
			memcpy(p, w->p, w->n);
		core_free_clear(w->p, w->cap); /* it names code addresses: core/util.c */
		w->p = p;
		w->cap = cap;
	}
	memcpy(w->p + w->n, src, len);
	w->n += len;
}

#define PUT(w, x) put((w), &(x), sizeof(x))

static void put_u64(struct wbuf *w, uint64_t x)
{
	PUT(w, x);
}

static void put_array(struct wbuf *w, const void *v, uint64_t count, size_t elem)
{
	put_u64(w, count);
	if (count)
		put(w, v, (size_t)count * elem);
}

static void put_res(struct wbuf *w, const struct inject_reservation *r)
{
	put_u64(w, r->addr);
	put_u64(w, r->size);
	put_u64(w, (uint64_t)r->early);
}

static void put_plan(struct wbuf *w, const struct inject_plan *p)
{
	put_array(w, p->v, p->n, sizeof(*p->v));
	uint32_t c[6] = { p->call_sites, p->ptr_slots, p->entries, p->slots_kept,
			  p->writable_slots, p->veneers };
	PUT(w, c);
	put_u64(w, p->island);
}

static void put_version(struct wbuf *w, const struct api_version *v)
{
	put_u64(w, v->gen);
	put_res(w, &v->res);
	put_res(w, &v->island);
	put_u64(w, v->lo);
	put_u64(w, v->hi);
	put_u64(w, v->bytes);
	put_u64(w, v->unwind);
	const struct inject_version_entries *e = &v->entries;
	put_u64(w, e->gen);
	put_array(w, e->at, e->at ? e->nfuncs : 0, sizeof(*e->at));
	put_array(w, e->c0, e->c0 ? e->nfuncs : 0, sizeof(*e->c0));
	put_array(w, e->orig, e->orig ? e->nfuncs : 0, sizeof(*e->orig));
	put_array(w, e->ok, e->ok ? e->nfuncs : 0, sizeof(*e->ok));
	put_array(w, e->ret_sites, e->ret_sites ? e->nret_sites : 0, sizeof(*e->ret_sites));
	put_array(w, e->throw_sites, e->throw_sites ? e->nthrow_sites : 0, sizeof(*e->throw_sites));
	/* Without the width, a reader takes the entries for x86-64 jumps
	 * (inject_plan_version_entries) and writes 5 bytes of one over an
	 * AArch64 instruction. */
	put_u64(w, e->len);
	put_array(w, e->off, e->off ? e->nfuncs : 0, sizeof(*e->off));
	put_array(w, e->pad, e->pad ? e->nfuncs : 0, sizeof(*e->pad));
	const struct elf_bat *b = v->bat;
	put_u64(w, b != NULL);
	if (b) {
		put_u64(w, b->nhot);
		put_u64(w, b->bound);
		put_array(w, b->frags, b->nfrags, sizeof(*b->frags));
		put_array(w, b->entries, b->nentries, sizeof(*b->entries));
		put_array(w, b->eps, b->neps, sizeof(*b->eps));
		put_array(w, b->order, b->norder, sizeof(*b->order));
	}
}

static void serialize(const struct ocolos_ctx *ctx, const struct api_pending *pd,
		      struct wbuf *w)
{
	const struct api_state *st = ctx->state;
	struct record_hdr h = { 0 };
	memcpy(h.magic, RECORD_MAGIC, 8);
	h.format = RECORD_FORMAT;
	h.hdr_size = sizeof(h);
	h.seq = st->seq + 1;
	snprintf(h.version, sizeof(h.version), "%s", OCOLOS_VERSION_STRING);
	h.machine = ctx->bin->machine;
	h.build_id_len = (uint32_t)ctx->bin->build_id_len;
	memcpy(h.build_id, ctx->bin->build_id, ctx->bin->build_id_len);
	h.bias = st->bias;
	h.phase = pd ? (uint32_t)pd->phase : API_PHASE_IDLE;
	if (h.phase != API_PHASE_IDLE) {
		h.busy_pid = (int32_t)getpid();
		h.busy_start = start_time(getpid());
	}
	struct_sizes(h.sizes);
	PUT(w, h);

	put_u64(w, st->last_gen);
	put_u64(w, (uint64_t)st->redirected);
	put_u64(w, st->versions_retired);
	put_u64(w, st->bytes_retired);
	put_u64(w, st->generation);
	put_u64(w, st->nv);
	for (size_t i = 0; i < st->nv; i++)
		put_version(w, &st->v[i]);
	put_array(w, st->rec.v, st->rec.n, sizeof(*st->rec.v));
	put_plan(w, &st->want);
	put_res(w, &st->stubs.res);
	put_array(w, st->stubs.at, st->stubs.at ? st->stubs.nfuncs : 0, sizeof(*st->stubs.at));
	put_u64(w, st->stubs.next);
	put_array(w, st->tomb, st->ntomb, sizeof(*st->tomb));

	/* What is pending, by phase. */
	static const struct inject_reservation none;
	put_res(w, pd && pd->res ? pd->res : &none);
	put_res(w, pd && pd->island ? pd->island : &none);
	put_u64(w, pd ? pd->gen : 0);
	put_u64(w, pd ? pd->unwind : 0);
	put_u64(w, pd ? (uint64_t)pd->forward : 0);
	put_u64(w, pd && pd->want != NULL);
	if (pd && pd->want)
		put_plan(w, pd->want);
}

/* Somewhere free for a record: out of the way of the code (more than
 * 2 GiB above the image), high, as the kernel's own mmap would pick. */
static int place(struct ocolos_ctx *ctx, uint64_t size, struct inject_reservation *r)
{
	uint64_t near = ctx->state->bias + ctx->bin->img_hi + (4ull << 30);
	return inject_reserve_anywhere(&ctx->target, size, near, r, &ctx->err);
}

int api_state_save(struct ocolos_ctx *ctx, const struct api_pending *pd)
{
	struct api_state *st = ctx->state;
	/* Nothing left in the target (a first round failed, or everything was
	 * retired before a slot was ever redirected): no record either. */
	if (!pd && !st->nv && !st->rec.n && !st->stubs.res.size && !st->ntomb) {
		inject_reservation_release(&ctx->target, &st->records[0]);
		inject_reservation_release(&ctx->target, &st->records[1]);
		st->seq++;
		st->phase = API_PHASE_IDLE;
		return 0;
	}
	struct wbuf w = { 0 };
	serialize(ctx, pd, &w);
	if (w.oom) {
		core_free_clear(w.p, w.cap);
		return core_errf(&ctx->err, OCOLOS_ENOMEM, "out of memory");
	}
	struct record_hdr *h = (struct record_hdr *)w.p;
	h->total = w.n;
	h->checksum = 0;
	h->checksum = fnv1a(w.p, w.n);
	uint64_t page = arch_page_size(), size = (w.n + page - 1) & ~(page - 1);
	struct inject_reservation r = { 0 };
	int rc = place(ctx, size, &r);
	if (!rc)
		rc = ctx->target.ops->map_fill(&ctx->target, r.addr, size, PROT_READ, w.p, w.n,
					       RECORD_NAME, &ctx->err);
	core_free_clear(w.p, w.cap);
	if (rc) {
		inject_reservation_release(&ctx->target, &r);
		return rc;
	}
	/* The oldest goes only now: two whole records stay at every moment. */
	inject_reservation_release(&ctx->target, &st->records[0]);
	st->records[0] = st->records[1];
	st->records[1] = r;
	st->seq++;
	st->phase = pd ? pd->phase : API_PHASE_IDLE;
	return 0;
}

void api_state_save_quiet(struct ocolos_ctx *ctx, const struct api_pending *pd)
{
	struct core_err keep = ctx->err;
	core_err_clear(&ctx->err);
	if (api_state_save(ctx, pd))
		core_logf(&ctx->log, OCOLOS_LOG_WARN, "the state record of process %d could not be "
			  "written: %s", (int)ctx->pid, ctx->err.msg);
	ctx->err = keep;
}

/* ---- reading ---- */

struct rbuf {
	const uint8_t *p;
	size_t n, off;
	int bad;
};

/* Not what this version writes. An earlier "out of memory" (2) stays. */
static void malformed(struct rbuf *r)
{
	if (!r->bad)
		r->bad = 1;
}

static void get(struct rbuf *r, void *dst, size_t len)
{
	if (r->bad || len > r->n - r->off) {
		malformed(r);
		memset(dst, 0, len);
		return;
	}
	memcpy(dst, r->p + r->off, len);
	r->off += len;
}

static uint64_t get_u64(struct rbuf *r)
{
	uint64_t x;
	get(r, &x, sizeof(x));
	return x;
}

/* A malloc'ed copy of the next array (NULL when empty or bad); *count. */
static void *get_array(struct rbuf *r, size_t *count, size_t elem)
{
	uint64_t c = get_u64(r);
	*count = 0;
	if (r->bad || !c)
		return NULL;
	if (c > (r->n - r->off) / elem) {
		r->bad = 1;
		return NULL;
	}
	void *v = malloc((size_t)c * elem);
	if (!v) {
		r->bad = 2; /* out of memory */
		return NULL;
	}
	get(r, v, (size_t)c * elem);
	*count = (size_t)c;
	return v;
}

static void get_res(struct rbuf *r, struct inject_reservation *res)
{
	res->addr = get_u64(r);
	res->size = get_u64(r);
	res->early = (int)get_u64(r);
}

/* Every reader copies `len` bytes of a location into 8-byte buffers: a
 * record is the target's memory, so a length it could forge is checked. */
static int patch_fits(uint8_t len, uint8_t kind)
{
	return (len == 4 || len == 5 || len == 8) && kind >= INJECT_CALL_SITE &&
	       kind <= INJECT_STUB;
}

static void get_plan(struct rbuf *r, struct inject_plan *p)
{
	p->v = get_array(r, &p->n, sizeof(*p->v));
	p->cap = p->n;
	for (size_t i = 0; i < p->n; i++)
		if (!patch_fits(p->v[i].len, p->v[i].kind))
			malformed(r);
	uint32_t c[6];
	get(r, c, sizeof(c));
	p->call_sites = c[0];
	p->ptr_slots = c[1];
	p->entries = c[2];
	p->slots_kept = c[3];
	p->writable_slots = c[4];
	p->veneers = c[5];
	p->island = get_u64(r);
}

static void get_version(struct rbuf *r, struct api_version *v)
{
	size_t n;
	v->gen = (uint32_t)get_u64(r);
	get_res(r, &v->res);
	get_res(r, &v->island);
	v->lo = get_u64(r);
	v->hi = get_u64(r);
	v->bytes = get_u64(r);
	v->unwind = get_u64(r);
	struct inject_version_entries *e = &v->entries;
	e->gen = (uint32_t)get_u64(r);
	e->at = get_array(r, &e->nfuncs, sizeof(*e->at));
	e->c0 = get_array(r, &n, sizeof(*e->c0));
	if (n != e->nfuncs)
		malformed(r);
	e->orig = get_array(r, &n, sizeof(*e->orig));
	if (n != e->nfuncs)
		malformed(r);
	e->ok = get_array(r, &n, sizeof(*e->ok));
	if (n != e->nfuncs)
		malformed(r);
	e->ret_sites = get_array(r, &e->nret_sites, sizeof(*e->ret_sites));
	e->throw_sites = get_array(r, &e->nthrow_sites, sizeof(*e->throw_sites));
	uint64_t len = get_u64(r);
	e->len = (uint8_t)len;
	e->off = get_array(r, &n, sizeof(*e->off));
	size_t npad = 0;
	e->pad = get_array(r, &npad, sizeof(*e->pad));
	/* A width the planner knows, and AArch64's per-function tables with
	 * it (plan_a64 reads them unchecked). */
	if ((e->off && n != e->nfuncs) || (e->pad && npad != e->nfuncs) ||
	    (e->at && !(len == 5 || (len == 4 && e->off && e->pad))))
		malformed(r);
	if (!get_u64(r) || r->bad)
		return;
	struct elf_bat *b = calloc(1, sizeof(*b));
	if (!b || !(b->path = strdup("the state record's BAT"))) {
		free(b);
		r->bad = 2;
		return;
	}
	v->bat = b;
	b->nhot = (size_t)get_u64(r);
	b->bound = (size_t)get_u64(r);
	b->frags = get_array(r, &b->nfrags, sizeof(*b->frags));
	b->entries = get_array(r, &b->nentries, sizeof(*b->entries));
	b->eps = get_array(r, &b->neps, sizeof(*b->eps));
	b->order = get_array(r, &b->norder, sizeof(*b->order));
	/* Indices the lookups follow without checking. */
	if (b->nhot > b->nfrags)
		malformed(r);
	for (size_t i = 0; !r->bad && i < b->nfrags; i++) {
		const struct elf_bat_frag *f = &b->frags[i];
		if (f->hot >= b->nfrags || (uint64_t)f->first + f->n > b->nentries ||
		    (uint64_t)f->first_ep + f->nep > b->neps)
			malformed(r);
	}
	for (size_t i = 0; !r->bad && i < b->norder; i++)
		if (b->order[i] >= b->nfrags)
			malformed(r);
}

/* A record as read from the target, parsed. */
struct loaded {
	struct record_hdr h;
	struct api_state st;
	struct api_pending pd;
	struct inject_reservation pres, pisland;
	struct inject_plan pwant;
	uint64_t addr, size;	/* its mapping */
};

/* Its pd points into it: again after a copy. */
static void loaded_rebind(struct loaded *l)
{
	l->pd.res = &l->pres;
	l->pd.island = &l->pisland;
	if (l->pd.want)
		l->pd.want = &l->pwant;
}

static void loaded_free(struct loaded *l)
{
	api_state_free(&l->st);
	inject_plan_free(&l->pwant);
	memset(l, 0, sizeof(*l));
}

/* Parse the body after a checked header. 0, OCOLOS_ENOMEM, or 1 (bad). */
static int parse(const uint8_t *p, size_t n, struct loaded *l)
{
	struct rbuf r = { p, n, sizeof(struct record_hdr), 0 };
	struct api_state *st = &l->st;
	st->last_gen = (uint32_t)get_u64(&r);
	st->redirected = (int)get_u64(&r);
	st->versions_retired = (uint32_t)get_u64(&r);
	st->bytes_retired = get_u64(&r);
	st->generation = get_u64(&r);
	uint64_t nv = get_u64(&r);
	if (!r.bad && nv > (n - r.off) / 64)
		r.bad = 1;
	if (!r.bad && nv && !(st->v = calloc(nv, sizeof(*st->v))))
		r.bad = 2;
	for (uint64_t i = 0; !r.bad && i < nv; i++) {
		get_version(&r, &st->v[i]);
		st->nv = st->cap = (size_t)i + 1;
	}
	st->rec.v = get_array(&r, &st->rec.n, sizeof(*st->rec.v));
	st->rec.cap = st->rec.n;
	for (size_t i = 0; i < st->rec.n; i++)
		if (!patch_fits(st->rec.v[i].len, st->rec.v[i].kind))
			malformed(&r);
	get_plan(&r, &st->want);
	get_res(&r, &st->stubs.res);
	st->stubs.at = get_array(&r, &st->stubs.nfuncs, sizeof(*st->stubs.at));
	st->stubs.next = get_u64(&r);
	st->tomb = get_array(&r, &st->ntomb, sizeof(*st->tomb));
	st->tomb_cap = st->ntomb;
	get_res(&r, &l->pres);
	get_res(&r, &l->pisland);
	l->pd.phase = (int)l->h.phase;
	l->pd.res = &l->pres;
	l->pd.island = &l->pisland;
	l->pd.gen = (uint32_t)get_u64(&r);
	l->pd.unwind = get_u64(&r);
	l->pd.forward = (int)get_u64(&r);
	if (get_u64(&r)) {
		get_plan(&r, &l->pwant);
		l->pd.want = &l->pwant;
	}
	st->bias = l->h.bias;
	st->seq = l->h.seq;
	st->phase = l->pd.phase;
	if (!r.bad && r.off != n)
		r.bad = 1; /* trailing bytes: not what this version writes */
	return r.bad == 2 ? OCOLOS_ENOMEM : r.bad ? 1 : 0;
}

/* Read the record mapped at [addr, end) into *l. 0, 1 (not a valid
 * record: *why says what), or OCOLOS_E*. */
static int read_record(struct ocolos_ctx *ctx, uint64_t addr, uint64_t end, struct loaded *l,
		       char *why, size_t why_len)
{
	struct proc_target *t = &ctx->target;
	memset(l, 0, sizeof(*l));
	l->addr = addr;
	l->size = end - addr;
	if (end - addr < sizeof(l->h) ||
	    t->ops->peek(t, addr, &l->h, sizeof(l->h))) {
		snprintf(why, why_len, "unreadable");
		return 1;
	}
	struct record_hdr *h = &l->h;
	if (memcmp(h->magic, RECORD_MAGIC, 8) || h->hdr_size != sizeof(*h) ||
	    h->total < sizeof(*h) || h->total > end - addr || h->total > RECORD_MAX) {
		snprintf(why, why_len, "no valid header (overwritten?)");
		return 1;
	}
	uint8_t *buf = malloc(h->total);
	if (!buf)
		return core_errf(&ctx->err, OCOLOS_ENOMEM, "out of memory");
	int rc = 0;
	if (t->ops->peek(t, addr, buf, h->total)) {
		snprintf(why, why_len, "unreadable");
		rc = 1;
	}
	struct record_hdr *bh = (struct record_hdr *)buf;
	uint64_t sum = bh->checksum;
	bh->checksum = 0;
	if (!rc && fnv1a(buf, h->total) != sum) {
		snprintf(why, why_len, "checksum mismatch (overwritten?)");
		rc = 1;
	}
	bh->checksum = sum;
	uint32_t sizes[6];
	struct_sizes(sizes);
	/* A record of another format or library version: not parsed, but
	 * reported as such by the caller (its header is valid). */
	if (!rc && h->format == RECORD_FORMAT && !strncmp(h->version, OCOLOS_VERSION_STRING,
							  sizeof(h->version)) &&
	    !memcmp(h->sizes, sizes, sizeof(sizes))) {
		rc = parse(buf, h->total, l);
		if (rc == 1)
			snprintf(why, why_len, "malformed body");
	}
	core_free_clear(buf, h->total);
	if (rc)
		loaded_free(l);
	return rc;
}

static int same_writer(const struct record_hdr *h)
{
	uint32_t sizes[6];
	struct_sizes(sizes);
	return h->format == RECORD_FORMAT &&
	       !strncmp(h->version, OCOLOS_VERSION_STRING, sizeof(h->version)) &&
	       !memcmp(h->sizes, sizes, sizeof(sizes));
}

static int is_record(const struct procmaps_entry *e)
{
	return !strncmp(e->path, "/memfd:" RECORD_NAME, sizeof("/memfd:" RECORD_NAME) - 1);
}

static int is_ours(const struct procmaps_entry *e)
{
	return !strncmp(e->path, "/memfd:ocolos-", 14);
}

/* Mappings of [lo, hi) are all ours or reservations (anonymous, no access). */
static int range_is_ours(const struct procmaps *m, uint64_t lo, uint64_t hi)
{
	for (size_t i = 0; i < m->n; i++) {
		const struct procmaps_entry *e = &m->v[i];
		if (e->end <= lo || e->start >= hi)
			continue;
		if (!is_ours(e) && !(e->path[0] == '\0' && !strcmp(e->perms, "---p")))
			return 0;
	}
	return 1;
}

static int mapped_as(const struct procmaps *m, uint64_t addr, uint32_t gen)
{
	char name[48];
	snprintf(name, sizeof(name), "/memfd:ocolos-c%u", gen);
	size_t len = strlen(name);
	for (size_t i = 0; i < m->n; i++)
		if (m->v[i].start <= addr && addr < m->v[i].end)
			return !strncmp(m->v[i].path, name, len) &&
			       (m->v[i].path[len] == ' ' || m->v[i].path[len] == '\0');
	return 0;
}

static int has_libgcc(const struct procmaps *m)
{
	for (size_t i = 0; i < m->n; i++)
		if (strstr(m->v[i].path, "/libgcc_s.so"))
			return 1;
	return 0;
}

/* ---- checking a loaded state against the process ---- */

int api_state_add_tomb(struct api_state *st, uint64_t lo, uint64_t hi)
{
	if (!hi || core_grow((void **)&st->tomb, &st->tomb_cap, st->ntomb, sizeof(*st->tomb)))
		return hi ? OCOLOS_ENOMEM : 0;
	st->tomb[st->ntomb][0] = lo;
	st->tomb[st->ntomb++][1] = hi;
	return 0;
}

/* Versions the record lists that are not mapped any more were retired
 * after it was written. */
static void drop_unmapped(struct ocolos_ctx *ctx, const struct procmaps *m)
{
	struct api_state *st = ctx->state;
	size_t w = 0;
	for (size_t i = 0; i < st->nv; i++) {
		if (mapped_as(m, st->v[i].res.addr, st->v[i].gen)) {
			st->v[w++] = st->v[i];
			continue;
		}
		core_logf(&ctx->log, OCOLOS_LOG_INFO, "the state record lists C%u, which process %d "
			  "no longer maps: it was retired after the record was written",
			  st->v[i].gen, (int)ctx->pid);
		inject_record_drop_owner(&st->rec, st->v[i].gen);
		inject_plan_drop_owner(&st->want, st->v[i].gen);
		elf_bat_free(st->v[i].bat);
		inject_version_entries_free(&st->v[i].entries);
	}
	st->nv = w;
	/* Slot stubs are allocated and recorded when a round plans, and
	 * mapped only when it replaces: a round cut short in between leaves
	 * stubs in the record that were never mapped. A slot redirected to
	 * one would call into nothing; forget them, and the next plan makes
	 * new ones. */
	size_t gone = 0;
	for (size_t f = 0; st->stubs.at && f < st->stubs.nfuncs; f++) {
		uint64_t a = st->stubs.at[f];
		int ok = 0;
		for (size_t k = 0; a && k < m->n && !ok; k++)
			ok = a >= m->v[k].start && a < m->v[k].end &&
			     !strncmp(m->v[k].path, "/memfd:ocolos-stubs", 19);
		if (a && !ok) {
			st->stubs.at[f] = 0;
			gone++;
		}
	}
	if (gone)
		core_logf(&ctx->log, OCOLOS_LOG_INFO, "the state record lists %zu slot stubs that "
			  "process %d does not map (a round was cut short before mapping them): "
			  "forgotten", gone, (int)ctx->pid);
}

/* What each recorded location holds now, and each location of `want`
 * (the transition that may have been cut short) not recorded yet. */
static int reconcile(struct ocolos_ctx *ctx, const struct inject_plan *want)
{
	struct api_state *st = ctx->state;
	struct proc_target *t = &ctx->target;
	struct inject_plan seen = { 0 };
	int rc = 0;
	uint8_t mem[8];
	for (size_t i = 0; !rc && want && i < want->n; i++) {
		const struct inject_patch *p = &want->v[i];
		if (t->ops->peek(t, p->addr, mem, p->len) || memcmp(mem, p->new_, p->len))
			continue;
		struct inject_loc *l = inject_record_find(&st->rec, p->addr);
		if (l && !memcmp(l->cur, p->new_, p->len))
			continue;
		struct inject_patch x = *p;
		x.applied = 1;
		if (core_grow((void **)&seen.v, &seen.cap, seen.n, sizeof(*seen.v)))
			rc = OCOLOS_ENOMEM;
		else
			seen.v[seen.n++] = x;
	}
	if (!rc && seen.n)
		rc = inject_record_update(&st->rec, &seen, &ctx->err);
	if (!rc && seen.n)
		core_logf(&ctx->log, OCOLOS_LOG_INFO, "%zu locations of process %d hold what the "
			  "interrupted switch was writing: recorded", seen.n, (int)ctx->pid);
	inject_plan_free(&seen);
	if (rc)
		return rc == OCOLOS_ENOMEM ? core_errf(&ctx->err, rc, "out of memory") : rc;
	api_record_refresh(ctx);
	return 0;
}

/* The run-time address the bytes `b` of location `l` lead to, or 0. */
static uint64_t lead_target(uint16_t machine, const struct inject_loc *l, const uint8_t *b)
{
	int32_t rel;
	if (l->len == 8) { /* a pointer: slot, or an AArch64 stub's literal */
		uint64_t v;
		memcpy(&v, b, 8);
		return v;
	}
	if (machine == EM_AARCH64 && l->len == 4) {
		uint32_t insn;
		memcpy(&insn, b, 4);
		return arch_a64_branch_target(l->addr, insn);
	}
	if (l->len == 4) { /* the rel32 of a call */
		memcpy(&rel, b, 4);
		return l->addr + 4 + (uint64_t)(int64_t)rel;
	}
	if (l->len == 5 && b[0] == 0xe9) { /* jmp rel32 */
		memcpy(&rel, b + 1, 4);
		return l->addr + 5 + (uint64_t)(int64_t)rel;
	}
	return 0;
}

/* The version whose code or veneers hold `a`, or 0. */
static uint32_t version_at(const struct api_state *st, uint64_t a)
{
	for (size_t i = 0; i < st->nv; i++) {
		const struct api_version *v = &st->v[i];
		if ((a >= v->res.addr && a < v->res.addr + v->res.size) ||
		    (a >= v->island.addr && a < v->island.addr + v->island.size))
			return v->gen;
	}
	return 0;
}

void api_record_refresh(struct ocolos_ctx *ctx)
{
	struct api_state *st = ctx->state;
	uint8_t mem[8];
	size_t n = 0;
	for (size_t i = 0; i < st->rec.n; i++) {
		struct inject_loc *l = &st->rec.v[i];
		if (ctx->target.ops->peek(&ctx->target, l->addr, mem, l->len) ||
		    !memcmp(mem, l->cur, l->len))
			continue;
		memcpy(l->cur, mem, l->len);
		l->cur_gen = version_at(st, lead_target(ctx->bin->machine, l, mem));
		n++;
	}
	if (n)
		core_logf(&ctx->log, OCOLOS_LOG_INFO, "%zu locations of process %d hold other bytes "
			  "than recorded (a switch was cut short, or the program wrote them): the record "
			  "now says what they hold and where it leads", n, (int)ctx->pid);
}

/* Give back a pending reservation, if it is still what we made it. */
static void release_pending(struct ocolos_ctx *ctx, const struct procmaps *m,
			    struct inject_reservation *r)
{
	if (!r->size)
		return;
	if (!range_is_ours(m, r->addr, r->addr + r->size)) {
		core_logf(&ctx->log, OCOLOS_LOG_WARN, "the interrupted round's range 0x%llx-0x%llx "
			  "now holds other mappings: left alone", (unsigned long long)r->addr,
			  (unsigned long long)(r->addr + r->size));
		return;
	}
	r->early = 0; /* not this process's load-time range: plain unmap */
	inject_reservation_release(&ctx->target, r);
}

/* Finish the step the record says was interrupted. */
static int recover(struct ocolos_ctx *ctx, struct loaded *l, const struct procmaps *m)
{
	struct api_state *st = ctx->state;
	static const char *const names[] = { "idle", "profiling", "mapping new code",
					     "switching", "retiring old code" };
	core_logf(&ctx->log, OCOLOS_LOG_WARN, "process %d: the previous round (by process %d) was "
		  "interrupted while %s; finishing it", (int)ctx->pid, (int)l->h.busy_pid,
		  l->pd.phase <= API_PHASE_RETIRING ? names[l->pd.phase] : "?");
	int rc = 0;
	switch (l->pd.phase) {
	case API_PHASE_PROFILING:
		release_pending(ctx, m, &l->pres);
		release_pending(ctx, m, &l->pisland);
		break;
	case API_PHASE_MAPPING:
		/* Its number is not given again, tombstone or not. */
		st->last_gen = st->last_gen > l->pd.gen ? st->last_gen : l->pd.gen;
		/* Its unwind tables may have been registered: see the top. */
		if (l->pd.unwind && has_libgcc(m)) {
			core_logf(&ctx->log, OCOLOS_LOG_WARN, "C%u stays mapped, unused, for the life "
				  "of process %d: whether libgcc registered its unwind tables cannot "
				  "be known", l->pd.gen, (int)ctx->pid);
			if (api_state_add_tomb(st, l->pres.addr, l->pres.addr + l->pres.size) ||
			    api_state_add_tomb(st, l->pisland.addr, l->pisland.addr + l->pisland.size))
				return core_errf(&ctx->err, OCOLOS_ENOMEM, "out of memory");
		} else {
			release_pending(ctx, m, &l->pres);
			release_pending(ctx, m, &l->pisland);
		}
		break;
	case API_PHASE_SWITCHING: {
		/* Unless what it leads into is gone: a switch that failed had
		 * its patches undone and its new version unmapped, and the
		 * agent died before saving that (round.c). Nothing to finish:
		 * the locations hold what the record, just refreshed, says. */
		uint32_t gone = 0;
		for (size_t i = 0; l->pd.want && i < l->pd.want->n && !gone; i++) {
			uint32_t g = l->pd.want->v[i].target_gen;
			int mapped = !g;
			for (size_t k = 0; k < st->nv && !mapped; k++)
				mapped = st->v[k].gen == g;
			gone = mapped ? 0 : g;
		}
		if (gone) {
			core_logf(&ctx->log, OCOLOS_LOG_WARN, "the interrupted switch led into C%u, "
				  "which process %d no longer maps (the switch had failed): nothing "
				  "to finish", gone, (int)ctx->pid);
			break;
		}
		/* Roll forward: everything the switch leads to is in place. */
		struct inject_switch_result res = { 0 };
		rc = l->pd.want ? api_transition(ctx, l->pd.want, &res, NULL) : 0;
		if (rc)
			return rc;
		st->redirected = l->pd.forward;
		st->generation++;
		if (l->pd.forward && l->pd.want) {
			inject_plan_free(&st->want);
			st->want = l->pwant;
			l->pwant = (struct inject_plan){ 0 };
			l->pd.want = NULL;
		}
		core_logf(&ctx->log, OCOLOS_LOG_INFO, "the interrupted switch is complete: %u call "
			  "sites, %u entries, %u stubs written now", res.applied.call_sites,
			  res.applied.entries, res.applied.stubs);
		break;
	}
	case API_PHASE_RETIRING:
		for (size_t i = 0; i < st->nv; i++) {
			struct api_version *v = &st->v[i];
			if (v->gen != l->pd.gen)
				continue;
			/* Deregistered or not: it cannot be known (see the top). */
			core_logf(&ctx->log, OCOLOS_LOG_WARN, "C%u stays mapped, unused, for the life of "
				  "process %d: it was being retired when the round was interrupted",
				  v->gen, (int)ctx->pid);
			if (api_state_add_tomb(st, v->res.addr, v->res.addr + v->res.size) ||
			    api_state_add_tomb(st, v->island.addr, v->island.addr + v->island.size))
				return core_errf(&ctx->err, OCOLOS_ENOMEM, "out of memory");
			inject_record_drop_owner(&st->rec, v->gen);
			api_version_free(ctx, v, 0);
			memmove(v, v + 1, (st->nv - i - 1) * sizeof(*v));
			st->nv--;
			break;
		}
		break;
	default:
		break;
	}
	return api_state_save(ctx, NULL);
}

/* Its per-function tables are for this binary. */
static int consistent(const struct api_state *st, const struct elf_binary *b)
{
	if (st->stubs.at && st->stubs.nfuncs != b->nfuncs)
		return 0;
	for (size_t i = 0; i < st->nv; i++)
		if (st->v[i].entries.at && st->v[i].entries.nfuncs != b->nfuncs)
			return 0;
	return 1;
}

/* Take over the loaded state as the context's (what it had is dropped,
 * not undone: the record is newer). Of the other records in the target
 * (`all`, `n`: address, size, sequence or 0 if unusable), the newest one
 * stays as the older of the two; the rest are stale and go if the caller
 * may change the target. */
static void adopt(struct ocolos_ctx *ctx, struct loaded *l, const uint64_t (*all)[3], size_t n,
		  int may_change)
{
	struct api_state *st = ctx->state;
	api_state_free(st);
	*st = l->st;
	memset(&l->st, 0, sizeof(l->st));
	st->records[1] = (struct inject_reservation){ .addr = l->addr, .size = l->size };
	long keep = -1;
	for (size_t i = 0; i < n; i++)
		if (all[i][0] != l->addr && all[i][2] < l->h.seq &&
		    (keep < 0 || all[i][2] > all[keep][2]))
			keep = (long)i;
	if (keep >= 0)
		st->records[0] = (struct inject_reservation){ .addr = all[keep][0],
							      .size = all[keep][1] };
	for (size_t i = 0; may_change && i < n; i++)
		if (all[i][0] != l->addr && (long)i != keep && all[i][2] < l->h.seq)
			ctx->target.ops->unmap(&ctx->target, all[i][0], all[i][1]);
}

int api_state_sync(struct ocolos_ctx *ctx, int may_recover)
{
	struct api_state *st = ctx->state;
	struct procmaps m = { 0 };
	int rc = core_procmaps_read(ctx->pid, &m, &ctx->err);
	if (rc)
		return rc == OCOLOS_EIO ? core_errf(&ctx->err, OCOLOS_ENOPROC, "process %d is gone",
						    (int)ctx->pid) : rc;
	struct loaded best = { 0 }, cur;
	size_t nrec = 0, nbad = 0, ncode = 0;
	int known_here = 0;
	/* Every record mapping: [addr, size, seq (0: unusable)]. */
	uint64_t (*all)[3] = calloc(m.n + 1, sizeof(*all));
	if (!all) {
		core_procmaps_free(&m);
		return core_errf(&ctx->err, OCOLOS_ENOMEM, "out of memory");
	}
	char why[96] = "", bad_what[160] = "";
	uint64_t other_seq = 0;
	struct record_hdr other = { 0 };
	for (size_t i = 0; i < m.n; i++) {
		ncode += is_ours(&m.v[i]) && !is_record(&m.v[i]) && strchr(m.v[i].perms, 'x');
		/* A record is one mapping from offset 0 (the kernel may show it
		 * as several lines). */
		if (!is_record(&m.v[i]) || m.v[i].offset)
			continue;
		uint64_t end = m.v[i].end;
		for (size_t j = i + 1; j < m.n && m.v[j].start == end && is_record(&m.v[j]) &&
				       m.v[j].offset == end - m.v[i].start; j++)
			end = m.v[j].end;
		all[nrec][0] = m.v[i].start;
		all[nrec][1] = end - m.v[i].start;
		nrec++;
		/* The record this context wrote or read last needs no second
		 * reading: only one that is newer matters. */
		struct record_hdr h;
		if (st->seq && m.v[i].start == st->records[1].addr &&
		    !ctx->target.ops->peek(&ctx->target, m.v[i].start, &h, sizeof(h)) &&
		    !memcmp(h.magic, RECORD_MAGIC, 8) && h.seq == st->seq) {
			known_here = 1;
			continue;
		}
		rc = read_record(ctx, m.v[i].start, end, &cur, why, sizeof(why));
		if (rc < 0)
			goto out;
		if (rc == 1) {
			nbad++;
			snprintf(bad_what, sizeof(bad_what), "at 0x%llx: %s",
				 (unsigned long long)m.v[i].start, why);
			continue;
		}
		all[nrec - 1][2] = cur.h.seq;
		if (!same_writer(&cur.h)) {
			if (cur.h.seq >= other_seq) {
				other_seq = cur.h.seq;
				other = cur.h;
			}
			continue;
		}
		if (!best.h.seq || cur.h.seq > best.h.seq) {
			loaded_free(&best);
			best = cur;
			loaded_rebind(&best);
			memset(&cur, 0, sizeof(cur));
		} else {
			loaded_free(&cur);
		}
	}
	rc = 0;
	const struct elf_binary *b = ctx->bin;
	if (known_here && best.h.seq <= st->seq && other_seq <= st->seq &&
	    (st->phase == API_PHASE_IDLE || !may_recover))
		goto out; /* nothing newer than what this context knows */
	if (other_seq > best.h.seq) {
		char ov[17];
		snprintf(ov, sizeof(ov), "%.16s", other.version);
		rc = core_errf(&ctx->err, OCOLOS_ESTATE,
			       "process %d was optimized by libocolos %s (state record format %u); this "
			       "is %s (format %u), which cannot read its record: use that version's "
			       "tools on it (ocolos-agent --revert --pid %d returns it to its original "
			       "code); nothing was changed", (int)ctx->pid, ov, other.format,
			       OCOLOS_VERSION_STRING, RECORD_FORMAT, (int)ctx->pid);
		goto out;
	}
	if (!best.h.seq) {
		if (!nrec && !ncode)
			goto out; /* never optimized (or everything undone) */
		if (!nrec && st->nv)
			goto out; /* ours, and its record could not be written */
		rc = core_errf(&ctx->err, OCOLOS_ESTATE,
			       nrec ? "process %d's state record%s unusable (%s): libocolos cannot tell "
			       "what was changed in it, so it changes nothing; the process keeps "
			       "running the code it runs (restart it to return to its original code)"
			       : "process %d maps optimized code but has no state record%s%s: libocolos "
			       "cannot tell what was changed in it, so it changes nothing; the process "
			       "keeps running the code it runs (restart it to return to its original "
			       "code)", (int)ctx->pid, nrec ? (nrec > 1 ? "s are" : " is") : "",
			       nrec ? bad_what : "");
		goto out;
	}
	if (best.h.machine != b->machine || best.h.build_id_len != b->build_id_len ||
	    memcmp(best.h.build_id, b->build_id, b->build_id_len)) {
		rc = core_errf(&ctx->err, OCOLOS_ESTATE,
			       "process %d's state record is for another binary (build-id differs from "
			       "%s's): pass the binary the process runs (binary_path); nothing was "
			       "changed", (int)ctx->pid, b->path);
		goto out;
	}
	int known = best.h.seq == st->seq && st->records[1].addr == best.addr;
	int theirs = best.h.phase != API_PHASE_IDLE && best.h.busy_pid != (int32_t)getpid();
	if (known && (!theirs || !may_recover))
		goto out; /* what this context wrote or read last */
	if (theirs && alive(best.h.busy_pid, best.h.busy_start)) {
		rc = core_errf(&ctx->err, OCOLOS_EBUSY,
			       "process %d (another libocolos) is in the middle of a round on process "
			       "%d; wait for it to finish, or stop it first (the next call then "
			       "finishes or undoes what it left)", (int)best.h.busy_pid, (int)ctx->pid);
		goto out;
	}
	if (!known) {
		if (!consistent(&best.st, b)) {
			rc = core_errf(&ctx->err, OCOLOS_ESTATE,
				       "process %d's state record #%llu does not fit %s (its tables are "
				       "for another number of functions): libocolos changes nothing; the "
				       "process keeps running the code it runs", (int)ctx->pid,
				       (unsigned long long)best.h.seq, b->path);
			goto out;
		}
		if (nbad)
			core_logf(&ctx->log, OCOLOS_LOG_WARN, "process %d: a state record is unusable "
				  "(%s); using the other one (#%llu)", (int)ctx->pid, bad_what,
				  (unsigned long long)best.h.seq);
		core_logf(&ctx->log, OCOLOS_LOG_INFO, "process %d: state record #%llu found: C%u "
			  "newest, %zu versions mapped, %s", (int)ctx->pid,
			  (unsigned long long)best.h.seq, best.st.last_gen, best.st.nv,
			  best.st.redirected ? "in use" : "reverted");
		adopt(ctx, &best, all, nrec, may_recover);
		drop_unmapped(ctx, &m);
		rc = reconcile(ctx, best.pd.want);
	}
	if (!rc && theirs && may_recover)
		rc = recover(ctx, &best, &m);
out:
	free(all);
	loaded_free(&best);
	core_procmaps_free(&m);
	return rc;
}
