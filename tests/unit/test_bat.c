/*
 * The BAT reader (elf/bat.c) against real BOLT output.
 *
 * The fixture (bat_fixture.c) is given a profile that leaves every third
 * block of each function unsampled, so BOLT moves all of them and splits
 * some (cold fragments); BOLT runs with the library's own options
 * (layout/bolt.c, --enable-bat among them). Then three oracles:
 *
 *  1. Our decoders and CFGs of the input and the output (infer/cfg.h), not
 *     BAT: every instruction of every fragment (hot and cold) translates to
 *     an address inside the input function its fragment was bound to (by
 *     name), and the counts of those landing on an input instruction
 *     boundary and on the same instruction bytes are reported; every table
 *     row names an output instruction boundary and an input one, and every
 *     block row an input block our CFG also starts (the block start maps
 *     to the input block's start). The structure: one hot fragment per
 *     moved function at the address BOLT's symbols give it, each cold
 *     fragment's symbol "f.cold.N" naming its hot fragment's f, bx_multi's
 *     secondary entry at bx_multi_second.
 *  2. BOLT's own perf2bolt on the BOLTed binary: it is given one branch
 *     record from a fixed address to every output instruction, and one
 *     from every output instruction to a fixed address, in its
 *     pre-aggregated format (B records). It translates targets as samples
 *     (IsBranchSrc false) and sources as branch sources (true), with BOLT's
 *     own BAT reader, and writes fdata in input terms (function, offset);
 *     the fdata must equal, record for record and count for count, what
 *     elf_bat_translate / elf_bat_translate_src give. (Its basic-sample
 *     path, S records with --ba, is not used: BOLT 22 translates samples in
 *     cold fragments with the hot fragment's table there, and BOLT 19's
 *     reader takes no S records.)
 *  3. The note itself, damaged: cut at every length and with random bytes
 *     changed, it is refused with OCOLOS_EELF or read into something
 *     translate can use, never a crash (run under ASan too).
 *
 * argv: fixture llvm-bolt perf2bolt custom|placed
 *   custom: new code at --custom-allocation-vma (BOLT 22);
 *   placed: BOLT places it after the image (BOLT 19, any input machine).
 * Exits 77 (skipped) when the fixture or a tool is missing (AArch64: no
 * cross compiler, or no BOLT 19).
 */
#include <elf.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <limits.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "api/workdir.h"
#include "elf/bat.h"
#include "elf/binary.h"
#include "elf/bolt_output.h"
#include "infer/cfg.h"
#include "infer/hybrid.h"
#include "infer/profile.h"
#include "inject/inject.h"
#include "layout/layout.h"
#include "sample/sample.h"
#include "check.h"

extern char **environ;

/* Decoded instructions of [addr, addr + len) of `machine`. */
struct insns {
	struct cfg_insn *v;
	size_t n;
};

static int decode(uint16_t machine, const uint8_t *code, size_t len, uint64_t addr, struct insns *out)
{
	struct core_err err = { 0 };
	int rc = machine == EM_AARCH64 ? infer_cfg_decode_aarch64(code, len, addr, &out->v, &out->n, &err)
				       : infer_cfg_decode_x86(code, len, addr, &out->v, &out->n, &err);
	expect(rc == 0, "decode 0x%llx: %s", (unsigned long long)addr, err.msg);
	return rc;
}

static const struct cfg_insn *insn_at(const struct insns *s, uint64_t a)
{
	size_t lo = 0, hi = s->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (s->v[mid].addr < a)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < s->n && s->v[lo].addr == a ? &s->v[lo] : NULL;
}

/* `len` bytes at link-time address `a` of the ELF `e`, from the section
 * holding them; 0 or -1. */
static int elf_bytes(Elf *e, uint64_t a, size_t len, uint8_t *buf)
{
	Elf_Scn *scn = NULL;
	GElf_Shdr sh;
	while ((scn = elf_nextscn(e, scn))) {
		if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_PROGBITS || a < sh.sh_addr ||
		    a + len > sh.sh_addr + sh.sh_size)
			continue;
		Elf_Data *d = elf_getdata(scn, NULL);
		if (!d || !d->d_buf)
			return -1;
		memcpy(buf, (const uint8_t *)d->d_buf + (a - sh.sh_addr), len);
		return 0;
	}
	return -1;
}

/* Does the output have a function symbol `name` at `a`? */
static int has_symbol(Elf *e, const char *name, uint64_t a)
{
	Elf_Scn *scn = NULL;
	GElf_Shdr sh;
	while ((scn = elf_nextscn(e, scn))) {
		if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_SYMTAB)
			continue;
		Elf_Data *d = elf_getdata(scn, NULL);
		for (size_t i = 1; d && i < sh.sh_size / sh.sh_entsize; i++) {
			GElf_Sym s;
			const char *n;
			if (gelf_getsym(d, (int)i, &s) && s.st_value == a &&
			    (n = elf_strptr(e, sh.sh_link, s.st_name)) && !strcmp(n, name))
				return 1;
		}
	}
	return 0;
}

/* The raw `.note.bolt_bat` of `e` (malloc'd), or NULL. */
static uint8_t *note_bytes(Elf *e, size_t *len)
{
	size_t shstrndx;
	elf_getshdrstrndx(e, &shstrndx);
	Elf_Scn *scn = NULL;
	GElf_Shdr sh;
	while ((scn = elf_nextscn(e, scn))) {
		gelf_getshdr(scn, &sh);
		const char *n = elf_strptr(e, shstrndx, sh.sh_name);
		if (!n || strcmp(n, ".note.bolt_bat"))
			continue;
		Elf_Data *d = elf_rawdata(scn, NULL);
		uint8_t *v = d ? malloc(d->d_size) : NULL;
		if (v)
			memcpy(v, d->d_buf, d->d_size);
		*len = d ? d->d_size : 0;
		return v;
	}
	return NULL;
}

static long find_func(const struct elf_binary *b, const char *name)
{
	for (size_t i = 0; i < b->nfuncs; i++)
		if (!strcmp(b->funcs[i].name, name))
			return (long)i;
	return -1;
}

/* Samples at the start of two of every three blocks of each bx_ function,
 * more on later blocks; the third is left cold. Link-time addresses. */
static void make_samples(const struct elf_binary *b, struct sample_set *s)
{
	for (size_t i = 0; i < b->nfuncs; i++) {
		const struct elf_func *fn = &b->funcs[i];
		if (strncmp(fn->name, "bx_", 3) || !fn->size)
			continue;
		uint8_t *code = malloc(fn->size);
		struct cfg_func f;
		struct core_err err = { 0 };
		if (elf_read_vaddr(b, fn->addr, code, fn->size, &err) == 0 &&
		    infer_cfg_build(b->machine, code, fn->size, fn->addr, &f, &err) == 0) {
			for (size_t bb = 0; bb < f.nblocks; bb++)
				for (size_t n = 0; bb % 3 != 2 && n < 30 + bb; n++)
					sample_set_push(s, f.blocks[bb].start);
			infer_cfg_func_free(&f);
		}
		free(code);
	}
}

/* What the test learns about the input: per function, its instructions
 * and its CFG (built lazily). */
struct input {
	const struct elf_binary *b;
	struct insns *ins;
	struct cfg_func *cfg;
	uint8_t **code;
};

static int input_func(struct input *in, long f)
{
	if (in->code[f])
		return 0;
	const struct elf_func *fn = &in->b->funcs[f];
	struct core_err err = { 0 };
	in->code[f] = malloc(fn->size ? fn->size : 1);
	if (elf_read_vaddr(in->b, fn->addr, in->code[f], fn->size, &err) ||
	    decode(in->b->machine, in->code[f], fn->size, fn->addr, &in->ins[f]) ||
	    infer_cfg_build(in->b->machine, in->code[f], fn->size, fn->addr, &in->cfg[f], &err)) {
		expect(0, "input function %s: %s", fn->name, err.msg);
		return -1;
	}
	return 0;
}

static int is_leader(const struct cfg_func *f, uint64_t a)
{
	long k = infer_cfg_block_containing(f, a);
	return k >= 0 && f->blocks[k].start == a;
}

struct counts {
	size_t frags, cold, insns, in_func, boundary, same, rows, block_rows, block_leaders,
		block_entries, branch_rows;
};

/* Oracle 1 on fragment k. */
static void check_fragment(Elf *out, const struct elf_bat *bat, size_t k, struct input *in,
			   struct counts *c)
{
	const struct elf_bat_frag *fr = &bat->frags[k];
	const struct elf_binary *b = in->b;
	expect(fr->in_func >= 0, "fragment 0x%llx is not bound", (unsigned long long)fr->addr);
	if (fr->in_func < 0 || input_func(in, fr->in_func))
		return;
	const struct elf_func *fn = &b->funcs[fr->in_func];
	uint8_t *code = malloc(fr->size);
	struct insns o = { 0 };
	if (elf_bytes(out, fr->addr, fr->size, code) || decode(b->machine, code, fr->size, fr->addr, &o)) {
		expect(0, "cannot read fragment 0x%llx of %s", (unsigned long long)fr->addr, fn->name);
		free(code);
		return;
	}
	c->frags++;
	c->cold += k >= bat->nhot;
	uint64_t covered = o.n ? o.v[o.n - 1].addr + o.v[o.n - 1].len - fr->addr : 0;
	expect(covered == fr->size, "%s fragment 0x%llx: %llu of %llu bytes decode", fn->name,
	       (unsigned long long)fr->addr, (unsigned long long)covered, (unsigned long long)fr->size);
	const struct insns *ii = &in->ins[fr->in_func];
	for (size_t j = 0; j < o.n; j++) {
		uint64_t y;
		int r = elf_bat_translate(bat, o.v[j].addr, &y);
		c->insns++;
		if (r != ELF_BAT_TRANSLATED || y < fn->addr || y >= fn->addr + fn->size) {
			expect(0, "%s: output 0x%llx -> %d 0x%llx, outside [0x%llx, +0x%llx)", fn->name,
			       (unsigned long long)o.v[j].addr, r, (unsigned long long)y,
			       (unsigned long long)fn->addr, (unsigned long long)fn->size);
			continue;
		}
		c->in_func++;
		const struct cfg_insn *iy = insn_at(ii, y);
		if (!iy)
			continue;
		c->boundary++;
		c->same += iy->len == o.v[j].len && iy->kind == CFG_INSN_OTHER &&
			   o.v[j].kind == CFG_INSN_OTHER &&
			   !memcmp(in->code[fr->in_func] + (y - fn->addr), code + (o.v[j].addr - fr->addr),
				   iy->len);
	}
	for (uint32_t r = 0; r < fr->n; r++) {
		const struct elf_bat_entry *e = &bat->entries[fr->first + r];
		if (e->out >= fr->size)
			continue; /* rows of deleted blocks, at the end */
		c->rows++;
		uint64_t x = fr->addr + e->out, y = fn->addr + e->in;
		expect(insn_at(&o, x) != NULL, "%s row %u: output 0x%llx is not an instruction", fn->name, r,
		       (unsigned long long)x);
		expect(insn_at(ii, y) != NULL, "%s row %u: input 0x%llx is not an instruction", fn->name, r,
		       (unsigned long long)y);
		if (e->branch) {
			c->branch_rows++;
			continue;
		}
		c->block_rows++;
		/* BOLT starts a block at every entry point; our CFG knows only
		 * the function's start. */
		const struct elf_bat_frag *h = &bat->frags[fr->hot];
		int entry = 0;
		for (uint32_t q = 0; q < h->nep; q++)
			entry |= bat->eps[h->first_ep + q] == e->in;
		if (is_leader(&in->cfg[fr->in_func], y))
			c->block_leaders++;
		else if (entry)
			c->block_entries++;
		else
			fprintf(stderr, "%s row %u: block row 0x%x -> 0x%x: not a block start of our CFG\n",
				fn->name, r, e->out, e->in);
	}
	free(o.v);
	free(code);
}

/* Structure: hot fragments are the moved functions, cold ones name theirs. */
static void check_structure(Elf *out, const struct elf_bat *bat, const struct elf_binary *b,
			    const struct bolt_output *o)
{
	size_t hot_moved = 0;
	for (size_t i = 0; i < b->nfuncs; i++) {
		if (!o->c1_addr[i])
			continue;
		long f = elf_bat_frag_containing(bat, o->c1_addr[i]);
		/* A secondary entry point's own symbol moves with its function,
		 * into its hot or a cold fragment. */
		const struct elf_func *owner = f >= 0 && bat->frags[f].in_func >= 0
					       ? &b->funcs[bat->frags[f].in_func] : NULL;
		if (owner && owner->addr < b->funcs[i].addr &&
		    b->funcs[i].addr < owner->addr + owner->size)
			continue;
		hot_moved++;
		expect(f >= 0 && (size_t)f < bat->nhot && bat->frags[f].addr == o->c1_addr[i] &&
		       bat->frags[f].in_func == (long)i, "%s moved to 0x%llx: BAT fragment %ld",
		       b->funcs[i].name, (unsigned long long)o->c1_addr[i], f);
	}
	expect(bat->nhot == hot_moved && bat->bound == bat->nhot,
	       "%zu hot fragments, %zu bound, %zu functions moved", bat->nhot, bat->bound, hot_moved);
	for (size_t k = bat->nhot; k < bat->nfrags; k++) {
		const struct elf_bat_frag *fr = &bat->frags[k];
		if (fr->in_func < 0)
			continue;
		char name[256];
		int found = 0;
		for (int n = 0; n < 4 && !found; n++) {
			snprintf(name, sizeof(name), "%s.cold.%d", b->funcs[fr->in_func].name, n);
			found = has_symbol(out, name, fr->addr);
		}
		expect(found, "cold fragment 0x%llx (HotIndex -> %s) has no symbol %s.cold.N",
		       (unsigned long long)fr->addr, b->funcs[fr->in_func].name, b->funcs[fr->in_func].name);
	}
	long m = find_func(b, "bx_multi"), m2 = find_func(b, "bx_multi_second");
	const struct elf_bat_frag *h = NULL;
	for (size_t k = 0; k < bat->nhot; k++)
		if (bat->frags[k].in_func == m)
			h = &bat->frags[k];
	expect(m >= 0 && m2 >= 0 && h && h->nep == 1 &&
	       bat->eps[h->first_ep] == b->funcs[m2].addr - b->funcs[m].addr,
	       "bx_multi: %u secondary entry points (want 1, at bx_multi_second)", h ? h->nep : 0);
}

static int run(char *const argv[], const char *log)
{
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	pid_t pid;
	int st = -1;
	if (posix_spawn(&pid, argv[0], &fa, NULL, argv, environ) == 0)
		waitpid(pid, &st, 0);
	posix_spawn_file_actions_destroy(&fa);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* fdata branch records, "1 name off 1 name off mispreds count". */
struct rec {
	char from[64], to[64];
	unsigned long long foff, toff, count;
};

static int cmp_rec(const void *a, const void *b)
{
	const struct rec *x = a, *y = b;
	int c = strcmp(x->from, y->from);
	if (!c)
		c = (x->foff > y->foff) - (x->foff < y->foff);
	if (!c)
		c = strcmp(x->to, y->to);
	if (!c)
		c = (x->toff > y->toff) - (x->toff < y->toff);
	return c;
}

/* Sort and merge equal keys (summing counts); returns the new length. */
static size_t merge(struct rec *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_rec);
	size_t m = 0;
	for (size_t i = 0; i < n; i++) {
		if (m && !cmp_rec(&v[m - 1], &v[i]))
			v[m - 1].count += v[i].count;
		else
			v[m++] = v[i];
	}
	return m;
}

/* Our side of a record: (function, offset) of a translated address. */
static void name_off(const struct elf_binary *b, const struct elf_bat *bat, uint64_t a, int src,
		     char *name, unsigned long long *off)
{
	uint64_t y;
	int r = src ? elf_bat_translate_src(bat, a, &y) : elf_bat_translate(bat, a, &y);
	long f = elf_bat_frag_containing(bat, a);
	if (r != ELF_BAT_TRANSLATED || f < 0) {
		snprintf(name, 64, "?");
		*off = a;
		return;
	}
	snprintf(name, 64, "%s", b->funcs[bat->frags[f].in_func].name);
	*off = y - bat->frags[f].in_addr;
}

struct wd_paths {
	char pa[PATH_MAX], fdata[PATH_MAX], log[PATH_MAX];
};

/* Oracle 2. */
static void check_perf2bolt(const char *perf2bolt, const char *output, const struct wd_paths *p,
			    const struct elf_binary *b, const struct elf_bat *bat, Elf *out)
{
	/* Every instruction of every fragment; returns are targets only:
	 * perf2bolt drops branch records whose source is a return (it counts
	 * returns through the call's fall-through, not as branches). */
	uint64_t *addrs = NULL;
	uint8_t *is_ret = NULL;
	size_t n = 0, cap = 0, nret = 0;
	for (size_t k = 0; k < bat->nfrags; k++) {
		const struct elf_bat_frag *fr = &bat->frags[k];
		uint8_t *code = malloc(fr->size);
		struct insns o = { 0 };
		if (!elf_bytes(out, fr->addr, fr->size, code) &&
		    !decode(b->machine, code, fr->size, fr->addr, &o)) {
			for (size_t j = 0; j < o.n; j++) {
				if (n == cap) {
					cap = cap ? 2 * cap : 256;
					addrs = realloc(addrs, cap * sizeof(*addrs));
					is_ret = realloc(is_ret, cap);
				}
				is_ret[n] = o.v[j].kind == CFG_INSN_RET;
				nret += is_ret[n];
				addrs[n++] = o.v[j].addr;
			}
		}
		free(o.v);
		free(code);
	}
	if (!n) {
		expect(0, "no instructions for perf2bolt");
		return;
	}
	uint64_t fixed_from = addrs[0], fixed_to = addrs[n / 2];
	FILE *f = fopen(p->pa, "w");
	struct rec *want = calloc(2 * n, sizeof(*want));
	size_t nrec = 0;
	for (size_t i = 0; f && i < n; i++) {
		struct rec *a = &want[nrec++];
		fprintf(f, "B %llx %llx 1 0\n", (unsigned long long)fixed_from, (unsigned long long)addrs[i]);
		name_off(b, bat, fixed_from, 1, a->from, &a->foff);
		name_off(b, bat, addrs[i], 0, a->to, &a->toff);
		a->count = 1;
		if (is_ret[i])
			continue;
		struct rec *z = &want[nrec++];
		fprintf(f, "B %llx %llx 1 0\n", (unsigned long long)addrs[i], (unsigned long long)fixed_to);
		name_off(b, bat, addrs[i], 1, z->from, &z->foff);
		name_off(b, bat, fixed_to, 0, z->to, &z->toff);
		z->count = 1;
	}
	if (f)
		fclose(f);
	size_t nwant = merge(want, nrec);
	char pa_arg[PATH_MAX + 4], o_arg[PATH_MAX + 4];
	snprintf(pa_arg, sizeof(pa_arg), "-p=%s", p->pa);
	snprintf(o_arg, sizeof(o_arg), "-o=%s", p->fdata);
	char *argv[] = { (char *)perf2bolt, (char *)output, pa_arg, "--pa", o_arg, NULL };
	int rc = run(argv, p->log);
	expect(rc == 0, "perf2bolt exited %d; see %s", rc, p->log);
	struct rec *got = calloc(2 * n + 16, sizeof(*got));
	size_t ngot = 0;
	char line[512];
	f = fopen(p->fdata, "r");
	while (f && fgets(line, sizeof(line), f) && ngot < 2 * n + 16) {
		struct rec *r = &got[ngot];
		int t1, t2;
		unsigned long long mis;
		if (sscanf(line, "%d %63s %llx %d %63s %llx %llu %llu", &t1, r->from, &r->foff, &t2, r->to,
			   &r->toff, &mis, &r->count) == 8)
			ngot++;
	}
	if (f)
		fclose(f);
	ngot = merge(got, ngot);
	size_t same = 0;
	for (size_t i = 0, j = 0; i < nwant || j < ngot;) {
		int c = i >= nwant ? 1 : j >= ngot ? -1 : cmp_rec(&want[i], &got[j]);
		if (!c && want[i].count == got[j].count) {
			same++;
			i++, j++;
			continue;
		}
		if (c <= 0)
			fprintf(stderr, "ours:      %s+%llx -> %s+%llx x%llu\n", want[i].from, want[i].foff,
				want[i].to, want[i].toff, want[i].count);
		if (c >= 0)
			fprintf(stderr, "perf2bolt: %s+%llx -> %s+%llx x%llu\n", got[j].from, got[j].foff,
				got[j].to, got[j].toff, got[j].count);
		i += c <= 0;
		j += c >= 0;
	}
	fprintf(stderr, "perf2bolt: %zu branch records (%zu output instructions as targets, %zu as "
		"sources), %zu fdata records, %zu equal to ours of %zu\n", nrec, n, n - nret, ngot, same,
		nwant);
	expect(same == nwant && same == ngot, "perf2bolt and elf_bat disagree on %zu records",
	       (nwant > same ? nwant - same : 0) + (ngot > same ? ngot - same : 0));
	free(want);
	free(got);
	free(addrs);
	free(is_ret);
}

/* Oracle 3: the real note cut short at every descriptor length, and with
 * random bytes changed. Refused with OCOLOS_EELF, or parsed into tables
 * translate can walk. xorshift, fixed seed. */
static void check_damaged(const uint8_t *note, size_t len)
{
	uint8_t *v = malloc(len);
	size_t refused = 0, parsed = 0, tries = 0;
	uint32_t namesz, descsz;
	memcpy(&namesz, note, 4);
	memcpy(&descsz, note + 4, 4);
	size_t desc = 12 + (namesz + 3) / 4 * 4;
	for (uint32_t cut = 0; cut < descsz; cut++) {
		memcpy(v, note, len);
		memcpy(v + 4, &cut, 4);
		struct elf_bat *bat = NULL;
		struct core_err err = { 0 };
		int rc = elf_bat_parse(v, desc + cut, "cut", &bat, &err);
		tries++;
		refused += rc == OCOLOS_EELF && strstr(err.msg, "'cut'");
		elf_bat_free(bat);
	}
	expect(refused == descsz, "%zu of %u cut notes refused with a named OCOLOS_EELF", refused, descsz);
	uint64_t x = 0x9e3779b97f4a7c15ull;
	for (int t = 0; t < 20000; t++) {
		memcpy(v, note, len);
		for (int k = 0; k < 1 + t % 4; k++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			v[desc + x % (len - desc)] = (uint8_t)(x >> 32);
		}
		struct elf_bat *bat = NULL;
		struct core_err err = { 0 };
		int rc = elf_bat_parse(v, len, "flipped", &bat, &err);
		expect(rc == 0 || rc == OCOLOS_EELF, "damaged note: rc %d", rc);
		if (rc) {
			refused++;
			continue;
		}
		parsed++;
		for (size_t k = 0; k < bat->nfrags; k++) {
			uint64_t y;
			bat->frags[k].in_func = 0;
			for (uint64_t a = bat->frags[k].addr; a - bat->frags[k].addr < 64; a += 3)
				elf_bat_translate(bat, a, &y), elf_bat_translate_src(bat, a, &y);
		}
		elf_bat_free(bat);
	}
	fprintf(stderr, "damaged notes: %u cuts refused; 20000 with changed bytes: %zu parsed, %zu refused\n",
		descsz, parsed, refused - descsz);
	free(v);
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: %s fixture llvm-bolt perf2bolt custom|placed\n", argv[0]);
		return 2;
	}
	const char *fixture = argv[1], *bolt = argv[2], *perf2bolt = argv[3];
	int placed = !strcmp(argv[4], "placed");
	for (int i = 1; i <= 3; i++)
		if (access(argv[i], i == 1 ? R_OK : X_OK)) {
			fprintf(stderr, "SKIP: %s is missing\n", argv[i]);
			return 77;
		}
	struct core_err err = { 0 };
	struct elf_binary *b = NULL;
	expect(elf_binary_open(fixture, &b, &err) == 0, "%s", err.msg);
	if (!b)
		test_done();
	struct sample_set s = { 0 };
	make_samples(b, &s);
	struct api_workdir wd;
	expect(api_workdir_create(&wd, NULL, &err) == 0, "%s", err.msg);
	char profile[PATH_MAX], output[PATH_MAX], log[PATH_MAX], copy[PATH_MAX];
	struct wd_paths p;
	api_workdir_file(&wd, "p.pa", profile, &err);
	api_workdir_file(&wd, "out.bolt", output, &err);
	api_workdir_file(&wd, "bolt.log", log, &err);
	api_workdir_file(&wd, "placed.elf", copy, &err);
	api_workdir_file(&wd, "samples.pa", p.pa, &err);
	api_workdir_file(&wd, "out.fdata", p.fdata, &err);
	api_workdir_file(&wd, "perf2bolt.log", p.log, &err);
	struct infer_profile_stats ps;
	struct hybrid_write_stats hs;
	expect(infer_write_hybrid_flags(b, 0, &s, profile, HYBRID_NO_INFER, &ps, &hs, &err) == 0, "%s",
	       err.msg);
	uint64_t vma = ((b->img_hi + (64ull << 20)) & ~((2ull << 20) - 1)), ns;
	if (placed)
		expect(layout_bolt_placed_copy(fixture, copy, vma, &err) == 0, "%s", err.msg);
	struct layout_request req = { .bolt_path = bolt, .binary = placed ? copy : fixture,
		.profile = profile, .output = output, .log_path = log, .alloc_vma = vma,
		.timeout_ms = 120000, .self_placed = placed };
	int rc = layout_bolt_run(&req, &ns, &err);
	expect(rc == 0, "BOLT: %s", err.msg);
	struct bolt_output *o = NULL;
	struct elf_bat *bat = NULL;
	if (!rc)
		expect(elf_bolt_output_open(output, b, vma, 256ull << 20, &o, &err) == 0, "%s", err.msg);
	if (o)
		expect(elf_bat_open(output, b, &bat, &err) == 0, "%s", err.msg);
	int fd = open(output, O_RDONLY);
	Elf *out = fd >= 0 ? elf_begin(fd, ELF_C_READ, NULL) : NULL;
	if (bat && out) {
		check_structure(out, bat, b, o);
		struct input in = { b, calloc(b->nfuncs, sizeof(struct insns)),
			calloc(b->nfuncs, sizeof(struct cfg_func)), calloc(b->nfuncs, sizeof(uint8_t *)) };
		struct counts c = { 0 };
		for (size_t k = 0; k < bat->nfrags; k++)
			check_fragment(out, bat, k, &in, &c);
		fprintf(stderr, "%s: %zu fragments (%zu cold) of %zu functions; %zu output instructions, "
			"%zu translate into their function, %zu onto an input instruction boundary, %zu of "
			"those onto the same bytes; %zu table rows: %zu block rows (%zu at blocks of our CFG, "
			"%zu at secondary entry points), %zu branch rows\n",
			bolt, c.frags, c.cold, bat->nhot, c.insns, c.in_func, c.boundary, c.same, c.rows,
			c.block_rows, c.block_leaders, c.block_entries, c.branch_rows);
		expect(c.cold >= 1, "no cold fragment: the profile should have split a function");
		expect(c.insns > 50 && c.in_func == c.insns, "%zu of %zu instructions in their function",
		       c.in_func, c.insns);
		expect(c.block_leaders + c.block_entries == c.block_rows,
		       "%zu of %zu block rows at blocks of our CFG or entry points",
		       c.block_leaders + c.block_entries, c.block_rows);
		for (size_t i = 0; i < b->nfuncs; i++) {
			free(in.ins[i].v);
			if (in.code[i])
				infer_cfg_func_free(&in.cfg[i]);
			free(in.code[i]);
		}
		free(in.ins);
		free(in.cfg);
		free(in.code);
		/* Code BOLT did not move translates to itself. */
		uint64_t y;
		long mainf = find_func(b, "main");
		expect(mainf >= 0 && elf_bat_translate(bat, b->funcs[mainf].addr, &y) == ELF_BAT_NOT_MOVED &&
		       y == b->funcs[mainf].addr, "main (not moved) is translated");
		check_perf2bolt(perf2bolt, output, &p, b, bat, out);
		size_t len = 0;
		uint8_t *note = note_bytes(out, &len);
		expect(note && len > 16, "no note");
		if (note)
			check_damaged(note, len);
		free(note);
	}
	/* The version's return sites (inject/version.c) are all retirement
	 * looks for — unless its code still takes the address of a copy
	 * (keep_c0.c's unfixed references): then there is no list, and every
	 * address in the version counts. */
	if (bat && o && b->machine == EM_X86_64) {
		struct inject_fixups fx;
		struct inject_version_entries ve;
		expect(inject_fixups_build(b, o, bat, &fx, &err) == 0, "fixups: %s", err.msg);
		expect(inject_version_entries_build(b, o, bat, &fx, 0, 1, &ve, &err) == 0 &&
		       ve.ret_sites && ve.nret_sites > 0, "no return sites in the version");
		inject_version_entries_free(&ve);
		fx.unfixed++;
		expect(inject_version_entries_build(b, o, bat, &fx, 0, 1, &ve, &err) == 0 &&
		       !ve.ret_sites && !ve.nret_sites && !ve.throw_sites,
		       "a version whose code takes the address of a copy kept its return-site list");
		inject_version_entries_free(&ve);
		inject_fixups_free(&fx);
	}
	/* Without the input, nothing is bound: addresses in moved code are
	 * reported as such, not as original code. */
	struct elf_bat *raw = NULL;
	if (bat && elf_bat_open(output, NULL, &raw, &err) == 0) {
		uint64_t y;
		expect(raw->bound == 0 && elf_bat_translate(raw, bat->frags[0].addr, &y) == ELF_BAT_UNBOUND,
		       "unbound BAT");
		elf_bat_free(raw);
	}
	/* The input binary has no BAT: a named error. */
	struct core_err e2 = { 0 };
	expect(elf_bat_open(fixture, b, &raw, &e2) == OCOLOS_EELF && strstr(e2.msg, "--enable-bat"),
	       "input without BAT: %s", e2.msg);
	if (out)
		elf_end(out);
	if (fd >= 0)
		close(fd);
	elf_bat_free(bat);
	elf_bolt_output_close(o);
	api_workdir_remove(&wd);
	sample_set_free(&s);
	elf_binary_close(b);
	test_done();
}
